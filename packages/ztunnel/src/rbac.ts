// L4 authorization as ztunnel enforces it on every inbound connection (HBONE or plaintext):
//   1. dry-run DENY policies are evaluated and only reported;
//   2. any enforced DENY that matches rejects ("explicitly denied by: <ns>/<name>");
//   3. dry-run ALLOW policies are evaluated and only reported;
//   4. with no enforced ALLOW policy the connection is allowed;
//   5. otherwise one enforced ALLOW must match ("allow policies exist, but none allowed").
// Applicable policies: NAMESPACE-scope ones of the destination's namespace, GLOBAL ones, and the
// WORKLOAD_SELECTOR ones the destination workload lists. Matching keeps ztunnel's three "empty" cases apart: a
// policy without rules never matches, a rule without clauses always matches, and an all-empty Match is skipped.
import { cidrContains, istio, policyResourceName, type Identity } from "@ambit/protocol";

type Policy = istio.security.Authorization.$Properties;
type Match = istio.security.Match.$Properties;
type StringMatch = istio.security.StringMatch.$Properties;

export interface Connection {
  /** Client address as raw bytes (4 or 16), the TCP peer of the inbound connection. */
  srcIp: Uint8Array;
  /** The destination pod's address (after port translation). */
  dstIp: Uint8Array;
  /** The target port (not 15008). */
  dstPort: number;
  /** The peer's SPIFFE identity; null for plaintext. */
  srcIdentity: Identity | null;
}

export interface Destination {
  namespace: string;
  /** Keys "<ns>/<name>" of the WORKLOAD_SELECTOR policies that apply to it. */
  authorizationPolicies: readonly string[];
}

export interface Decision {
  allowed: boolean;
  reason: string;
  /** Dry-run policies that matched (reported, not enforced). */
  dryRun: string[];
}

/** Policies by xDS name, with the indexes evaluation needs. */
export class PolicyStore {
  private readonly byKey = new Map<string, Policy>();
  private readonly byNamespace = new Map<string, Set<string>>();

  set(policy: Policy): void {
    const key = policyResourceName(policy.namespace ?? "", policy.name ?? "");
    this.delete(key);
    this.byKey.set(key, policy);
    // GLOBAL policies are indexed under the empty namespace.
    const scope = policy.scope ?? istio.security.Scope.GLOBAL;
    if (scope === istio.security.Scope.WORKLOAD_SELECTOR) return;
    const ns = scope === istio.security.Scope.GLOBAL ? "" : policy.namespace ?? "";
    let set = this.byNamespace.get(ns);
    if (!set) this.byNamespace.set(ns, (set = new Set()));
    set.add(key);
  }

  delete(key: string): void {
    if (!this.byKey.delete(key)) return;
    for (const set of this.byNamespace.values()) set.delete(key);
  }

  all(): Policy[] {
    return [...this.byKey.values()];
  }

  get(key: string): Policy | undefined {
    return this.byKey.get(key);
  }

  /** The policies that apply to a destination (unknown selector keys are skipped). */
  applicable(dst: Destination): [string, Policy][] {
    const keys = new Set([...(this.byNamespace.get(dst.namespace) ?? []), ...(this.byNamespace.get("") ?? []), ...dst.authorizationPolicies]);
    return [...keys].flatMap((k) => { const p = this.byKey.get(k); return p ? [[k, p] as [string, Policy]] : []; });
  }
}

function stringMatches(m: StringMatch, value: string): boolean {
  if (m.exact != null) return value === m.exact;
  if (m.prefix != null) return value.startsWith(m.prefix);
  if (m.suffix != null) return value.endsWith(m.suffix);
  if (m.presence != null) return value !== "";
  return false; // an empty StringMatch matches nothing
}

const any = <T>(list: T[] | null | undefined, f: (x: T) => boolean) => (list ?? []).some(f);
const set = <T>(list: T[] | null | undefined) => (list?.length ?? 0) > 0;

function isEmpty(m: Match): boolean {
  return !(set(m.namespaces) || set(m.not_namespaces) || set(m.service_accounts) || set(m.not_service_accounts) || set(m.principals) ||
    set(m.not_principals) || set(m.source_ips) || set(m.not_source_ips) || set(m.destination_ips) || set(m.not_destination_ips) ||
    set(m.destination_ports) || set(m.not_destination_ports));
}

function matchMatches(m: Match, c: Connection): boolean {
  const id = c.srcIdentity;
  const principal = id ? `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` : null;
  const namespace = id?.namespace ?? "";
  const cidr = (ip: Uint8Array) => (a: istio.security.Address.$Properties) => cidrContains(a.address ?? new Uint8Array(), a.length ?? 0, ip);
  const sa = (s: istio.security.ServiceAccountMatch.$Properties) => !!id && s.namespace === id.namespace && s.serviceAccount === id.serviceAccount;
  const pair = <T>(yes: T[] | null | undefined, no: T[] | null | undefined, f: (x: T) => boolean) =>
    (!set(yes) || any(yes, f)) && !any(no, f);
  return pair(m.namespaces, m.not_namespaces, (s) => stringMatches(s, namespace)) &&
    pair(m.service_accounts, m.not_service_accounts, sa) &&
    pair(m.principals, m.not_principals, (s) => principal !== null && stringMatches(s, principal)) &&
    pair(m.source_ips, m.not_source_ips, cidr(c.srcIp)) &&
    pair(m.destination_ips, m.not_destination_ips, cidr(c.dstIp)) &&
    pair(m.destination_ports, m.not_destination_ports, (p) => p === c.dstPort);
}

/** Whether a policy matches a connection (OR of rules; AND of clauses; OR of non-empty matches). */
export function policyMatches(p: Policy, c: Connection): boolean {
  return (p.rules ?? []).some((rule) => (rule.clauses ?? []).every((clause) => {
    const matches = clause.matches ?? [];
    if (!matches.length) return true;
    return matches.some((m) => !isEmpty(m) && matchMatches(m, c));
  }));
}

export function authorize(store: PolicyStore, dst: Destination, c: Connection): Decision {
  const policies = store.applicable(dst);
  const dryRun: string[] = [];
  const deny = policies.filter(([, p]) => p.action === istio.security.Action.DENY);
  const allow = policies.filter(([, p]) => (p.action ?? istio.security.Action.ALLOW) === istio.security.Action.ALLOW);
  for (const [k, p] of deny) if (p.dry_run && policyMatches(p, c)) dryRun.push(k);
  for (const [k, p] of deny) if (!p.dry_run && policyMatches(p, c)) return { allowed: false, reason: `explicitly denied by: ${k}`, dryRun };
  for (const [k, p] of allow) if (p.dry_run && policyMatches(p, c)) dryRun.push(k);
  const enforced = allow.filter(([, p]) => !p.dry_run);
  if (!enforced.length) return { allowed: true, reason: "no allow policies", dryRun };
  const hit = enforced.find(([, p]) => policyMatches(p, c));
  return hit ? { allowed: true, reason: `allowed by: ${hit[0]}`, dryRun } : { allowed: false, reason: "allow policies exist, but none allowed", dryRun };
}
