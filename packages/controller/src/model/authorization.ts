// AuthorizationPolicy (security.istio.io/v1) → istio.security.Authorization, as istiod converts it for ztunnel.
// Each policy rule becomes one Rule: one Clause for all `to` operations, one for all `from` sources, one per
// `when` condition. ztunnel enforces L4 only, and the conversion fails closed:
//   - ALLOW: a rule using an L7 attribute, or holding a value that cannot be read, is dropped whole (it can never
//     allow). A policy left without rules allows nothing.
//   - DENY: L7 attributes are stripped and the L4 rest still denies (more broadly); a rule holding a value that
//     cannot be read denies everything in the policy's scope until it is fixed.
// Every such change is reported in the result's `status`, which the controller writes on the object.
import { isIPv4, isIPv6 } from "node:net";
import { ipToBytes, istio, policyResourceName } from "@ambit/protocol";

type StringMatch = istio.security.StringMatch.$Properties;
type Match = istio.security.Match.$Properties;
type Clause = istio.security.Clause.$Properties;
type Rule = istio.security.Rule.$Properties;
export type AuthorizationOut = istio.security.Authorization.$Properties;

export interface Source {
  principals?: string[]; notPrincipals?: string[];
  requestPrincipals?: string[]; notRequestPrincipals?: string[];
  namespaces?: string[]; notNamespaces?: string[];
  serviceAccounts?: string[]; notServiceAccounts?: string[];
  ipBlocks?: string[]; notIpBlocks?: string[];
  remoteIpBlocks?: string[]; notRemoteIpBlocks?: string[];
}
export interface Operation {
  hosts?: string[]; notHosts?: string[];
  ports?: string[]; notPorts?: string[];
  methods?: string[]; notMethods?: string[];
  paths?: string[]; notPaths?: string[];
}
export interface Condition {
  key: string;
  values?: string[];
  notValues?: string[];
}
export interface PolicyRule {
  from?: { source?: Source }[];
  to?: { operation?: Operation }[];
  when?: Condition[];
}
export interface AuthorizationPolicy {
  metadata: { name: string; namespace: string; annotations?: Record<string, string> };
  spec?: {
    selector?: { matchLabels?: Record<string, string> } | null;
    targetRef?: unknown;
    targetRefs?: unknown[];
    action?: string;
    provider?: unknown;
    rules?: PolicyRule[];
  };
}

export interface ConditionStatus {
  type: string;
  status: "True" | "False";
  reason: string;
  message: string;
}

export interface Translation {
  /** The resource to push, or null when the policy is not for ztunnel. */
  authorization: AuthorizationOut | null;
  /** The ZtunnelAccepted condition to write on the policy (null: nothing to say, e.g. waypoint policies). */
  condition: ConditionStatus | null;
}

const L7_SOURCE: (keyof Source)[] = ["requestPrincipals", "notRequestPrincipals", "remoteIpBlocks", "notRemoteIpBlocks"];
const L7_OPERATION: (keyof Operation)[] = ["hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"];
const L4_WHEN = new Set(["source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"]);

class BadValue extends Error {}

/** Istio's string syntax: "*" any non-empty, "*x" suffix, "x*" prefix, else exact. A "*" elsewhere is an error. */
export function stringMatch(value: string, what: string): StringMatch {
  if (value === "") throw new BadValue(`${what}: empty value`);
  if (value === "*") return { presence: {} };
  const inner = value.slice(1, -1);
  if (inner.includes("*")) throw new BadValue(`${what} "${value}": "*" is only allowed at the start or the end`);
  if (value.startsWith("*")) return { suffix: value.slice(1) };
  if (value.endsWith("*")) return { prefix: value.slice(0, -1) };
  return { exact: value };
}

function principal(value: string, what: string): StringMatch {
  if (value.startsWith("spiffe://")) throw new BadValue(`${what} "${value}": write principals without "spiffe://" (e.g. cluster.local/ns/default/sa/app)`);
  return stringMatch(value, what);
}

/** "10.0.0.0/8" or "10.1.2.3" → {address bytes, length}. */
export function cidr(value: string, what: string): istio.security.Address.$Properties {
  const [ip, len, extra] = value.split("/");
  if (extra !== undefined || !ip || !(isIPv4(ip) || isIPv6(ip))) throw new BadValue(`${what} "${value}" is not an IP address or CIDR`);
  const bits = isIPv4(ip) ? 32 : 128;
  const length = len === undefined ? bits : Number(len);
  if (!/^\d+$/.test(len ?? "0") || length > bits) throw new BadValue(`${what} "${value}" has an invalid prefix length`);
  return { address: ipToBytes(ip), length };
}

export function port(value: string, what: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw new BadValue(`${what} "${value}" is not a port number (1-65535)`);
  return Number(value);
}

