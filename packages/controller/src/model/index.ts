// The ambient index: the controller's outputs declared as functions of its input collections (@ambit/kube's
// krt-like runtime). Nothing here says "when X changes, also recompute Y": each output reads what it needs
// through ctx.fetch/fetchIndex, and the runtime recomputes exactly the outputs whose reads changed.
import { derive, join, singleton, type Collection, type Ctx } from "@ambit/kube";
import type { istio } from "@ambit/protocol";
import { bytesToIp, networkAddressKey, policyResourceName, serviceResourceName } from "@ambit/protocol";
import { convertAuthorizationPolicy, type AuthorizationOut, type AuthorizationPolicy, type Translation } from "./authorization.js";
import { STATIC_STRICT, convertPortLevel, inheritedMode, peerAuthenticationKeys, staticStrictPolicy, type PeerAuthentication } from "./peerauth.js";
import { serviceFor } from "./services.js";
import type { EndpointSlice, Gateway, MeshSettings, Namespace, Node, Pod, Service } from "./types.js";
import { accepts, waypointFromGateway, waypointRef, type Waypoint } from "./waypoints.js";
import { selectorMatches, workloadFor } from "./workloads.js";

export interface Inputs {
  namespaces: Collection<Namespace>;
  pods: Collection<Pod>;
  services: Collection<Service>;
  endpointSlices: Collection<EndpointSlice>;
  nodes: Collection<Node>;
  authorizationPolicies: Collection<AuthorizationPolicy>;
  peerAuthentications: Collection<PeerAuthentication>;
  gateways: Collection<Gateway>;
}

export interface PolicyTranslation extends Translation {
  key: string;
  namespace: string;
  /** matchLabels of a selector-scoped policy (null: not selector-scoped). */
  selector: Record<string, string> | null;
}

export interface AmbientIndex {
  workloads: Collection<istio.workload.Workload.$Properties>;
  services: Collection<istio.workload.Service.$Properties>;
  authorizations: Collection<AuthorizationOut>;
  /** Per AuthorizationPolicy: what was sent and the status to write on it. */
  policyTranslations: Collection<PolicyTranslation>;
  waypoints: Collection<Waypoint>;
}

const nsOf = (o: { metadata: { namespace?: string } }) => [o.metadata.namespace ?? ""];

