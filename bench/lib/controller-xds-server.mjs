// Child process of bench/controller-xds.mjs: the controller's pipeline (ambient index + delta xDS server) over
// in-memory inputs of a given size, so its memory and latency can be measured alone. Driven over IPC.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const { StaticCollection, kubeKey } = await import(join(root, "packages/kube/dist/index.js"));
const { buildAmbientIndex } = await import(join(root, "packages/controller/dist/model/index.js"));
const { feedXds } = await import(join(root, "packages/controller/dist/xds.js"));
const { DeltaXdsServer } = await import(join(root, "packages/xds/dist/index.js"));
const { Registry } = await import("prom-client");

const [pods, services, policies] = process.argv.slice(2).map(Number);
const now = () => performance.timeOrigin + performance.now();
const namespaces = Math.max(1, Math.round(services / 10));
const coll = () => new StaticCollection({ key: (o) => kubeKey(o) });
const inputs = { namespaces: coll(), pods: coll(), services: coll(), endpointSlices: coll(), nodes: coll(), authorizationPolicies: coll(), peerAuthentications: coll(), gateways: coll() };
const settings = { clusterId: "Kubernetes", trustDomain: "cluster.local", domainSuffix: "cluster.local", network: "", rootNamespace: "istio-system" };
const pod = (i, rev = "v1") => {
  const ns = `ns${i % namespaces}`;
  return {
    metadata: { name: `pod-${i}`, namespace: ns, labels: { app: `svc-${i % 10}`, version: rev }, annotations: { "ambient.istio.io/redirection": "enabled" }, ownerReferences: [{ kind: "ReplicaSet", name: `svc-${i % 10}-abc`, controller: true }] },
    spec: { nodeName: `node-${i % 20}`, serviceAccountName: `svc-${i % 10}`, containers: [{ name: "app", ports: [{ name: "http", containerPort: 8080 }] }] },
    status: { phase: "Running", podIP: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, conditions: [{ type: "Ready", status: "True" }] },
  };
};

const t0 = now();
const registry = new Registry();
const server = new DeltaXdsServer({ registry, ready: false });
const index = buildAmbientIndex(inputs, settings);
feedXds(server, index, "");
for (let n = 0; n < namespaces; n++) inputs.namespaces.set({ metadata: { name: `ns${n}` } });
for (let s = 0; s < services; s++) {
  inputs.services.set({ metadata: { name: `svc-${s % 10}`, namespace: `ns${Math.floor(s / 10)}` },
    spec: { selector: { app: `svc-${s % 10}` }, clusterIP: `10.96.${(s >> 8) & 255}.${s & 255}`, ports: [{ name: "http", port: 80, targetPort: "http" }] } });
}
for (let p = 0; p < policies; p++) {
  inputs.authorizationPolicies.set({ metadata: { name: `allow-${p}`, namespace: `ns${p % namespaces}` },
    spec: { selector: { matchLabels: { app: `svc-${p % 10}` } }, rules: [{ from: [{ source: { principals: [`cluster.local/ns/ns${p % namespaces}/sa/client`] } }], to: [{ operation: { ports: ["8080"] } }] }] } });
}
for (let i = 0; i < pods; i++) inputs.pods.set(pod(i));
server.flush();
server.setReady(true);
const port = await server.listen({ port: 0, host: "127.0.0.1" });
const built = now() - t0;

const sizeSum = async () => {
  const m = await registry.getSingleMetric("pilot_xds_config_size_bytes").get();
  return m.values.filter((v) => v.metricName === "pilot_xds_config_size_bytes_sum").reduce((a, v) => a + v.value, 0);
};
let rev = 0;
process.on("message", async (msg) => {
  if (msg.type === "change") {
    const before = await sizeSum();
    const at = now();
    inputs.pods.set(pod(msg.i, `v${++rev + 1}`));
    process.send({ type: "changed", at, before });
  } else if (msg.type === "bytes") {
    process.send({ type: "bytes", total: await sizeSum() });
  } else if (msg.type === "stats") {
    if (global.gc) global.gc();
    process.send({ type: "stats", rss: process.memoryUsage().rss, heapUsed: process.memoryUsage().heapUsed });
  } else if (msg.type === "exit") {
    await server.close(100);
    process.exit(0);
  }
});
process.send({ type: "ready", port, built, resources: { workloads: index.workloads.size, services: index.services.size, authorizations: index.authorizations.size } });