function serviceAccount(value: string, policyNs: string, what: string): istio.security.ServiceAccountMatch.$Properties {
  const parts = value.split("/");
  if (parts.length > 2 || parts.some((p) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(p))) {
    throw new BadValue(`${what} "${value}" is not "<namespace>/<service account>" or "<service account>"`);
  }
  return parts.length === 2 ? { namespace: parts[0], serviceAccount: parts[1] } : { namespace: policyNs, serviceAccount: parts[0] };
}

const each = <T>(values: string[] | undefined, f: (v: string) => T): T[] => (values ?? []).map(f);

function setIfAny<K extends keyof Match>(m: Match, key: K, values: NonNullable<Match[K]>): void {
  if ((values as unknown[]).length) m[key] = values;
}

function sourceMatch(s: Source, ns: string, i: number): Match {
  const m: Match = {};
  const w = (f: string) => `rules[${i}].from.source.${f}`;
  setIfAny(m, "principals", each(s.principals, (v) => principal(v, w("principals"))));
  setIfAny(m, "not_principals", each(s.notPrincipals, (v) => principal(v, w("notPrincipals"))));
  setIfAny(m, "namespaces", each(s.namespaces, (v) => stringMatch(v, w("namespaces"))));
  setIfAny(m, "not_namespaces", each(s.notNamespaces, (v) => stringMatch(v, w("notNamespaces"))));
  setIfAny(m, "service_accounts", each(s.serviceAccounts, (v) => serviceAccount(v, ns, w("serviceAccounts"))));
  setIfAny(m, "not_service_accounts", each(s.notServiceAccounts, (v) => serviceAccount(v, ns, w("notServiceAccounts"))));
  setIfAny(m, "source_ips", each(s.ipBlocks, (v) => cidr(v, w("ipBlocks"))));
  setIfAny(m, "not_source_ips", each(s.notIpBlocks, (v) => cidr(v, w("notIpBlocks"))));
  return m;
}

function operationMatch(o: Operation, i: number): Match {
  const m: Match = {};
  setIfAny(m, "destination_ports", each(o.ports, (v) => port(v, `rules[${i}].to.operation.ports`)));
  setIfAny(m, "not_destination_ports", each(o.notPorts, (v) => port(v, `rules[${i}].to.operation.notPorts`)));
  return m;
}

function whenMatch(c: Condition, i: number): Match {
  const w = `rules[${i}].when[${c.key}]`;
  const m: Match = {};
  const v = c.values;
  const nv = c.notValues;
  switch (c.key) {
    case "source.ip":
      setIfAny(m, "source_ips", each(v, (x) => cidr(x, w)));
      setIfAny(m, "not_source_ips", each(nv, (x) => cidr(x, w)));
      break;
    case "source.namespace":
      setIfAny(m, "namespaces", each(v, (x) => stringMatch(x, w)));
      setIfAny(m, "not_namespaces", each(nv, (x) => stringMatch(x, w)));
      break;
    case "source.principal":
      setIfAny(m, "principals", each(v, (x) => principal(x, w)));
      setIfAny(m, "not_principals", each(nv, (x) => principal(x, w)));
      break;
    case "destination.ip":
      setIfAny(m, "destination_ips", each(v, (x) => cidr(x, w)));
      setIfAny(m, "not_destination_ips", each(nv, (x) => cidr(x, w)));
      break;
    case "destination.port":
      setIfAny(m, "destination_ports", each(v, (x) => port(x, w)));
      setIfAny(m, "not_destination_ports", each(nv, (x) => port(x, w)));
      break;
  }
  return m;
}

/** Whether a rule uses anything ztunnel cannot enforce (HTTP attributes, non-L4 `when` keys). */
function l7Attributes(rule: PolicyRule): string[] {
  const found = new Set<string>();
  for (const f of rule.from ?? []) for (const k of L7_SOURCE) if (f.source?.[k]?.length) found.add(`from.source.${k}`);
  for (const t of rule.to ?? []) for (const k of L7_OPERATION) if (t.operation?.[k]?.length) found.add(`to.operation.${k}`);
  for (const c of rule.when ?? []) if (!L4_WHEN.has(c.key)) found.add(`when.${c.key}`);
  return [...found];
}

function convertRule(rule: PolicyRule, ns: string, i: number): Rule {
  const clauses: Clause[] = [];
  if (rule.to?.length) clauses.push({ matches: rule.to.map((t) => operationMatch(t.operation ?? {}, i)) });
  if (rule.from?.length) clauses.push({ matches: rule.from.map((f) => sourceMatch(f.source ?? {}, ns, i)) });
  for (const c of rule.when ?? []) if (L4_WHEN.has(c.key)) clauses.push({ matches: [whenMatch(c, i)] });
  return { clauses };
}

