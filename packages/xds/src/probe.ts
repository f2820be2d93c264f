// A diagnostic: a raw HTTP/2 gRPC request (not grpc-js, which would build the whole message in memory first) that
// claims a message of any size in its length prefix and streams it until the server ends the stream. It shows
// whether a server refuses an oversized message from its prefix and stops the client (tests; checking a deployment).
import * as http2 from "node:http2";

export interface OversizedResult {
  /** The response headers (a trailers-only response carries grpc-status in them). */
  headers: Record<string, unknown>;
  trailers: Record<string, unknown>;
  /** RST_STREAM code of the stream's end. */
  rstCode: number | undefined;
  /** Bytes the client's socket handed to the network: how much of the claimed message the server let in. */
  bytesOnWire: number;
}

/** Claims `claimBytes` in the length prefix, then streams 1 MiB chunks until the server ends the stream. */
export async function sendOversizedRequest(url: string, path: string, claimBytes: number, options: { headers?: Record<string, string>; tls?: { ca: string; servername: string } } = {}): Promise<OversizedResult> {
  const session = http2.connect(url, options.tls ? { ca: options.tls.ca, servername: options.tls.servername } : {});
  session.on("error", () => {});
  const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...options.headers });
  const result: OversizedResult = { headers: {}, trailers: {}, rstCode: undefined, bytesOnWire: 0 };
  req.on("response", (h) => Object.assign(result.headers, h));
  req.on("trailers", (h) => Object.assign(result.trailers, h));
  req.on("error", () => {});
  req.resume();
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(claimBytes, 1);
  const chunk = Buffer.alloc(1 << 20, 7);
  await new Promise<void>((resolve) => {
    req.on("close", () => resolve());
    let sent = 0;
    const pump = (): void => {
      while (sent < claimBytes && !req.destroyed && !req.closed) {
        const piece = sent === 0 ? Buffer.concat([prefix, chunk]) : chunk;
        sent += chunk.length;
        if (!req.write(piece)) {
          req.once("drain", pump);
          return;
        }
      }
      if (!req.destroyed && !req.closed) req.end();
    };
    pump();
  });
  result.rstCode = req.rstCode;
  result.bytesOnWire = session.socket?.bytesWritten ?? 0;
  session.destroy();
  return result;
}

/** The gRPC status of a raw response (trailers-only or in trailers). */
export const grpcStatusOf = (r: OversizedResult): number => Number(r.trailers["grpc-status"] ?? r.headers["grpc-status"]);
