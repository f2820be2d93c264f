// The controller against the local cluster's real API server, watched through a real delta xDS client:
// exactly the expected names and removals for each change, authentication as Istio does it, resume after a
// restart, status on policies.
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { adminApi, down, kubectl, up, waitFor, paths, type Api } from "@ambit/localcluster";
import { TypeUrl, istio, ztunnelNodeId } from "@ambit/protocol";
import { DeltaXdsClient, type ReceivedResource } from "@ambit/xds";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { Controller } from "../src/controller.js";

if (process.getuid?.() !== 0) throw new Error("the controller's cluster tests need root (they run the local cluster)");

const here = dirname(fileURLToPath(import.meta.url));
const NS = "xds-a";
let api: Api;
let controller: Controller;
let port: number;
let token: string;

const freePort = () => new Promise<number>((r) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; s.close(() => r(p)); }); });

async function startController(): Promise<Controller> {
  const kc = new KubeConfig();
  kc.loadFromFile(paths.adminKubeconfig());
  const c = new Controller({
    kc, host: "127.0.0.1", logger: pino({ level: "warn" }),
    config: loadConfig({ POD_NAMESPACE: "istio-system", POD_NAME: "controller-test", XDS_PLAINTEXT_PORT: String(port), XDS_TLS_PORT: "0", MONITORING_PORT: "0", PILOT_DEBOUNCE_AFTER: "50ms", PILOT_DEBOUNCE_MAX: "1s" }),
  });
  await c.start();
  return c;
}

interface Push { type: string; added: string[]; removed: string[] }

/** A ztunnel-like client recording every response. */
function recorder(opts: { token?: string; nodeNamespace?: string } = {}) {
  const pushes: Push[] = [];
  const resources = new Map<string, ReceivedResource>();
  const handler = (type: string) => (added: ReceivedResource[], removed: string[]) => {
    pushes.push({ type, added: added.map((r) => r.name).sort(), removed: [...removed].sort() });
    for (const r of added) resources.set(r.name, r);
    for (const n of removed) resources.delete(n);
  };
  const ns = opts.nodeNamespace ?? "istio-system";
  const client = new DeltaXdsClient({
    address: `http://127.0.0.1:${port}`,
    node: { id: ztunnelNodeId("10.244.1.3", "ztunnel-test", ns), metadata: { fields: { NAMESPACE: { string_value: ns } } } },
    metadata: () => ({ ...(opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : { authorization: `Bearer ${token}` }), clusterid: "Kubernetes" }),
    watches: [{ typeUrl: TypeUrl.address, handler: handler("address") }, { typeUrl: TypeUrl.authorization, handler: handler("authorization") }],
    backoff: { initialMs: 50, maxMs: 500 },
  });
  const since = () => { const mark = pushes.length; return () => pushes.slice(mark); };
  return { client, pushes, resources, since };
}

/** Waits until the pushes since `mark` mention `name`; returns them merged per type. */
async function pushesUntil(get: () => Push[], pred: (p: Push[]) => boolean, what: string): Promise<Push[]> {
  return waitFor(what, async () => { const p = get(); return pred(p) && p; }, 30_000, 25);
}
const names = (ps: Push[], type: string) => [...new Set(ps.filter((p) => p.type === type).flatMap((p) => p.added))].sort();
const removed = (ps: Push[], type: string) => [...new Set(ps.filter((p) => p.type === type).flatMap((p) => p.removed))].sort();

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  await kubectl(["apply", "-f", join(here, "../../../charts/ambit/crds/"), "-f", join(here, "fixtures/gateway-crd.yaml")]);
  await kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/authorizationpolicies.security.istio.io", "crd/peerauthentications.security.istio.io", "crd/gateways.gateway.networking.k8s.io"]);
  for (const ns of ["istio-system", NS, "other"]) await api.post("/api/v1/namespaces", { metadata: { name: ns } });
  await api.post("/api/v1/namespaces/istio-system/serviceaccounts", { metadata: { name: "ztunnel" } });
  await api.post("/api/v1/namespaces/other/serviceaccounts", { metadata: { name: "intruder" } });
  token = (await api.post<{ status: { token: string } }>("/api/v1/namespaces/istio-system/serviceaccounts/ztunnel/token", { spec: { audiences: ["istio-ca"], expirationSeconds: 3600 } })).status.token;
  port = await freePort();
  controller = await startController();
});

afterAll(async () => {
  await controller?.stop();
  await down();
});

