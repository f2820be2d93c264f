// Runs a node's CNI chain as a container runtime does: the first *.conflist in the node's CNI config dir,
// each plugin an executable found in the CNI bin dir, ADD in order with each result passed to the next as
// prevResult, DEL in reverse order with the cached result. Chained plugins (e.g. Ambit's) are installed by
// appending themselves to that conflist, exactly as on a real node.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The CNI spec version our configuration and plugin speak. */
export const CNI_VERSION = "1.0.0";

export class CniError extends Error {
  override name = "CniError";
  constructor(readonly plugin: string, readonly command: string, message: string) {
    super(`CNI ${command} failed in plugin "${plugin}": ${message}`);
  }
}

export interface CniPaths {
  confDir: string;
  binDir: string;
  cacheDir: string;
  /**
   * The node's own root (its "host" filesystem). Plugins run in a private mount namespace in which the node's
   * host-path directories that pods share with the runtime (CNI config and bin dirs, agent sockets) are bound at
   * their real paths, so a chained plugin installed by a DaemonSet pod sees the same paths that pod wrote.
   */
  nodeRoot?: string;
}

/** Host-path directories a node shares between its pods and its CNI plugins. */
export const NODE_SHARED_DIRS: readonly string[] = ["etc/cni/net.d", "opt/cni/bin", "var/run/ambit", "var/run/ztunnel"];

/** argv that runs `exe` with the node's shared dirs bound at their real paths (those that exist on both sides). */
function inNodeView(exe: string, nodeRoot: string | undefined): [string, string[]] {
  const binds = nodeRoot ? NODE_SHARED_DIRS.filter((d) => existsSync(join(nodeRoot, d)) && existsSync(join("/", d))) : [];
  if (!binds.length) return [exe, []];
  const q = (p: string) => `'${p.replaceAll("'", "'\\''")}'`;
  const script = [...binds.map((d) => `mount --bind ${q(join(nodeRoot!, d))} ${q(join("/", d))}`), 'exec "$0"'].join(" && ");
  return ["unshare", ["--mount", "--propagation", "private", "sh", "-c", script, exe]];
}

export interface CniRuntime {
  containerId: string;
  netns: string;
  ifName: string;
  /** Kubernetes pod identity, passed in CNI_ARGS as container runtimes do. */
  podNamespace: string;
  podName: string;
  podUid: string;
}

export interface CniResult {
  cniVersion: string;
  ips?: { address: string; gateway?: string; interface?: number }[];
  [k: string]: unknown;
}

interface ConfList {
  cniVersion: string;
  name: string;
  plugins: { type: string; [k: string]: unknown }[];
}

/** The network configuration in force: the lexically first .conflist of the conf dir. */
export function loadConfList(confDir: string): ConfList {
  const files = existsSync(confDir) ? readdirSync(confDir).filter((f) => f.endsWith(".conflist")).sort() : [];
  if (!files.length) throw new CniError("-", "ADD", `no .conflist in ${confDir}`);
  const file = join(confDir, files[0]!);
  let list: ConfList;
  try {
    list = JSON.parse(readFileSync(file, "utf8")) as ConfList;
  } catch (err) {
    throw new CniError("-", "ADD", `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(list.plugins) || !list.plugins.length) throw new CniError("-", "ADD", `${file} lists no plugins`);
  return list;
}

function invoke(paths: CniPaths, rt: CniRuntime, command: string, conf: object, type: string): Promise<string> {
  const exe = join(paths.binDir, type);
  if (!existsSync(exe)) return Promise.reject(new CniError(type, command, `no executable ${exe}`));
  return new Promise((resolve, reject) => {
    const [file, args] = inNodeView(exe, paths.nodeRoot);
    const child = spawn(file, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: {
        ...process.env,
        CNI_COMMAND: command,
        CNI_CONTAINERID: rt.containerId,
        CNI_NETNS: rt.netns,
        CNI_IFNAME: rt.ifName,
        CNI_PATH: paths.binDir,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${rt.podNamespace};K8S_POD_NAME=${rt.podName};K8S_POD_INFRA_CONTAINER_ID=${rt.containerId};K8S_POD_UID=${rt.podUid}`,
      },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", (e) => reject(new CniError(type, command, e.message)));
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) return resolve(out);
      let msg = err.trim() || `exit ${code}`;
      try {
        const e = JSON.parse(out) as { msg?: string; details?: string };
        if (e.msg) msg = e.details ? `${e.msg}: ${e.details}` : e.msg;
      } catch {
        // not a CNI error document
      }
      reject(new CniError(type, command, msg));
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

function cacheFile(paths: CniPaths, rt: CniRuntime): string {
  return join(paths.cacheDir, `${rt.containerId}-${rt.ifName}.json`);
}

/** ADD through the whole chain; the final result is cached for DEL. On failure, DEL undoes what was added. */
export async function cniAdd(paths: CniPaths, rt: CniRuntime): Promise<CniResult> {
  const list = loadConfList(paths.confDir);
  let prevResult: CniResult | undefined;
  for (const plugin of list.plugins) {
    const conf = { ...plugin, cniVersion: list.cniVersion, name: list.name, ...(prevResult ? { prevResult } : {}) };
    try {
      const out = await invoke(paths, rt, "ADD", conf, plugin.type);
      // A plugin that prints nothing passes the previous result on.
      prevResult = out.trim() ? (JSON.parse(out) as CniResult) : prevResult;
    } catch (err) {
      await cniDel(paths, rt, list, prevResult).catch(() => undefined);
      throw err;
    }
  }
  if (!prevResult?.ips?.length) throw new CniError(list.plugins[0]!.type, "ADD", "the chain returned no IP address");
  mkdirSync(paths.cacheDir, { recursive: true });
  writeFileSync(cacheFile(paths, rt), JSON.stringify({ list, result: prevResult }));
  return prevResult;
}

/** DEL through the chain in reverse, with the configuration and result cached at ADD. Idempotent. */
export async function cniDel(paths: CniPaths, rt: CniRuntime, list?: ConfList, result?: CniResult): Promise<void> {
  if (!list) {
    try {
      ({ list, result } = JSON.parse(readFileSync(cacheFile(paths, rt), "utf8")) as { list: ConfList; result: CniResult });
    } catch {
      list = loadConfList(paths.confDir);
    }
  }
  const errors: string[] = [];
  for (const plugin of [...list.plugins].reverse()) {
    const conf = { ...plugin, cniVersion: list.cniVersion, name: list.name, ...(result ? { prevResult: result } : {}) };
    await invoke(paths, rt, "DEL", conf, plugin.type).catch((e: Error) => errors.push(e.message));
  }
  rmSync(cacheFile(paths, rt), { force: true });
  if (errors.length) throw new Error(errors.join("; "));
}
