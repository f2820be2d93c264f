// ztunnel's three HTTP servers (reference §8.3): admin on 15000 (localhost: index, /config_dump, /quitquitquit,
// /logging), stats on 15020 (/metrics and /stats/prometheus, OpenMetrics when the Accept header asks) and readiness
// on 15021 (/healthz/ready). Bad requests get a status code and a message, never an exception.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Registry, RegistryContentType } from "prom-client";
import type { Logger } from "pino";
import { OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, renderOpenMetrics } from "../telemetry/metrics.js";

export interface LogLevelControl {
  /** The current levels, e.g. `info,access:debug`. */
  get(): string;
  /** Applies `<level>` or `<module>:<level>,…`; throws an Error that says what was wrong on bad input. */
  set(spec: string): void;
}

export interface AdminOptions {
  /** Default 127.0.0.1: the admin port can stop the proxy, so it is not exposed. */
  host?: string;
  /** 15000; 0 = ephemeral. */
  port: number;
  configDump: () => unknown;
  onQuit: () => void;
  logLevel: LogLevelControl;
}

export interface StatsOptions {
  /** Default "::" (all addresses), falling back to 0.0.0.0 where IPv6 is unavailable. */
  host?: string;
  /** 15020; 0 = ephemeral. */
  port: number;
  registry: Registry<RegistryContentType>;
}

export interface ReadinessOptions {
  /** Default "::" (all addresses; the kubelet probes the pod IP), falling back to 0.0.0.0 without IPv6. */
  host?: string;
  /** 15021; 0 = ephemeral. */
  port: number;
  status: () => { ready: boolean; pending: string[] };
}

// ---- shared plumbing ----

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;
interface Route {
  methods: readonly string[];
  handle: Handler;
}

function text(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache", ...headers });
  res.end(body.endsWith("\n") ? body : `${body}\n`);
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Serves a fixed route table: unknown path → 404, known path with another method → 405 with `Allow`. */
function router(routes: Record<string, Route>, notFoundHint: string): (req: IncomingMessage, res: ServerResponse) => void {
  const paths = Object.keys(routes).join(", ");
  return (req, res) => {
    req.resume(); // no endpoint reads a body; drain it so the connection can be reused
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      return text(res, 400, `bad request target ${JSON.stringify(req.url)}`);
    }
    const route = routes[url.pathname];
    if (!route) return text(res, 404, `no such path ${url.pathname}; ${notFoundHint}: ${paths}`);
    const method = req.method ?? "";
    const allowed = route.methods.includes("GET") ? [...route.methods, "HEAD"] : route.methods;
    if (!allowed.includes(method)) {
      return text(res, 405, `method ${method} is not allowed on ${url.pathname}; use ${route.methods.join(" or ")}`, { allow: allowed.join(", ") });
    }
    try {
      const done = route.handle(req, res, url);
      if (done instanceof Promise) done.catch((e: unknown) => text(res, 500, `internal error: ${message(e)}`));
    } catch (e) {
      text(res, 500, `internal error: ${message(e)}`);
    }
  };
}

/**
 * Timeouts for a small, local HTTP/1.1 server: idle keep-alive connections are closed after `keepAliveMs` (longer
 * than a scrape interval for the stats server, so Prometheus reuses its connection), a request must send its headers
 * within 10 s and finish within 30 s, and malformed requests get a 400 instead of an error event.
 */
function harden(server: Server, keepAliveMs: number): Server {
  server.keepAliveTimeout = keepAliveMs;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : "400 Bad Request";
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  return server;
}

function listenOnce(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/** Listens on `host`; when the host was the IPv6 wildcard by default and IPv6 is unavailable, on 0.0.0.0 instead. */
async function listen(server: Server, port: number, host: string | undefined, defaultHost: string): Promise<Server> {
  try {
    await listenOnce(server, port, host ?? defaultHost);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (host !== undefined || defaultHost !== "::" || (code !== "EAFNOSUPPORT" && code !== "EADDRNOTAVAIL")) throw e;
    await listenOnce(server, port, "0.0.0.0");
  }
  return server;
}

// ---- admin (15000) ----

/** JSON for the config dump: bytes as base64, bigint and Long-like values as strings, Maps and Sets as objects/arrays. */
function dumpReplacer(_key: string, v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Map) return Object.fromEntries(v);
  if (v instanceof Set) return [...v];
  return v;
}

