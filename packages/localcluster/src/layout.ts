// Names, addresses and paths of the local cluster. One cluster per machine; everything it creates on the
// host is named "ambit-*" so it can be found and removed, even after a crash.
import { join } from "node:path";

export const MAX_NODES = 20;

/** Network namespace holding the bridge that joins the nodes (and the API server forwarder). */
export const CLUSTER_NETNS = "ambit-cluster";
export const BRIDGE = "br0";
/** Node network: the bridge has .1; node i has .(10+i). */
export const NODE_NETWORK_PREFIX = 24;
export const CLUSTER_GATEWAY_IP = "172.31.255.1";
export const CLUSTER_CIDR = "10.244.0.0/16";
export const SERVICE_CIDR = "10.96.0.0/16";
export const KUBERNETES_SERVICE_IP = "10.96.0.1";
export const DNS_SERVICE_IP = "10.96.0.10";
export const CLUSTER_DOMAIN = "cluster.local";
/** Prefix of pod network namespaces: "ambit-pod-<pod uid>". */
export const POD_NETNS_PREFIX = "ambit-pod-";
/** Every process of the cluster carries this variable; `down` finds leftovers by it. */
export const OWNER_ENV = "AMBIT_LOCAL_OWNER";

export function nodeName(i: number): string {
  return `node-${i}`;
}
export function nodeNetns(i: number): string {
  return `ambit-node-${i}`;
}
export function nodeIp(i: number): string {
  return `172.31.255.${10 + i}`;
}
export function podCidr(i: number): string {
  return `10.244.${i}.0/24`;
}
/** Address every pod of node i routes through (held by the node side of each pod's veth). */
export function podGateway(i: number): string {
  return `10.244.${i}.1`;
}
export function nodeIndex(name: string): number {
  const m = /^node-(\d+)$/.exec(name);
  if (!m) throw new Error(`"${name}" is not a local-cluster node name (node-1 … node-${MAX_NODES})`);
  return Number(m[1]);
}
export function podNetns(podUid: string): string {
  return `${POD_NETNS_PREFIX}${podUid}`;
}
export function netnsPath(name: string): string {
  return `/var/run/netns/${name}`;
}

/** Where the cluster keeps its state, certificates, logs and per-node "host" directories. */
export function stateDir(): string {
  return process.env["AMBIT_LOCAL_DIR"] ?? "/var/lib/ambit-local";
}

export const paths = {
  state: () => join(stateDir(), "state.json"),
  pki: () => join(stateDir(), "pki"),
  logs: () => join(stateDir(), "logs"),
  etcd: () => join(stateDir(), "etcd"),
  adminKubeconfig: () => join(stateDir(), "admin.kubeconfig"),
  kubeconfig: (user: string) => join(stateDir(), "kubeconfigs", `${user}.kubeconfig`),
  /** Host directories (and files) created as mount points for pods' volumes, one per line. */
  mountPoints: () => join(stateDir(), "mountpoints"),
  /** A node's own "host" filesystem root (hostPath volumes, CNI dirs, /var/run/ztunnel …). */
  nodeRoot: (node: string) => join(stateDir(), "nodes", node),
};
