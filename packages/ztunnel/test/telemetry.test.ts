// ztunnel telemetry: Istio's traffic labels, byte direction, connection lifecycle metrics and the access log.
import { describe, expect, it } from "vitest";
import pino from "pino";
import { Registry } from "prom-client";
import { waitFor } from "./helpers/wait.js";
import { FAILED_LOG_BURST, renderOpenMetrics, Telemetry, trafficLabels, type ConnectionInfo, type WorkloadInfo } from "../src/telemetry/index.js";

type Line = Record<string, unknown>;

function setup(o: { clusterId?: string; level?: string } = {}) {
  const lines: Line[] = [];
  const logger = pino({ level: o.level ?? "debug", base: { component: "ztunnel" } }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  const t = new Telemetry({ logger, clusterId: o.clusterId, tag: "1.24.0", processMetrics: false });
  const values = async (name: string) => (await t.registry.getSingleMetric(name)!.get()).values;
  const value = async (name: string, match: Record<string, string> = {}) =>
    (await values(name)).filter((v) => Object.entries(match).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
  const access = () => lines.filter((l) => l.scope === "access");
  return { t, lines, logger, values, value, access };
}

const web: WorkloadInfo = {
  uid: "Kubernetes//Pod/shop/web-7d9f-abc",
  name: "web-7d9f-abc",
  namespace: "shop",
  workload_name: "web",
  canonical_name: "web-app",
  canonical_revision: "v1",
  cluster_id: "Kubernetes",
  trust_domain: "cluster.local",
  service_account: "web-sa",
  locality: { region: "eu-west", zone: "eu-west-1a" },
};
const db: WorkloadInfo = {
  uid: "Kubernetes//Pod/data/db-0",
  name: "db-0",
  namespace: "data",
  workload_name: "db",
  canonical_name: "postgres",
  canonical_revision: "15",
  cluster_id: "Kubernetes",
  service_account: "db",
  locality: { region: "eu-west", zone: "eu-west-1b" },
};
const full: ConnectionInfo = {
  reporter: "destination",
  src: { addr: "10.244.1.5:40000", workload: web, identity: "spiffe://cluster.local/ns/shop/sa/web-sa" },
  dst: { addr: "10.244.2.7:15008", hboneAddr: "10.244.2.7:5432", workload: db, service: { hostname: "db.data.svc.cluster.local", name: "db", namespace: "data" }, identity: "spiffe://cluster.local/ns/data/sa/db" },
  mtls: true,
};
const sparse: ConnectionInfo = { reporter: "source", src: { addr: "10.244.1.5:40001" }, dst: { addr: "93.184.216.34:443" }, mtls: false };

describe("traffic labels", () => {
  it("renders a full connection in Istio's declaration order", async () => {
    const { t } = setup();
    t.open(full);
    const text = await t.registry.metrics();
    const line = text.split("\n").find((l) => l.startsWith("istio_tcp_connections_opened_total{"))!;
    const labels = [...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]);
    expect(labels).toEqual([
      ["reporter", "destination"],
      ["source_workload", "web"],
      ["source_canonical_service", "web-app"],
      ["source_canonical_revision", "v1"],
      ["source_workload_namespace", "shop"],
      ["source_principal", "spiffe://cluster.local/ns/shop/sa/web-sa"],
      ["source_app", "web-app"],
      ["source_version", "v1"],
      ["source_cluster", "Kubernetes"],
      ["destination_service", "db.data.svc.cluster.local"],
      ["destination_service_namespace", "data"],
      ["destination_service_name", "db"],
      ["destination_workload", "db"],
      ["destination_canonical_service", "postgres"],
      ["destination_canonical_revision", "15"],
      ["destination_workload_namespace", "data"],
      ["destination_principal", "spiffe://cluster.local/ns/data/sa/db"],
      ["destination_app", "postgres"],
      ["destination_version", "15"],
      ["destination_cluster", "Kubernetes"],
      ["request_protocol", "tcp"],
      ["response_flags", "-"],
      ["connection_security_policy", "mutual_tls"],
      ["source_region", "eu-west"],
      ["source_zone", "eu-west-1a"],
      ["destination_region", "eu-west"],
      ["destination_zone", "eu-west-1b"],
    ]);
    expect(line.endsWith(" 1")).toBe(true);
  });

  it("renders a sparse connection as unknown, without locality labels", () => {
    const l = trafficLabels(sparse);
    expect(l.reporter).toBe("source");
    expect(l.request_protocol).toBe("tcp");
    expect(l.response_flags).toBe("-");
    expect(l.connection_security_policy).toBe("unknown");
    const rest = Object.entries(l).filter(([k]) => !["reporter", "request_protocol", "response_flags", "connection_security_policy"].includes(k));
    expect(rest.length).toBe(19);
    expect(rest.every(([, v]) => v === "unknown")).toBe(true);
    expect(l.source_region).toBeUndefined();
  });

  it("takes source_principal only from the verified peer, destination_principal also from xDS", () => {
    const l = trafficLabels({ reporter: "source", src: { addr: "a", workload: web }, dst: { addr: "b", workload: db }, mtls: false });
    expect(l.source_principal).toBe("unknown");
    expect(l.source_workload).toBe("web");
    expect(l.destination_principal).toBe("spiffe://cluster.local/ns/data/sa/db");
    expect(l.destination_service).toBe("unknown");
    expect(l.source_region).toBe("eu-west");
    expect(l.destination_zone).toBe("eu-west-1b");
  });

  it("fills an empty cluster_id of a known workload from the cluster id, and renders bare principals as spiffe://", () => {
    const l = trafficLabels({ reporter: "destination", src: { addr: "a", workload: { ...web, cluster_id: "" }, identity: "td/ns/a/sa/b" }, dst: { addr: "b" }, mtls: true }, "DENY", "east");
    expect(l.source_cluster).toBe("east");
    expect(l.destination_cluster).toBe("unknown");
    expect(l.source_principal).toBe("spiffe://td/ns/a/sa/b");
    expect(l.response_flags).toBe("DENY");
  });
});

describe("connection lifecycle", () => {
  it("counts bytes with Istio's direction convention in metrics and un-flips them in the access log", async () => {
    const { t, value, access } = setup();
    const out = t.open(sparse); // source reporter: downstream is the app
    out.received += 100; // app → upstream: the request
    out.sent += 2000; // upstream → app: the response
    out.close();
    const inb = t.open(full); // destination reporter: downstream is the HBONE stream
    inb.received += 300;
    inb.sent += 4000;
    inb.close();
    expect(await value("istio_tcp_received_bytes_total", { reporter: "source" })).toBe(100);
    expect(await value("istio_tcp_sent_bytes_total", { reporter: "source" })).toBe(2000);
    expect(await value("istio_tcp_received_bytes_total", { reporter: "destination" })).toBe(300);
    expect(await value("istio_tcp_sent_bytes_total", { reporter: "destination" })).toBe(4000);
    const done = access().filter((l) => l.msg === "connection complete");
    expect(done.map((l) => [l.direction, l.bytes_sent, l.bytes_recv])).toEqual([
      ["outbound", 100, 2000],
      ["inbound", 4000, 300],
    ]);
    expect(done[0]!.duration).toMatch(/^\d+ms$/);
    expect(done[0]!.level).toBe(30);
  });

  it("closes only once", async () => {
    const { t, value, access } = setup();
    const r = t.open(full);
    r.sent = 10;
    r.close();
    r.sent = 99;
    r.close(new Error("late"), "DENY");
    expect(r.closed).toBe(true);
    expect(await value("istio_tcp_connections_closed_total")).toBe(1);
    expect(await value("istio_tcp_sent_bytes_total")).toBe(10);
    expect(await value("istio_tcp_connections_failed_total")).toBe(0);
    expect(await value("istio_tcp_sockets_open", { reporter: "destination" })).toBe(0);
    expect(access().filter((l) => l.msg === "connection complete")).toHaveLength(1);
  });

  it("tracks open sockets per reporter", async () => {
    const { t, value } = setup();
    expect(await value("istio_tcp_sockets_open", { reporter: "source" })).toBe(0);
    const a = t.open(sparse);
    const b = t.open(sparse);
    const c = t.open(full);
    expect(await value("istio_tcp_sockets_open", { reporter: "source" })).toBe(2);
    expect(await value("istio_tcp_sockets_open", { reporter: "destination" })).toBe(1);
    a.close();
    c.close();
    expect(await value("istio_tcp_sockets_open", { reporter: "source" })).toBe(1);
    expect(await value("istio_tcp_sockets_open", { reporter: "destination" })).toBe(0);
    expect(await value("istio_tcp_connections_opened_total")).toBe(3);
    b.close();
    expect(await value("istio_tcp_connections_closed_total")).toBe(3);
  });

  it("records a connection that ends in an error with its flag, at error level", async () => {
    const { t, value, access } = setup();
    const r = t.open(full);
    r.close(new Error("denied by policy shop/deny-all"), "DENY");
    expect(await value("istio_tcp_connections_opened_total", { response_flags: "-" })).toBe(1);
    expect(await value("istio_tcp_connections_closed_total", { response_flags: "DENY" })).toBe(1);
    expect(await value("istio_tcp_connections_failed_total", { response_flags: "DENY", reporter: "destination" })).toBe(1);
    const line = access().find((l) => l.msg === "connection complete")!;
    expect(line.level).toBe(50);
    expect(line.error).toBe("denied by policy shop/deny-all");
    expect(line.bytes_sent).toBe(0);
  });

  it("counts an early deny as failed only, with a warn line", async () => {
    const { t, value, access } = setup();
    t.failed(full, "DENY", "no workload for 10.244.1.5");
    expect(await value("istio_tcp_connections_failed_total", { response_flags: "DENY", source_principal: "spiffe://cluster.local/ns/shop/sa/web-sa" })).toBe(1);
    expect(await value("istio_tcp_connections_opened_total")).toBe(0);
    expect(await value("istio_tcp_connections_closed_total")).toBe(0);
    expect(await value("istio_tcp_sockets_open", { reporter: "destination" })).toBe(0);
    const [line] = access();
    expect(line).toMatchObject({ level: 40, msg: "connection failed", "src.addr": "10.244.1.5:40000", "dst.addr": "10.244.2.7:15008", direction: "inbound", error: "no workload for 10.244.1.5" });
    expect(line!["dst.workload"]).toBeUndefined();
  });

  it(`a flood of early denies is counted in full and logged ${FAILED_LOG_BURST} times per pod, direction and flag`, async () => {
    const { t, value, access } = setup();
    for (let i = 0; i < 500; i++) t.failed(full, "DENY", `denied ${i}`, "shop/app");
    t.failed(full, "CONNECT", "refused", "shop/app");
    t.failed(full, "DENY", "denied", "shop/other");
    expect(await value("istio_tcp_connections_failed_total")).toBe(502);
    const denied = Array.from({ length: FAILED_LOG_BURST }, (_, i) => ["connection failed", `denied ${i}`]);
    expect(access().map((l) => [l.msg, l.error])).toEqual([...denied, ["connection failed", "refused"], ["connection failed", "denied"]]);
  });
});

describe("access log", () => {
  it("writes connection opened at debug with the reference fields", () => {
    const { t, access } = setup({ clusterId: "Kubernetes" });
    t.open(full);
    const [line] = access();
    expect(line).toEqual({
      level: 20,
      time: expect.any(Number),
      component: "ztunnel",
      scope: "access",
      msg: "connection opened",
      "src.addr": "10.244.1.5:40000",
      "src.workload": "web-7d9f-abc",
      "src.namespace": "shop",
      "src.identity": "spiffe://cluster.local/ns/shop/sa/web-sa",
      "src.cluster": "Kubernetes",
      "dst.addr": "10.244.2.7:15008",
      "dst.hbone_addr": "10.244.2.7:5432",
      "dst.service": "db.data.svc.cluster.local",
      "dst.workload": "db-0",
      "dst.namespace": "data",
      "dst.identity": "spiffe://cluster.local/ns/data/sa/db",
      "dst.cluster": "Kubernetes",
      direction: "inbound",
    });
  });

  it("logs identities only for mTLS and leaves unknown fields out", () => {
    const { t, access } = setup();
    t.open({ ...full, mtls: false, src: { ...full.src, workload: { ...web, name: "" } } }).close();
    const [opened, done] = access();
    expect(opened!["src.identity"]).toBeUndefined();
    expect(opened!["dst.identity"]).toBeUndefined();
    expect(opened!["src.workload"]).toBe("web-app"); // no pod name: the canonical service
    t.open(sparse).close();
    const sparseDone = access().at(-1)!;
    expect(Object.keys(sparseDone).filter((k) => k.includes("."))).toEqual(["src.addr", "dst.addr"]);
    expect(sparseDone).toMatchObject({ direction: "outbound", bytes_sent: 0, bytes_recv: 0 });
    expect(done!.msg).toBe("connection complete");
  });

  it("writes nothing below the access logger's level", () => {
    const { t, access } = setup({ level: "info" });
    t.open(full).close();
    expect(access().map((l) => l.msg)).toEqual(["connection complete"]);
    t.accessLog.level = "error";
    t.open(full).close();
    t.failed(sparse, "CONNECT", "refused");
    expect(access()).toHaveLength(1);
  });
});

describe("other metrics", () => {
  it("exposes build info, xDS and workload manager metrics", async () => {
    const { t, value } = setup();
    t.xdsMessage("type.googleapis.com/istio.workload.Address", 512);
    t.xdsMessage("type.googleapis.com/istio.workload.Address");
    t.xdsTermination("Reconnect");
    t.proxyStarted();
    t.proxyStarted();
    t.proxyStopped();
    t.setPendingProxies(3);
    expect(await value("istio_build", { component: "ztunnel", tag: "1.24.0" })).toBe(1);
    expect(await value("istio_xds_message_total", { url: "type.googleapis.com/istio.workload.Address" })).toBe(2);
    expect(await value("istio_xds_message_bytes_total")).toBe(512);
    expect(await value("istio_xds_connection_terminations_total", { reason: "Reconnect" })).toBe(1);
    expect(await value("workload_manager_active_proxy_count")).toBe(1);
    expect(await value("workload_manager_pending_proxy_count")).toBe(3);
    expect(await value("workload_manager_proxies_started_total")).toBe(2);
    expect(await value("workload_manager_proxies_stopped_total")).toBe(1);
  });

  it("uses a given registry and adds the process metrics to it", async () => {
    const registry = new Registry();
    const logger = pino({ level: "silent" });
    const t = new Telemetry({ registry, logger });
    expect(t.registry).toBe(registry);
    expect(registry.getSingleMetric("process_cpu_user_seconds_total")).toBeDefined();
    expect((await registry.metrics()).includes('istio_build{component="ztunnel",tag="unknown"} 1')).toBe(true);
  });

  it("renders OpenMetrics without changing the registry", async () => {
    const { t } = setup();
    t.open(sparse).close();
    const om = await renderOpenMetrics(t.registry);
    expect(om).toContain("# TYPE istio_tcp_connections_opened counter");
    expect(om).toMatch(/^istio_tcp_connections_opened_total\{reporter="source",.*\} 1$/m);
    expect(om).toContain("# TYPE istio_tcp_sockets_open gauge");
    expect(om.endsWith("# EOF\n")).toBe(true);
    expect(await t.registry.metrics()).toContain("# TYPE istio_tcp_connections_opened_total counter");
  });
});

describe("HBONE refusals", () => {
  it("every refusal is counted by reason; a flood is logged as one line at once and one summary per window", async () => {
    const lines: Line[] = [];
    const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    const t = new Telemetry({ logger, processMetrics: false, refusalLogWindowMs: 50 });
    const count = async (reason: string) => (await t.metrics.hboneRefused.get()).values.find((v) => v.labels.reason === reason)?.value;
    // Every reason has a series from the start.
    for (const reason of ["connection_limit", "rapid_reset", "handshake_timeout", "protocol_error", "keepalive_timeout", "no_certificate", "untrusted_peer", "stream_limit"]) expect(await count(reason)).toBe(0);
    for (let i = 0; i < 1000; i++) t.hboneRefused("connection_limit", "shop/app", { peer: "spiffe://cluster.local/ns/x/sa/y" }, "too many connections");
    t.hboneRefused("rapid_reset", "shop/app", {}, "rapid reset");
    t.hboneRefused("connection_limit", "shop/other", {}, "too many connections");
    expect(await count("connection_limit")).toBe(1001);
    expect(await count("rapid_reset")).toBe(1);
    // The first of each (pod, reason) at once …
    expect(lines.map((l) => [l.pod, l.reason, l.msg])).toEqual([
      ["shop/app", "connection_limit", "too many connections"], ["shop/app", "rapid_reset", "rapid reset"], ["shop/other", "connection_limit", "too many connections"],
    ]);
    expect(lines.every((l) => l.level === 40)).toBe(true);
    // … and the 999 others in one summary line when the window ends.
    await waitFor(() => lines.length === 4, "the summary line");
    expect(lines[3]).toMatchObject({ pod: "shop/app", reason: "connection_limit", suppressed: 999, peer: "spiffe://cluster.local/ns/x/sa/y", msg: "too many connections (999 more like it in the last 50 ms)" });
    // A new window starts with a line at once.
    t.hboneRefused("connection_limit", "shop/app", {}, "too many connections");
    expect(lines).toHaveLength(5);
  });
});