function accepted(message: string, ok = true): ConditionStatus {
  return { type: "ZtunnelAccepted", status: ok ? "True" : "False", reason: ok ? "Accepted" : "UnsupportedValue", message };
}

/** Annotation marking a stand-in for a policy that failed validation (its value says why). */
export const INVALID_ANNOTATION = "ambit.dev/invalid";

/**
 * A fail-closed stand-in for an AuthorizationPolicy that cannot be read at all: an ALLOW policy without rules in
 * the same scope (its selector when that much is readable), so the workloads it meant to protect allow nothing
 * until it is fixed, rather than falling open because the policy vanished.
 */
export function failClosedStandIn(raw: unknown, problem: string): AuthorizationPolicy | null {
  const o = raw as { metadata?: { name?: unknown; namespace?: unknown }; spec?: { selector?: { matchLabels?: unknown } } };
  const name = o?.metadata?.name;
  const namespace = o?.metadata?.namespace;
  if (typeof name !== "string" || typeof namespace !== "string") return null;
  const labels = o.spec?.selector?.matchLabels;
  const valid = labels && typeof labels === "object" && Object.values(labels).every((v) => typeof v === "string");
  return {
    metadata: { name, namespace, annotations: { [INVALID_ANNOTATION]: problem } },
    spec: { action: "ALLOW", rules: [], ...(valid ? { selector: { matchLabels: labels as Record<string, string> } } : {}) },
  };
}

/**
 * Converts one policy. `rootNamespace` is the mesh's root namespace (selector-less policies there are GLOBAL).
 */
export function convertAuthorizationPolicy(p: AuthorizationPolicy, rootNamespace: string): Translation {
  const spec = p.spec ?? {};
  const { name, namespace } = p.metadata;
  if (spec.targetRef || spec.targetRefs?.length) return { authorization: null, condition: null }; // a waypoint policy
  const invalid = p.metadata.annotations?.[INVALID_ANNOTATION];
  if (invalid !== undefined) {
    const scope = spec.selector?.matchLabels ? istio.security.Scope.WORKLOAD_SELECTOR : istio.security.Scope.NAMESPACE;
    return {
      authorization: { name, namespace, scope },
      condition: { type: "ZtunnelAccepted", status: "False", reason: "Invalid", message: `the policy cannot be read (${invalid}): its workloads allow nothing until it is fixed` },
    };
  }
  if (p.metadata.annotations?.["istio.io/dry-run"] === "true") {
    return { authorization: null, condition: accepted("dry-run policies are not sent to ztunnel: it only enforces real ones", false) };
  }
  const action = spec.action ?? "ALLOW";
  if (action === "CUSTOM" || action === "AUDIT") {
    return { authorization: null, condition: accepted(`ztunnel does not support the ${action} action`, false) };
  }
  if (action !== "ALLOW" && action !== "DENY") {
    return { authorization: null, condition: accepted(`unknown action "${action}"`, false) };
  }
  const hasSelector = spec.selector != null && Object.keys(spec.selector.matchLabels ?? {}).length > 0;
  const scope = hasSelector ? istio.security.Scope.WORKLOAD_SELECTOR
    : namespace === rootNamespace ? istio.security.Scope.GLOBAL : istio.security.Scope.NAMESPACE;
  const rules: Rule[] = [];
  const notes: string[] = [];
  (spec.rules ?? []).forEach((rule, i) => {
    const l7 = l7Attributes(rule);
    if (action === "ALLOW" && l7.length) {
      notes.push(`rules[${i}] uses HTTP attributes (${l7.join(", ")}) that ztunnel cannot enforce: it is omitted, which is more restrictive than requested`);
      return;
    }
    try {
      rules.push(convertRule(rule, namespace, i));
      if (l7.length) notes.push(`rules[${i}] is enforced without its HTTP attributes (${l7.join(", ")}): this denies more than requested`);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      if (action === "ALLOW") {
        notes.push(`rules[${i}] is invalid and omitted: ${err.message}`);
      } else {
        rules.push({ clauses: [] }); // matches everything: deny all traffic in scope until fixed
        notes.push(`rules[${i}] is invalid (${err.message}): it denies all traffic to the selected workloads until fixed`);
      }
    }
  });
  const authorization: AuthorizationOut = {
    name, namespace,
    // Zero values are left out, as Istio's encoder leaves them out (same bytes on the wire).
    ...(scope ? { scope } : {}),
    ...(action === "DENY" ? { action: istio.security.Action.DENY } : {}),
    ...(rules.length ? { rules } : {}),
  };
  const condition = notes.length ? accepted(notes.join("; "), false) : accepted(`ztunnel enforces ${policyResourceName(namespace, name)}`);
  return { authorization, condition };
}
