// `npm run demo`: a 2-node local cluster with the mesh installed by its Helm chart, the sample app (a client calling
// a Service of 3 echo replicas across both nodes), the app's namespace enrolled while traffic flows, and the proof:
// what the wire carries before and after, the access log with both SPIFFE identities, the TCP metrics, and an
// AuthorizationPolicy that denies the client. The cluster stays up for a look around.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "./api.js";
import { captureNodeLink } from "./capture.js";
import { adminApi, kubectl, up } from "./cluster.js";
import { MESH_NAMESPACE, MESH_RELEASE, installMesh, ztunnelAccessLog, ztunnelGet } from "./mesh.js";
import { podLogs } from "./pod-access.js";
import { loadState } from "./state.js";

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "../bin/ambit-local.js");

interface Pod {
  metadata: { name: string; uid: string; annotations?: Record<string, string> };
  spec: { nodeName?: string };
  status: { podIP?: string; conditions?: { type: string; status: string }[]; containerStatuses?: { restartCount: number }[] };
}

const say = (title: string) => console.log(`\n== ${title}`);
const api = () => adminApi();

async function pods(ns: string, selector: string): Promise<Pod[]> {
  return (await api().get<{ items: Pod[] }>(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`)).items;
}
const isReady = (p: Pod) => !!p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True");

/** The client's answer lines written after `since` (its log is one line per call). */
async function answersSince(client: string, since: number): Promise<string[]> {
  return (await podLogs(`demo/${client}`)).split("\n").filter((l) => l && Date.parse(l.split(" ")[0]!) >= since);
}

function showAnswer(line: string): string {
  const m = /^\S+ 200 pod=(\S+) node=(\S+) ip=(\S+) peer=(\S+)/.exec(line);
  return m ? `answered by ${m[1]} on ${m[2]}; it saw the caller as ${m[4]}` : line.replace(/^\S+ /, "");
}

async function main(): Promise<void> {
  const info = await up({ nodes: 2 });
  const kubectlPath = join(loadState()!.binDir!, "kubectl"); // for the hints at the end

  say(`installing the mesh with its Helm chart: helm upgrade --install ${MESH_RELEASE} charts/ambit -n ${MESH_NAMESPACE}`);
  await installMesh();
  for (const p of await pods("istio-system", "app in (istiod,ztunnel,istio-cni-node)")) console.log(`  ${p.metadata.name.padEnd(28)} on ${p.spec.nodeName}  Ready`);

  say("deploying the sample app (packages/localcluster/demo/sample-app.yaml), not yet in the mesh");
  console.log((await kubectl(["apply", "-f", join(here, "../demo/sample-app.yaml")])).trim().replace(/^/gm, "  "));
  await waitFor("3 Ready echo replicas and the client", async () => (await pods("demo", "app=echo")).filter(isReady).length === 3 && (await pods("demo", "app=client")).filter(isReady).length === 1, 120_000, 250);
  const [client] = await pods("demo", "app=client");
  const c = client!;
  for (const p of await pods("demo", "app=echo")) console.log(`  ${p.metadata.name} on ${p.spec.nodeName} (${p.status.podIP})`);
  console.log(`  client ${c.metadata.name} on ${c.spec.nodeName} (${c.status.podIP}) calls http://echo.demo.svc.cluster.local/ twice a second`);

  say(`before enrollment: what crosses ${c.spec.nodeName}'s link from the client`);
  const before = await captureNodeLink(c.spec.nodeName!, `tcp and host ${c.status.podIP}`, () => new Promise((r) => setTimeout(r, 2000)));
  console.log(`  ${before.packets} packets, ports ${[...before.ports].filter((p) => p < 32768).join(", ")}; the request "GET / HTTP/1.1" is readable on the wire: ${before.data.includes("GET / HTTP/1.1") ? "yes" : "no"}`);

  say("enrolling the namespace while the client keeps calling: kubectl label namespace demo istio.io/dataplane-mode=ambient");
  const enrolledAt = Date.now();
  await kubectl(["label", "namespace", "demo", "istio.io/dataplane-mode=ambient", "--overwrite"]);
  await waitFor("every demo pod redirected", async () => (await pods("demo", "app")).every((p) => p.metadata.annotations?.["ambient.istio.io/redirection"] === "enabled"), 60_000, 250);
  console.log("  every pod of the namespace is annotated ambient.istio.io/redirection=enabled; no pod was restarted:");
  for (const p of await pods("demo", "app")) console.log(`    ${p.metadata.name}: restarts ${p.status.containerStatuses?.[0]?.restartCount ?? 0}`);
  await new Promise((r) => setTimeout(r, 2500));
  const answers = (await answersSince(c.metadata.name, enrolledAt)).filter((l) => / 200 /.test(l));
  console.log(`  the client got ${answers.length} answers since; the latest:`);
  for (const l of answers.slice(-3)) console.log(`    ${showAnswer(l)}`);

  say(`after enrollment: what crosses ${c.spec.nodeName}'s link from the client`);
  const after = await captureNodeLink(c.spec.nodeName!, `tcp and host ${c.status.podIP}`, () => new Promise((r) => setTimeout(r, 2000)));
  console.log(`  ${after.packets} packets, ports ${[...after.ports].filter((p) => p < 32768).join(", ")} (HBONE); the request "GET / HTTP/1.1" is readable on the wire: ${after.data.includes("GET / HTTP/1.1") ? "yes" : "no"} — mTLS`);

  say("the destination ztunnels' access log (one line per connection, both SPIFFE identities)");
  const echoes = await pods("demo", "app=echo");
  const ztunnels = await pods("istio-system", "app=ztunnel");
  const records: Record<string, unknown>[] = [];
  for (const z of ztunnels) {
    for (const r of await ztunnelAccessLog(`istio-system/${z.metadata.name}`)) {
      if (r["msg"] === "connection complete" && r["direction"] === "inbound" && echoes.some((e) => String(r["dst.hbone_addr"]).startsWith(`${e.status.podIP}:`))) records.push({ node: z.spec.nodeName, ...r });
    }
  }
  for (const r of records.slice(-2)) {
    console.log(`  [ztunnel on ${r["node"]}] ${r["msg"]}: src.identity=${r["src.identity"]} dst.identity=${r["dst.identity"]} dst.hbone_addr=${r["dst.hbone_addr"]} bytes_sent=${r["bytes_sent"]} bytes_recv=${r["bytes_recv"]} duration=${r["duration"]}`);
  }

  say("the TCP metrics (ztunnel :15020/metrics, reporter=destination, client → echo)");
  for (const z of ztunnels) {
    const text = await ztunnelGet(`istio-system/${z.metadata.name}`, 15020, "/metrics");
    for (const line of text.split("\n").filter((l) => /^istio_tcp_(connections_opened_total|received_bytes_total)\{reporter="destination",source_workload="client"/.test(l))) {
      const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const shown = ["source_principal", "destination_workload", "connection_security_policy"].map((k) => `${k}="${labels[k]}"`).join(",");
      console.log(`  [${z.spec.nodeName}] ${line.split("{")[0]}{${shown},…} ${line.split(" ").pop()}`);
    }
  }

  say("an AuthorizationPolicy that denies the client's identity (L4, enforced by the destination ztunnels)");
  const policy = { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "deny-client", namespace: "demo" }, spec: { selector: { matchLabels: { app: "echo" } }, action: "DENY", rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/client"] } }] }] } };
  console.log(`  ${JSON.stringify(policy.spec)}`);
  const deniedAt = Date.now();
  await kubectl(["apply", "-f", "-"], JSON.stringify(policy));
  const failures = await waitFor("the client being denied", async () => {
    const l = (await answersSince(c.metadata.name, deniedAt + 500)).filter((x) => / error /.test(x));
    return l.length >= 2 && l;
  }, 30_000, 250);
  console.log("  the client now gets:");
  for (const l of failures.slice(0, 2)) console.log(`    ${l.replace(/^\S+ /, "")}`);
  for (const z of ztunnels) {
    const r = (await ztunnelAccessLog(`istio-system/${z.metadata.name}`)).filter((x) => String(x["error"]).includes("explicitly denied by: demo/deny-client")).pop();
    if (!r) continue;
    console.log(`  [ztunnel on ${z.spec.nodeName}] ${r["msg"]}: src.addr=${r["src.addr"]} dst.addr=${r["dst.addr"]} error="${r["error"]}"`);
  }

  console.log(`
The cluster stays up with the policy in place. To look around:
  export KUBECONFIG=${info.kubeconfig}
  ${kubectlPath} get pods -A -o wide
  ${kubectlPath} delete authorizationpolicy -n demo deny-client   (lets the client through again)
  ${cli} logs demo/${c.metadata.name}   (the client's answers)
  ${cli} logs istio-system/${ztunnels[0]?.metadata.name}   (a ztunnel's access log)
  ${cli} exec istio-system/${ztunnels[0]?.metadata.name} -- node -e "fetch('http://127.0.0.1:15000/config_dump').then(r=>r.text()).then(console.log)"
  ${cli} status
To remove everything:
  ${cli} down`);
}

main().then(() => process.exit(0), (err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
