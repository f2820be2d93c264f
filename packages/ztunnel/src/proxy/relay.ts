// Bidirectional copy between two byte streams (TCP sockets or HTTP/2 CONNECT streams) with TCP's half-close
// carried through: a FIN on one side ends the other side's writes, a reset on one side resets the other. Bytes are
// not counted per chunk; callers read the sockets' own counters when the relay ends.
import { constants as h2c, type Http2Stream } from "node:http2";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";

/** One side of a relay: a TCP socket or an HTTP/2 CONNECT stream. */
export type End = Socket | Http2Stream;

function isStream(s: End): s is Http2Stream {
  return !(s instanceof Socket);
}

/** Abort one side because the other failed: RST for TCP, RST_STREAM(CONNECT_ERROR) for a tunnel (RFC 9113 §8.5). */
function abort(s: End): void {
  if (s.destroyed) return;
  if (isStream(s)) s.close(h2c.NGHTTP2_CONNECT_ERROR);
  // libuv cannot reset a socket whose write side was already shut down: resetAndDestroy() then fails with EINVAL
  // and Node never closes the handle (the connection and the relay hang). This happens whenever a tunnel is reset,
  // because Node's stream.close(code) sends END_STREAM just before RST_STREAM, and that FIN was already passed on.
  // After our FIN, a plain close is all that is left.
  else if (s.writableEnded) s.destroy();
  else s.resetAndDestroy();
}

/** A stream reset with NO_ERROR or CANCEL counts as EOF; other codes as a failure. */
function failedStream(s: Http2Stream): boolean {
  return s.rstCode !== undefined && s.rstCode !== h2c.NGHTTP2_NO_ERROR && s.rstCode !== h2c.NGHTTP2_CANCEL;
}

/** Chunks below this size are written at once: interactive traffic gains nothing from waiting for the turn's end. */
const COALESCE_MIN_BYTES = 4096;

/**
 * Tunnel → socket: HTTP/2 hands bulk data over in small chunks (a TLS record holds at most 16 KiB, split around
 * frame headers), and one write() each means one syscall each. Corking the socket until the end of this event-loop
 * turn (setImmediate: Node drains process.nextTick after every HTTP/2 chunk, so a tick is too short) turns the chunks
 * of one read into a single writev. A small chunk with nothing corked before it (a request, a response) is written
 * at once. Back-pressure as pipe() does it: pause the stream until 'drain'.
 */
function coalesce(from: Http2Stream, to: Socket): void {
  let corked = false;
  const uncork = () => { corked = false; to.uncork(); };
  from.on("data", (chunk: Buffer) => {
    if (!corked && chunk.length >= COALESCE_MIN_BYTES) { corked = true; to.cork(); setImmediate(uncork); }
    if (!to.write(chunk)) { from.pause(); to.once("drain", () => from.resume()); }
  });
  from.once("end", () => to.end());
}

export interface Relay {
  /** Resolves when both sides are closed, with the first error seen (if any). */
  done: Promise<Error | undefined>;
  /** Ends both sides abruptly (drain deadline, policy change). */
  destroy(reason: Error): void;
}

export interface RelayOptions {
  /**
   * Once the relay is half-closed (a FIN passed one way, or one side closed), both sides are ended when no byte moved
   * for this long, so a peer that half-closes and goes silent cannot pin the other side. Unset: no bound.
   */
  halfCloseIdleMs?: number;
}

/** TCP after its peer is gone: the FIN (and what is still queued) goes out, then the socket is closed, as close() would. */
function closeWhenFlushed(s: Socket): void {
  if (s.writableFinished) s.destroy();
  else s.once("finish", () => s.destroy());
}

export function relay(a: End, b: End, opts: RelayOptions = {}): Relay {
  let error: Error | undefined;
  let resolveDone!: (e: Error | undefined) => void;
  const done = new Promise<Error | undefined>((r) => (resolveDone = r));
  let open = 2;
  let idle: NodeJS.Timeout | undefined;
  const destroy = (reason: Error) => {
    error ??= reason;
    abort(a);
    abort(b);
  };
  const halfClosed = () => {
    const ms = opts.halfCloseIdleMs;
    if (idle || ms === undefined || open === 0) return;
    idle = setTimeout(() => destroy(new Error(`half-closed connection idle for ${ms} ms`)), ms);
    idle.unref();
    const touch = () => idle!.refresh();
    a.on("data", touch);
    b.on("data", touch);
  };
  const onClose = () => {
    if (--open > 0) return;
    clearTimeout(idle);
    resolveDone(error);
  };
  const wire = (from: End, to: End) => {
    // A stream's session, kept: at 'close' the stream no longer has it, and its state tells a lost connection from a reset.
    const session = isStream(from) ? from.session : undefined;
    if (isStream(from) && !isStream(to)) coalesce(from, to);
    else (from as Duplex).pipe(to as Duplex);
    from.once("end", halfClosed);
    from.on("error", (err: Error) => {
      error ??= err;
      abort(to);
    });
    from.on("close", () => {
      if (isStream(from) && (failedStream(from) || session?.destroyed)) {
        // Reset with an error code, or its whole HBONE connection is gone (peer vanished, keepalive, drain deadline).
        error ??= new Error(failedStream(from) ? `tunnel reset (code ${from.rstCode})` : "the HBONE connection was lost");
        abort(to);
      } else if (!to.destroyed) {
        // `from` is gone (e.g. a stream reset with CANCEL): nothing `to` sends can be delivered any more. Pass the FIN
        // on; a socket is then closed once it is written, and a stream gets the half-close bound.
        if (!(to as Duplex).writableEnded) (to as Duplex).end();
        if (!isStream(to)) closeWhenFlushed(to);
        else halfClosed();
      }
      onClose();
    });
  };
  wire(a, b);
  wire(b, a);
  return { done, destroy };
}
