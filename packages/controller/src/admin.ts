// Istio's monitoring port (15014): /metrics (Prometheus) and /ready, open to all; /debug/config_dump (the computed
// resources as JSON) and /debug/connections (the connected xDS clients), which need a bearer token whose user may
// `get` the path as a non-resource URL (see DebugAccess).
import { createServer, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import { DebugAccessError } from "./auth.js";

export interface AdminSources {
  registry: Registry;
  ready: () => boolean;
  configDump: () => unknown;
  connections: () => unknown;
  /** Resolves when `authorization` may read the debug `path`; rejects with a DebugAccessError otherwise. */
  debugAccess: (authorization: string | undefined, path: string) => Promise<unknown>;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v), 2));
}

export function startAdmin(port: number, host: string, s: AdminSources): Promise<Server> {
  const debug: Record<string, () => unknown> = { "/debug/config_dump": s.configDump, "/debug/connections": s.connections };
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method !== "GET") return json(res, 405, { error: "only GET is served here" });
    const dump = debug[path];
    if (dump) {
      s.debugAccess(req.headers.authorization, path).then(
        () => json(res, 200, dump()),
        (err: unknown) => {
          if (!(err instanceof DebugAccessError)) return json(res, 500, { error: `internal error: ${(err as Error)?.message ?? String(err)}` });
          json(res, err.status, { error: err.message }, err.status === 401 ? { "www-authenticate": 'Bearer realm="ambit-controller debug"' } : {});
        },
      );
      return;
    }
    switch (path) {
      case "/metrics":
      case "/stats/prometheus":
        s.registry.metrics().then((text) => {
          res.writeHead(200, { "content-type": s.registry.contentType });
          res.end(text);
        }, (err: Error) => json(res, 500, { error: err.message }));
        return;
      case "/ready":
        if (s.ready()) {
          res.writeHead(200).end("ready\n");
        } else {
          res.writeHead(503).end("not ready: caches are syncing\n");
        }
        return;
      default:
        return json(res, 404, { error: `no such path ${path}; try /metrics, /ready, /debug/config_dump, /debug/connections` });
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
