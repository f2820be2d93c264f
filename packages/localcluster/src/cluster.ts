// ambit-local's operations: bring the cluster up, tear it down (also after a crash), report its status.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Api, targetFromKubeconfig, waitFor } from "./api.js";
import { ensureBinaries } from "./binaries.js";
import { DNS_NETNS, createDnsObjects, startCoreDns, startKubeProxy } from "./addons.js";
import { clusterUsers, startApiserver, startControllerManager, startEtcd, startScheduler } from "./controlplane.js";
import {
  CLUSTER_GATEWAY_IP, CLUSTER_NETNS, DNS_SERVICE_IP, MAX_NODES, POD_NETNS_PREFIX, nodeName, nodeNetns, paths, stateDir,
} from "./layout.js";
import { createClusterNetwork, deleteNetns } from "./network.js";
import { createPki, writeKubeconfig } from "./pki.js";
import { isRunning, ownedPids, startProcess, stopProcesses } from "./processes.js";
import { run } from "./run.js";
import { StateLog, loadState, newState, type State } from "./state.js";

const cliScript = join(dirname(fileURLToPath(import.meta.url)), "cli.js");

export interface UpOptions {
  nodes: number;
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
}

export interface ClusterInfo {
  nodes: number;
  apiserverPort: number;
  kubeconfig: string;
}

export function validateNodeCount(n: unknown): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_NODES) {
    throw new Error(`--nodes must be a whole number from 1 to ${MAX_NODES}, got ${String(n)}`);
  }
  return n;
}

export function adminApi(): Api {
  return new Api(targetFromKubeconfig(paths.adminKubeconfig()));
}

