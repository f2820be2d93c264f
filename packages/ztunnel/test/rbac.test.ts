// L4 authorization semantics of ztunnel (reference §6): policy selection, DENY-then-ALLOW, dry run, the three
// empty cases, and every Match field.
import { describe, expect, it } from "vitest";
import { ipToBytes, istio } from "@ambit/protocol";
import { PolicyStore, authorize, policyMatches, type Connection } from "../src/rbac.js";

const { Scope, Action } = istio.security;
type P = istio.security.Authorization.$Properties;
const id = (ns: string, sa: string, td = "cluster.local") => ({ trustDomain: td, namespace: ns, serviceAccount: sa });
const conn = (over: Partial<Connection> = {}): Connection => ({ srcIp: ipToBytes("10.244.1.5"), dstIp: ipToBytes("10.244.2.7"), dstPort: 8080, srcIdentity: id("web", "frontend"), ...over });
const rule = (...matches: istio.security.Match.$Properties[]) => ({ clauses: [{ matches }] });
const store = (...ps: P[]) => { const s = new PolicyStore(); ps.forEach((p) => s.set(p)); return s; };
const dst = { namespace: "shop", authorizationPolicies: ["shop/selected"] };

describe("which policies apply", () => {
  it("takes the destination's namespace policies, GLOBAL ones and its selector policies only", () => {
    const s = store(
      { name: "ns-deny", namespace: "shop", scope: Scope.NAMESPACE, action: Action.DENY, rules: [{}] },
      { name: "other-ns", namespace: "other", scope: Scope.NAMESPACE, action: Action.DENY, rules: [{}] },
      { name: "selected", namespace: "shop", scope: Scope.WORKLOAD_SELECTOR, rules: [{}] },
      { name: "not-selected", namespace: "shop", scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY, rules: [{}] },
      { name: "mesh", namespace: "istio-system", rules: [{}] }, // GLOBAL (scope 0)
    );
    expect(s.applicable(dst).map(([k]) => k).sort()).toEqual(["istio-system/mesh", "shop/ns-deny", "shop/selected"]);
    expect(authorize(s, dst, conn())).toMatchObject({ allowed: false, reason: "explicitly denied by: shop/ns-deny" });
    expect(s.applicable({ namespace: "x", authorizationPolicies: ["x/unknown"] }).map(([k]) => k)).toEqual(["istio-system/mesh"]);
  });
});

describe("evaluation order", () => {
  const deny = (matches: istio.security.Match.$Properties, dry = false): P => ({ name: "deny", namespace: "shop", scope: Scope.NAMESPACE, action: Action.DENY, rules: [rule(matches)], dry_run: dry });
  const allow = (name: string, matches: istio.security.Match.$Properties, dry = false): P => ({ name, namespace: "shop", scope: Scope.NAMESPACE, rules: [rule(matches)], dry_run: dry });

  it("allows without policies, denies on a DENY match before looking at ALLOW", () => {
    expect(authorize(store(), dst, conn())).toMatchObject({ allowed: true });
    const s = store(deny({ namespaces: [{ exact: "web" }] }), allow("all", { namespaces: [{ presence: {} }] }));
    expect(authorize(s, dst, conn())).toMatchObject({ allowed: false, reason: "explicitly denied by: shop/deny" });
    expect(authorize(s, dst, conn({ srcIdentity: id("api", "x") }))).toMatchObject({ allowed: true, reason: "allowed by: shop/all" });
  });

  it("denies when ALLOW policies exist but none matches", () => {
    const s = store(allow("only-api", { namespaces: [{ exact: "api" }] }));
    expect(authorize(s, dst, conn())).toEqual({ allowed: false, reason: "allow policies exist, but none allowed", dryRun: [] });
  });

  it("reports dry-run policies without enforcing them", () => {
    const s = store(deny({ namespaces: [{ exact: "web" }] }, true), allow("dry-allow", { namespaces: [{ exact: "api" }] }, true));
    const d = authorize(s, dst, conn());
    expect(d.allowed).toBe(true); // no enforced policy at all
    expect(d.dryRun).toEqual(["shop/deny"]);
  });
});

