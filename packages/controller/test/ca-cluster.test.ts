// The CA against the local cluster: real service-account tokens (TokenRequest, TokenReview), real pods on two
// nodes for the node authorizer, the published root verified with openssl, and the root's lifecycle.
import { createSign, createPrivateKey, randomUUID } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { KubeConfig } from "@kubernetes/client-node";
import { adminApi, down, paths, up, waitFor, type Api } from "@ambit/localcluster";
import { createCsr, generateKeyPair } from "@ambit/pki";
import { istio } from "@ambit/protocol";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certificateServiceDefinition } from "../src/ca/service.js";
import { loadConfig } from "../src/config.js";
import { Controller } from "../src/controller.js";

if (process.getuid?.() !== 0) throw new Error("the CA's cluster tests need root (they run the local cluster)");

const TD = "spiffe://cluster.local";
let api: Api;
let controller: Controller;
let port: number;
const tmp = mkdtempSync(join(tmpdir(), "ambit-ca-test-"));
const Client = grpc.makeGenericClientConstructor(certificateServiceDefinition, "IstioCertificateService");
/** The controller's warnings and errors, one JSON line each. */
const logs: string[] = [];
const logSink = new Writable({ write(chunk: Buffer, _enc, done) { logs.push(...chunk.toString().split("\n").filter(Boolean)); done(); } });

const freePort = () => new Promise<number>((r) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; s.close(() => r(p)); }); });
const token = async (ns: string, sa: string, spec: object = {}) =>
  (await api.post<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, { spec: { audiences: ["istio-ca"], expirationSeconds: 3600, ...spec } })).status.token;
const publishedRoot = async (ns = "istio-system") =>
  (await api.get<{ data: Record<string, string> }>(`/api/v1/namespaces/${ns}/configmaps/istio-ca-root-cert`)).data["root-cert.pem"]!;

interface CaResult { chain?: string[]; code?: number; details?: string }
async function request(opts: { token?: string; sans?: string[]; csr?: string; impersonate?: string; ttl?: number }): Promise<CaResult> {
  const root = await publishedRoot();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(root)), { "grpc.ssl_target_name_override": "istiod.istio-system.svc", "grpc.default_authority": "istiod.istio-system.svc" });
  const keyPair = await generateKeyPair();
  const csr = opts.csr ?? await createCsr({ keyPair, uriSans: opts.sans ?? [`${TD}/ns/app/sa/whatever`] });
  const md = new grpc.Metadata();
  if (opts.token !== undefined) md.set("authorization", `Bearer ${opts.token}`);
  const req = { csr, validity_duration: opts.ttl ?? 86400, ...(opts.impersonate ? { metadata: { fields: { ImpersonatedIdentity: { string_value: opts.impersonate } } } } : {}) };
  return new Promise((resolve) => {
    (client as unknown as { CreateCertificate: (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v?: istio.v1.auth.IstioCertificateResponse) => void) => void })
      .CreateCertificate(req, md, (err, res) => { client.close(); resolve(err ? { code: err.code, details: err.details } : { chain: res!.cert_chain }); });
  });
}

function opensslVerify(chain: string[], root: string): string {
  const dir = mkdtempSync(join(tmp, "v-"));
  writeFileSync(join(dir, "leaf.pem"), chain[0]!);
  writeFileSync(join(dir, "inter.pem"), chain.slice(1, -1).join("") || "\n");
  writeFileSync(join(dir, "root.pem"), root);
  const args = ["verify", "-CAfile", join(dir, "root.pem"), ...(chain.length > 2 ? ["-untrusted", join(dir, "inter.pem")] : []), join(dir, "leaf.pem")];
  return execFileSync("openssl", args).toString().trim();
}
const sans = (pem: string) => {
  const text = execFileSync("openssl", ["x509", "-noout", "-ext", "subjectAltName"], { input: pem }).toString();
  return [...text.matchAll(/URI:(\S+?)(,|\s|$)/g)].map((m) => m[1]);
};
const notAfter = (pem: string) => new Date(execFileSync("openssl", ["x509", "-noout", "-enddate"], { input: pem }).toString().trim().slice("notAfter=".length)).getTime();

const hostPod = (name: string, sa: string, node: string) => ({ metadata: { name }, spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: "main", image: "ambit/host", command: ["sleep", "infinity"] }] } });

