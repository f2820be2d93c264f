// Test helpers: real sockets on 127.0.0.1, spawned ambit-echo processes.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { once } from "node:events";
import http from "node:http";
import type http2 from "node:http2";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const MAIN = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");

export function requireBuilt(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` in packages/echo first`);
}

/** A port that was free a moment ago (for spawned servers, whose CLI treats 0 as "off"). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The client's local port (to compare with the server's view of the peer). */
  localPort: number;
}

export interface RequestOptions {
  method?: string;
  body?: Buffer | string;
  agent?: http.Agent | false;
  headers?: Record<string, string>;
}

/** A request under way: `handled` resolves once the server's handler has it (see {@link startRequest}). */
export interface Started {
  req: http.ClientRequest;
  handled: Promise<void>;
  answer: Promise<Answer>;
}

function request(port: number, path: string, opts: RequestOptions, extraHeaders: Record<string, string> = {}): http.ClientRequest {
  const headers = { ...opts.headers, ...extraHeaders };
  return http.request({ host: "127.0.0.1", port, path, method: opts.method ?? "GET", agent: opts.agent ?? false, headers });
}

/** The answer to req, read to its end. */
function answerOf(req: http.ClientRequest): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let localPort = 0;
    req.on("socket", (s) => s.on("connect", () => (localPort = s.localPort ?? 0)));
    req.on("error", reject);
    req.on("response", (res) => {
      localPort ||= res.socket.localPort ?? 0;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), localPort }));
      res.on("error", reject);
    });
  });
}

/** One HTTP/1.1 request with node's http client. */
export function get(port: number, path: string, opts: RequestOptions = {}): Promise<Answer> {
  const req = request(port, path, opts);
  const answer = answerOf(req);
  req.end(opts.body);
  return answer;
}

/**
 * Starts one HTTP/1.1 request with `Expect: 100-continue`: node's server answers "100 Continue" as it hands the
 * request to its handler, so `handled` tells that the request is in flight at the server, with no guess at time.
 * With `openBody` the body is left open (the request stays in flight until `req.end()`).
 */
export function startRequest(port: number, path: string, opts: RequestOptions & { openBody?: boolean } = {}): Started {
  const req = request(port, path, opts, { expect: "100-continue" });
  const handled = new Promise<void>((resolve, reject) => {
    req.once("continue", resolve);
    req.once("error", reject);
  });
  handled.catch(() => {}); // a test that never awaits it sees the error through `answer`
  const answer = answerOf(req);
  if (opts.openBody) req.flushHeaders();
  else req.end(opts.body);
  return { req, handled, answer };
}

/**
 * Resolves once the server has acknowledged a PING on `session`. It handles frames in order, so by then it has
 * every stream the session opened before: they are in flight at the server.
 */
export async function pingAcked(session: http2.ClientHttp2Session): Promise<void> {
  if (session.connecting) await once(session, "connect");
  await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP proxy to 127.0.0.1:`port` that forwards the first `slowBytes` client bytes in `piece`-byte writes with
 * `delayMs` between them (so the server sees the connection preface arrive in parts), the rest unchanged.
 */
export async function choppingProxy(port: number, piece: number, delayMs: number, slowBytes = 64): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: "127.0.0.1", port, noDelay: true });
    sockets.add(client).add(upstream);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => {});
    upstream.on("error", () => {});
    upstream.pipe(client);
    let forwarded = 0;
    let queue = Promise.resolve();
    client.on("data", (chunk: Buffer) => {
      queue = queue.then(async () => {
        let offset = 0;
        while (offset < chunk.length && forwarded < slowBytes) {
          const n = Math.min(piece, chunk.length - offset, slowBytes - forwarded);
          upstream.write(chunk.subarray(offset, offset + n));
          offset += n;
          forwarded += n;
          await sleep(delayMs);
        }
        if (offset < chunk.length) upstream.write(chunk.subarray(offset));
      });
    });
    client.on("end", () => void queue.then(() => upstream.end()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Writes raw bytes to 127.0.0.1:`port`, half-closes, and collects everything until the server closes. */
export function rawExchange(port: number, data: Buffer | string, opts: { halfClose?: boolean; pauseMs?: number } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on("error", reject);
    socket.on("connect", () => {
      if (opts.pauseMs) {
        socket.pause();
        setTimeout(() => socket.resume(), opts.pauseMs);
      }
      if (opts.halfClose === false) socket.write(data);
      else socket.end(data);
    });
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("close", () => resolve(Buffer.concat(chunks)));
  });
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/main.js …args` to completion. */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`ambit-echo ${args.join(" ")} did not exit within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface Spawned {
  child: ChildProcessWithoutNullStreams;
  /** Parsed JSON lines printed so far. */
  lines: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Spawns `ambit-echo serve` and resolves once it printed its "started" line. */
export async function spawnServer(env: Record<string, string>): Promise<Spawned> {
  const child = spawn(process.execPath, [MAIN], { env: { ...process.env, BIND_ADDRESS: "127.0.0.1", ...env } });
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  let pending = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  const started = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (entry["msg"] === "ambit-echo started") resolve();
      }
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    void exited.then(({ code }) => reject(new Error(`server exited (${code}) before starting: ${stderr}`)));
  });
  await started;
  return { child, lines, exited, stderr: () => stderr };
}
