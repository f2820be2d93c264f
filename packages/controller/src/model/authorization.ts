// AuthorizationPolicy (security.istio.io/v1) → istio.security.Authorization, as istiod converts it for ztunnel.
// Each policy rule becomes one Rule: one Clause for all `to` operations, one for all `from` sources, one per
// `when` condition. ztunnel enforces L4 only, and the conversion fails closed (see the package README, "HTTP
// attributes and unknown fields", for the reasoning):
//   - ALLOW: a rule using an L7 attribute, holding a value that cannot be read, or carrying a field this
//     translator does not know is dropped whole (it can never allow). A policy left without rules allows nothing.
//   - DENY: L7 attributes are stripped from each `to`/`from` entry and `when` list, and the L4 rest still denies
//     (more broadly). An entry that had only L7 attributes matches nothing (it is never widened to "everything"),
//     and a rule left with nothing L4 to check has no effect at ztunnel. A rule holding a value that cannot be read
//     or an unknown field denies everything in the policy's scope until it is fixed (it never becomes narrower).
//   - A `when` condition with a key Istio does not know, or without values and notValues, is such a value.
//   - A policy whose target is unclear (a selector with targetRef(s), a reference without kind or name) allows
//     nothing in its scope until fixed; a policy with only valid targetRef(s) is for waypoints and is not sent.
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
/** Every field of Istio's API at each level this translator reads; anything else is an unknown field. */
const KNOWN = {
  spec: ["selector", "targetRef", "targetRefs", "action", "provider", "rules"],
  selector: ["matchLabels"],
  rule: ["from", "to", "when"],
  from: ["source"],
  source: ["principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts", "ipBlocks", "notIpBlocks", ...L7_SOURCE],
  to: ["operation"],
  operation: ["ports", "notPorts", ...L7_OPERATION],
  when: ["key", "values", "notValues"],
} satisfies Record<string, string[]>;
const L4_WHEN = new Set(["source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"]);
/**
 * Every `when` key Istio accepts (its validation rejects any other): the L4 keys above, which ztunnel checks, and
 * those it cannot check (handled as HTTP attributes). A key outside this list is a typo or from a newer Istio, and
 * must not be read as an HTTP attribute that a DENY rule can drop.
 */
const OTHER_WHEN = new Set(["connection.sni", "remote.ip", "source.serviceAccount", "source.trustDomain",
  "request.auth.principal", "request.auth.audiences", "request.auth.presenter"]);
const MAP_WHEN = [/^request\.headers\[[^[\]]+\]$/, /^request\.auth\.claims(\[[^[\]]+\])+$/, /^experimental\.envoy\.filters\.[^[\]]+\[[^[\]]+\]$/];
const knownWhenKey = (key: string) => L4_WHEN.has(key) || OTHER_WHEN.has(key) || MAP_WHEN.some((re) => re.test(key));

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

/** Istio's admission checks of each condition: a known key, and at least one of values or notValues. */
function checkConditions(rule: PolicyRule, i: number): void {
  (rule.when ?? []).forEach((c, j) => {
    const w = `rules[${i}].when[${j}]`;
    if (typeof c.key !== "string" || !knownWhenKey(c.key)) throw new BadValue(`${w} has an unknown key ${JSON.stringify(c.key)}`);
    if (!c.values?.length && !c.notValues?.length) throw new BadValue(`${w} (${c.key}) has neither values nor notValues`);
  });
}