beforeAll(async () => {
  await up({ nodes: 2, progress: () => undefined });
  api = adminApi();
  for (const ns of ["istio-system", "app"]) await api.post("/api/v1/namespaces", { metadata: { name: ns } });
  for (const [ns, sa] of [["istio-system", "ztunnel"], ["app", "web"], ["app", "db"], ["app", "temp"]]) await api.post(`/api/v1/namespaces/${ns}/serviceaccounts`, { metadata: { name: sa } });
  await api.post("/api/v1/namespaces/istio-system/pods", hostPod("ztunnel-1", "ztunnel", "node-1"));
  await api.post("/api/v1/namespaces/app/pods", hostPod("web-1", "web", "node-1"));
  await api.post("/api/v1/namespaces/app/pods", hostPod("db-2", "db", "node-2"));
  port = await freePort();
  const kc = new KubeConfig();
  kc.loadFromFile(paths.adminKubeconfig());
  controller = new Controller({ kc, host: "127.0.0.1", logger: pino({ level: "warn" }, logSink),
    config: loadConfig({ POD_NAMESPACE: "istio-system", POD_NAME: "ca-test", XDS_TLS_PORT: String(port), MONITORING_PORT: "0" }) });
  await controller.start();
  await waitFor("the published root", () => publishedRoot().then(Boolean), 30_000, 100);
});

afterAll(async () => {
  await controller?.stop();
  await down();
  rmSync(tmp, { recursive: true, force: true });
});

describe("CreateCertificate", () => {
  it("issues the caller's identity, whatever the CSR asks, with a chain that openssl verifies to the published root", async () => {
    const res = await request({ token: await token("app", "web"), sans: [`${TD}/ns/app/sa/admin`] });
    expect(res.code).toBeUndefined();
    expect(sans(res.chain![0]!)).toEqual([`${TD}/ns/app/sa/web`]);
    expect(res.chain!.every((c) => c.endsWith("\n"))).toBe(true);
    expect(opensslVerify(res.chain!, await publishedRoot("app"))).toMatch(/leaf.pem: OK/);
  });

  it("caps the lifetime at the maximum", async () => {
    const res = await request({ token: await token("app", "web"), ttl: 10 * 86400 });
    expect(notAfter(res.chain![0]!)).toBeLessThanOrEqual(Date.now() + 86400_000 + 5000);
  });

  it("refuses bad tokens with UNAUTHENTICATED", async () => {
    const unauth = async (t: string | undefined) => expect((await request({ token: t })).code).toBe(grpc.status.UNAUTHENTICATED);
    await unauth(undefined);
    await unauth("garbage");
    await unauth(await token("app", "web", { audiences: ["another-audience"] }));
    const doomed = await token("app", "temp");
    await api.delete("/api/v1/namespaces/app/serviceaccounts/temp");
    await unauth(doomed);
    // An expired token, signed with the cluster's real service-account key.
    const sa = await api.get<{ metadata: { uid: string } }>("/api/v1/namespaces/app/serviceaccounts/web");
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const head = `${b64({ alg: "ES256", typ: "JWT" })}.${b64({ iss: "https://kubernetes.default.svc.cluster.local", sub: "system:serviceaccount:app:web", aud: ["istio-ca"], iat: now - 7200, nbf: now - 7200, exp: now - 3600, jti: randomUUID(), "kubernetes.io": { namespace: "app", serviceaccount: { name: "web", uid: sa.metadata.uid } } })}`;
    const sig = createSign("SHA256").update(head).sign({ key: createPrivateKey(readFileSync(join(paths.pki(), "sa.key"))), dsaEncoding: "ieee-p1363" }).toString("base64url");
    await unauth(`${head}.${sig}`);
  });

  it("refuses a malformed CSR with INVALID_ARGUMENT", async () => {
    const res = await request({ token: await token("app", "web"), csr: "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n" });
    expect(res.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  describe("impersonation", () => {
    const ztunnelToken = async () => {
      const pod = await api.get<{ metadata: { uid: string } }>("/api/v1/namespaces/istio-system/pods/ztunnel-1");
      return token("istio-system", "ztunnel", { boundObjectRef: { kind: "Pod", apiVersion: "v1", name: "ztunnel-1", uid: pod.metadata.uid } });
    };

    it("lets the node's ztunnel get a certificate for a pod on its node", async () => {
      const res = await request({ token: await ztunnelToken(), impersonate: `${TD}/ns/app/sa/web` });
      expect(res.code).toBeUndefined();
      expect(sans(res.chain![0]!)).toEqual([`${TD}/ns/app/sa/web`]);
    });

    it("refuses a pod on another node, and any non-node account, with PERMISSION_DENIED saying which check failed", async () => {
      const other = await request({ token: await ztunnelToken(), impersonate: `${TD}/ns/app/sa/db` });
      expect(other).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/no pod with service account app\/db runs on node-1/) });
      const notNode = await request({ token: await token("app", "web"), impersonate: `${TD}/ns/app/sa/db` });
      expect(notNode).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/app\/web may not impersonate: it is not one of the trusted node accounts \(istio-system\/ztunnel\)/) });
      const unbound = await request({ token: await token("istio-system", "ztunnel"), impersonate: `${TD}/ns/app/sa/web` });
      expect(unbound).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/not bound to a pod/) });
    });
  });
});

