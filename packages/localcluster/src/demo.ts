// `npm run demo`: a 2-node local cluster running the sample app (a client calling a Service of 3 echo
// replicas by DNS name), then a few of the client's answers showing which replica served each call.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "./api.js";
import { adminApi, up } from "./cluster.js";
import { paths } from "./layout.js";
import { run } from "./run.js";
import { loadState } from "./state.js";

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "../bin/ambit-local.js");

interface PodList {
  items: { metadata: { name: string; uid: string }; spec: { nodeName?: string }; status: { podIP?: string; conditions?: { type: string; status: string }[] } }[];
}

async function main(): Promise<void> {
  const info = await up({ nodes: 2 });
  const kubectl = join(loadState()!.binDir!, "kubectl");
  const k = (...args: string[]) => run(kubectl, ["--kubeconfig", info.kubeconfig, ...args], { timeoutMs: 120_000 });
  console.log("\n== deploying the sample app (demo/sample-app.yaml)");
  console.log((await k("apply", "-f", join(here, "../demo/sample-app.yaml"))).trim());
  const api = adminApi();
  const readyPods = async (app: string) => (await api.get<PodList>(`/api/v1/namespaces/demo/pods?labelSelector=app%3D${app}`)).items
    .filter((p) => p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
  await waitFor("3 Ready echo replicas", async () => (await readyPods("echo")).length === 3, 120_000, 250);
  const [client] = await waitFor("the client", async () => { const c = await readyPods("client"); return c.length === 1 && c; }, 120_000, 250);
  console.log("\n== the echo replicas");
  for (const p of await readyPods("echo")) console.log(`  ${p.metadata.name}  on ${p.spec.nodeName}  ${p.status.podIP}`);
  console.log(`\n== calls from ${client!.metadata.name} (on ${client!.spec.nodeName}, ${client!.status.podIP}) to http://echo.demo.svc.cluster.local/`);
  const logFile = () => {
    try {
      return readFileSync(join(paths.nodeRoot(client!.spec.nodeName!), "pods", `demo_${client!.metadata.name}_${client!.metadata.uid}`, "client.log"), "utf8");
    } catch {
      return "";
    }
  };
  const lines = await waitFor("8 answers", async () => { const l = logFile().split("\n").filter((x) => / 200 /.test(x)); return l.length >= 8 && l; }, 60_000, 250);
  for (const line of lines.slice(0, 8)) {
    const m = / 200 pod=(\S+) node=(\S+) ip=(\S+) peer=(\S+)/.exec(line);
    console.log(m ? `  answered by ${m[1]} on ${m[2]} (${m[3]}); it saw the caller as ${m[4]}` : `  ${line}`);
  }
  console.log(`
The cluster stays up. To look around:
  export KUBECONFIG=${info.kubeconfig}
  ${kubectl} get pods -A -o wide
  ${cli} logs demo/${client!.metadata.name}
  ${cli} exec demo/${client!.metadata.name} -- ip addr
  ${cli} status
To remove everything:
  ${cli} down`);
}

main().then(() => process.exit(0), (err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
