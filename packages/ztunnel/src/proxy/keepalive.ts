// HTTP/2 PING keepalive as Istio's ztunnel does it (reference §4.4, on both the pool's client connections and the
// inbound server's): the first PING `intervalMs` after the connection starts, the next `intervalMs` after each
// PONG (not idle-based); no PONG within `timeoutMs` destroys the connection, and with it every stream on it.
import type { Http2Session } from "node:http2";

export interface KeepaliveOptions {
  intervalMs: number;
  timeoutMs: number;
}

/** The error a session is destroyed with when its peer stopped answering PINGs. */
export class KeepaliveTimeout extends Error {
  override name = "KeepaliveTimeout";
}

export function keepalive(session: Http2Session, o: KeepaliveOptions): void {
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(() => {
      if (session.destroyed) return;
      timer = setTimeout(() => session.destroy(new KeepaliveTimeout(`HBONE keepalive: no PONG within ${o.timeoutMs} ms`)), o.timeoutMs);
      timer.unref();
      try {
        session.ping((err) => { clearTimeout(timer); if (!err) schedule(); });
      } catch {
        clearTimeout(timer); // destroyed meanwhile
      }
    }, o.intervalMs);
    timer.unref();
  };
  session.once("close", () => clearTimeout(timer));
  schedule();
}