function whenMatch(c: Condition, i: number, j: number): Match {
  const w = `rules[${i}].when[${j}] (${c.key})`;
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

/** The fields of `o` (at `path`) that Istio's API does not have at that level. */
function unknownKeys(o: unknown, known: readonly string[], path: string): string[] {
  if (o === null || typeof o !== "object" || Array.isArray(o)) return [];
  return Object.keys(o).filter((k) => !known.includes(k)).map((k) => `${path}.${k}`);
}

/** Unknown fields anywhere in a rule: the rule, its from/to entries, their source/operation, its conditions. */
function unknownRuleFields(rule: PolicyRule, at: string): string[] {
  return [
    ...unknownKeys(rule, KNOWN.rule, at),
    ...(rule.from ?? []).flatMap((f, j) => [...unknownKeys(f, KNOWN.from, `${at}.from[${j}]`), ...unknownKeys(f?.source, KNOWN.source, `${at}.from[${j}].source`)]),
    ...(rule.to ?? []).flatMap((t, j) => [...unknownKeys(t, KNOWN.to, `${at}.to[${j}]`), ...unknownKeys(t?.operation, KNOWN.operation, `${at}.to[${j}].operation`)]),
    ...(rule.when ?? []).flatMap((c, j) => unknownKeys(c, KNOWN.when, `${at}.when[${j}]`)),
  ];
}

const l7OfSource = (s: Source = {}) => L7_SOURCE.filter((k) => s[k]?.length).map((k) => `from.source.${k}`);
const l7OfOperation = (o: Operation = {}) => L7_OPERATION.filter((k) => o[k]?.length).map((k) => `to.operation.${k}`);

/** The attributes of a rule ztunnel cannot enforce (HTTP attributes, non-L4 `when` keys). */
function l7Attributes(rule: PolicyRule): string[] {
  return [...new Set([
    ...(rule.from ?? []).flatMap((f) => l7OfSource(f.source)),
    ...(rule.to ?? []).flatMap((t) => l7OfOperation(t.operation)),
    ...(rule.when ?? []).filter((c) => !L4_WHEN.has(c.key)).map((c) => `when.${c.key}`),
  ])];
}

interface Converted {
  /** null: the rule can never match at ztunnel (it is left out). */
  rule: Rule | null;
  /** L7 attributes removed from entries that keep an L4 part, and L7 `when` conditions removed. */
  stripped: string[];
  /** `to[j]`/`from[j]` entries that had only L7 attributes: they match nothing at ztunnel. */
  inert: string[];
}

/**
 * One rule → one Rule. HTTP attributes are stripped (only DENY rules get here with any); an entry left with no
 * L4 field matches nothing (it is left out of its clause, never turned into "match everything"), so a clause
 * left without entries makes the rule unmatchable, and a rule whose every condition was L7 has nothing left to
 * check: both come back with `rule: null`.
 */
function convertRule(rule: PolicyRule, ns: string, i: number): Converted {
  const stripped: string[] = [];
  const inert: string[] = [];
  const clauses: Clause[] = [];
  let unmatchable = false;
  const clause = <E>(name: string, entries: E[] | undefined, match: (e: E) => Match, l7: (e: E) => string[]) => {
    if (!entries?.length) return;
    const matches: Match[] = [];
    entries.forEach((e, j) => {
      const m = match(e);
      const http = l7(e);
      const l4 = Object.keys(m).length > 0;
      if (http.length && !l4) inert.push(`${name}[${j}]`);
      else matches.push(m);
      if (http.length && l4) stripped.push(...http);
    });
    if (matches.length) clauses.push({ matches });
    else unmatchable = true;
  };
  clause("to", rule.to, (t) => operationMatch(t.operation ?? {}, i), (t) => l7OfOperation(t.operation));
  clause("from", rule.from, (f) => sourceMatch(f.source ?? {}, ns, i), (f) => l7OfSource(f.source));
  (rule.when ?? []).forEach((c, j) => {
    if (L4_WHEN.has(c.key)) clauses.push({ matches: [whenMatch(c, i, j)] });
    else stripped.push(`when.${c.key}`);
  });
  const nothingLeft = !clauses.length && (stripped.length > 0 || inert.length > 0);
  return { rule: unmatchable || nothingLeft ? null : { clauses }, stripped: [...new Set(stripped)], inert };
}

/** The status notes for a DENY rule converted with HTTP attributes. */
function denyNotes(at: string, l7: string[], c: Converted): string[] {
  if (!c.rule) {
    return [`${at} cannot match at ztunnel without its HTTP attributes (${l7.join(", ")}): it has no effect there; deploy a waypoint to enforce it`];
  }
  const notes: string[] = [];
  if (c.stripped.length) {
    notes.push(`${at} is enforced without its HTTP attributes (${c.stripped.join(", ")}): it denies every connection its L4 part matches, whatever the request, which denies more than requested`);
  }
  if (c.inert.length) {
    notes.push(`${at}: ${c.inert.join(", ")} ha${c.inert.length > 1 ? "ve" : "s"} only HTTP attributes and match${c.inert.length > 1 ? "" : "es"} nothing at ztunnel, so the rule denies only through its other entries; deploy a waypoint to enforce ${c.inert.length > 1 ? "them" : "it"}`);
  }
  return notes;
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
 * Why the policy's target cannot be trusted, or undefined: Istio rejects a selector together with targetRef(s),
 * targetRef together with targetRefs, and a reference without a kind or a name. Such a policy is neither sent to
 * ztunnel as a selector policy nor skipped as a waypoint policy (a stray `targetRef: {}` would silently disable a
 * DENY): it fails closed.
 */
function targetProblem(spec: NonNullable<AuthorizationPolicy["spec"]>): string | undefined {
  const refs: [string, unknown][] = [
    ...(spec.targetRef != null ? [["spec.targetRef", spec.targetRef] as [string, unknown]] : []),
    ...(spec.targetRefs ?? []).map((r, j): [string, unknown] => [`spec.targetRefs[${j}]`, r]),
  ];
  if (!refs.length) return undefined;
  if (spec.selector != null) return `spec.selector and ${spec.targetRef != null ? "spec.targetRef" : "spec.targetRefs"} cannot both be set`;
  if (spec.targetRef != null && spec.targetRefs?.length) return "spec.targetRef and spec.targetRefs cannot both be set";
  const nonEmpty = (v: unknown) => typeof v === "string" && v !== "";
  const bad = refs.filter(([, r]) => !nonEmpty((r as { kind?: unknown })?.kind) || !nonEmpty((r as { name?: unknown })?.name)).map(([at]) => at);
  return bad.length ? `${bad.join(", ")} need${bad.length > 1 ? "" : "s"} a kind and a name` : undefined;
}

/**
 * Converts one policy. `rootNamespace` is the mesh's root namespace (selector-less policies there are GLOBAL).
 */
export function convertAuthorizationPolicy(p: AuthorizationPolicy, rootNamespace: string): Translation {
  const spec = p.spec ?? {};
  const { name, namespace } = p.metadata;
  const hasSelector = spec.selector != null && Object.keys(spec.selector.matchLabels ?? {}).length > 0;
  // A policy that cannot be read, whose spec has a field we do not know (which might narrow its selector or carry
  // its rules), or whose target is unclear (Istio rejects these at admission), allows nothing in the scope we can
  // read until it is fixed.
  const unknown = [...unknownKeys(spec, KNOWN.spec, "spec"), ...unknownKeys(spec.selector, KNOWN.selector, "spec.selector")];
  const invalid = p.metadata.annotations?.[INVALID_ANNOTATION]
    ?? (unknown.length ? `unknown field${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}` : targetProblem(spec));
  if (invalid !== undefined) {
    const scope = hasSelector ? istio.security.Scope.WORKLOAD_SELECTOR : istio.security.Scope.NAMESPACE;
    return {
      authorization: { name, namespace, scope },
      condition: { type: "ZtunnelAccepted", status: "False", reason: "Invalid", message: `the policy cannot be read (${invalid}): its workloads allow nothing until it is fixed` },
    };
  }
  if (spec.targetRef != null || spec.targetRefs?.length) return { authorization: null, condition: null }; // a waypoint policy
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
  const scope = hasSelector ? istio.security.Scope.WORKLOAD_SELECTOR
    : namespace === rootNamespace ? istio.security.Scope.GLOBAL : istio.security.Scope.NAMESPACE;
  const rules: Rule[] = [];
  const notes: string[] = [];
  const failClosed = (at: string, why: string) => {
    if (action === "ALLOW") {
      notes.push(`${at} ${why}: it is omitted, so it allows nothing until fixed`);
    } else {
      rules.push({ clauses: [] }); // matches everything: deny all traffic in scope until fixed
      notes.push(`${at} ${why}: it denies all traffic in the policy's scope until fixed`);
    }
  };
  (spec.rules ?? []).forEach((rule, i) => {
    const at = `rules[${i}]`;
    const unknown = unknownRuleFields(rule, at);
    if (unknown.length) return failClosed(at, `has ${unknown.length > 1 ? "unknown fields" : "an unknown field"} (${unknown.join(", ")})`);
    let converted: Converted;
    let l7: string[];
    try {
      checkConditions(rule, i);
      l7 = l7Attributes(rule);
      if (action === "ALLOW" && l7.length) {
        notes.push(`${at} uses HTTP attributes (${l7.join(", ")}) that ztunnel cannot check: it is omitted, so it allows nothing, which is more restrictive than requested; deploy a waypoint to enforce it`);
        return;
      }
      converted = convertRule(rule, namespace, i);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      return failClosed(at, `is invalid (${err.message})`);
    }
    if (converted.rule) rules.push(converted.rule);
    if (l7.length) notes.push(...denyNotes(at, l7, converted));
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
