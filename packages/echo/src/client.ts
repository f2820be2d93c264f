// HTTP clients for the echo server: HTTP/1.1 over http:// URLs and HTTP/2 with prior knowledge over h2c:// URLs.
import http from "node:http";
import http2 from "node:http2";
import type { EchoReply } from "./server.js";

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Whole-request timeout; default 10 000 ms. */
  timeoutMs?: number;
  /** http:// only: the agent to use. Default false: a new connection per request (closed afterwards). */
  agent?: http.Agent | false;
  /** h2c only: a session to reuse (see connectH2c). Default: a new session per request, closed afterwards. */
  session?: http2.ClientHttp2Session;
  /** Use HTTP/2 with prior knowledge for an http:// URL too (same as writing h2c://). */
  http2?: boolean;
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  protocol: "HTTP/1.1" | "HTTP/2";
}

/** A request that got no answer, or (from fetchEcho) an answer that is not an echo reply. */
export class EchoFetchError extends Error {
  override name = "EchoFetchError";
  constructor(
    message: string,
    /** The status, when an answer arrived. */
    readonly status?: number,
    /** The answer's body, when one arrived. */
    readonly body?: string,
  ) {
    super(message);
  }
}

interface Target {
  h2: boolean;
  /** For http2.connect: `http://host[:port]`. */
  origin: string;
  hostname: string;
  port: number;
  path: string;
}

/** Accepts http://host[:port]/path and h2c://host[:port]/path; throws TypeError for anything else. */
export function parseTarget(url: string | URL, forceH2 = false): Target {
  const u = typeof url === "string" ? new URL(url) : url;
  if (u.protocol !== "http:" && u.protocol !== "h2c:") {
    throw new TypeError(`unsupported URL scheme ${JSON.stringify(u.protocol)} in ${u.href}: use http:// or h2c://`);
  }
  if (u.hostname === "") throw new TypeError(`no host in ${u.href}`);
  const port = u.port === "" ? 80 : Number(u.port);
  return {
    h2: u.protocol === "h2c:" || forceH2,
    origin: `http://${u.host}`,
    hostname: u.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    path: (u.pathname === "" ? "/" : u.pathname) + u.search,
  };
}

/** Opens an HTTP/2 prior-knowledge session to `http://host:port` or `h2c://host:port` (large flow-control windows). */
export function connectH2c(url: string | URL): http2.ClientHttp2Session {
  const session = http2.connect(parseTarget(url, true).origin, { settings: { initialWindowSize: 1024 * 1024 } });
  session.once("connect", () => {
    if (!session.destroyed) session.setLocalWindowSize(8 * 1024 * 1024);
  });
  return session;
}

/** One request; resolves with any answer (whatever the status), rejects with EchoFetchError when none arrives. */
export function request(url: string | URL, opts: RequestOptions = {}): Promise<RawAnswer> {
  const target = parseTarget(url, opts.http2);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return target.h2 ? requestH2(target, opts, timeoutMs) : requestH1(target, opts, timeoutMs);
}

function requestH1(target: Target, opts: RequestOptions, timeoutMs: number): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: target.hostname,
      port: target.port,
      path: target.path,
      method: opts.method ?? "GET",
      headers: opts.headers,
      agent: opts.agent ?? false,
    });
    const timer = setTimeout(() => req.destroy(new EchoFetchError(`timeout after ${timeoutMs} ms`)), timeoutMs);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err instanceof EchoFetchError ? err : new EchoFetchError(err.message));
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", noop); // req's "error" reports it
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), protocol: "HTTP/1.1" });
      });
    });
    req.end(opts.body);
  });
}

const noop = () => {};

function requestH2(target: Target, opts: RequestOptions, timeoutMs: number): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const own = opts.session === undefined;
    const session = opts.session ?? connectH2c(target.origin);
    let settled = false;
    const finish = (err: Error | null, answer?: RawAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.off("error", onSessionError);
      if (own) {
        if (err) session.destroy();
        else session.close();
      }
      if (err) reject(err instanceof EchoFetchError ? err : new EchoFetchError(err.message));
      else resolve(answer as RawAnswer);
    };
    const onSessionError = (err: Error) => finish(err);
    session.on("error", onSessionError);
    if (own) session.on("error", noop); // errors after the answer must not go unhandled
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      finish(new EchoFetchError(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);

    const stream = session.request(
      { ":method": opts.method ?? "GET", ":path": target.path, ...opts.headers },
      { endStream: opts.body === undefined },
    );
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      headers = {};
      for (const [name, value] of Object.entries(h)) if (!name.startsWith(":")) headers[name] = value;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => finish(null, { status, headers, body: Buffer.concat(chunks), protocol: "HTTP/2" }));
    stream.on("error", (err) => finish(err));
    stream.on("close", () => {
      if (!settled) finish(new EchoFetchError(`stream closed before the answer ended (code ${stream.rstCode ?? "?"})`));
    });
    if (opts.body !== undefined) stream.end(opts.body);
  });
}

/** Requests `url` (http:// or h2c://) and returns the server's echo reply, whatever its status. */
export async function fetchEcho(url: string | URL, opts: RequestOptions = {}): Promise<EchoReply> {
  const answer = await request(url, opts);
  const text = answer.body.toString("utf8");
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    reply = undefined;
  }
  if (typeof reply !== "object" || reply === null || typeof (reply as EchoReply).pod !== "string") {
    throw new EchoFetchError(`status ${answer.status}: not an echo reply: ${JSON.stringify(text.slice(0, 200))}`, answer.status, text);
  }
  return reply as EchoReply;
}
