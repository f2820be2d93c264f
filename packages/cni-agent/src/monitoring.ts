// The agent's readiness and metrics: /healthz (alive), /readyz (every existing pod reconciled and the ZDS socket
// open), /metrics (Prometheus).
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Registry } from "prom-client";

export class AgentMetrics {
  readonly registry = new Registry();
  readonly enrolled = new Gauge({ name: "ambit_cni_pods_enrolled", help: "Pods of this node currently enrolled in the mesh.", registers: [this.registry] });
  readonly failures = new Counter({ name: "ambit_cni_enroll_failures_total", help: "Failed enrollments and un-enrollments, by operation.", labelNames: ["op"], registers: [this.registry] });
  readonly ztunnels = new Gauge({ name: "ambit_cni_ztunnel_connections", help: "ztunnels connected over ZDS.", registers: [this.registry] });
}

export function startMonitoring(port: number, host: string, metrics: AgentMetrics, ready: () => boolean): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") return void res.writeHead(200).end("ok\n");
    if (path === "/readyz") return void (ready() ? res.writeHead(200).end("ready\n") : res.writeHead(503).end("not ready: reconciling the node's pods\n"));
    if (path === "/metrics") {
      return void metrics.registry.metrics().then((t) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(t), () => res.writeHead(500).end());
    }
    res.writeHead(404).end("try /healthz, /readyz or /metrics\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
