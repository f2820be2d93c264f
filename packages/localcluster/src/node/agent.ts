// The node agent (kubelet stand-in) of one local-cluster node. It runs as a host process with the node's
// own credentials (user system:node:<name>, so the API server's Node authorizer applies).
import { Api, targetFromKubeconfig } from "../api.js";
import { nodeIndex, nodeName, paths } from "../layout.js";
import { registerNode, renewLease, updateNodeStatus } from "./registration.js";

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
  console.log(`${name}: registered and ready`);
  const lease = setInterval(() => void retry("lease renewal", () => renewLease(api, index)), LEASE_RENEW_MS);
  const status = setInterval(() => void retry("status update", () => updateNodeStatus(api, index)), STATUS_REFRESH_MS);
  const stop = () => {
    clearInterval(lease);
    clearInterval(status);
    process.exit(0);
  };
  process.on("SIGTERM", stop).on("SIGINT", stop);
}