describe("the root of trust", () => {
  it("repairs a deleted or edited istio-ca-root-cert within seconds", async () => {
    const root = await publishedRoot("app");
    await api.delete("/api/v1/namespaces/app/configmaps/istio-ca-root-cert");
    await waitFor("the ConfigMap recreated", () => publishedRoot("app").then((r) => r === root).catch(() => false), 10_000, 100);
    await api.patch("/api/v1/namespaces/app/configmaps/istio-ca-root-cert", { data: { "root-cert.pem": "tampered" } });
    await waitFor("the ConfigMap corrected", () => publishedRoot("app").then((r) => r === root), 10_000, 100);
    await api.post("/api/v1/namespaces", { metadata: { name: "late" } });
    await waitFor("the root in a new namespace", () => publishedRoot("late").then((r) => r === root).catch(() => false), 10_000, 100);
  });

  it("keeps its self-signed root in istio-ca-secret", async () => {
    const secret = await api.get<{ type: string; data: Record<string, string> }>("/api/v1/namespaces/istio-system/secrets/istio-ca-secret");
    expect(secret.type).toBe("istio.io/ca-root");
    expect(Buffer.from(secret.data["ca-cert.pem"]!, "base64").toString()).toBe(await publishedRoot());
  });

  it("re-roots new certificates when the cacerts Secret is swapped in, without a restart", async () => {
    const d = mkdtempSync(join(tmp, "plug-"));
    const sh = (...a: string[]) => execFileSync("openssl", a, { cwd: d, stdio: "pipe" });
    sh("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "root-key.pem", "-out", "root-cert.pem", "-subj", "/O=cluster.local/CN=Plugged Root", "-days", "3650",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
    sh("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.csr", "-subj", "/O=cluster.local/CN=Plugged Intermediate");
    writeFileSync(join(d, "ext.cnf"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
    sh("x509", "-req", "-in", "ca.csr", "-CA", "root-cert.pem", "-CAkey", "root-key.pem", "-CAcreateserial", "-out", "ca-cert.pem", "-days", "365", "-extfile", "ext.cnf");
    const f = (n: string) => readFileSync(join(d, n), "utf8");
    const files = { "ca-cert.pem": f("ca-cert.pem"), "ca-key.pem": f("ca-key.pem"), "cert-chain.pem": f("ca-cert.pem") + f("root-cert.pem"), "root-cert.pem": f("root-cert.pem") };
    await api.post("/api/v1/namespaces/istio-system/secrets", { metadata: { name: "cacerts" }, data: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) });
    // Both namespaces: request() trusts the root published in istio-system, which may be republished after "app".
    await waitFor("the new root published", async () => (await Promise.all(["app", "istio-system"].map((ns) => publishedRoot(ns)))).every((r) => r === files["root-cert.pem"]), 15_000, 100);
    const res = await request({ token: await token("app", "web") });
    expect(res.chain).toHaveLength(3); // leaf, the plugged intermediate, the plugged root
    expect(res.chain![2]).toBe(files["root-cert.pem"]);
    expect(opensslVerify(res.chain!, files["root-cert.pem"])).toMatch(/OK/);
  });

  it("keeps the plug-in CA when cacerts is replaced by a broken bundle, and logs why", async () => {
    const plugged = await publishedRoot();
    await api.patch("/api/v1/namespaces/istio-system/secrets/cacerts", { data: { "ca-key.pem": Buffer.from("not a key").toString("base64") } });
    await waitFor("the broken bundle reported", async () => logs.some((l) => l.includes("cacerts is not a usable CA: keeping the current one")), 15_000, 100);
    const res = await request({ token: await token("app", "web") });
    expect(res.chain).toHaveLength(3);
    expect(res.chain![2]).toBe(plugged);
  });

  it("goes back to the self-signed root when cacerts is deleted", async () => {
    const secret = await api.get<{ data: Record<string, string> }>("/api/v1/namespaces/istio-system/secrets/istio-ca-secret");
    const selfSigned = Buffer.from(secret.data["ca-cert.pem"]!, "base64").toString();
    await api.delete("/api/v1/namespaces/istio-system/secrets/cacerts");
    await waitFor("the self-signed root published again", async () => (await Promise.all(["app", "istio-system"].map((ns) => publishedRoot(ns)))).every((r) => r === selfSigned), 15_000, 100);
    const res = await request({ token: await token("app", "web") });
    expect(res.chain).toHaveLength(2);
    expect(res.chain![1]).toBe(selfSigned);
    expect(opensslVerify(res.chain!, selfSigned)).toMatch(/OK/);
  });
});
