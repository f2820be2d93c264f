// Unknown fields in AuthorizationPolicy rules against the local cluster's real API server with the chart's CRDs:
// a client that does not ask for strict field validation must not get a rule silently widened by pruning. The field
// is kept in the stored object, reaches the controller, fails the rule closed in what is pushed to ztunnel, and the
// ZtunnelAccepted condition names it.
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { ApiError, adminApi, down, kubectl, up, waitFor, paths, type Api } from "@ambit/localcluster";
import { TypeUrl, istio, ztunnelNodeId } from "@ambit/protocol";
import { DeltaXdsClient } from "@ambit/xds";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { Controller } from "../src/controller.js";

if (process.getuid?.() !== 0) throw new Error("the controller's cluster tests need root (they run the local cluster)");

const here = dirname(fileURLToPath(import.meta.url));
const NS = "authz-unknown";
const AP = (version: string, query = "") => `/apis/security.istio.io/${version}/namespaces/${NS}/authorizationpolicies${query}`;
let api: Api;
let controller: Controller;
let ztunnel: DeltaXdsClient;
/** The Authorization resources ztunnel holds, by name, as plain objects (absent and empty fields left out). */
const pushed = new Map<string, { action?: number; scope?: number; rules?: unknown[] }>();

interface Condition { type: string; status: string; reason: string; message: string }
const ztunnelAccepted = async (name: string) =>
  (await api.get<{ status?: { conditions?: Condition[] } }>(AP("v1", `/${name}`))).status?.conditions?.find((c) => c.type === "ZtunnelAccepted");

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  await kubectl(["apply", "-f", join(here, "../../../charts/ambit/crds/")]);
  await kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/authorizationpolicies.security.istio.io"]);
  for (const ns of ["istio-system", NS]) await api.post("/api/v1/namespaces", { metadata: { name: ns } });
  await api.post("/api/v1/namespaces/istio-system/serviceaccounts", { metadata: { name: "ztunnel" } });
  const token = (await api.post<{ status: { token: string } }>("/api/v1/namespaces/istio-system/serviceaccounts/ztunnel/token", { spec: { audiences: ["istio-ca"], expirationSeconds: 3600 } })).status.token;
  const port = await new Promise<number>((r) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; s.close(() => r(p)); }); });
  const kc = new KubeConfig();
  kc.loadFromFile(paths.adminKubeconfig());
  controller = new Controller({
    kc, host: "127.0.0.1", logger: pino({ level: "warn" }),
    config: loadConfig({ POD_NAMESPACE: "istio-system", POD_NAME: "controller-test", XDS_PLAINTEXT_PORT: String(port), XDS_TLS_PORT: "0", MONITORING_PORT: "0", PILOT_DEBOUNCE_AFTER: "50ms", PILOT_DEBOUNCE_MAX: "1s" }),
  });
  await controller.start();
  ztunnel = new DeltaXdsClient({
    address: `http://127.0.0.1:${port}`,
    node: { id: ztunnelNodeId("10.244.1.3", "ztunnel-test", "istio-system"), metadata: { fields: { NAMESPACE: { string_value: "istio-system" } } } },
    metadata: () => ({ authorization: `Bearer ${token}`, clusterid: "Kubernetes" }),
    watches: [{ typeUrl: TypeUrl.authorization, handler: (added, removed) => {
      for (const r of added) pushed.set(r.name, istio.security.Authorization.toObject(istio.security.Authorization.decode(r.resource.value!)));
      for (const n of removed) pushed.delete(n);
    } }],
    backoff: { initialMs: 50, maxMs: 500 },
  }).start();
});

afterAll(async () => {
  await ztunnel?.close();
  await controller?.stop();
  await down();
});

describe("an unknown field inside an AuthorizationPolicy rule, written without strict field validation", () => {
  it("ALLOW: is kept in the stored object, the pushed rule allows nothing, and the status names the field", async () => {
    // A typo that pruning would turn into a broader rule: without `notPort` the rule also allows port 9090.
    const rule = { from: [{ source: { namespaces: ["web"] } }], to: [{ operation: { ports: ["8080", "9090"], notPort: ["9090"] } }] };
    await api.post(AP("v1", "?fieldValidation=Ignore"), { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "allow-typo" },
      spec: { selector: { matchLabels: { app: "db" } }, rules: [rule, { from: [{ source: { namespaces: ["ops"] } }] }] } });

    const stored = await api.get<{ spec: { rules: typeof rule[] } }>(AP("v1", "/allow-typo"));
    expect(stored.spec.rules[0]).toEqual(rule);

    const a = await waitFor("the pushed allow-typo", async () => pushed.get(`${NS}/allow-typo`), 30_000, 25);
    expect(a.action).toBeUndefined(); // ALLOW, the zero value
    // Only the second rule is left: the one with the unknown field can never allow.
    expect(a.rules).toEqual([{ clauses: [{ matches: [{ namespaces: [{ exact: "ops" }] }] }] }]);

    const c = await waitFor("the ZtunnelAccepted condition", () => ztunnelAccepted("allow-typo"), 30_000, 100);
    expect(c).toMatchObject({ status: "False", reason: "UnsupportedValue",
      message: "rules[0] has an unknown field (rules[0].to[0].operation.notPort): it is omitted, so it allows nothing until fixed" });
  });

  it("DENY (written as v1beta1, which the chart also serves): the rule denies everything in scope and the status says so", async () => {
    await api.post(AP("v1beta1", "?fieldValidation=Ignore"), { apiVersion: "security.istio.io/v1beta1", kind: "AuthorizationPolicy", metadata: { name: "deny-typo" },
      spec: { action: "DENY", rules: [{ from: [{ source: { principal: ["cluster.local/ns/evil/sa/x"] } }] }] } });
    expect((await api.get<{ spec: { rules: unknown[] } }>(AP("v1", "/deny-typo"))).spec.rules).toEqual([{ from: [{ source: { principal: ["cluster.local/ns/evil/sa/x"] } }] }]);
    const a = await waitFor("the pushed deny-typo", async () => pushed.get(`${NS}/deny-typo`), 30_000, 25);
    expect(a).toMatchObject({ action: istio.security.Action.DENY, scope: istio.security.Scope.NAMESPACE, rules: [{}] }); // a rule without clauses matches everything
    const c = await waitFor("the ZtunnelAccepted condition", () => ztunnelAccepted("deny-typo"), 30_000, 100);
    expect(c?.message).toBe("rules[0] has an unknown field (rules[0].from[0].source.principal): it denies all traffic in the policy's scope until fixed");
  });

  it("still validates the known fields, and kubectl explain still describes them", async () => {
    const bad = await api.post(AP("v1", "?fieldValidation=Ignore"), { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "bad-port" },
      spec: { rules: [{ to: [{ operation: { ports: [8080] } }] }] } }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ApiError);
    expect((bad as ApiError).status).toBe(422);
    expect((bad as ApiError).message).toMatch(/spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: Invalid value: "integer"/);
    const explained = await kubectl(["explain", "authorizationpolicies.spec.rules.to.operation", "--api-version=security.istio.io/v1"]);
    expect(explained).toMatch(/^\s+notPorts\s/m);
  });
});