export function buildAmbientIndex(inputs: Inputs, s: MeshSettings): AmbientIndex {
  const waypoints = derive(inputs.gateways, (gw) => waypointFromGateway(gw, s), { name: "waypoints", key: (w) => `${w.namespace}/${w.name}` });
  const servicesByNamespace = inputs.services.index("namespace", nsOf);
  // Selector-less Services reach pods through their EndpointSlices' targetRefs.
  const slicesByPod = inputs.endpointSlices.index("target-pod", (es) =>
    (es.endpoints ?? []).filter((e) => e.targetRef?.kind === "Pod" && e.targetRef.name).map((e) => `${e.targetRef!.namespace ?? es.metadata.namespace}/${e.targetRef!.name}`));
  const peerAuthByNamespace = inputs.peerAuthentications.index("namespace", nsOf);

  const policyTranslations = derive(inputs.authorizationPolicies, (p): PolicyTranslation => {
    const labels = p.spec?.selector?.matchLabels;
    return {
      key: policyResourceName(p.metadata.namespace, p.metadata.name),
      namespace: p.metadata.namespace,
      selector: labels && Object.keys(labels).length ? labels : null,
      ...convertAuthorizationPolicy(p, s.rootNamespace),
    };
  }, { name: "policy-translations" });
  const selectorPoliciesByNamespace = policyTranslations.index("namespace-selector", (t) => (t.authorization && t.selector ? [t.namespace] : []));

  const fromPolicies = derive(policyTranslations, (t) => t.authorization, { name: "authorizations-from-policies", key: (a) => policyResourceName(a.namespace!, a.name!) });
  const peerAuthsInScope = (ctx: Ctx, namespace: string) =>
    namespace === s.rootNamespace ? ctx.fetchIndex(peerAuthByNamespace, namespace)
      : [...ctx.fetchIndex(peerAuthByNamespace, namespace), ...ctx.fetchIndex(peerAuthByNamespace, s.rootNamespace)];
  const fromPortLevel = derive(inputs.peerAuthentications, (pa, ctx) =>
    pa.metadata.namespace === s.rootNamespace ? null : convertPortLevel(pa, inheritedMode(peerAuthsInScope(ctx, pa.metadata.namespace), pa.metadata.namespace, s.rootNamespace)),
  { name: "authorizations-from-peer-authentication", key: (a) => policyResourceName(a.namespace!, a.name!) });
  const staticStrict = singleton<AuthorizationOut>((ctx) => (ctx.list(inputs.peerAuthentications).length ? staticStrictPolicy(s.rootNamespace) : null),
    { name: "static-strict-policy", key: policyResourceName(s.rootNamespace, STATIC_STRICT) });
  const authorizations = join<AuthorizationOut>([fromPolicies, fromPortLevel, staticStrict], { name: "authorizations" });

  const services = derive(inputs.services, (svc, ctx) => {
    const ns = ctx.fetch(inputs.namespaces, svc.metadata.namespace!);
    const ref = waypointRef(svc.metadata, ns?.metadata);
    const wp = ref ? ctx.fetch(waypoints, `${ref.namespace}/${ref.name}`) : undefined;
    return serviceFor(svc, s, wp && accepts(wp.trafficType, "service") ? wp : null);
  }, { name: "services", key: (svc) => serviceResourceName(svc.namespace ?? "", svc.hostname ?? "") });

  const workloads = derive(inputs.pods, (pod, ctx) => {
    const namespace = pod.metadata.namespace!;
    const labels = pod.metadata.labels ?? {};
    const backing = ctx.fetchIndex(servicesByNamespace, namespace).filter((svc) => selectorMatches(svc.spec?.selector, labels));
    for (const es of ctx.fetchIndex(slicesByPod, `${namespace}/${pod.metadata.name}`)) {
      const name = es.metadata.labels?.["kubernetes.io/service-name"];
      const svc = name ? ctx.fetch(inputs.services, `${es.metadata.namespace}/${name}`) : undefined;
      if (svc && !Object.keys(svc.spec?.selector ?? {}).length && !backing.includes(svc)) backing.push(svc);
    }
    const ns = ctx.fetch(inputs.namespaces, namespace);
    const ref = waypointRef(pod.metadata, ns?.metadata);
    const wp = ref ? ctx.fetch(waypoints, `${ref.namespace}/${ref.name}`) : undefined;
    const scoped = namespace === s.rootNamespace ? [namespace] : [namespace, s.rootNamespace];
    const policies = scoped.flatMap((n) => ctx.fetchIndex(selectorPoliciesByNamespace, n))
      .filter((t) => Object.entries(t.selector!).every(([k, v]) => labels[k] === v)).map((t) => t.key);
    policies.push(...peerAuthenticationKeys(peerAuthsInScope(ctx, namespace), namespace, labels, s.rootNamespace));
    const node = pod.spec?.nodeName ? ctx.fetch(inputs.nodes, pod.spec.nodeName) : undefined;
    return workloadFor(pod, s, { services: backing, waypoint: wp && accepts(wp.trafficType, "workload") ? wp : null, policies, node });
  }, { name: "workloads", key: (w) => w.uid! });

  return { workloads, services, authorizations, policyTranslations, waypoints };
}

/** xDS aliases of a workload or service: "<network>/<ip>" per address. */
export function addressAliases(network: string, addresses: Uint8Array[]): string[] {
  return addresses.map((a) => networkAddressKey(network, bytesToIp(a)));
}