describe("the three empty cases", () => {
  const p = (rules: istio.security.Rule.$Properties[]): P => ({ name: "p", namespace: "shop", rules });
  it("a policy with no rules never matches; a rule with no clauses always does; an all-empty Match is skipped", () => {
    expect(policyMatches(p([]), conn())).toBe(false);
    expect(policyMatches(p([{}]), conn())).toBe(true);
    expect(policyMatches(p([{ clauses: [{}] }]), conn())).toBe(true); // a clause without matches counts as matched
    expect(policyMatches(p([rule({})]), conn())).toBe(false);
    expect(policyMatches(p([rule({}, { destination_ports: [8080] })]), conn())).toBe(true);
  });
});

describe("Match fields", () => {
  const m = (match: istio.security.Match.$Properties, c = conn()) => policyMatches({ rules: [rule(match)] }, c);
  const cidr = (ip: string, length: number) => ({ address: ipToBytes(ip), length });

  it("principals compare the identity without spiffe://, and never match plaintext", () => {
    expect(m({ principals: [{ exact: "cluster.local/ns/web/sa/frontend" }] })).toBe(true);
    expect(m({ principals: [{ suffix: "/sa/frontend" }] })).toBe(true);
    expect(m({ principals: [{ prefix: "cluster.local/ns/api/" }] })).toBe(false);
    expect(m({ principals: [{ presence: {} }] }, conn({ srcIdentity: null }))).toBe(false);
    expect(m({ not_principals: [{ presence: {} }] }, conn({ srcIdentity: null }))).toBe(true); // STRICT's shape: plaintext matches
    expect(m({ not_principals: [{ presence: {} }] })).toBe(false);
  });

  it("namespaces use the identity's namespace (empty without one) and service accounts ignore the trust domain", () => {
    expect(m({ namespaces: [{ exact: "web" }] })).toBe(true);
    expect(m({ not_namespaces: [{ exact: "web" }] })).toBe(false);
    expect(m({ namespaces: [{ presence: {} }] }, conn({ srcIdentity: null }))).toBe(false);
    expect(m({ service_accounts: [{ namespace: "web", serviceAccount: "frontend" }] }, conn({ srcIdentity: id("web", "frontend", "other.td") }))).toBe(true);
    expect(m({ service_accounts: [{ namespace: "web", serviceAccount: "frontend" }] }, conn({ srcIdentity: null }))).toBe(false);
    expect(m({ not_service_accounts: [{ namespace: "web", serviceAccount: "frontend" }] })).toBe(false);
  });

  it("source and destination IPs are CIDRs, ports are target ports", () => {
    expect(m({ source_ips: [cidr("10.244.1.0", 24)] })).toBe(true);
    expect(m({ source_ips: [cidr("10.244.9.0", 24)] })).toBe(false);
    expect(m({ not_source_ips: [cidr("10.244.0.0", 16)] })).toBe(false);
    expect(m({ destination_ips: [cidr("10.244.2.7", 32)] })).toBe(true);
    expect(m({ not_destination_ips: [cidr("10.0.0.0", 8)] })).toBe(false);
    expect(m({ destination_ports: [80, 8080] })).toBe(true);
    expect(m({ not_destination_ports: [8080] })).toBe(false);
    expect(m({ source_ips: [cidr("fd00::", 8)] }, conn({ srcIp: ipToBytes("fd00::5") }))).toBe(true);
    expect(m({ source_ips: [cidr("10.0.0.0", 8)] }, conn({ srcIp: ipToBytes("fd00::5") }))).toBe(false);
  });

  it("ANDs the fields of a Match and ORs the values of a field", () => {
    expect(m({ namespaces: [{ exact: "api" }, { exact: "web" }], destination_ports: [8080] })).toBe(true);
    expect(m({ namespaces: [{ exact: "web" }], destination_ports: [9090] })).toBe(false);
    expect(policyMatches({ rules: [{ clauses: [{ matches: [{ namespaces: [{ exact: "web" }] }] }, { matches: [{ destination_ports: [9090] }] }] }] }, conn())).toBe(false);
  });
});
