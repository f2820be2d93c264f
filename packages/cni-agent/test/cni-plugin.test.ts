// The chained plugin with its agent down, against a real HTTPS server on the loopback standing in for the API
// server: it passes only a pod that the answers prove is not enrolled, and refuses (fails the ADD, naming why) on
// every answer it cannot interpret: 401, 403, 404, 5xx, a body that is not the object, a huge body, no answer in
// time, an untrusted certificate, no API server, no or a broken kubeconfig. (The local cluster's API server gives
// the real 200/401/403 answers in plugin-credentials-cluster.test.ts; the odd ones are made here.)
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PluginKubeconfigWriter } from "../src/cni-install.js";

const plugin = fileURLToPath(new URL("../dist/cni-plugin.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "ambit-cni-plugin-"));
const TOKEN = "plugin-token-1";
const PREV = { cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ address: "10.244.1.5/24" }] };

/** A self-signed certificate for 127.0.0.1 (openssl), and one more the plugin does not trust. */
function certificate(name: string): { key: string; cert: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
  return { key, cert };
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const json = (status: number, body: unknown): Handler => (_req, res) => { res.writeHead(status, { "content-type": "application/json" }); res.end(JSON.stringify(body)); };
const pod = (name: string, namespace: string, labels: Record<string, string> = {}) => json(200, { kind: "Pod", apiVersion: "v1", metadata: { name, namespace, uid: `uid-${name}`, labels }, spec: { containers: [{ name: "app" }] } });
const namespace = (name: string, labels: Record<string, string> = {}) => json(200, { kind: "Namespace", apiVersion: "v1", metadata: { name, labels } });
const AMBIENT = { "istio.io/dataplane-mode": "ambient" };

let routes = new Map<string, Handler>();
const seen: { path: string; authorization: string | undefined }[] = [];
let api: Server;
let untrusted: Server;
let kubeconfig = "";

function listen(tls: { key: string; cert: string }): Promise<Server> {
  const server = createServer({ key: execFileSync("cat", [tls.key]), cert: execFileSync("cat", [tls.cert]) }, (req, res) => {
    seen.push({ path: req.url ?? "", authorization: req.headers.authorization });
    const route = routes.get(req.url ?? "");
    if (route) route(req, res);
    else json(404, { kind: "Status", code: 404, reason: "NotFound" })(req, res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** The kubeconfig the agent writes for the plugin (the real writer), for a server on the loopback. */
function writeKubeconfig(file: string, port: number, caFile: string): string {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `https://127.0.0.1:${port}`, caFile }],
    users: [{ name: "u", token: TOKEN }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  const w = new PluginKubeconfigWriter(kc, file);
  w.start();
  w.close();
  return file;
}

interface Outcome { code: number | null; out: { msg?: string; code?: number } & Record<string, unknown> }

/** Runs the real plugin (ADD) as the runtime does, with the agent's socket absent (the agent is down). */
function add(podNs: string, podName: string, conf: object = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [plugin], {
      env: { PATH: process.env["PATH"] ?? "", CNI_COMMAND: "ADD", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_CONTAINERID: "c1",
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${podNs};K8S_POD_NAME=${podName};K8S_POD_UID=uid-${podName}` },
      stdio: ["pipe", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out: JSON.parse(out) as Outcome["out"] }));
    child.stdin.end(JSON.stringify({ cniVersion: "1.0.0", name: "k8s-pod-network", type: "ambit-cni", agent_socket: join(dir, "no-agent.sock"),
      kubeconfig, exclude_namespaces: ["istio-system", "kube-system"], prevResult: PREV, ...conf }));
  });
}

const refusedWith = (o: Outcome, pattern: RegExp) => {
  expect(o.code, JSON.stringify(o.out)).toBe(1);
  expect(o.out.code).toBe(999);
  expect(o.out.msg).toMatch(/^the ambit cni-agent is unreachable \(.*\) and /);
  expect(o.out.msg).toMatch(pattern);
  expect(o.out.msg).toMatch(/refusing to start it unprotected$/);
};
const passed = (o: Outcome) => {
  expect(o.code, JSON.stringify(o.out)).toBe(0);
  expect(o.out).toEqual(PREV);
};

beforeAll(async () => {
  const good = certificate("api");
  api = await listen(good);
  untrusted = await listen(certificate("other"));
  kubeconfig = writeKubeconfig(join(dir, "kubeconfig"), (api.address() as AddressInfo).port, good.cert);
});

afterAll(async () => {
  for (const s of [api, untrusted]) await new Promise((r) => s?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  routes = new Map();
  seen.length = 0;
});

describe("the plugin with the agent down: what the API server's answers prove", () => {
  it("refuses a pod of an enrolled namespace, with the agent's service-account token", async () => {
    routes.set("/api/v1/namespaces/shop/pods/web", pod("web", "shop"));
    routes.set("/api/v1/namespaces/shop", namespace("shop", AMBIENT));
    refusedWith(await add("shop", "web"), /and shop\/web belongs in the mesh \(namespace shop is labelled istio\.io\/dataplane-mode=ambient\): /);
    expect(seen).toEqual([
      { path: "/api/v1/namespaces/shop/pods/web", authorization: `Bearer ${TOKEN}` },
      { path: "/api/v1/namespaces/shop", authorization: `Bearer ${TOKEN}` },
    ]);
  });

  it("passes a pod of a namespace that is not enrolled (prevResult through)", async () => {
    routes.set("/api/v1/namespaces/default/pods/free", pod("free", "default"));
    routes.set("/api/v1/namespaces/default", namespace("default"));
    passed(await add("default", "free"));
  });

  it("decides from the pod's own label without asking for the namespace", async () => {
    routes.set("/api/v1/namespaces/shop/pods/out", pod("out", "shop", { "istio.io/dataplane-mode": "none" }));
    routes.set("/api/v1/namespaces/shop/pods/in", pod("in", "shop", AMBIENT));
    routes.set("/api/v1/namespaces/shop", json(403, { kind: "Status", code: 403 })); // never asked
    passed(await add("shop", "out"));
    refusedWith(await add("shop", "in"), /belongs in the mesh \(the pod is labelled istio\.io\/dataplane-mode=ambient\)/);
    expect(seen.map((s) => s.path)).toEqual(["/api/v1/namespaces/shop/pods/out", "/api/v1/namespaces/shop/pods/in"]);
  });

  it("passes a pod of an excluded namespace without any API call", async () => {
    passed(await add("kube-system", "coredns"));
    expect(seen).toEqual([]);
  });
});

describe("the plugin with the agent down refuses on every answer it cannot interpret", () => {
  for (const [status, text] of [[401, "Unauthorized"], [403, "Forbidden"], [404, "Not Found"], [500, "Internal Server Error"], [503, "Service Unavailable"]] as const) {
    it(`${status} for the pod`, async () => {
      routes.set("/api/v1/namespaces/default/pods/free", json(status, { kind: "Status", code: status }));
      routes.set("/api/v1/namespaces/default", namespace("default"));
      refusedWith(await add("default", "free"), new RegExp(`and the API server answered ${status} ${text} for pod default/free: cannot prove default/free stays out of the mesh, `));
    });
  }

  it("403 for the namespace when the pod's labels leave it open", async () => {
    routes.set("/api/v1/namespaces/default/pods/free", pod("free", "default"));
    routes.set("/api/v1/namespaces/default", json(403, { kind: "Status", code: 403 }));
    refusedWith(await add("default", "free"), /the API server answered 403 Forbidden for namespace default: /);
  });

  it("a 200 whose body is not JSON, or not the pod", async () => {
    routes.set("/api/v1/namespaces/default/pods/free", (_req, res) => { res.writeHead(200); res.end("<html>proxy login</html>"); });
    refusedWith(await add("default", "free"), /answered 200 for pod default\/free with a body that is not JSON/);
    routes.set("/api/v1/namespaces/default/pods/free", json(200, { kind: "Status", status: "Success" }));
    refusedWith(await add("default", "free"), /answered 200 for pod default\/free with something else than pod default\/free/);
    routes.set("/api/v1/namespaces/default/pods/free", pod("other", "default"));
    refusedWith(await add("default", "free"), /with something else than pod default\/free/);
  });

  it("a body larger than 1 MiB", async () => {
    routes.set("/api/v1/namespaces/default/pods/free", (_req, res) => { res.writeHead(200); res.end(Buffer.alloc(2 << 20, 0x20)); });
    refusedWith(await add("default", "free"), /the API server's answer for pod default\/free is larger than 1048576 bytes/);
  });

  it("no answer in time", async () => {
    const held: ServerResponse[] = [];
    routes.set("/api/v1/namespaces/default/pods/free", (_req, res) => { held.push(res); });
    refusedWith(await add("default", "free", { kube_timeout_ms: 300 }), /the API server did not answer for pod default\/free within 0\.3 s/);
    for (const r of held) r.destroy();
  });

  it("an API server whose certificate the plugin does not trust, or none at all", async () => {
    const other = writeKubeconfig(join(dir, "kubeconfig-untrusted"), (untrusted.address() as AddressInfo).port, join(dir, "api.crt"));
    refusedWith(await add("default", "free", { kubeconfig: other }), /the API server could not be reached for pod default\/free: .*self.signed certificate/);
    const closed = await new Promise<number>((resolve) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)); }); });
    const nowhere = writeKubeconfig(join(dir, "kubeconfig-nowhere"), closed, join(dir, "api.crt"));
    refusedWith(await add("default", "free", { kubeconfig: nowhere }), /could not be reached for pod default\/free: connect ECONNREFUSED/);
  });

  it("no kubeconfig, or one it cannot use", async () => {
    refusedWith(await add("default", "free", { kubeconfig: undefined }), /and the plugin has no kubeconfig to check the pod with: /);
    refusedWith(await add("default", "free", { kubeconfig: join(dir, "missing") }), /the plugin's kubeconfig .*missing is unusable: ENOENT/);
    writeFileSync(join(dir, "broken"), "{\"clusters\": []}");
    refusedWith(await add("default", "free", { kubeconfig: join(dir, "broken") }), /the plugin's kubeconfig .*broken is unusable/);
  });
});
