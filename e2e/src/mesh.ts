// Helpers of the end-to-end suites on top of @ambit/localcluster: commands inside pods, a ztunnel's access log and
// metrics. The mesh itself is installed by the Helm chart (installMesh from @ambit/localcluster).
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { adminApi, podExecArgv, waitFor, ztunnelAccessLog, ztunnelGet, type Api } from "@ambit/localcluster";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
/** The echo program as pods run it (the image ambit/echo maps to it). */
export const echo = join(repo, "packages/echo/dist/main.js");

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function collect(child: ChildProcess, timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d));
    child.stderr?.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** Starts a command inside a running pod (its network and mount namespaces), as `kubectl exec` would. */
export async function spawnInPod(pod: string, argv: string[]): Promise<ChildProcess> {
  const [cmd, ...args] = await podExecArgv(pod, argv);
  return spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"] });
}

export async function execInPod(pod: string, argv: string[], timeoutMs = 30_000): Promise<Result> {
  return collect(await spawnInPod(pod, argv), timeoutMs);
}

/** A TCP exchange from a pod with the echo server: sends `message`, half-closes, returns what came back. */
export function tcpEcho(from: string, host: string, port: number, message: string): Promise<Result> {
  return execInPod(from, [process.execPath, echo, "tcp-client", host, String(port), "--message", message, "--timeout", "10000"]);
}

interface PodItem { metadata: { name: string; namespace: string; uid: string }; spec: { nodeName?: string }; status: { podIP?: string; conditions?: { type: string; status: string }[] } }

export async function readyPods(api: Api, ns: string, selector: string): Promise<PodItem[]> {
  const list = await api.get<{ items: PodItem[] }>(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`);
  return list.items.filter((p) => p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
}

/** "istio-system/<name>" of the ztunnel pod on a node. */
export async function ztunnelOn(node: string): Promise<string> {
  const pods = await readyPods(adminApi(), "istio-system", "app=ztunnel");
  const pod = pods.find((p) => p.spec.nodeName === node);
  if (!pod) throw new Error(`no Ready ztunnel on ${node}`);
  return `istio-system/${pod.metadata.name}`;
}

/** The JSON access-log records of a ztunnel ("connection complete" / "connection failed" …). */
export const accessLog = ztunnelAccessLog;

/** A ztunnel's Prometheus text from its 15020 port (read inside its pod). */
export const metricsText = (ztunnel: string): Promise<string> => ztunnelGet(ztunnel, 15020, "/metrics");

/** A ztunnel's /config_dump (admin port 15000, read inside its pod). */
export async function configDump(ztunnel: string): Promise<{ workloads: { name?: string; namespace?: string; tunnel_protocol?: number | string }[] }> {
  return JSON.parse(await ztunnelGet(ztunnel, 15000, "/config_dump")) as { workloads: { name?: string; namespace?: string; tunnel_protocol?: number | string }[] };
}

/**
 * Waits until the pods of `namespace` are enrolled end to end: each annotated by the CNI agent (ztunnel acked its
 * netns) and known as HBONE workloads to every ztunnel (the controller saw the annotation and pushed it).
 */
export async function waitEnrolled(api: Api, namespace: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(`pods of ${namespace} enrolled`, async () => {
    const pods = (await api.get<{ items: { metadata: { name: string; annotations?: Record<string, string> } }[] }>(`/api/v1/namespaces/${namespace}/pods`)).items;
    if (!pods.length || pods.some((p) => p.metadata.annotations?.["ambient.istio.io/redirection"] !== "enabled")) return false;
    const ztunnels = await readyPods(api, "istio-system", "app=ztunnel");
    for (const z of ztunnels) {
      const dump = await configDump(`istio-system/${z.metadata.name}`);
      const hbone = new Set(dump.workloads.filter((w) => w.namespace === namespace && (w.tunnel_protocol === 1 || w.tunnel_protocol === "HBONE")).map((w) => w.name));
      if (pods.some((p) => !hbone.has(p.metadata.name))) return false;
    }
    return true;
  }, timeoutMs, 500);
}

/** Sum of a metric's samples whose labels include all of `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const m = /^[^{]+\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const have = Object.fromEntries([...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[2]);
  }
  return sum;
}