/** Brings up a cluster of `nodes` nodes; a previous (or crashed) one is removed first. */
export async function up(opts: UpOptions): Promise<ClusterInfo> {
  const nodes = validateNodeCount(opts.nodes);
  const say = opts.progress ?? ((l: string) => process.stderr.write(`${l}\n`));
  if (process.getuid?.() !== 0) throw new Error("ambit-local needs root (it creates network namespaces and runs iptables)");
  const t0 = Date.now();
  const step = (what: string) => say(`[ambit-local] ${what} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  if (loadState() || leftovers().length) {
    step("removing the previous cluster");
    await down();
  }
  const bin = await ensureBinaries();
  const log = new StateLog({ ...newState(nodes), binDir: bin });
  mkdirSync(paths.logs(), { recursive: true });
  for (let i = 1; i <= nodes; i++) mkdirSync(paths.nodeRoot(nodeName(i)), { recursive: true });

  const pki = await createPki(clusterUsers(nodes));
  step("network");
  const [etcd] = await Promise.all([startEtcd(bin, log), createClusterNetwork(nodes, log)]);
  step("etcd up; starting kube-apiserver");
  const port = await startApiserver(bin, etcd, pki, log);
  step(`kube-apiserver ready on 127.0.0.1:${port}`);

  const local = `https://127.0.0.1:${port}`;
  const inCluster = `https://${CLUSTER_GATEWAY_IP}:${port}`;
  const kubeconfig = (file: string, server: string, user: string) => writeKubeconfig(file, server, pki.caCert, user, pki.tokens[user]!);
  kubeconfig(paths.adminKubeconfig(), local, "admin");
  kubeconfig(paths.kubeconfig("kube-controller-manager"), local, "system:kube-controller-manager");
  kubeconfig(paths.kubeconfig("kube-scheduler"), local, "system:kube-scheduler");
  kubeconfig(paths.kubeconfig("kube-proxy"), inCluster, "system:kube-proxy");
  kubeconfig(paths.kubeconfig("coredns"), inCluster, "ambit-local:coredns");
  for (let i = 1; i <= nodes; i++) kubeconfig(paths.kubeconfig(`node-${i}`), local, `system:node:${nodeName(i)}`);

  const owner = log.state.owner;
  log.process(startProcess({
    name: "apiserver-forwarder", owner, command: process.execPath,
    args: [cliScript, "forward", CLUSTER_NETNS, `${CLUSTER_GATEWAY_IP}:${port}`, `127.0.0.1:${port}`],
  }));
  startControllerManager(bin, pki, log);
  startScheduler(bin, log);
  const api = adminApi();
  await createDnsObjects(api);
  for (let i = 1; i <= nodes; i++) {
    startKubeProxy(bin, i, log);
    log.process(startProcess({
      name: `node-agent-${nodeName(i)}`, owner, command: process.execPath, args: [cliScript, "node-agent", nodeName(i)],
      env: { AMBIT_LOCAL_COREDNS: join(bin, "coredns") },
    }));
  }
  await startCoreDns(bin, log);
  step("control plane, kube-proxy, node agents and CoreDNS started; waiting for nodes and DNS");
  // Ready, and without the not-ready taint the node-lifecycle controller lifts, so pods schedule at once.
  await waitFor("every node to be Ready and schedulable", async () => {
    const list = await api.get<{ items: { spec: { taints?: unknown[] }; status: { conditions?: { type: string; status: string }[] } }[] }>("/api/v1/nodes");
    return list.items.length === nodes && list.items.every((n) =>
      !n.spec.taints?.length && n.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
  }, 60_000, 200);
  await waitFor(`cluster DNS at ${DNS_SERVICE_IP} from ${nodeNetns(1)}`, () => dnsAnswers(nodeNetns(1), "kubernetes.default.svc.cluster.local"), 60_000, 200);
  log.update({ phase: "up" });
  step(`cluster up: ${nodes} node(s); kubeconfig ${paths.adminKubeconfig()}`);
  return { nodes, apiserverPort: port, kubeconfig: paths.adminKubeconfig() };
}

/** Resolves `name` through the cluster DNS Service from inside a netns; the answer, or false. */
export async function dnsAnswers(netns: string, name: string): Promise<string | false> {
  const script = `const r=new (require("dns").promises.Resolver)({timeout:500,tries:1});r.setServers(["${DNS_SERVICE_IP}"]);` +
    `r.resolve4(${JSON.stringify(name)}).then(a=>{console.log(a.join(","))},e=>{console.error(e.code);process.exit(1)})`;
  try {
    return (await run("ip", ["netns", "exec", netns, process.execPath, "-e", script], { timeoutMs: 5000 })).trim() || false;
  } catch {
    return false;
  }
}

/** Network namespaces of ours that exist now (by name), whether or not the state file knows them. */
export function leftovers(): string[] {
  if (!existsSync("/var/run/netns")) return [];
  return readdirSync("/var/run/netns").filter((n) =>
    n === CLUSTER_NETNS || n === DNS_NETNS || /^ambit-node-\d+$/.test(n) || n.startsWith(POD_NETNS_PREFIX));
}

/** Removes every process, network namespace and file of the cluster. Safe to run at any time. */
export async function down(): Promise<void> {
  let state: State | null = null;
  try {
    state = loadState();
  } catch {
    // a corrupt state file: fall back to finding our things by name and tag
  }
  const pids = new Set<number>(ownedPids(state?.owner ?? "*"));
  for (const p of state?.processes ?? []) if (isRunning(p)) pids.add(p.pid);
  await stopProcesses([...pids], 1000); // the cluster is being thrown away: no need for long graceful shutdowns
  // Processes that escaped the tags (none should) still die with their netns.
  for (const ns of new Set([...(state?.netns ?? []), ...leftovers()])) await deleteNetns(ns);
  removeMountPoints();
  const dir = stateDir();
  for (const entry of ["state.json", "mountpoints", "state.json.tmp", "pki", "logs", "etcd", "kubeconfigs", "nodes", "coredns", "admin.kubeconfig"]) {
    rmSync(join(dir, entry), { recursive: true, force: true });
  }
  try {
    rmdirSync(dir);
  } catch {
    // not empty (someone else's files) or already gone
  }
}

/** Removes the host directories and files made as pod mount points, deepest first, if still empty. */
function removeMountPoints(): void {
  let list: string[];
  try {
    list = readFileSync(paths.mountPoints(), "utf8").split("\n").filter(Boolean);
  } catch {
    return;
  }
  for (const p of [...new Set(list)].sort((a, b) => b.split("/").length - a.split("/").length)) {
    try {
      if (statSync(p).isDirectory()) rmdirSync(p);
      else if (statSync(p).size === 0) rmSync(p);
    } catch {
      // gone, or no longer empty: someone else's now
    }
  }
}

export interface Status {
  phase: State["phase"] | "down";
  nodes: number;
  apiserver: string;
  processes: { name: string; pid: number; running: boolean }[];
  readyNodes: string[];
}

export async function status(): Promise<Status> {
  const state = loadState();
  if (!state) return { phase: "down", nodes: 0, apiserver: "", processes: [], readyNodes: [] };
  const processes = state.processes.map((p) => ({ name: p.name, pid: p.pid, running: isRunning(p) }));
  let readyNodes: string[] = [];
  let apiserver = "unreachable";
  try {
    const api = adminApi();
    apiserver = (await api.get<string>("/readyz")) === "ok" ? `ok (https://127.0.0.1:${state.apiserverPort})` : "not ready";
    const list = await api.get<{ items: { metadata: { name: string }; status: { conditions?: { type: string; status: string }[] } }[] }>("/api/v1/nodes");
    readyNodes = list.items.filter((n) => n.status.conditions?.some((c) => c.type === "Ready" && c.status === "True")).map((n) => n.metadata.name);
  } catch {
    // reported as unreachable
  }
  return { phase: state.phase, nodes: state.nodes, apiserver, processes, readyNodes };
}

/** Runs the cluster's kubectl with the admin kubeconfig (for tests and scripts of other packages). */
export async function kubectl(args: string[], input?: string): Promise<string> {
  const state = loadState();
  if (!state?.binDir) throw new Error("no local cluster is up (run: ambit-local up)");
  return run(join(state.binDir, "kubectl"), ["--kubeconfig", paths.adminKubeconfig(), ...args], { ...(input !== undefined ? { input } : {}), timeoutMs: 120_000 });
}
