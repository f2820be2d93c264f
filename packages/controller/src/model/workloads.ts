// Pod → istio.workload.Workload, as istiod builds it for ztunnel: every running pod with an IP, enrolled or
// not (tunnel_protocol HBONE once the CNI agent annotated it), with the services it backs and the
// selector-scoped policies that apply to it.
import { Annotations, Labels, ipToBytes, istio, podUid, serviceHostname, serviceResourceName } from "@ambit/protocol";
import type { MeshSettings, Node, Pod, Service } from "./types.js";
import type { Waypoint } from "./waypoints.js";

type WorkloadOut = istio.workload.Workload.$Properties;

export function podIps(pod: Pod): string[] {
  const ips = pod.status?.podIPs?.map((p) => p.ip) ?? [];
  if (!ips.length && pod.status?.podIP) ips.push(pod.status.podIP);
  return ips;
}

/** istiod emits a workload for every non-terminal pod that has an IP. */
export function hasWorkload(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase !== "Succeeded" && phase !== "Failed" && podIps(pod).length > 0;
}

export function canonicalName(pod: Pod): string {
  const l = pod.metadata.labels ?? {};
  return l[Labels.canonicalName] ?? l["app.kubernetes.io/name"] ?? l["app"] ?? workloadName(pod);
}

export function canonicalRevision(pod: Pod): string {
  const l = pod.metadata.labels ?? {};
  return l[Labels.canonicalRevision] ?? l["app.kubernetes.io/version"] ?? l["version"] ?? "latest";
}

/** The owning workload's name: a Deployment behind a ReplicaSet, a CronJob behind a Job, else the owner or the pod. */
export function workloadName(pod: Pod): string {
  const m = pod.metadata;
  const override = m.labels?.[Labels.workloadName];
  if (override) return override;
  const owner = m.ownerReferences?.find((o) => o.controller) ?? m.ownerReferences?.[0];
  if (!owner) return m.name;
  const hash = m.labels?.["pod-template-hash"];
  if (owner.kind === "ReplicaSet" && hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
  if (owner.kind === "Job") {
    const cron = /^(.*)-\d+$/.exec(owner.name);
    if (cron) return cron[1]!;
  }
  return owner.name;
}

export function isReady(pod: Pod): boolean {
  return !pod.metadata.deletionTimestamp && (pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false);
}

export function selectorMatches(selector: Record<string, string> | null | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || !Object.keys(selector).length) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Service port → target port for this pod; a named target port resolves against its TCP container ports. */
export function portsFor(pod: Pod, svc: Service): istio.workload.Port.$Properties[] {
  const containers = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === "Always")];
  const named = new Map<string, number>();
  for (const c of containers) for (const p of c.ports ?? []) if (p.name && (p.protocol ?? "TCP") === "TCP") named.set(p.name, p.containerPort);
  const out: istio.workload.Port.$Properties[] = [];
  for (const p of svc.spec?.ports ?? []) {
    if ((p.protocol ?? "TCP") !== "TCP") continue;
    const t = p.targetPort;
    const target = t === undefined ? p.port : typeof t === "number" ? t : /^\d+$/.test(t) ? Number(t) : named.get(t);
    if (target === undefined) continue; // the named port is not on this pod
    out.push({ service_port: p.port, target_port: target });
  }
  return out;
}

export interface WorkloadInputs {
  /** Services this pod backs (same-namespace selector matches, and selector-less Services listing it). */
  services: Service[];
  waypoint: Waypoint | null;
  /** Keys of the selector-scoped policies (and PeerAuthentication conversions) that apply to the pod. */
  policies: string[];
  node: Node | undefined;
}

export function workloadFor(pod: Pod, s: MeshSettings, inputs: WorkloadInputs): WorkloadOut | null {
  if (!hasWorkload(pod)) return null;
  const m = pod.metadata;
  const ns = m.namespace!;
  const w: WorkloadOut = {
    uid: podUid(ns, m.name, s.clusterId),
    name: m.name,
    namespace: ns,
    addresses: podIps(pod).map(ipToBytes),
  };
  if (s.network) w.network = s.network;
  const hbone = m.annotations?.[Annotations.redirection] === "enabled";
  const sidecar = m.labels?.[Labels.tunnel] === "http";
  if (hbone || sidecar) w.tunnel_protocol = istio.workload.TunnelProtocol.HBONE;
  if (sidecar) w.native_tunnel = true;
  if (s.trustDomain !== "cluster.local") w.trust_domain = s.trustDomain;
  w.service_account = pod.spec?.serviceAccountName || "default";
  if (inputs.waypoint) w.waypoint = inputs.waypoint.address;
  if (pod.spec?.nodeName) w.node = pod.spec.nodeName;
  w.canonical_name = canonicalName(pod);
  w.canonical_revision = canonicalRevision(pod);
  w.workload_type = istio.workload.WorkloadType.POD;
  w.workload_name = workloadName(pod);
  const services: Record<string, istio.workload.PortList.$Properties> = {};
  for (const svc of inputs.services) {
    const key = serviceResourceName(svc.metadata.namespace!, serviceHostname(svc.metadata.name, svc.metadata.namespace!, s.domainSuffix));
    services[key] = { ports: portsFor(pod, svc) };
  }
  if (Object.keys(services).length) w.services = services;
  if (inputs.policies.length) w.authorization_policies = [...inputs.policies].sort();
  if (!isReady(pod)) w.status = istio.workload.WorkloadStatus.UNHEALTHY;
  w.cluster_id = s.clusterId;
  const nl = inputs.node?.metadata.labels ?? {};
  const locality = { region: nl["topology.kubernetes.io/region"], zone: nl["topology.kubernetes.io/zone"], subzone: nl["topology.istio.io/subzone"] };
  if (locality.region || locality.zone || locality.subzone) {
    w.locality = Object.fromEntries(Object.entries(locality).filter(([, v]) => v)) as istio.workload.Locality.$Properties;
  }
  if (pod.spec?.hostNetwork) w.network_mode = istio.workload.NetworkMode.HOST_NETWORK;
  return w;
}
