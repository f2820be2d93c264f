// Golden translation tests: AuthorizationPolicy → istio.security.Authorization (every field of the reference,
// the L7 and malformed fail-closed cases), and PeerAuthentication → the DENY policies istiod sends.
import { describe, expect, it } from "vitest";
import { istio } from "@ambit/protocol";
import { AuthorizationPolicySchema } from "@ambit/kube";
import { convertAuthorizationPolicy, failClosedStandIn, type AuthorizationPolicy, type PolicyRule } from "../src/model/authorization.js";
import {
  STATIC_STRICT, convertPortLevel, inheritedMode, peerAuthenticationKeys, staticStrictPolicy, type PeerAuthentication,
} from "../src/model/peerauth.js";

const { Scope, Action } = istio.security;
const ROOT = "istio-system";
const v4 = (s: string) => Uint8Array.from(s.split(".").map(Number));
const policy = (spec: AuthorizationPolicy["spec"], meta: Partial<AuthorizationPolicy["metadata"]> = {}): AuthorizationPolicy =>
  ({ metadata: { name: "p", namespace: "app", ...meta }, spec });
/** Round-trips through the wire encoding, so the test compares what ztunnel would receive. */
const wire = (a: ReturnType<typeof convertAuthorizationPolicy>["authorization"]) =>
  istio.security.Authorization.toObject(istio.security.Authorization.decode(istio.security.Authorization.encode(a!).finish()), { defaults: false, bytes: Array });

