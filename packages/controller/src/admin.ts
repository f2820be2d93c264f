// Istio's monitoring port (15014): /metrics (Prometheus), /ready, /debug/config_dump (the computed resources as
// JSON) and /debug/connections (the connected xDS clients).
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface AdminSources {
  registry: Registry;
  ready: () => boolean;
  configDump: () => unknown;
  connections: () => unknown;
}

export function startAdmin(port: number, host: string, s: AdminSources): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v), 2));
    };
    if (req.method !== "GET") return json(405, { error: "only GET is served here" });
    switch (path) {
      case "/metrics":
      case "/stats/prometheus":
        s.registry.metrics().then((text) => {
          res.writeHead(200, { "content-type": s.registry.contentType });
          res.end(text);
        }, (err: Error) => json(500, { error: err.message }));
        return;
      case "/ready":
        if (s.ready()) {
          res.writeHead(200).end("ready\n");
        } else {
          res.writeHead(503).end("not ready: caches are syncing\n");
        }
        return;
      case "/debug/config_dump":
        return json(200, s.configDump());
      case "/debug/connections":
        return json(200, s.connections());
      default:
        return json(404, { error: `no such path ${path}; try /metrics, /ready, /debug/config_dump, /debug/connections` });
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
