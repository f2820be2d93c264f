// The node agent (kubelet stand-in) of one local-cluster node. It runs as a host process with the node's
// own credentials (user system:node:<name>, so the API server's Node authorizer applies).
import { appendFileSync, chmodSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Api, targetFromKubeconfig } from "../api.js";
import { CNI_VERSION, type CniPaths } from "../cni/chain.js";
import { OWNER_ENV, nodeIndex, nodeName, paths, podCidr } from "../layout.js";
import { PodManager } from "./pods.js";
import { registerNode, renewLease, updateNodeStatus } from "./registration.js";

/** The node's CNI directories, inside its own root (so each node has its own, as real nodes do). */
export function cniPaths(node: string): CniPaths {
  const root = paths.nodeRoot(node);
  return { confDir: join(root, "etc/cni/net.d"), binDir: join(root, "opt/cni/bin"), cacheDir: join(root, "var/lib/cni/results"), nodeRoot: root };
}

export const BRIDGE_PLUGIN = "ambit-local-bridge";

/**
 * Installs the cluster's own plugin into the node's CNI bin dir, and a conflist naming it first unless one
 * exists (a chained plugin may have added itself to it: that is left as it is).
 */
function installCni(node: string): CniPaths {
  const p = cniPaths(node);
  for (const d of [p.confDir, p.binDir, p.cacheDir]) mkdirSync(d, { recursive: true });
  const plugin = join(dirname(fileURLToPath(import.meta.url)), "../cni/bridge.js");
  writeFileSync(join(p.binDir, BRIDGE_PLUGIN), `#!/bin/sh
exec "${process.execPath}" "${plugin}" "$@"
`);
  chmodSync(join(p.binDir, BRIDGE_PLUGIN), 0o755);
  if (!readdirSync(p.confDir).some((f) => f.endsWith(".conflist"))) {
    writeFileSync(join(p.confDir, "10-ambit-local.conflist"), JSON.stringify({
      cniVersion: CNI_VERSION,
      name: "ambit-local",
      plugins: [{ type: BRIDGE_PLUGIN, node, ipam: { subnet: podCidr(nodeIndex(node)), dataDir: join(paths.nodeRoot(node), "var/lib/cni/networks/ambit-local") } }],
    }, null, 2));
  }
  return p;
}

const LEASE_RENEW_MS = 10_000;
const STATUS_REFRESH_MS = 60_000;

export async function runNodeAgent(name: string): Promise<void> {
  const index = nodeIndex(name);
  const api = new Api(targetFromKubeconfig(paths.kubeconfig(`node-${index}`)));
  const retry = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      console.error(`${nodeName(index)}: ${what} failed: ${(err as Error).message}`);
    }
  };
  for (;;) {
    try {
      await registerNode(api, index);
      break;
    } catch (err) {
      console.error(`${name}: registration failed, retrying: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  await retry("lease", () => renewLease(api, index));
  const backoff = Number(process.env["AMBIT_LOCAL_RESTART_BACKOFF_MS"] ?? 1000);
  const pods = new PodManager({
    api, node: index, nodeRoot: paths.nodeRoot(name), cni: installCni(name), owner: process.env[OWNER_ENV] ?? "",
    corednsBin: process.env["AMBIT_LOCAL_COREDNS"], restartBackoffMs: Number.isFinite(backoff) && backoff > 0 ? backoff : 1000,
    mountPoint: (dir) => appendFileSync(paths.mountPoints(), `${dir}\n`),
  }, paths.kubeconfig(`node-${index}`));
  await pods.start();
  console.log(`${name}: registered and ready; running the pods bound to it`);
  const lease = setInterval(() => void retry("lease renewal", () => renewLease(api, index)), LEASE_RENEW_MS);
  const status = setInterval(() => void retry("status update", () => updateNodeStatus(api, index)), STATUS_REFRESH_MS);
  const stop = () => {
    clearInterval(lease);
    clearInterval(status);
    process.exit(0);
  };
  process.on("SIGTERM", stop).on("SIGINT", stop);
}