describe("AuthorizationPolicy → Authorization", () => {
  it("maps every L4 field into Rule → Clause → Match", () => {
    const t = convertAuthorizationPolicy(policy({
      selector: { matchLabels: { app: "db" } },
      action: "ALLOW",
      rules: [{
        from: [
          { source: { principals: ["cluster.local/ns/web/sa/frontend", "*/sa/admin"], notPrincipals: ["cluster.local/ns/web/sa/bad*"],
            namespaces: ["web", "prod-*"], notNamespaces: ["*-test"], serviceAccounts: ["web/frontend", "local-sa"], notServiceAccounts: ["web/old"],
            ipBlocks: ["10.244.0.0/16", "10.1.2.3"], notIpBlocks: ["10.244.9.0/24"] } },
          { source: { namespaces: ["*"] } },
        ],
        to: [{ operation: { ports: ["5432"], notPorts: ["9000"] } }, { operation: { ports: ["6432"] } }],
        when: [
          { key: "source.ip", values: ["192.168.0.0/16"], notValues: ["192.168.1.1"] },
          { key: "source.namespace", values: ["web"], notValues: ["kube-system"] },
          { key: "source.principal", values: ["cluster.local/ns/web/sa/frontend"], notValues: ["*/sa/default"] },
          { key: "destination.ip", values: ["10.244.1.0/24"], notValues: ["10.244.1.99"] },
          { key: "destination.port", values: ["5432"], notValues: ["5433"] },
        ],
      }],
    }), ROOT);
    expect(t.condition).toEqual({ type: "ZtunnelAccepted", status: "True", reason: "Accepted", message: "ztunnel enforces app/p" });
    expect(wire(t.authorization)).toEqual({
      name: "p", namespace: "app", scope: Scope.WORKLOAD_SELECTOR,
      rules: [{ clauses: [
        { matches: [{ destination_ports: [5432], not_destination_ports: [9000] }, { destination_ports: [6432] }] },
        { matches: [
          {
            principals: [{ exact: "cluster.local/ns/web/sa/frontend" }, { suffix: "/sa/admin" }],
            not_principals: [{ prefix: "cluster.local/ns/web/sa/bad" }],
            namespaces: [{ exact: "web" }, { prefix: "prod-" }], not_namespaces: [{ suffix: "-test" }],
            service_accounts: [{ namespace: "web", serviceAccount: "frontend" }, { namespace: "app", serviceAccount: "local-sa" }],
            not_service_accounts: [{ namespace: "web", serviceAccount: "old" }],
            source_ips: [{ address: [...v4("10.244.0.0")], length: 16 }, { address: [...v4("10.1.2.3")], length: 32 }],
            not_source_ips: [{ address: [...v4("10.244.9.0")], length: 24 }],
          },
          { namespaces: [{ presence: {} }] },
        ] },
        { matches: [{ source_ips: [{ address: [192, 168, 0, 0], length: 16 }], not_source_ips: [{ address: [192, 168, 1, 1], length: 32 }] }] },
        { matches: [{ namespaces: [{ exact: "web" }], not_namespaces: [{ exact: "kube-system" }] }] },
        { matches: [{ principals: [{ exact: "cluster.local/ns/web/sa/frontend" }], not_principals: [{ suffix: "/sa/default" }] }] },
        { matches: [{ destination_ips: [{ address: [10, 244, 1, 0], length: 24 }], not_destination_ips: [{ address: [10, 244, 1, 99], length: 32 }] }] },
        { matches: [{ destination_ports: [5432], not_destination_ports: [5433] }] },
      ] }],
    });
  });

  it("sets the scope from the selector and the namespace", () => {
    expect(convertAuthorizationPolicy(policy({ action: "DENY", rules: [{}] }), ROOT).authorization).toMatchObject({ scope: Scope.NAMESPACE, action: Action.DENY });
    expect(convertAuthorizationPolicy(policy({ rules: [{}] }, { namespace: ROOT }), ROOT).authorization!.scope).toBeUndefined(); // GLOBAL = 0, left out on the wire
    expect(convertAuthorizationPolicy(policy({ selector: { matchLabels: {} }, rules: [{}] }), ROOT).authorization!.scope).toBe(Scope.NAMESPACE);
  });

  it("keeps the three empty cases distinct: no rules, an empty rule, an empty source", () => {
    expect(wire(convertAuthorizationPolicy(policy({}), ROOT).authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE });
    expect(wire(convertAuthorizationPolicy(policy({ rules: [{}] }), ROOT).authorization).rules).toEqual([{}]);
    expect(wire(convertAuthorizationPolicy(policy({ rules: [{ from: [{ source: {} }] }] }), ROOT).authorization).rules).toEqual([{ clauses: [{ matches: [{}] }] }]);
  });

  it("sends nothing for waypoint policies, and refuses CUSTOM, AUDIT and dry-run with a status", () => {
    expect(convertAuthorizationPolicy(policy({ targetRefs: [{ kind: "Gateway", name: "wp" }], rules: [{}] }), ROOT)).toEqual({ authorization: null, condition: null });
    expect(convertAuthorizationPolicy(policy({ targetRef: { kind: "Service", name: "s" } }), ROOT).authorization).toBeNull();
    for (const action of ["CUSTOM", "AUDIT"]) {
      const t = convertAuthorizationPolicy(policy({ action, rules: [{}] }), ROOT);
      expect(t.authorization).toBeNull();
      expect(t.condition).toMatchObject({ status: "False", reason: "UnsupportedValue", message: `ztunnel does not support the ${action} action` });
    }
    const dry = convertAuthorizationPolicy(policy({ rules: [{}] }, { annotations: { "istio.io/dry-run": "true" } }), ROOT);
    expect(dry.authorization).toBeNull();
    expect(dry.condition?.status).toBe("False");
  });

  describe("HTTP attributes: ztunnel enforces L4 only", () => {
    const unsupported = (message: string) => ({ type: "ZtunnelAccepted", status: "False", reason: "UnsupportedValue", message });
    const ports8080 = { clauses: [{ matches: [{ destination_ports: [8080] }] }] };

    it("ALLOW: omits every rule with an HTTP attribute (methods, requestPrincipals, remoteIpBlocks, a non-L4 when key), keeping the others", () => {
      const t = convertAuthorizationPolicy(policy({ rules: [
        { to: [{ operation: { methods: ["GET"], ports: ["80"] } }] },
        { from: [{ source: { requestPrincipals: ["*"] } }] },
        { from: [{ source: { remoteIpBlocks: ["1.2.3.4"], namespaces: ["web"] } }] },
        { when: [{ key: "request.headers[x]", values: ["y"] }, { key: "source.namespace", values: ["web"] }] },
        { from: [{ source: { namespaces: ["web"] } }] },
      ] }), ROOT);
      expect(wire(t.authorization).rules).toEqual([{ clauses: [{ matches: [{ namespaces: [{ exact: "web" }] }] }] }]);
      const omitted = (i: number, attrs: string) =>
        `rules[${i}] uses HTTP attributes (${attrs}) that ztunnel cannot check: it is omitted, so it allows nothing, which is more restrictive than requested; deploy a waypoint to enforce it`;
      expect(t.condition).toEqual(unsupported([
        omitted(0, "to.operation.methods"), omitted(1, "from.source.requestPrincipals"), omitted(2, "from.source.remoteIpBlocks"), omitted(3, "when.request.headers[x]"),
      ].join("; ")));
    });

    it("ALLOW: a policy whose every rule is L7 is sent without rules, so it allows nothing", () => {
      const t = convertAuthorizationPolicy(policy({ rules: [{ to: [{ operation: { paths: ["/admin"] } }] }] }), ROOT);
      expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE });
      expect(t.condition!.message).toMatch(/^rules\[0\] uses HTTP attributes \(to\.operation\.paths\).*more restrictive than requested/);
    });

    it("DENY with an L4 remainder: strips the HTTP attributes (in the entry, and L7 when conditions) and denies more broadly", () => {
      const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [
        { to: [{ operation: { methods: ["POST"], ports: ["8080"] } }], when: [{ key: "request.auth.claims[iss]", values: ["x"] }] },
        { from: [{ source: { remoteIpBlocks: ["1.2.3.4"], ipBlocks: ["10.0.0.0/8"], notRequestPrincipals: ["*"] } }] },
      ] }), ROOT);
      expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE, action: Action.DENY, rules: [
        ports8080,
        { clauses: [{ matches: [{ source_ips: [{ address: [10, 0, 0, 0], length: 8 }] }] }] },
      ] });
      expect(t.condition).toEqual(unsupported(
        "rules[0] is enforced without its HTTP attributes (to.operation.methods, when.request.auth.claims[iss]): it denies every connection its L4 part matches, whatever the request, which denies more than requested; " +
        "rules[1] is enforced without its HTTP attributes (from.source.notRequestPrincipals, from.source.remoteIpBlocks): it denies every connection its L4 part matches, whatever the request, which denies more than requested",
      ));
    });

    it.each([
      ["to.operation.methods", { to: [{ operation: { methods: ["DELETE"] } }] }],
      ["from.source.requestPrincipals", { from: [{ source: { requestPrincipals: ["*"] } }] }],
      ["from.source.remoteIpBlocks", { from: [{ source: { remoteIpBlocks: ["1.2.3.4/32"] } }] }],
      ["when.request.headers[x-user]", { when: [{ key: "request.headers[x-user]", values: ["admin"] }] }],
    ])("DENY with only L7 (%s): has no effect at ztunnel and never turns into deny-all; the status says to deploy a waypoint", (attr, rule) => {
      const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [rule] }), ROOT);
      expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE, action: Action.DENY }); // no rules: never matches
      expect(t.condition).toEqual(unsupported(`rules[0] cannot match at ztunnel without its HTTP attributes (${attr}): it has no effect there; deploy a waypoint to enforce it`));
    });

    it("DENY: a to entry with only HTTP attributes matches nothing, and the other entries still deny (exactly, or stripped)", () => {
      const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [
        { to: [{ operation: { methods: ["GET"] } }, { operation: { ports: ["8080"] } }] },
        { to: [{ operation: { methods: ["GET"] } }, { operation: { paths: ["/x"], ports: ["8080"] } }] },
      ] }), ROOT);
      expect(wire(t.authorization).rules).toEqual([ports8080, ports8080]);
      expect(t.condition).toEqual(unsupported(
        "rules[0]: to[0] has only HTTP attributes and matches nothing at ztunnel, so the rule denies only through its other entries; deploy a waypoint to enforce it; " +
        "rules[1] is enforced without its HTTP attributes (to.operation.paths): it denies every connection its L4 part matches, whatever the request, which denies more than requested; " +
        "rules[1]: to[0] has only HTTP attributes and matches nothing at ztunnel, so the rule denies only through its other entries; deploy a waypoint to enforce it",
      ));
    });

    it("DENY: a from clause with only HTTP attributes makes the whole rule unmatchable, not a deny of everything on the rule's ports", () => {
      const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [
        { from: [{ source: { requestPrincipals: ["issuer/alice"] } }], to: [{ operation: { ports: ["8080"] } }] },
        { to: [{ operation: { ports: ["9090"] } }] },
      ] }), ROOT);
      expect(wire(t.authorization).rules).toEqual([{ clauses: [{ matches: [{ destination_ports: [9090] }] }] }]);
      expect(t.condition).toEqual(unsupported("rules[0] cannot match at ztunnel without its HTTP attributes (from.source.requestPrincipals): it has no effect there; deploy a waypoint to enforce it"));
    });

    it("keeps a rule the user wrote empty (DENY everything), which is not the same as a rule emptied by stripping", () => {
      const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [{}, { when: [{ key: "request.headers[x]", values: ["y"] }] }] }), ROOT);
      expect(wire(t.authorization).rules).toEqual([{}]);
      expect(t.condition!.message).toMatch(/^rules\[1\] cannot match at ztunnel/);
    });
  });

  describe("fails closed", () => {
    it.each([
      ["a principal with a * in the middle", { principals: ["cluster.local/*/sa/x"] }, /"\*" is only allowed at the start or the end/],
      ["a principal written as a URI", { principals: ["spiffe://cluster.local/ns/a/sa/b"] }, /without "spiffe:\/\/"/],
      ["a bad CIDR", { ipBlocks: ["10.0.0.0/40"] }, /invalid prefix length/],
      ["an address that is not one", { notIpBlocks: ["not-an-ip"] }, /is not an IP address or CIDR/],
      ["a bad service account", { serviceAccounts: ["a/b/c"] }, /is not "<namespace>\/<service account>"/],
      ["an empty namespace", { namespaces: [""] }, /empty value/],
    ])("omits an ALLOW rule with %s, and says why", (_what, source, message) => {
      const t = convertAuthorizationPolicy(policy({ rules: [{ from: [{ source }] }, { from: [{ source: { namespaces: ["ok"] } }] }] }), ROOT);
      expect(wire(t.authorization).rules).toEqual([{ clauses: [{ matches: [{ namespaces: [{ exact: "ok" }] }] }] }]);
      expect(t.condition!.message).toMatch(message);
      expect(t.condition!.status).toBe("False");
    });

    it("stands in for a policy that cannot be read at all with an ALLOW-nothing policy in its scope", () => {
      const raw = { metadata: { name: "p", namespace: "app" }, spec: { selector: { matchLabels: { app: "db" } }, targetRef: { name: "no-kind" }, rules: [{}] } };
      const standIn = failClosedStandIn(raw, "spec.targetRef.kind: Required")!;
      const t = convertAuthorizationPolicy(standIn, ROOT);
      expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.WORKLOAD_SELECTOR });
      expect(t.condition).toMatchObject({ status: "False", reason: "Invalid", message: expect.stringMatching(/cannot be read \(spec.targetRef.kind: Required\): its workloads allow nothing/) });
      expect(convertAuthorizationPolicy(failClosedStandIn({ metadata: { name: "q", namespace: "app" }, spec: { selector: { matchLabels: { app: 7 } } } }, "x")!, ROOT).authorization!.scope).toBe(Scope.NAMESPACE);
      expect(failClosedStandIn({ metadata: {} }, "x")).toBeNull();
    });

    describe("an unknown field (kept by the CRD and the schema so that it reaches the translator)", () => {
      const ok = { from: [{ source: { namespaces: ["ok"] } }] };
      const okRule = { clauses: [{ matches: [{ namespaces: [{ exact: "ok" }] }] }] };
      // Each level of a rule, with the path the status names.
      const levels: [string, unknown][] = [
        ["rules[0].fromm", { fromm: [{ source: { namespaces: ["evil"] } }] }],
        ["rules[0].from[0].sourc", { from: [{ sourc: { principals: ["a/b"] } }] }],
        ["rules[0].from[0].source.principal", { from: [{ source: { principal: ["cluster.local/ns/evil/sa/x"] } }] }],
        ["rules[0].to[0].operations", { to: [{ operations: { ports: ["22"] } }] }],
        ["rules[0].to[0].operation.port", { to: [{ operation: { ports: ["80"], port: ["22"] } }] }],
        ["rules[0].when[0].value", { when: [{ key: "source.ip", value: ["10.0.0.1"] }] }],
      ];

      it.each(levels)("ALLOW: %s omits the rule (it allows nothing) and the status names the field", (field, rule) => {
        const t = convertAuthorizationPolicy(policy({ rules: [rule as PolicyRule, ok] }), ROOT);
        expect(wire(t.authorization).rules).toEqual([okRule]);
        expect(t.condition).toEqual({ type: "ZtunnelAccepted", status: "False", reason: "UnsupportedValue",
          message: `rules[0] has an unknown field (${field}): it is omitted, so it allows nothing until fixed` });
      });

      it.each(levels)("DENY: %s denies everything in scope (never narrower than the rule) and the status names the field", (field, rule) => {
        const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [rule as PolicyRule, ok] }), ROOT);
        expect(wire(t.authorization).rules).toEqual([{}, okRule]);
        expect(t.condition!.message).toBe(`rules[0] has an unknown field (${field}): it denies all traffic in the policy's scope until fixed`);
      });

      it("names every unknown field of a rule, and wins over its HTTP attributes", () => {
        const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [{ to: [{ operation: { methods: ["GET"], x: 1 } }], y: 2 } as unknown as PolicyRule] }), ROOT);
        expect(wire(t.authorization).rules).toEqual([{}]);
        expect(t.condition!.message).toBe("rules[0] has unknown fields (rules[0].y, rules[0].to[0].operation.x): it denies all traffic in the policy's scope until fixed");
      });

      it.each([
        ["spec.rule", { action: "DENY", rule: [{ from: [{ source: { namespaces: ["evil"] } }] }] }, Scope.NAMESPACE],
        ["spec.selector.matchLabel", { selector: { matchLabels: { app: "db" }, matchLabel: { tier: "x" } }, rules: [{}] }, Scope.WORKLOAD_SELECTOR],
      ])("in the spec (%s): the policy is replaced by an allow-nothing stand-in in its scope", (field, spec, scope) => {
        const t = convertAuthorizationPolicy(policy(spec as AuthorizationPolicy["spec"]), ROOT);
        expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope });
        expect(t.condition).toEqual({ type: "ZtunnelAccepted", status: "False", reason: "Invalid",
          message: `the policy cannot be read (unknown field ${field}): its workloads allow nothing until it is fixed` });
      });

      it("survives @ambit/kube's schema: a parsed object still fails closed", () => {
        const raw = { metadata: { name: "p", namespace: "app" }, spec: { rules: [{ from: [{ source: { principalz: ["x/y"] } }] }, ok] } };
        const t = convertAuthorizationPolicy(AuthorizationPolicySchema.parse(raw) as AuthorizationPolicy, ROOT);
        expect(wire(t.authorization).rules).toEqual([okRule]);
        expect(t.condition!.message).toMatch(/^rules\[0\] has an unknown field \(rules\[0\]\.from\[0\]\.source\.principalz\)/);
      });
    });

    describe("a when condition Istio would reject at admission", () => {
      const ok = { from: [{ source: { namespaces: ["ok"] } }] };
      const okRule = { clauses: [{ matches: [{ namespaces: [{ exact: "ok" }] }] }] };
      const cases: [string, PolicyRule["when"], string][] = [
        ["without values or notValues (an L4 key)", [{ key: "destination.port" }], "rules[0].when[0] (destination.port) has neither values nor notValues"],
        ["with empty values and notValues (an HTTP key)", [{ key: "request.headers[x]", values: [], notValues: [] }], "rules[0].when[0] (request.headers[x]) has neither values nor notValues"],
        ["with a mistyped key", [{ key: "source.ip", values: ["10.0.0.1"] }, { key: "source.namespaces", values: ["evil"] }], 'rules[0].when[1] has an unknown key "source.namespaces"'],
        ["with a key of the wrong case", [{ key: "Source.IP", values: ["10.0.0.1"] }], 'rules[0].when[0] has an unknown key "Source.IP"'],
        ["with a header key without a name", [{ key: "request.headers[]", values: ["x"] }], 'rules[0].when[0] has an unknown key "request.headers[]"'],
        ["with a claim key without brackets", [{ key: "request.auth.claims", values: ["x"] }], 'rules[0].when[0] has an unknown key "request.auth.claims"'],
      ];

      it.each(cases)("ALLOW: a condition %s omits the rule (it allows nothing) and the status names it", (_what, when, problem) => {
        const t = convertAuthorizationPolicy(policy({ rules: [{ when }, ok] }), ROOT);
        expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE, rules: [okRule] });
        expect(t.condition).toEqual({ type: "ZtunnelAccepted", status: "False", reason: "UnsupportedValue",
          message: `rules[0] is invalid (${problem}): it is omitted, so it allows nothing until fixed` });
      });

      it.each(cases)("DENY: a condition %s denies everything in scope (never dropped as an HTTP attribute) and the status names it", (_what, when, problem) => {
        const t = convertAuthorizationPolicy(policy({ selector: { matchLabels: { app: "db" } }, action: "DENY", rules: [{ when }, ok] }), ROOT);
        expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY, rules: [{}, okRule] });
        expect(t.condition).toEqual({ type: "ZtunnelAccepted", status: "False", reason: "UnsupportedValue",
          message: `rules[0] is invalid (${problem}): it denies all traffic in the policy's scope until fixed` });
      });

      it.each([
        "connection.sni", "remote.ip", "source.serviceAccount", "source.trustDomain", "request.auth.principal", "request.auth.audiences",
        "request.auth.presenter", "request.headers[User-Agent]", "request.auth.claims[iss]", "request.auth.claims[groups][admin]",
        "experimental.envoy.filters.network.mysql_proxy[db.table]",
      ])("accepts Istio's key %s, which ztunnel cannot check (a DENY rule with only it has no effect)", (key) => {
        const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [{ when: [{ key, notValues: ["x"] }] }] }), ROOT);
        expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE, action: Action.DENY });
        expect(t.condition!.message).toBe(`rules[0] cannot match at ztunnel without its HTTP attributes (when.${key}): it has no effect there; deploy a waypoint to enforce it`);
      });

      it("names a bad value of an L4 condition by its index and key", () => {
        const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [{ when: [{ key: "source.ip", values: ["10.0.0.1"] }, { key: "destination.port", notValues: ["http"] }] }] }), ROOT);
        expect(wire(t.authorization).rules).toEqual([{}]);
        expect(t.condition!.message).toBe('rules[0] is invalid (rules[0].when[1] (destination.port) "http" is not a port number (1-65535)): it denies all traffic in the policy\'s scope until fixed');
      });
    });

    describe("a target Istio would reject at admission: neither a selector policy nor a waypoint policy", () => {
      const invalid = (why: string) => ({ type: "ZtunnelAccepted", status: "False", reason: "Invalid",
        message: `the policy cannot be read (${why}): its workloads allow nothing until it is fixed` });
      const db = { matchLabels: { app: "db" } };
      const deny = { action: "DENY", rules: [{ from: [{ source: { namespaces: ["evil"] } }] }] };

      it.each([
        ["a stray targetRef: {}", { selector: db, targetRef: {}, ...deny }, "spec.selector and spec.targetRef cannot both be set"],
        ["a stray targetRefs: [{}]", { selector: db, targetRefs: [{}], ...deny }, "spec.selector and spec.targetRefs cannot both be set"],
        ["a valid targetRef", { selector: db, targetRef: { kind: "Service", name: "db" }, ...deny }, "spec.selector and spec.targetRef cannot both be set"],
      ])("a selector with %s: allows nothing on the selected workloads, and the status says why", (_what, spec, why) => {
        const t = convertAuthorizationPolicy(policy(spec as AuthorizationPolicy["spec"]), ROOT);
        expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.WORKLOAD_SELECTOR });
        expect(t.condition).toEqual(invalid(why));
      });

      it.each([
        ["targetRef: {}", { targetRef: {}, ...deny }, "spec.targetRef needs a kind and a name"],
        ["a targetRef without a name", { targetRef: { kind: "Service", name: "" }, ...deny }, "spec.targetRef needs a kind and a name"],
        ["targetRefs with two bad entries", { targetRefs: [{ kind: "Gateway", name: "wp" }, { name: "x" }, { kind: "Service" }] }, "spec.targetRefs[1], spec.targetRefs[2] need a kind and a name"],
        ["both targetRef and targetRefs", { targetRef: { kind: "Service", name: "a" }, targetRefs: [{ kind: "Service", name: "b" }] }, "spec.targetRef and spec.targetRefs cannot both be set"],
        ["an empty selector and a targetRef", { selector: { matchLabels: {} }, targetRef: { kind: "Service", name: "a" } }, "spec.selector and spec.targetRef cannot both be set"],
      ])("%s: allows nothing in the namespace, and the status says why", (_what, spec, why) => {
        const t = convertAuthorizationPolicy(policy(spec as AuthorizationPolicy["spec"]), ROOT);
        expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE });
        expect(t.condition).toEqual(invalid(why));
      });

      it("an empty targetRefs list is no target: the selector policy is enforced", () => {
        const t = convertAuthorizationPolicy(policy({ selector: db, targetRefs: [], ...deny }), ROOT);
        expect(wire(t.authorization)).toMatchObject({ scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY, rules: [{ clauses: [{ matches: [{ namespaces: [{ exact: "evil" }] }] }] }] });
        expect(t.condition!.status).toBe("True");
      });
    });

    it("an invalid policy with an empty selector is namespace-wide (a selector scope with no labels would select nothing)", () => {
      const t = convertAuthorizationPolicy(policy({ selector: { matchLabels: {} }, typo: 1 } as AuthorizationPolicy["spec"]), ROOT);
      expect(wire(t.authorization)).toEqual({ name: "p", namespace: "app", scope: Scope.NAMESPACE });
    });

    it("turns a malformed DENY rule into one that denies everything in scope", () => {
      const t = convertAuthorizationPolicy(policy({ action: "DENY", rules: [{ to: [{ operation: { ports: ["http"] } }] }] }), ROOT);
      expect(wire(t.authorization).rules).toEqual([{}]); // a rule without clauses matches everything
      expect(t.condition!.message).toMatch(/rules\[0\] is invalid \(rules\[0\]\.to\.operation\.ports "http" is not a port number \(1-65535\)\): it denies all traffic/);
    });
  });
});

