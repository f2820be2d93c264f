// /debug/* on the monitoring port against the local cluster's real API server: the controller reviews the bearer
// token (TokenReview) and asks whether its user may get the path (SubjectAccessReview). No token → 401, a pod's
// service-account token without the permission → 403, a token whose account is bound to a ClusterRole granting
// nonResourceURLs /debug/* → 200 with the dump; /metrics and /ready need no token.
import { createServer } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { adminApi, down, paths, up, waitFor, type Api } from "@ambit/localcluster";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { Controller } from "../src/controller.js";

if (process.getuid?.() !== 0) throw new Error("the controller's cluster tests need root (they run the local cluster)");

let api: Api;
let controller: Controller;
let base: string;
const freePort = () => new Promise<number>((r) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; s.close(() => r(p)); }); });
/** A token for the API server's own audience, as `kubectl create token` makes. */
const token = async (ns: string, sa: string) =>
  (await api.post<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, { spec: { expirationSeconds: 3600 } })).status.token;
const get = async (path: string, bearer?: string) => {
  const res = await fetch(base + path, bearer === undefined ? {} : { headers: { authorization: `Bearer ${bearer}` } });
  return { status: res.status, text: await res.text() };
};

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  for (const ns of ["istio-system", "app", "ops"]) await api.post("/api/v1/namespaces", { metadata: { name: ns } });
  await api.post("/api/v1/namespaces/app/serviceaccounts", { metadata: { name: "web" } });
  await api.post("/api/v1/namespaces/ops/serviceaccounts", { metadata: { name: "debugger" } });
  await api.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", { metadata: { name: "ambit-debug-reader" }, rules: [{ nonResourceURLs: ["/debug/*"], verbs: ["get"] }] });
  await api.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    metadata: { name: "ambit-debug-reader" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "ambit-debug-reader" },
    subjects: [{ kind: "ServiceAccount", name: "debugger", namespace: "ops" }],
  });
  const kc = new KubeConfig();
  kc.loadFromFile(paths.adminKubeconfig());
  const port = await freePort();
  controller = new Controller({ kc, host: "127.0.0.1", logger: pino({ level: "warn" }),
    config: loadConfig({ POD_NAMESPACE: "istio-system", POD_NAME: "debug-test", XDS_TLS_PORT: "0", XDS_PLAINTEXT_PORT: "0", MONITORING_PORT: String(port) }) });
  await controller.start();
  base = `http://127.0.0.1:${port}`;
  await waitFor("the controller ready", async () => (await get("/ready")).status === 200, 60_000, 100);
});

afterAll(async () => {
  await controller?.stop();
  await down();
});

describe("the debug endpoints on the monitoring port", () => {
  it("refuse a request without a token with 401", async () => {
    for (const path of ["/debug/config_dump", "/debug/connections"]) {
      const r = await get(path);
      expect(r.status).toBe(401);
      expect(JSON.parse(r.text).error).toMatch(/no token/);
    }
  });

  it("refuse a token the API server does not accept with 401", async () => {
    const r = await get("/debug/config_dump", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    expect(r.status).toBe(401);
    expect(JSON.parse(r.text).error).toMatch(/the token was not accepted/);
  });

  it("refuse a pod's service-account token without the permission with 403, naming the user and the path", async () => {
    const t = await token("app", "web");
    for (const path of ["/debug/config_dump", "/debug/connections"]) {
      const r = await get(path, t);
      expect(r.status).toBe(403);
      expect(JSON.parse(r.text).error).toMatch(new RegExp(`^system:serviceaccount:app:web may not get ${path}: it needs the verb get`));
    }
  });

  it("serve a token whose account may get /debug/* (ClusterRole nonResourceURLs)", async () => {
    const t = await token("ops", "debugger");
    const dump = await get("/debug/config_dump", t);
    expect(dump.status).toBe(200);
    const body = JSON.parse(dump.text) as { workloads: unknown[]; services: { hostname: string }[]; authorizations: unknown[] };
    expect(Object.keys(body)).toEqual(expect.arrayContaining(["workloads", "services", "authorizations"]));
    expect(body.services.map((s) => s.hostname)).toContain("kubernetes.default.svc.cluster.local");
    const conns = await get("/debug/connections", t);
    expect(conns.status).toBe(200);
    expect(Array.isArray(JSON.parse(conns.text))).toBe(true);
  });

  it("keep /metrics and /ready open", async () => {
    const m = await get("/metrics");
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/pilot_xds/);
    expect((await get("/ready")).status).toBe(200);
  });
});
