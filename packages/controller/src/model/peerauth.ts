// PeerAuthentication (security.istio.io/v1) as istiod expresses it to ztunnel: DENY policies.
//   - STRICT: workloads whose effective mode is STRICT reference the static policy
//     "<root>/istio_converted_static_strict", which denies any connection without an mTLS identity. That policy
//     exists only while at least one PeerAuthentication exists.
//   - Port-level modes of a workload-selector PeerAuthentication (outside the root namespace) become
//     "<ns>/converted_peer_authentication_<name>": STRICT except some ports, or permissive except some ports.
//   - PERMISSIVE and DISABLE send nothing (ztunnel accepts plaintext unless told otherwise).
// Effective mode: workload-level (a selector matching the pod) over namespace-level over mesh-level (the root
// namespace without selector); UNSET inherits; the oldest policy wins within a level; default PERMISSIVE.
import { istio } from "@ambit/protocol";
import type { AuthorizationOut } from "./authorization.js";

export type MtlsMode = "UNSET" | "DISABLE" | "PERMISSIVE" | "STRICT";

export interface PeerAuthentication {
  metadata: { name: string; namespace: string; creationTimestamp?: string | Date };
  spec?: {
    selector?: { matchLabels?: Record<string, string> } | null;
    mtls?: { mode?: MtlsMode } | null;
    portLevelMtls?: Record<string, { mode?: MtlsMode }> | null;
  };
}

export const STATIC_STRICT = "istio_converted_static_strict";
export const convertedName = (name: string) => `converted_peer_authentication_${name}`;

const PRESENCE = [{ presence: {} }];

/** The static policy, in the root namespace. */
export function staticStrictPolicy(rootNamespace: string): AuthorizationOut {
  return {
    name: STATIC_STRICT, namespace: rootNamespace, scope: istio.security.Scope.WORKLOAD_SELECTOR, action: istio.security.Action.DENY,
    rules: [{ clauses: [{ matches: [{ not_principals: PRESENCE }] }] }],
  };
}

const hasSelector = (pa: PeerAuthentication) => Object.keys(pa.spec?.selector?.matchLabels ?? {}).length > 0;
const time = (pa: PeerAuthentication) => new Date(pa.metadata.creationTimestamp ?? 0).getTime();
const oldest = (list: PeerAuthentication[]) => [...list].sort((a, b) => time(a) - time(b) || a.metadata.name.localeCompare(b.metadata.name))[0];

export function selects(pa: PeerAuthentication, labels: Record<string, string>): boolean {
  return Object.entries(pa.spec?.selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
}

function mode(pa: PeerAuthentication | undefined): MtlsMode {
  return pa?.spec?.mtls?.mode ?? "UNSET";
}

/** The mode a namespace's workloads inherit: namespace-level, else mesh-level, else PERMISSIVE. */
export function inheritedMode(all: PeerAuthentication[], namespace: string, rootNamespace: string): MtlsMode {
  const ns = mode(oldest(all.filter((p) => p.metadata.namespace === namespace && !hasSelector(p))));
  if (ns !== "UNSET") return ns;
  const mesh = mode(oldest(all.filter((p) => p.metadata.namespace === rootNamespace && !hasSelector(p))));
  return mesh === "UNSET" ? "PERMISSIVE" : mesh;
}

/** The workload-level PeerAuthentication that applies to a pod, if any (outside the root namespace). */
export function workloadPolicy(all: PeerAuthentication[], namespace: string, labels: Record<string, string>): PeerAuthentication | undefined {
  return oldest(all.filter((p) => p.metadata.namespace === namespace && hasSelector(p) && selects(p, labels)));
}

const strictish = (m: MtlsMode) => m === "STRICT";

/**
 * The converted DENY policy of a workload-selector PeerAuthentication with port-level modes, given the mode its
 * workloads inherit; null when the ports change nothing.
 */
export function convertPortLevel(pa: PeerAuthentication, inherited: MtlsMode): AuthorizationOut | null {
  if (!hasSelector(pa) || !pa.spec?.portLevelMtls) return null;
  const own = mode(pa) === "UNSET" ? inherited : mode(pa);
  const ports = Object.entries(pa.spec.portLevelMtls)
    .filter(([p, v]) => /^\d+$/.test(p) && v.mode && v.mode !== "UNSET" && strictish(v.mode) !== strictish(own))
    .map(([p]) => Number(p)).sort((a, b) => a - b);
  if (!ports.length) return null;
  const match = strictish(own) ? { not_principals: PRESENCE, not_destination_ports: ports } : { not_principals: PRESENCE, destination_ports: ports };
  return {
    name: convertedName(pa.metadata.name), namespace: pa.metadata.namespace, scope: istio.security.Scope.WORKLOAD_SELECTOR,
    action: istio.security.Action.DENY, rules: [{ clauses: [{ matches: [match] }] }],
  };
}

/**
 * The PeerAuthentication-derived policy keys a workload lists in `authorization_policies`.
 */
export function peerAuthenticationKeys(all: PeerAuthentication[], namespace: string, labels: Record<string, string>, rootNamespace: string): string[] {
  if (!all.length) return [];
  const inherited = inheritedMode(all, namespace, rootNamespace);
  const wl = namespace === rootNamespace ? undefined : workloadPolicy(all, namespace, labels);
  const effective = wl && mode(wl) !== "UNSET" ? mode(wl) : inherited;
  if (wl && convertPortLevel(wl, inherited)) return [`${namespace}/${convertedName(wl.metadata.name)}`];
  return strictish(effective) ? [`${rootNamespace}/${STATIC_STRICT}`] : [];
}