describe("authentication of xDS streams", () => {
  const failure = async (opts: Parameters<typeof recorder>[0]) => {
    const r = recorder(opts);
    const d = await new Promise<{ code: number; details: string }>((res) => { r.client.once("disconnected", res); r.client.start(); });
    await r.client.close();
    return d;
  };

  it("refuses a stream without a valid token with UNAUTHENTICATED", async () => {
    expect(await failure({ token: "" })).toMatchObject({ code: 16, details: expect.stringMatching(/authorization/) });
    expect(await failure({ token: "garbage" })).toMatchObject({ code: 16, details: expect.stringMatching(/not accepted/) });
    const otherAudience = (await api.post<{ status: { token: string } }>("/api/v1/namespaces/istio-system/serviceaccounts/ztunnel/token", { spec: { audiences: ["something-else"] } })).status.token;
    expect(await failure({ token: otherAudience })).toMatchObject({ code: 16 });
  });

  it("refuses a node id in another namespace than the token's with PERMISSION_DENIED", async () => {
    const intruder = (await api.post<{ status: { token: string } }>("/api/v1/namespaces/other/serviceaccounts/intruder/token", { spec: { audiences: ["istio-ca"] } })).status.token;
    expect(await failure({ token: intruder })).toMatchObject({ code: 7, details: expect.stringMatching(/does not match the caller's namespace "other"/) });
  });
});

describe("monitoring port", () => {
  it("serves /ready and Prometheus metrics with Istio's names; the debug endpoints need a token", async () => {
    const base = `http://127.0.0.1:${controller.ports.monitoring}`;
    expect((await fetch(`${base}/ready`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of ["pilot_xds_pushes", "pilot_xds_push_time", "pilot_xds", "process_resident_memory_bytes"]) expect(metrics).toContain(name);
    // Their content and who may read them: test/debug-auth-cluster.test.ts.
    expect((await fetch(`${base}/debug/config_dump`)).status).toBe(401);
    expect((await fetch(`${base}/debug/connections`)).status).toBe(401);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});

describe("delta pushes for cluster changes", () => {
  let r: ReturnType<typeof recorder>;
  const uid = (name: string) => `Kubernetes//Pod/${NS}/${name}`;
  const svc = `${NS}/echo.${NS}.svc.cluster.local`;
  const pod = (name: string, labels: Record<string, string> = { app: "echo" }) => ({
    metadata: { name, labels }, spec: { containers: [{ name: "main", image: "ambit/host", command: ["sleep", "infinity"], ports: [{ name: "http", containerPort: 8080 }] }] },
  });

  beforeAll(async () => {
    r = recorder();
    r.client.on("disconnected", (e: { code: number; details: string }) => console.error(`xDS stream ended: ${e.code} ${e.details}`));
    r.client.start();
    await r.client.ready();
  });
  afterAll(async () => { await r.client.close(); });

  it("sends the whole state first: the cluster's Services", () => {
    expect(r.resources.has("default/kubernetes.default.svc.cluster.local")).toBe(true);
    expect(r.resources.has("kube-system/kube-dns.kube-system.svc.cluster.local")).toBe(true);
  });

  it("pushes a new Service, then each pod once it has an IP, and nothing else", async () => {
    let mark = r.since();
    await api.post(`/api/v1/namespaces/${NS}/services`, { metadata: { name: "echo" }, spec: { selector: { app: "echo" }, ports: [{ name: "http", port: 80, targetPort: "http" }] } });
    let ps = await pushesUntil(mark, (p) => names(p, "address").includes(svc), "the Service push");
    expect(names(ps, "address")).toEqual([svc]);
    mark = r.since();
    await api.post(`/api/v1/namespaces/${NS}/pods`, pod("p1"));
    ps = await pushesUntil(mark, (p) => names(p, "address").includes(uid("p1")), "the pod push");
    expect(names(ps, "address")).toEqual([uid("p1")]);
    const w = istio.workload.Address.decode(r.resources.get(uid("p1"))!.resource.value!).workload!;
    expect(w.services![svc]!.ports!.map((p) => [p.service_port, p.target_port])).toEqual([[80, 8080]]);
    expect(r.resources.get(uid("p1"))!.aliases).toEqual([`/${(await api.get<{ status: { podIP: string } }>(`/api/v1/namespaces/${NS}/pods/p1`)).status.podIP}`]);
  });

  it("pushes a workload again only when its xDS form changes", async () => {
    await waitFor("p1 healthy", async () => istio.workload.Address.decode(r.resources.get(uid("p1"))!.resource.value!).workload!.status !== istio.workload.WorkloadStatus.UNHEALTHY, 30_000, 50);
    // A marker pod in another namespace (no Service there): the controller sees all pods through one watch, in
    // order, so once a change of the marker is pushed, the change of p1 made before it has been handled too.
    const marker = `Kubernetes//Pod/other/marker`;
    await api.post(`/api/v1/namespaces/other/pods`, pod("marker", { app: "marker" }));
    await waitFor("the marker pushed", async () => r.resources.has(marker), 60_000, 50);
    let mark = r.since();
    await api.patch(`/api/v1/namespaces/${NS}/pods/p1`, { metadata: { annotations: { unrelated: "x" } } });
    await api.patch(`/api/v1/namespaces/other/pods/marker`, { metadata: { labels: { version: "m2" } } });
    const markerOnly = await pushesUntil(mark, (p) => names(p, "address").includes(marker), "the marker's change");
    expect(names(markerOnly, "address")).toEqual([marker]);
    mark = r.since();
    await api.request("DELETE", `/api/v1/namespaces/other/pods/marker`, { gracePeriodSeconds: 0 });
    await pushesUntil(mark, (p) => removed(p, "address").includes(marker), "the marker's removal");
    mark = r.since();
    await api.patch(`/api/v1/namespaces/${NS}/pods/p1`, { metadata: { labels: { version: "v2" } } });
    const ps = await pushesUntil(mark, (p) => names(p, "address").includes(uid("p1")), "the relabelled pod");
    expect(names(ps, "address")).toEqual([uid("p1")]);
    expect(istio.workload.Address.decode(r.resources.get(uid("p1"))!.resource.value!).workload!.canonical_revision).toBe("v2");
  });

  it("binds the namespace to a waypoint: its Service (and not its pods, for a service waypoint) changes", async () => {
    await api.post(`/apis/gateway.networking.k8s.io/v1/namespaces/${NS}/gateways`, { apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { name: "wp" }, spec: { gatewayClassName: "istio-waypoint", listeners: [{ name: "mesh", port: 15008, protocol: "HBONE" }] } });
    await api.patch(`/apis/gateway.networking.k8s.io/v1/namespaces/${NS}/gateways/wp/status`, { status: { addresses: [{ type: "IPAddress", value: "10.96.5.5" }] } }, "application/merge-patch+json");
    const mark = r.since();
    await api.patch(`/api/v1/namespaces/${NS}`, { metadata: { labels: { "istio.io/use-waypoint": "wp" } } });
    const ps = await pushesUntil(mark, (p) => names(p, "address").includes(svc), "the Service with its waypoint");
    expect(names(ps, "address")).toEqual([svc]);
    const s = istio.workload.Address.decode(r.resources.get(svc)!.resource.value!).service!;
    expect([...s.waypoint!.address!.address!]).toEqual([10, 96, 5, 5]);
  });

  it("pushes policies by name, with the workloads they select, and reports a malformed one on the object", async () => {
    const mark = r.since();
    await api.post(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies`, { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "allow-echo" },
      spec: { selector: { matchLabels: { app: "echo" } }, rules: [{ from: [{ source: { principals: ["cluster.local/ns/a/sa/b"] } }] }] } });
    await api.post(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies`, { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "broken" },
      spec: { rules: [{ from: [{ source: { principals: ["cluster.local/*/sa/b"] } }] }] } });
    const ps = await pushesUntil(mark, (p) => names(p, "authorization").length === 2 && names(p, "address").includes(uid("p1")), "the policy pushes");
    expect(names(ps, "authorization")).toEqual([`${NS}/allow-echo`, `${NS}/broken`]);
    expect(names(ps, "address")).toEqual([uid("p1")]);
    expect(istio.workload.Address.decode(r.resources.get(uid("p1"))!.resource.value!).workload!.authorization_policies).toEqual([`${NS}/allow-echo`]);
    const broken = istio.security.Authorization.decode(r.resources.get(`${NS}/broken`)!.resource.value!);
    expect(broken.rules).toEqual([]); // the bad ALLOW rule is omitted: it allows nothing
    await waitFor("the status on the broken policy", async () => {
      const p = await api.get<{ status?: { conditions?: { type: string; status: string; message: string }[] } }>(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies/broken`);
      const c = p.status?.conditions?.find((x) => x.type === "ZtunnelAccepted");
      return c?.status === "False" && /only allowed at the start or the end/.test(c.message);
    }, 30_000, 100);
    const good = await api.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies/allow-echo`);
    expect(good.status?.conditions?.find((x) => x.type === "ZtunnelAccepted")?.status).toBe("True");
  });

  it("replaces a policy that cannot be read with a deny-all stand-in, and removes it with the policy", async () => {
    // Valid for the CRD (targetRef keeps unknown fields) but not for the controller's schema: targetRef needs a kind.
    let mark = r.since();
    await api.post(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies`, { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "unreadable" },
      spec: { selector: { matchLabels: { app: "echo" } }, targetRef: { name: "no-kind" }, rules: [{}] } });
    await pushesUntil(mark, (p) => names(p, "authorization").includes(`${NS}/unreadable`), "the stand-in");
    const standIn = istio.security.Authorization.decode(r.resources.get(`${NS}/unreadable`)!.resource.value!);
    expect([standIn.scope, standIn.action, standIn.rules.length]).toEqual([istio.security.Scope.WORKLOAD_SELECTOR, istio.security.Action.ALLOW, 0]);
    await waitFor("p1 to list the stand-in", async () => istio.workload.Address.decode(r.resources.get(uid("p1"))!.resource.value!).workload!.authorization_policies?.includes(`${NS}/unreadable`), 30_000, 50);
    await waitFor("the Invalid status", async () => {
      const p = await api.get<{ status?: { conditions?: { type: string; reason: string }[] } }>(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies/unreadable`);
      return p.status?.conditions?.some((c) => c.type === "ZtunnelAccepted" && c.reason === "Invalid");
    }, 30_000, 100);
    mark = r.since();
    await api.delete(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies/unreadable`);
    await pushesUntil(mark, (p) => removed(p, "authorization").includes(`${NS}/unreadable`), "the stand-in's removal");
  });

  it("turns PeerAuthentication STRICT into the static DENY policy and its references", async () => {
    const mark = r.since();
    await api.post(`/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications`, { apiVersion: "security.istio.io/v1", kind: "PeerAuthentication", metadata: { name: "default" }, spec: { mtls: { mode: "STRICT" } } });
    const ps = await pushesUntil(mark, (p) => names(p, "authorization").includes("istio-system/istio_converted_static_strict") && names(p, "address").includes(uid("p1")), "the strict policy");
    expect(names(ps, "authorization")).toEqual(["istio-system/istio_converted_static_strict"]);
    expect(istio.workload.Address.decode(r.resources.get(uid("p1"))!.resource.value!).workload!.authorization_policies).toEqual(["istio-system/istio_converted_static_strict", `${NS}/allow-echo`]);
  });

  it("sends removals for deleted pods and policies", async () => {
    const mark = r.since();
    await api.delete(`/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies/broken`);
    await api.request("DELETE", `/api/v1/namespaces/${NS}/pods/p1`, { gracePeriodSeconds: 0 });
    const ps = await pushesUntil(mark, (p) => removed(p, "address").includes(uid("p1")) && removed(p, "authorization").includes(`${NS}/broken`), "the removals");
    expect(removed(ps, "address")).toEqual([uid("p1")]);
    expect(removed(ps, "authorization")).toEqual([`${NS}/broken`]);
  });

  it("resumes after a controller restart with only what changed while it was away", async () => {
    await api.post(`/api/v1/namespaces/${NS}/pods`, pod("p2"));
    await waitFor("p2 pushed", async () => r.resources.has(uid("p2")), 30_000, 50);
    await controller.stop();
    await api.delete(`/api/v1/namespaces/${NS}/services/echo`);
    await api.post(`/api/v1/namespaces/${NS}/services`, { metadata: { name: "other" }, spec: { ports: [{ port: 81 }] } });
    const mark = r.since();
    controller = await startController();
    // The controller serves only once its caches are synced, so the first response of each type on the resumed
    // stream holds everything that changed.
    const after = await pushesUntil(mark, (p) => p.some((x) => x.type === "address") && p.some((x) => x.type === "authorization"), "the resumed stream's first responses");
    // p2 lost its Service (changed); echo is gone; other is new; nothing unchanged is re-sent.
    expect(names(after, "address")).toEqual([uid("p2"), `${NS}/other.${NS}.svc.cluster.local`]);
    expect(removed(after, "address")).toEqual([svc]);
    expect(names(after, "authorization")).toEqual([]);
  });
});