describe("PeerAuthentication → DENY policies", () => {
  const pa = (name: string, namespace: string, spec: PeerAuthentication["spec"], created = "2026-01-01T00:00:00Z"): PeerAuthentication =>
    ({ metadata: { name, namespace, creationTimestamp: created }, spec });

  it("has the static strict policy deny connections without an identity", () => {
    expect(wire(staticStrictPolicy(ROOT))).toEqual({
      name: STATIC_STRICT, namespace: ROOT, scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY,
      rules: [{ clauses: [{ matches: [{ not_principals: [{ presence: {} }] }] }] }],
    });
  });

  it("references it from workloads whose effective mode is STRICT (mesh → namespace → workload)", () => {
    const mesh = pa("default", ROOT, { mtls: { mode: "STRICT" } });
    expect(peerAuthenticationKeys([mesh], "app", {}, ROOT)).toEqual([`${ROOT}/${STATIC_STRICT}`]);
    const nsPermissive = pa("ns", "app", { mtls: { mode: "PERMISSIVE" } });
    expect(peerAuthenticationKeys([mesh, nsPermissive], "app", {}, ROOT)).toEqual([]);
    expect(peerAuthenticationKeys([mesh, nsPermissive], "other", {}, ROOT)).toEqual([`${ROOT}/${STATIC_STRICT}`]);
    const wlStrict = pa("db", "app", { selector: { matchLabels: { app: "db" } }, mtls: { mode: "STRICT" } });
    expect(peerAuthenticationKeys([mesh, nsPermissive, wlStrict], "app", { app: "db" }, ROOT)).toEqual([`${ROOT}/${STATIC_STRICT}`]);
    expect(peerAuthenticationKeys([mesh, nsPermissive, wlStrict], "app", { app: "web" }, ROOT)).toEqual([]);
    const nsDisable = pa("ns", "app", { mtls: { mode: "DISABLE" } });
    expect(peerAuthenticationKeys([nsDisable], "app", {}, ROOT)).toEqual([]);
    expect(peerAuthenticationKeys([], "app", {}, ROOT)).toEqual([]);
  });

  it("lets UNSET inherit and the oldest policy win within a level", () => {
    expect(inheritedMode([pa("ns", "app", { mtls: { mode: "UNSET" } }), pa("default", ROOT, { mtls: { mode: "STRICT" } })], "app", ROOT)).toBe("STRICT");
    const older = pa("a-new", "app", { mtls: { mode: "STRICT" } }, "2026-01-01T00:00:00Z");
    const newer = pa("b-old", "app", { mtls: { mode: "PERMISSIVE" } }, "2026-02-01T00:00:00Z");
    expect(inheritedMode([newer, older], "app", ROOT)).toBe("STRICT");
    expect(inheritedMode([], "app", ROOT)).toBe("PERMISSIVE");
  });

  it("converts port-level modes into a DENY policy with port exceptions", () => {
    const strictExcept = pa("db", "app", { selector: { matchLabels: { app: "db" } }, mtls: { mode: "STRICT" }, portLevelMtls: { "9090": { mode: "PERMISSIVE" }, "5432": { mode: "STRICT" } } });
    expect(wire(convertPortLevel(strictExcept, "PERMISSIVE"))).toEqual({
      name: "converted_peer_authentication_db", namespace: "app", scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY,
      rules: [{ clauses: [{ matches: [{ not_principals: [{ presence: {} }], not_destination_ports: [9090] }] }] }],
    });
    expect(peerAuthenticationKeys([strictExcept], "app", { app: "db" }, ROOT)).toEqual(["app/converted_peer_authentication_db"]);

    const permissiveExcept = pa("web", "app", { selector: { matchLabels: { app: "web" } }, portLevelMtls: { "8443": { mode: "STRICT" } } });
    expect(wire(convertPortLevel(permissiveExcept, "PERMISSIVE"))!.rules).toEqual([{ clauses: [{ matches: [{ not_principals: [{ presence: {} }], destination_ports: [8443] }] }] }]);
    // Inheriting STRICT from the mesh, a STRICT port changes nothing.
    expect(convertPortLevel(permissiveExcept, "STRICT")).toBeNull();
    expect(peerAuthenticationKeys([permissiveExcept, pa("default", ROOT, { mtls: { mode: "STRICT" } })], "app", { app: "web" }, ROOT)).toEqual([`${ROOT}/${STATIC_STRICT}`]);
  });
});
