// The cluster network, made only of network namespaces (the host's own interfaces and routes are never
// touched): a bridge in the cluster netns joins one veth per node netns; each pod is a netns with a
// routed /32 veth into its node (the node side holds the node's pod gateway address), and every node
// routes the other nodes' pod ranges over the bridge.
//
//   pod 10.244.1.5/32 ── veth ── node-1 netns (172.31.255.11) ─┐
//                                                               ├─ br0 in ambit-cluster (172.31.255.1)
//   pod 10.244.2.7/32 ── veth ── node-2 netns (172.31.255.12) ─┘
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  BRIDGE, CLUSTER_GATEWAY_IP, CLUSTER_NETNS, NODE_NETWORK_PREFIX, netnsPath, nodeIp, nodeNetns, podCidr, podGateway,
} from "./layout.js";
import { CommandError, ip, run } from "./run.js";
import type { StateLog } from "./state.js";

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/** Creates a named netns with loopback up (recorded in the state log first). */
export async function createNetns(name: string, log?: StateLog): Promise<void> {
  log?.netns(name);
  if (!netnsExists(name)) await ip("netns", "add", name);
  await ip("-n", name, "link", "set", "lo", "up");
}

async function sysctl(netns: string, settings: Record<string, string>): Promise<void> {
  const script = Object.entries(settings).map(([k, v]) => `echo ${v} > /proc/sys/${k.replaceAll(".", "/")}`).join(" && ");
  await run("ip", ["netns", "exec", netns, "sh", "-c", script]);
}

/** Kills every process inside a netns, then deletes it. Missing namespaces are fine. */
export async function deleteNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  const pids = (await ip("netns", "pids", name).catch(() => "")).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
  }
  try {
    await ip("netns", "del", name);
  } catch (err) {
    if (netnsExists(name)) throw err;
  }
}

/** The bridge netns and `nodes` node namespaces, wired and routed. Idempotent per step. */
export async function createClusterNetwork(nodes: number, log: StateLog): Promise<void> {
  await createNetns(CLUSTER_NETNS, log);
  await ip("-n", CLUSTER_NETNS, "link", "add", BRIDGE, "type", "bridge").catch(ignoreExists);
  await ip("-n", CLUSTER_NETNS, "addr", "replace", `${CLUSTER_GATEWAY_IP}/${NODE_NETWORK_PREFIX}`, "dev", BRIDGE);
  await ip("-n", CLUSTER_NETNS, "link", "set", BRIDGE, "up");
  await sysctl(CLUSTER_NETNS, { "net.ipv4.ip_forward": "1" });
  for (let i = 1; i <= nodes; i++) {
    const ns = nodeNetns(i);
    await createNetns(ns, log);
    const peer = `node${i}`;
    await ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", CLUSTER_NETNS).catch(ignoreExists);
    await ip("-n", ns, "addr", "replace", `${nodeIp(i)}/${NODE_NETWORK_PREFIX}`, "dev", "eth0");
    await ip("-n", ns, "link", "set", "eth0", "up");
    await ip("-n", CLUSTER_NETNS, "link", "set", peer, "master", BRIDGE, "up");
    // Forward for its pods; accept the asymmetric paths of routed pods; let kube-proxy use DNAT on loopback.
    await sysctl(ns, { "net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0" });
    await ip("-n", CLUSTER_NETNS, "route", "replace", podCidr(i), "via", nodeIp(i));
  }
  for (let i = 1; i <= nodes; i++) {
    for (let j = 1; j <= nodes; j++) {
      if (i !== j) await ip("-n", nodeNetns(i), "route", "replace", podCidr(j), "via", nodeIp(j));
    }
    // Anything else (the API server forwarder, Service IPs not yet DNATed) goes to the cluster netns.
    await ip("-n", nodeNetns(i), "route", "replace", "default", "via", CLUSTER_GATEWAY_IP);
  }
}

function ignoreExists(err: unknown): void {
  if (!(err instanceof CommandError && /File exists/.test(err.stderr))) throw err;
}

/** Name of a pod's veth on the node side (≤ 15 characters, stable per pod netns). */
export function hostVethName(podNetnsName: string): string {
  return `veth${createHash("sha256").update(podNetnsName).digest("hex").slice(0, 8)}`;
}

export interface PodInterface {
  hostIf: string;
  podIf: string;
  ip: string;
  gateway: string;
}

/** Wires a pod netns to node `node` with address `podIp` (a /32 routed through the node). */
export async function attachPod(node: number, podNetnsName: string, podIp: string, podIf = "eth0"): Promise<PodInterface> {
  const ns = nodeNetns(node);
  const hostIf = hostVethName(podNetnsName);
  const gateway = podGateway(node);
  await ip("link", "add", podIf, "netns", podNetnsName, "type", "veth", "peer", "name", hostIf, "netns", ns).catch(ignoreExists);
  await ip("-n", ns, "addr", "replace", `${gateway}/32`, "dev", hostIf);
  await ip("-n", ns, "link", "set", hostIf, "up");
  await ip("-n", ns, "route", "replace", `${podIp}/32`, "dev", hostIf, "src", gateway);
  await ip("-n", podNetnsName, "addr", "replace", `${podIp}/32`, "dev", podIf);
  await ip("-n", podNetnsName, "link", "set", podIf, "up");
  await ip("-n", podNetnsName, "route", "replace", gateway, "dev", podIf, "scope", "link");
  await ip("-n", podNetnsName, "route", "replace", "default", "via", gateway, "dev", podIf, "src", podIp);
  return { hostIf, podIf, ip: podIp, gateway };
}

/** Removes a pod's veth and its route from the node (the pod netns itself is deleted by the caller). */
export async function detachPod(node: number, podNetnsName: string): Promise<void> {
  await ip("-n", nodeNetns(node), "link", "del", hostVethName(podNetnsName)).catch(() => undefined);
}
