// Reaching into a pod of the local cluster from the host: the argv that runs a command inside a running container
// (its network, mount and UTS namespaces, as `kubectl exec` does), and a container's logs. Used by the CLI's exec and
// logs commands, the end-to-end suites, the demo and the benchmarks.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { adminApi } from "./cluster.js";
import { netnsPath, nodeIndex, nodeNetns, paths, podNetns } from "./layout.js";
import { loadState } from "./state.js";

export interface PodInfo {
  metadata: { uid: string; name: string; namespace: string };
  spec: { nodeName?: string; hostNetwork?: boolean };
}

/** "<namespace>/<name>" → its parts; throws on another shape. */
export function parsePodRef(ref: string | undefined): { namespace: string; name: string } {
  const m = ref ? /^([^/]+)\/([^/]+)$/.exec(ref) : null;
  if (!m) throw new Error(`expected <namespace>/<pod>, got ${ref ?? "nothing"}`);
  return { namespace: m[1]!, name: m[2]! };
}

export async function getPod(ref: string): Promise<PodInfo> {
  const { namespace, name } = parsePodRef(ref);
  if (!loadState()) throw new Error("no local cluster is up (run: ambit-local up)");
  return adminApi().get<PodInfo>(`/api/v1/namespaces/${namespace}/pods/${name}`);
}

/** Where the node agent keeps a pod's files (container logs and pid files). */
export function podDir(pod: PodInfo): string {
  return join(paths.nodeRoot(pod.spec.nodeName ?? ""), "pods", `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`);
}

function readOr(file: string): string | null {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return null;
  }
}

/**
 * The argv that runs `argv` inside pod `ref` (a running container's namespaces; else just the pod's network
 * namespace). Throws when the pod has nothing running on this machine.
 */
export async function podExecArgv(ref: string, argv: string[], container?: string): Promise<string[]> {
  const pod = await getPod(ref);
  const dir = podDir(pod);
  const names = container ? [container] : (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".pid")).map((f) => f.slice(0, -4)).sort() : []);
  for (const name of names) {
    const pid = readOr(join(dir, `${name}.pid`));
    if (pid && existsSync(`/proc/${pid}`)) return ["nsenter", "--target", pid, "--net", "--mount", "--uts", "--", ...argv];
  }
  if (container) throw new Error(`pod ${ref} has no running container "${container}"`);
  if (!pod.spec.nodeName) throw new Error(`pod ${ref} is not scheduled yet`);
  const netns = pod.spec.hostNetwork ? nodeNetns(nodeIndex(pod.spec.nodeName)) : podNetns(pod.metadata.uid);
  if (!existsSync(netnsPath(netns))) throw new Error(`pod ${ref} has no network namespace on this machine (is it running?)`);
  return ["ip", "netns", "exec", netns, ...argv];
}

/** The logs of a pod's containers (or of one), concatenated. */
export async function podLogs(ref: string, container?: string): Promise<string> {
  const dir = podDir(await getPod(ref));
  const logs = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".log")).sort() : [];
  if (!logs.length) throw new Error(`no logs for pod ${ref} (it has not run on this cluster)`);
  const pick = container ? logs.filter((f) => f === `${container}.log`) : logs;
  if (!pick.length) throw new Error(`pod ${ref} has no container "${container}" (has: ${logs.map((f) => f.slice(0, -4)).join(", ")})`);
  return pick.map((f) => readFileSync(join(dir, f), "utf8")).join("");
}
