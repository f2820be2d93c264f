// Helpers of the end-to-end suites: install the mesh on the local cluster, run commands inside pods, read a
// ztunnel's access log and metrics, capture a node's link.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { adminApi, kubectl, waitFor, type Api } from "@ambit/localcluster";

export const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repo, "packages/localcluster/bin/ambit-local.js");
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
export function spawnInPod(pod: string, argv: string[]): ChildProcess {
  return spawn(process.execPath, [cli, "exec", pod, "--", ...argv], { stdio: ["pipe", "pipe", "pipe"] });
}

export function execInPod(pod: string, argv: string[], timeoutMs = 30_000): Promise<Result> {
  const child = spawnInPod(pod, argv);
  child.stdin?.end();
  return collect(child, timeoutMs);
}

/** A TCP exchange from a pod with the echo server: sends `message`, half-closes, returns what came back. */
export function tcpEcho(from: string, host: string, port: number, message: string): Promise<Result> {
  return execInPod(from, [process.execPath, echo, "tcp-client", host, String(port), "--message", message, "--timeout", "10000"]);
}

export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Result> {
  return collect(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }), timeoutMs);
}

const MESH_PODS = ["app=istiod", "app=ztunnel", "app=istio-cni-node"];

/** Applies the CRDs and the mesh manifests, then waits for every mesh pod to be Ready. */
export async function installMesh(nodes: number): Promise<void> {
  await kubectl(["apply", "-f", join(repo, "charts/ambit/crds")]);
  await kubectl(["apply", "-f", join(repo, "e2e/manifests/mesh.yaml")]);
  await waitMeshReady(nodes);
}

export async function waitMeshReady(nodes: number, timeoutMs = 120_000): Promise<void> {
  const api = adminApi();
  await waitFor("mesh pods Ready", async () => {
    const counts = await Promise.all(MESH_PODS.map(async (sel) => (await readyPods(api, "istio-system", sel)).length));
    return counts[0] === 1 && counts[1] === nodes && counts[2] === nodes;
  }, timeoutMs, 500);
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
export async function accessLog(ztunnel: string): Promise<Record<string, unknown>[]> {
  const r = await run(process.execPath, [cli, "logs", ztunnel]);
  return r.stdout.split("\n").flatMap((l) => {
    try {
      const rec = JSON.parse(l) as Record<string, unknown>;
      return rec["scope"] === "access" ? [rec] : [];
    } catch {
      return [];
    }
  });
}

/** A ztunnel's Prometheus text from its 15020 port (read inside its pod). */
export async function metricsText(ztunnel: string): Promise<string> {
  const script = "fetch('http://127.0.0.1:15020/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))";
  const r = await execInPod(ztunnel, [process.execPath, "-e", script]);
  if (r.code !== 0) throw new Error(`metrics of ${ztunnel}: ${r.stderr}`);
  return r.stdout;
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

/**
 * Captures packets on a node's link (eth0 of its netns) while `during` runs: the raw bytes of the capture and the
 * TCP ports seen in it.
 */
export async function capture(node: string, filter: string, during: () => Promise<void>): Promise<{ data: Buffer; ports: Set<number> }> {
  const file = `/tmp/ambit-e2e-${process.pid}-${Date.now()}.pcap`;
  const dump = spawn("ip", ["netns", "exec", `ambit-${node}`, "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-s", "0", "-w", file, filter], { stdio: ["ignore", "ignore", "pipe"] });
  let started = "";
  await new Promise<void>((resolve, reject) => {
    dump.stderr!.on("data", (d: Buffer) => { started += d; if (started.includes("listening on")) resolve(); });
    dump.on("exit", (code) => reject(new Error(`tcpdump exited with ${code}: ${started}`)));
  });
  try {
    await during();
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    dump.kill("SIGINT");
    await new Promise((r) => dump.once("close", r));
  }
  try {
    return { data: readFileSync(file), ports: await portsIn(file) };
  } finally {
    rmSync(file, { force: true });
  }
}

/** The TCP ports in a pcap file, as tcpdump prints them ("a.b.c.d.port > …"). */
async function portsIn(pcap: string): Promise<Set<number>> {
  const r = await run("tcpdump", ["-nn", "-r", pcap, "tcp"]);
  const ports = new Set<number>();
  for (const m of r.stdout.matchAll(/ (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/g)) {
    ports.add(Number(m[2]));
    ports.add(Number(m[4]));
  }
  return ports;
}
