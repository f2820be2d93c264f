// The echo server: HTTP/1.1 and h2c (prior knowledge) on one port, and a raw TCP echo on another.
//
// One net.Server accepts HTTP connections and reads until it can tell the protocol: the HTTP/2 connection preface
// (possibly arriving a byte at a time) goes to an http2 server, anything else to an http server. The bytes read so
// far are put back with unshift() before the socket is handed over with emit("connection").
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { identityFromEnv, type EchoIdentity } from "./config.js";

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** Largest `/bytes/<n>`: 1 GiB. */
export const MAX_BYTES = 1024 ** 3;
/** Largest `/delay/<ms>`: 5 minutes. */
export const MAX_DELAY_MS = 300_000;
/** Request bodies up to this size are echoed back as `body` (UTF-8); larger ones only as `bodyBytes`. */
export const MAX_ECHOED_BODY = 64 * 1024;

/** How long a new HTTP connection may take to send enough bytes to tell HTTP/1 from HTTP/2. */
const SNIFF_TIMEOUT_MS = 30_000;
const CHUNK = Buffer.alloc(64 * 1024, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n");

/** The JSON answer to every ordinary HTTP request. */
export interface EchoReply {
  pod: string;
  namespace: string;
  node: string;
  ip: string;
  /** The client as this server saw it: `ip:port`, `[ipv6]:port` for IPv6 (IPv4-mapped addresses are unmapped). */
  peer: string;
  /** The address the connection arrived on, same format as `peer`. */
  local: string;
  protocol: string;
  method: string;
  /** The request target as sent, query string included. */
  path: string;
  /** The `Host` header (HTTP/1) or `:authority` (HTTP/2). */
  authority: string;
  /** The status code of this answer. */
  status: number;
  /** Request headers, lower-case names, without HTTP/2 pseudo-headers. */
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
  /** The request body as UTF-8, when it was non-empty and at most MAX_ECHOED_BODY bytes. */
  body?: string;
  /** Set on a 400 answer to a malformed `/status`, `/delay` or `/bytes` path. */
  error?: string;
}

export interface EchoOptions {
  /** HTTP/1.1 + h2c port. 0 (the default) picks an ephemeral port; null turns the listener off. */
  httpPort?: number | null;
  /** Raw TCP echo port. 0 (the default) picks an ephemeral port; null turns the listener off. */
  tcpPort?: number | null;
  /** Bind address; default "::" (dual stack), falling back to 0.0.0.0 when the host has no IPv6. */
  host?: string;
  /** Overrides for the identity reported in answers; the rest comes from the environment (POD_NAME, …). */
  identity?: Partial<EchoIdentity>;
  /** Write `<pod> <peer>\n` to each TCP connection before echoing. */
  tcpGreeting?: boolean;
  /** Log one JSON line per HTTP request. */
  logRequests?: boolean;
  /** Where log lines go; default one JSON line on stdout. */
  log?: (entry: Record<string, unknown>) => void;
  /** How long close() lets in-flight requests and connections finish before destroying them; default 1000 ms. */
  shutdownGraceMs?: number;
  /** Idle time before an HTTP/1 keep-alive connection is closed; default 65 s (longer than typical proxy pools). */
  keepAliveTimeoutMs?: number;
}

export interface EchoServer {
  /** The HTTP port actually bound, or null when turned off. */
  httpPort: number | null;
  /** The TCP echo port actually bound, or null when turned off. */
  tcpPort: number | null;
  /** The address actually bound (after any IPv6 → IPv4 fallback). */
  host: string;
  identity: EchoIdentity;
  /**
   * Stops accepting, lets in-flight requests finish (answers carry `Connection: close`, HTTP/2 sessions get GOAWAY),
   * closes idle connections, and destroys whatever is left after the grace period. Idempotent.
   */
  close(): Promise<void>;
}

type Request = http.IncomingMessage | http2.Http2ServerRequest;

/** What the handler needs from an HTTP/1 or HTTP/2 compatibility response. */
interface Response {
  statusCode: number;
  setHeader(name: string, value: string | number): unknown;
  write(chunk: Uint8Array): boolean;
  end(chunk?: string | Uint8Array): unknown;
  once(event: "drain" | "close" | "finish", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
}

/** `ip:port`, `[ip]:port` for IPv6, with IPv4-mapped IPv6 addresses shown as IPv4. */
export function formatAddress(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return "";
  const ip = address.startsWith("::ffff:") && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
  return net.isIPv6(ip) ? `[${ip}]:${port ?? ""}` : `${ip}:${port ?? ""}`;
}

const noop = () => {};

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen({ port, host }, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

function closeServer(server: net.Server | null): Promise<void> {
  return new Promise((resolve) => (server && server.listening ? server.close(() => resolve()) : resolve()));
}

const NO_IPV6 = new Set(["EAFNOSUPPORT", "EADDRNOTAVAIL", "EPROTONOSUPPORT", "EINVAL"]);

/** Starts the echo listeners. Resolves once every enabled listener is bound. */
export async function startEcho(opts: EchoOptions = {}): Promise<EchoServer> {
  const identity: EchoIdentity = identityFromEnv();
  for (const [key, value] of Object.entries(opts.identity ?? {})) if (typeof value === "string") identity[key as keyof EchoIdentity] = value;
  const graceMs = opts.shutdownGraceMs ?? 1000;
  const log = opts.log ?? ((entry) => process.stdout.write(`${JSON.stringify(entry)}\n`));
  const logRequests = opts.logRequests ?? false;
  const httpPortWanted = opts.httpPort === undefined ? 0 : opts.httpPort;
  const tcpPortWanted = opts.tcpPort === undefined ? 0 : opts.tcpPort;

  let closing = false;
  /** Every accepted socket, HTTP and TCP, until it closes. */
  const sockets = new Set<net.Socket>();
  /** HTTP/1 connections and how many requests each is answering. */
  const h1Active = new Map<net.Socket, number>();
  const h2Sessions = new Set<http2.ServerHttp2Session>();

  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      h1Active.delete(socket);
    });
  };

  // ---- HTTP request handling, shared by both protocols ----

  const handle = (req: Request, res: Response, protocol: string) => {
    const started = performance.now();
    const socket = req.socket;
    const h1Socket = protocol === "HTTP/2" ? null : (socket as net.Socket);
    // Read the addresses now: an HTTP/2 request's socket proxy throws once its session is gone.
    const peer = formatAddress(socket.remoteAddress, socket.remotePort);
    const local = formatAddress(socket.localAddress, socket.localPort);
    if (h1Socket && h1Active.has(h1Socket)) h1Active.set(h1Socket, (h1Active.get(h1Socket) ?? 0) + 1);
    let done = false;
    const finished = () => {
      if (done) return;
      done = true;
      if (h1Socket && h1Active.has(h1Socket)) {
        const left = (h1Active.get(h1Socket) ?? 1) - 1;
        h1Active.set(h1Socket, left);
        // Answers begun before close() started lack `Connection: close`; end those connections here.
        if (closing && left === 0) h1Socket.end();
      }
      if (logRequests) {
        log({
          time: new Date().toISOString(), level: "info", msg: "request", protocol, method: req.method, path: req.url,
          status: res.statusCode, peer, bodyBytes,
          ms: Math.round((performance.now() - started) * 10) / 10,
        });
      }
    };
    let closed = false;
    res.once("finish", finished);
    res.once("close", () => {
      closed = true;
      finished();
    });
    res.on("error", noop);
    req.on("error", noop);

    let bodyBytes = 0;
    const kept: Buffer[] = [];
    req.on("data", (chunk: Buffer) => {
      bodyBytes += chunk.length;
      if (bodyBytes <= MAX_ECHOED_BODY) kept.push(chunk);
    });
    req.on("end", () => {
      if (closed) return;
      const method = req.method ?? "";
      const path = req.url ?? "";
      const headers: Record<string, string | string[] | undefined> = {};
      for (const [name, value] of Object.entries(req.headers)) if (!name.startsWith(":")) headers[name] = value;
      const authority = (protocol === "HTTP/2" ? (req.headers[":authority"] as string | undefined) : undefined) ?? req.headers.host ?? "";
      const reply = (status: number, error?: string): EchoReply => {
        const r: EchoReply = {
          ...identity,
          peer,
          local,
          protocol, method, path, authority, status, headers, bodyBytes,
        };
        if (bodyBytes > 0 && bodyBytes <= MAX_ECHOED_BODY) r.body = Buffer.concat(kept, bodyBytes).toString("utf8");
        if (error !== undefined) r.error = error;
        return r;
      };
      const send = (status: number, error?: string) => {
        if (closed) return;
        res.statusCode = status;
        if (closing && h1Socket) res.setHeader("connection", "close");
        if (status === 204 || status === 304) return void res.end();
        const json = Buffer.from(JSON.stringify(reply(status, error)));
        res.setHeader("content-type", "application/json");
        res.setHeader("content-length", json.length);
        res.end(method === "HEAD" ? undefined : json);
      };

      const q = path.indexOf("?");
      const pathname = q < 0 ? path : path.slice(0, q);
      if (pathname === "/healthz") {
        res.statusCode = 200;
        if (closing && h1Socket) res.setHeader("connection", "close");
        res.setHeader("content-type", "text/plain; charset=utf-8");
        res.setHeader("content-length", 2);
        return void res.end("ok");
      }
      const special = /^\/(status|delay|bytes)\/([^/]*)\/?$/.exec(pathname);
      if (!special) return send(200);
      const [, kind, arg = ""] = special;
      const n = /^\d{1,16}$/.test(arg) ? Number(arg) : NaN;
      if (kind === "status") {
        if (!(n >= 200 && n <= 599)) return send(400, `/status/<code> needs a code from 200 to 599, not ${JSON.stringify(arg)}`);
        return send(n);
      }
      if (kind === "delay") {
        if (!(n >= 0 && n <= MAX_DELAY_MS)) return send(400, `/delay/<ms> needs milliseconds from 0 to ${MAX_DELAY_MS}, not ${JSON.stringify(arg)}`);
        const timer = setTimeout(() => send(200), n);
        res.once("close", () => clearTimeout(timer));
        return;
      }
      // bytes
      if (!(n >= 0 && n <= MAX_BYTES)) return send(400, `/bytes/<n> needs a byte count from 0 to ${MAX_BYTES}, not ${JSON.stringify(arg)}`);
      res.statusCode = 200;
      if (closing && h1Socket) res.setHeader("connection", "close");
      res.setHeader("content-type", "application/octet-stream");
      res.setHeader("content-length", n);
      if (method === "HEAD") return void res.end();
      let left = n;
      const pump = () => {
        while (left > 0 && !closed) {
          const size = Math.min(left, CHUNK.length);
          left -= size;
          if (!res.write(size === CHUNK.length ? CHUNK : CHUNK.subarray(0, size))) {
            res.once("drain", pump);
            return;
          }
        }
        if (!closed) res.end();
      };
      pump();
    });
  };

  // ---- protocol servers (never listening themselves; sockets are handed to them) ----

  const h1 = http.createServer({ requireHostHeader: false, noDelay: true }, (req, res) =>
    handle(req, res, `HTTP/${req.httpVersion}`),
  );
  h1.keepAliveTimeout = opts.keepAliveTimeoutMs ?? 65_000;
  h1.timeout = 0;

  const h2 = http2.createServer({
    maxSessionMemory: 64,
    settings: { initialWindowSize: 1024 * 1024 },
  });
  h2.on("request", (req, res) => handle(req, res, "HTTP/2"));
  h2.on("session", (session) => {
    h2Sessions.add(session);
    session.once("close", () => h2Sessions.delete(session));
    session.on("error", noop);
    session.once("connect", () => {
      if (!session.destroyed) session.setLocalWindowSize(8 * 1024 * 1024);
    });
    if (closing) session.close();
  });
  h2.on("sessionError", noop);
  h2.on("error", noop);

  // ---- the HTTP front door: sniff the preface, hand the socket over ----

  const onHttpConnection = (socket: net.Socket) => {
    track(socket);
    socket.on("error", noop);
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    const stop = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", stop);
    };
    const onEnd = () => {
      stop();
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.compare(H2_PREFACE, 0, n, 0, n) === 0;
      if (isH2 && head.length < H2_PREFACE.length) return; // a prefix of the preface: wait for more
      stop();
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        // The session feeds the bytes still in the socket's buffer to nghttp2 on the next tick, then reads the
        // handle itself; resuming the JS stream here would hand those bytes to nobody.
        h2.emit("connection", socket);
      } else {
        // The HTTP/1 parser takes over the handle for new bytes; resume() flows the buffered ones to it first.
        h1Active.set(socket, 0);
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", stop);
  };

  // ---- raw TCP echo ----

  const onTcpConnection = (socket: net.Socket) => {
    track(socket);
    socket.on("error", () => socket.destroy());
    if (opts.tcpGreeting) socket.write(`${identity.pod} ${formatAddress(socket.remoteAddress, socket.remotePort)}\n`);
    socket.pipe(socket);
  };

  // ---- listen ----

  let host = opts.host ?? "::";
  let httpServer: net.Server | null = null;
  let tcpServer: net.Server | null = null;
  const bind = async (server: net.Server, port: number) => {
    try {
      await listen(server, port, host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      if (host !== "::" || !NO_IPV6.has(code)) throw err;
      host = "0.0.0.0"; // no IPv6 in this network namespace
      await listen(server, port, host);
    }
  };
  try {
    if (httpPortWanted !== null) {
      httpServer = net.createServer({ noDelay: true }, onHttpConnection);
      await bind(httpServer, httpPortWanted);
    }
    if (tcpPortWanted !== null) {
      tcpServer = net.createServer({ noDelay: true, allowHalfOpen: true }, onTcpConnection);
      await bind(tcpServer, tcpPortWanted);
    }
  } catch (err) {
    await Promise.all([closeServer(httpServer), closeServer(tcpServer)]);
    throw err;
  }

  let closePromise: Promise<void> | null = null;
  const close = () => {
    closePromise ??= (async () => {
      closing = true;
      const stopped = Promise.all([closeServer(httpServer), closeServer(tcpServer)]);
      for (const [socket, active] of h1Active) if (active === 0) socket.destroy();
      for (const session of h2Sessions) session.close();
      const grace = setTimeout(() => {
        for (const session of h2Sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await stopped;
      clearTimeout(grace);
    })();
    return closePromise;
  };

  const portOf = (server: net.Server | null) => (server ? (server.address() as net.AddressInfo).port : null);
  return { httpPort: portOf(httpServer), tcpPort: portOf(tcpServer), host, identity, close };
}
