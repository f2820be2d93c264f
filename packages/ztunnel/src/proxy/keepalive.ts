// HTTP/2 PING keepalive as Istio's ztunnel does it (reference §4.4, on both the pool's client connections and the
// inbound server's): the first PING `intervalMs` after the connection starts, the next `intervalMs` after each
// PONG (not idle-based); no PONG within `timeoutMs` destroys the connection, and with it every stream on it.
// A closing connection (a GOAWAY sent or received: Node then refuses PINGs) cannot be checked any more, so it gets
// `intervalMs + timeoutMs` to finish its streams and is then destroyed the same way: a peer that says GOAWAY and
// goes silent cannot pin its tunnels.
import type { Http2Session } from "node:http2";

export interface KeepaliveOptions {
  intervalMs: number;
  timeoutMs: number;
}

/** The error a session is destroyed with when its peer stopped answering PINGs (or a closing one outlived its bound). */
export class KeepaliveTimeout extends Error {
  override name = "KeepaliveTimeout";
}

export function keepalive(session: Http2Session, o: KeepaliveOptions): void {
  let timer: NodeJS.Timeout | undefined;
  const destroyAfter = (ms: number, why: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => session.destroy(new KeepaliveTimeout(why)), ms);
    timer.unref();
  };
  /** PINGs are refused: if the session is closing, bound its remaining life. */
  const refused = () => {
    clearTimeout(timer);
    if (session.closed && !session.destroyed) {
      const ms = o.intervalMs + o.timeoutMs;
      destroyAfter(ms, `HBONE keepalive: connection still open ${ms} ms after GOAWAY (PINGs are no longer possible)`);
    }
  };
  const schedule = () => {
    timer = setTimeout(() => {
      if (session.destroyed) return;
      destroyAfter(o.timeoutMs, `HBONE keepalive: no PONG within ${o.timeoutMs} ms`);
      try {
        session.ping((err) => { if (!err) { clearTimeout(timer); schedule(); } else refused(); });
      } catch {
        refused();
      }
    }, o.intervalMs);
    timer.unref();
  };
  session.once("close", () => clearTimeout(timer));
  schedule();
}