const INDEX_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>ztunnel admin</title></head>
<body>
<h1>ztunnel admin</h1>
<ul>
<li><a href="/config_dump">/config_dump</a>: workloads, services, policies, certificates and configuration (JSON)</li>
<li><code>POST /logging</code>: show log levels; <code>?level=&lt;level&gt;</code> or <code>?level=&lt;module&gt;:&lt;level&gt;,…</code> to change them</li>
<li><code>POST /quitquitquit</code>: drain and exit</li>
</ul>
<p>Metrics are on port 15020 (<code>/metrics</code>, <code>/stats/prometheus</code>); readiness on 15021 (<code>/healthz/ready</code>).</p>
</body></html>
`;

export function startAdmin(o: AdminOptions): Promise<Server> {
  const routes: Record<string, Route> = {
    "/": {
      methods: ["GET"],
      handle: (_req, res) => {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" });
        res.end(INDEX_HTML);
      },
    },
    "/config_dump": {
      methods: ["GET"],
      handle: (_req, res) => {
        let body: string;
        try {
          body = JSON.stringify(o.configDump() ?? {}, dumpReplacer, 2);
        } catch (e) {
          return text(res, 500, `cannot build the config dump: ${message(e)}`);
        }
        res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache" });
        res.end(`${body}\n`);
      },
    },
    "/quitquitquit": {
      methods: ["POST"],
      handle: (_req, res) => {
        text(res, 200, "shutting down");
        // After the answer is on its way, so a caller that exits the process at once still sends it.
        setImmediate(() => {
          try {
            o.onQuit();
          } catch (e) {
            console.error(`quitquitquit: shutdown hook failed: ${message(e)}`);
          }
        });
      },
    },
    "/logging": {
      methods: ["POST"],
      handle: (_req, res, url) => {
        const level = url.searchParams.get("level");
        if (level === null) return text(res, 200, `current log level is ${o.logLevel.get()}`);
        if (!level.trim()) return text(res, 400, "level is empty; use ?level=<level> or ?level=<module>:<level>,…");
        try {
          o.logLevel.set(level);
        } catch (e) {
          return text(res, 400, `invalid log level ${JSON.stringify(level)}: ${message(e)}`);
        }
        text(res, 200, `log level set; current log level is ${o.logLevel.get()}`);
      },
    },
  };
  const server = harden(createServer(router(routes, "the admin server serves")), 5_000);
  return listen(server, o.port, o.host, "127.0.0.1");
}

// ---- stats (15020) ----

/** True when the Accept header lists OpenMetrics text with a non-zero quality. */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(",").some((range) => {
    const [type, ...params] = range.split(";").map((p) => p.trim().toLowerCase());
    if (type !== "application/openmetrics-text") return false;
    const q = params.find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export function startStats(o: StatsOptions): Promise<Server> {
  const metrics: Handler = async (req, res) => {
    const open = wantsOpenMetrics(req.headers.accept) || o.registry.contentType === OPENMETRICS_CONTENT_TYPE;
    // prom-client renders one format per registry; OpenMetrics is rendered from the same values without changing it.
    const body = open && o.registry.contentType !== OPENMETRICS_CONTENT_TYPE ? await renderOpenMetrics(o.registry) : await o.registry.metrics();
    res.writeHead(200, { "content-type": open ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_CONTENT_TYPE, "cache-control": "no-cache" });
    res.end(body);
  };
  const routes: Record<string, Route> = {
    "/metrics": { methods: ["GET"], handle: metrics },
    "/stats/prometheus": { methods: ["GET"], handle: metrics },
  };
  const server = harden(createServer(router(routes, "the stats server serves")), 65_000);
  return listen(server, o.port, o.host, "::");
}

// ---- readiness (15021) ----

export function startReadiness(o: ReadinessOptions): Promise<Server> {
  const routes: Record<string, Route> = {
    "/healthz/ready": {
      methods: ["GET"],
      handle: (_req, res) => {
        const s = o.status();
        if (s.ready) return text(res, 200, "ready");
        text(res, 500, `not ready, pending: ${s.pending.length ? s.pending.join(", ") : "(unknown)"}`);
      },
    },
  };
  const server = harden(createServer(router(routes, "the readiness server serves")), 5_000);
  return listen(server, o.port, o.host, "::");
}

// ---- log levels of pino loggers ----

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
const ALIASES: Record<string, (typeof LEVELS)[number]> = { off: "silent", warning: "warn" };

function parseLevel(s: string): (typeof LEVELS)[number] {
  const l = s.trim().toLowerCase();
  const found = ALIASES[l] ?? LEVELS.find((x) => x === l);
  if (!found) throw new Error(`unknown level ${JSON.stringify(s.trim())}; levels are ${LEVELS.join(", ")} (or off)`);
  return found;
}

/**
 * A LogLevelControl over pino loggers: `root` plus named module loggers (children such as the `access` logger, whose
 * levels pino keeps separately). `<level>` sets the default, which every module without its own level follows;
 * `<module>:<level>` gives one module its own level. Directives add to the current state; a spec is checked as a
 * whole before anything changes.
 */
export function pinoLogLevels(root: Logger, modules: Record<string, Logger> = {}): LogLevelControl {
  let defaultLevel: string = root.level;
  const own = new Map<string, string>();
  const apply = () => {
    root.level = defaultLevel;
    for (const [name, log] of Object.entries(modules)) log.level = own.get(name) ?? defaultLevel;
  };
  return {
    get() {
      const mods = [...own.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([m, l]) => `${m}:${l}`);
      return [defaultLevel, ...mods].join(",");
    },
    set(spec: string) {
      const directives = spec.split(",").map((d) => d.trim()).filter(Boolean);
      if (!directives.length) throw new Error("no level given; use <level> or <module>:<level>,…");
      let nextDefault = defaultLevel;
      const nextOwn = new Map(own);
      for (const d of directives) {
        const colon = d.indexOf(":");
        if (colon < 0) {
          nextDefault = parseLevel(d);
          continue;
        }
        const mod = d.slice(0, colon).trim();
        if (!Object.hasOwn(modules, mod)) {
          const known = Object.keys(modules);
          throw new Error(`unknown module ${JSON.stringify(mod)}; modules are ${known.length ? known.join(", ") : "(none)"}`);
        }
        nextOwn.set(mod, parseLevel(d.slice(colon + 1)));
      }
      defaultLevel = nextDefault;
      own.clear();
      for (const [m, l] of nextOwn) own.set(m, l);
      apply();
    },
  };
}
