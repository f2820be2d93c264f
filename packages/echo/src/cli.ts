// The ambit-echo command line: `serve` (default), `client`, `tcp-client`. main() resolves with the exit code.
import http from "node:http";
import type http2 from "node:http2";
import net from "node:net";
import { connectH2c, parseTarget, request } from "./client.js";
import { intOption, parseArgs, portArg, serveConfigFromEnv, UsageError } from "./config.js";
import { startEcho, type EchoReply } from "./server.js";

export const USAGE = `Usage:
  ambit-echo [serve]
      HTTP/1.1 + h2c echo on $HTTP_PORT (default 8080), raw TCP echo on $TCP_PORT (default 9000).
      Env: HTTP_PORT, TCP_PORT (0 = off), BIND_ADDRESS (default ::), TCP_GREETING=1, ECHO_LOG_REQUESTS=1,
           POD_NAME, POD_NAMESPACE, NODE_NAME, POD_IP (reported in every answer).
  ambit-echo client <http://host:port/path | h2c://host:port/path> [--interval ms] [--count n] [--timeout ms] [--keepalive]
      GETs the URL every --interval ms (default 1000), a new connection each time unless --keepalive,
      printing one line per answer; runs until --count answers (default: forever).
  ambit-echo tcp-client <host> <port> [--message text] [--timeout ms]
      Sends --message (default "ping\\n"; \\n \\r \\t \\\\ are unescaped), half-closes, prints what comes back.
`;

export interface Io {
  out: (text: string | Uint8Array) => void;
  err: (text: string) => void;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT). */
  stopSignal: Promise<string>;
}

export async function main(argv: readonly string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  const [mode = "serve", ...rest] = argv;
  try {
    switch (mode) {
      case "serve":
        if (rest.length > 0) throw new UsageError(`serve takes no arguments (configure it with environment variables), got ${JSON.stringify(rest.join(" "))}.`);
        return await serve(env, io);
      case "client":
        return await client(rest, io);
      case "tcp-client":
        return await tcpClient(rest, io);
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown mode ${JSON.stringify(mode)}.`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`ambit-echo: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

function logLine(entry: Record<string, unknown>): string {
  return `${JSON.stringify({ time: new Date().toISOString(), level: "info", ...entry })}\n`;
}

async function serve(env: Record<string, string | undefined>, io: Io): Promise<number> {
  const config = serveConfigFromEnv(env);
  let server;
  try {
    server = await startEcho({
      httpPort: config.httpPort,
      tcpPort: config.tcpPort,
      host: config.host,
      identity: config.identity,
      tcpGreeting: config.tcpGreeting,
      logRequests: config.logRequests,
      log: (entry) => io.out(`${JSON.stringify(entry)}\n`),
    });
  } catch (err) {
    io.err(logLine({ level: "error", msg: "ambit-echo failed to start", error: (err as Error).message }));
    return 1;
  }
  io.out(
    logLine({
      msg: "ambit-echo started", ...server.identity, bind: server.host, httpPort: server.httpPort, tcpPort: server.tcpPort,
      tcpGreeting: config.tcpGreeting, pid: process.pid,
    }),
  );
  const signal = await io.stopSignal;
  const started = performance.now();
  await server.close();
  io.out(logLine({ msg: "ambit-echo stopped", signal, shutdownMs: Math.round(performance.now() - started) }));
  return 0;
}

const show = (value: unknown) => (typeof value === "string" && value !== "" ? value.replace(/\s/g, "_") : "-");

async function client(args: string[], io: Io): Promise<number> {
  const { positionals, options } = parseArgs(args, { interval: "value", count: "value", timeout: "value", keepalive: "switch" }, "client");
  if (positionals.length !== 1) throw new UsageError(`client needs exactly one URL, got ${positionals.length}.`);
  const url = positionals[0] as string;
  let target;
  try {
    target = parseTarget(url);
  } catch (err) {
    throw new UsageError(`client: ${(err as Error).message}.`);
  }
  const interval = intOption(options, "interval", 1000, 0, 86_400_000);
  const count = options.has("count") ? intOption(options, "count", 1, 1, Number.MAX_SAFE_INTEGER) : Infinity;
  const timeoutMs = intOption(options, "timeout", 5000, 1, 3_600_000);
  const keepalive = options.has("keepalive");
  const agent = keepalive && !target.h2 ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
  let session: http2.ClientHttp2Session | undefined;

  let stopped = false;
  let wake = () => {};
  void io.stopSignal.then(() => {
    stopped = true;
    wake();
  });

  let answers = 0;
  for (let i = 0; i < count && !stopped; i++) {
    const started = Date.now();
    if (keepalive && target.h2 && (session === undefined || session.closed || session.destroyed)) {
      session = connectH2c(url);
      session.on("error", () => {});
    }
    try {
      const answer = await request(url, { timeoutMs, agent, session });
      answers++;
      let reply: Partial<EchoReply> | undefined;
      try {
        reply = JSON.parse(answer.body.toString("utf8")) as Partial<EchoReply>;
      } catch {
        reply = undefined;
      }
      const time = new Date().toISOString();
      if (reply && typeof reply === "object" && typeof reply.pod === "string") {
        io.out(`${time} ${answer.status} pod=${show(reply.pod)} node=${show(reply.node)} ip=${show(reply.ip)} peer=${show(reply.peer)}\n`);
      } else {
        const text = answer.body.toString("utf8", 0, Math.min(answer.body.length, 120)).replace(/\s+/g, " ").trim();
        io.out(`${time} ${answer.status} non-echo answer (${answer.body.length} bytes): ${text}\n`);
      }
    } catch (err) {
      io.out(`${new Date().toISOString()} error ${(err as Error).message}\n`);
      if (session && (session.closed || session.destroyed)) session = undefined;
    }
    if (i + 1 < count && !stopped) {
      const wait = Math.max(0, started + interval - Date.now());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  if (agent) agent.destroy();
  session?.close();
  return answers > 0 ? 0 : 1;
}

/** `\n`, `\r`, `\t` and `\\` in a --message. */
function unescape(text: string): string {
  return text.replace(/\\([nrt\\])/g, (_m, c: string) => ({ n: "\n", r: "\r", t: "\t", "\\": "\\" })[c] ?? c);
}

async function tcpClient(args: string[], io: Io): Promise<number> {
  const { positionals, options } = parseArgs(args, { message: "value", timeout: "value" }, "tcp-client");
  if (positionals.length !== 2) throw new UsageError(`tcp-client needs <host> <port>, got ${positionals.length} argument(s).`);
  const host = positionals[0] as string;
  const port = portArg(positionals[1], "tcp-client: port");
  const rawMessage = options.get("message");
  const message = typeof rawMessage === "string" ? unescape(rawMessage) : "ping\n";
  const timeoutMs = intOption(options, "timeout", 5000, 1, 3_600_000);
  return await new Promise<number>((resolve) => {
    let received = 0;
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const done = (code: number, problem?: string) => {
      clearTimeout(timer);
      socket.destroy();
      if (problem) io.err(`ambit-echo tcp-client: ${problem}\n`);
      resolve(code);
    };
    const timer = setTimeout(() => done(1, `timeout after ${timeoutMs} ms (received ${received} bytes)`), timeoutMs);
    socket.on("connect", () => socket.end(message));
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      io.out(chunk);
    });
    socket.on("end", () => done(0));
    socket.on("error", (err) => done(1, err.message));
    void io.stopSignal.then(() => done(1, "interrupted"));
  });
}
