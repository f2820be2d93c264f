// Resource names and UIDs as istiod forms them (and as ztunnel keys its state).
import { DEFAULT_CLUSTER_ID, DEFAULT_DOMAIN_SUFFIX } from "./constants.js";

/** Workload UID of a pod: "<cluster>//Pod/<namespace>/<name>" (empty group, no version: istiod's form). */
export function podUid(namespace: string, name: string, clusterId = DEFAULT_CLUSTER_ID): string {
  return `${clusterId}//Pod/${namespace}/${name}`;
}

/** Workload UID of a selector-less EndpointSlice endpoint. */
export function endpointSliceUid(namespace: string, slice: string, key: string, clusterId = DEFAULT_CLUSTER_ID): string {
  return `${clusterId}/discovery.k8s.io/EndpointSlice/${namespace}/${slice}/${key}`;
}

/** Cluster-local host name of a Service: "<name>.<namespace>.svc.<suffix>". */
export function serviceHostname(name: string, namespace: string, domainSuffix = DEFAULT_DOMAIN_SUFFIX): string {
  return `${name}.${namespace}.svc.${domainSuffix}`;
}

/** xDS name of a Service resource and key of Workload.services: "<namespace>/<hostname>". */
export function serviceResourceName(namespace: string, hostname: string): string {
  return `${namespace}/${hostname}`;
}

/** xDS name of an Authorization, and the key in Workload.authorization_policies: "<namespace>/<name>". */
export function policyResourceName(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** xDS alias and on-demand key of an address: "<network>/<ip>" ("/10.0.0.5" on the default network). */
export function networkAddressKey(network: string, ip: string): string {
  return `${network}/${ip}`;
}

/** Splits "<namespace>/<rest>" (Service and policy names); null when there is no slash. */
export function splitNamespacedName(name: string): { namespace: string; name: string } | null {
  const i = name.indexOf("/");
  if (i <= 0 || i === name.length - 1) return null;
  return { namespace: name.slice(0, i), name: name.slice(i + 1) };
}

/** ztunnel's xDS node id: "ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local". */
export function ztunnelNodeId(ip: string, podName: string, podNamespace: string): string {
  return `ztunnel~${ip || "1.1.1.1"}~${podName}.${podNamespace}~${podNamespace}.svc.cluster.local`;
}

export interface NodeId {
  type: string;
  ip: string;
  id: string;
  domain: string;
}

/** Parses an xDS node id; istiod requires exactly four "~"-separated parts. */
export function parseNodeId(id: string): NodeId | null {
  const parts = id.split("~");
  if (parts.length !== 4 || parts.some((p) => p === "")) return null;
  return { type: parts[0]!, ip: parts[1]!, id: parts[2]!, domain: parts[3]! };
}
