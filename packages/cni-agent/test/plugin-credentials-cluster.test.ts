// The chained plugin with the agent down, with exactly the credentials it has in a real DaemonSet, on the local
// cluster's real kube-apiserver: the chart's cni ServiceAccount and RBAC (rendered by the real helm binary and
// applied), a token minted for that account by TokenRequest in a service-account directory, the agent configured
// in-cluster from it (token file + CA file + KUBERNETES_SERVICE_HOST/PORT; no admin kubeconfig anywhere). The
// plugin refuses an enrolled pod and passes a non-enrolled one; it follows a rotation of the token file; it refuses
// when the API server answers 403 (the RBAC gone) or 401 (the token revoked).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHART_DIR, adminApi, down, helm, kubectl, paths, up, waitFor, type Api } from "@ambit/localcluster";
import { resolveKubeConfig } from "@ambit/kube";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CniAgent } from "../src/agent.js";
import { PLUGIN_KUBECONFIG } from "../src/cni-install.js";

if (process.getuid?.() !== 0) throw new Error("the agent's cluster tests need root");

const SYSTEM = "istio-system";
const SA = "istio-cni"; // the chart's cni ServiceAccount
const PREV = { cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ address: "10.244.1.5/24" }] };
let api: Api;
const root = mkdtempSync(join(tmpdir(), "ambit-cni-creds-"));
const saDir = join(root, "serviceaccount");
const cni = { confDir: join(root, "etc/cni/net.d"), binDir: join(root, "opt/cni/bin"), socket: join(root, "var/run/ambit/cni.sock") };
let rendered = "";

/** A pod that is never scheduled (no node matches): it only has to exist for the plugin's GET. */
const pod = (name: string, labels: Record<string, string> = {}) => ({
  metadata: { name, labels }, spec: { nodeSelector: { "ambit.test/no-such-node": "true" }, containers: [{ name: "app", image: "ambit/echo" }] },
});

/** A token of the chart's cni ServiceAccount, from TokenRequest, bound to a Secret (deleting it revokes the token). */
async function mintToken(anchor: string): Promise<string> {
  const secret = await api.post<{ metadata: { uid: string } }>(`/api/v1/namespaces/${SYSTEM}/secrets`, { metadata: { name: anchor } });
  const tr = await api.post<{ status: { token: string } }>(`/api/v1/namespaces/${SYSTEM}/serviceaccounts/${SA}/token`, {
    apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest",
    spec: { expirationSeconds: 3600, boundObjectRef: { apiVersion: "v1", kind: "Secret", name: anchor, uid: secret.metadata.uid } },
  });
  return tr.status.token;
}

const authenticated = async (token: string) =>
  (await api.post<{ status: { authenticated?: boolean } }>("/apis/authentication.k8s.io/v1/tokenreviews", { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token } })).status.authenticated === true;

/** Writes a file of the service-account directory as the kubelet does: a new file renamed over the old one. */
function putFile(name: string, text: string): void {
  writeFileSync(join(saDir, `.${name}.new`), text);
  renameSync(join(saDir, `.${name}.new`), join(saDir, name));
}

/** The agent as it runs in its DaemonSet pod: in-cluster configuration, nothing else. */
function inClusterAgent(): CniAgent {
  const server = new URL(JSON.parse(readFileSync(paths.adminKubeconfig(), "utf8")).clusters[0].cluster.server as string);
  const loaded = resolveKubeConfig({ env: { KUBERNETES_SERVICE_HOST: server.hostname, KUBERNETES_SERVICE_PORT: server.port }, serviceAccountDir: saDir });
  expect(loaded.source).toBe("in-cluster");
  return new CniAgent({
    kc: loaded.kc, nodeName: "node-1", excludedNamespaces: [SYSTEM, "kube-system"], zdsSocket: join(root, "ztunnel/ztunnel.sock"), dnsCapture: false,
    log: () => undefined, cni,
  });
}

const pluginKubeconfig = () => JSON.parse(readFileSync(join(cni.confDir, PLUGIN_KUBECONFIG), "utf8")) as { users: { user: Record<string, string> }[] };

interface Outcome { code: number | null; msg?: string; out: unknown }

/** Runs the installed plugin (ADD) as the runtime does: the conf from the node's conflist, CNI_* variables only. */
function add(namespace: string, name: string): Promise<Outcome> {
  const list = JSON.parse(readFileSync(join(cni.confDir, "10-bridge.conflist"), "utf8")) as { cniVersion: string; name: string; plugins: { type: string }[] };
  const entry = list.plugins.find((p) => p.type === "ambit-cni")!;
  return new Promise((resolve, reject) => {
    const child = spawn(join(cni.binDir, "ambit-cni"), [], {
      env: { PATH: process.env["PATH"] ?? "", CNI_COMMAND: "ADD", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_CONTAINERID: "c1", CNI_PATH: cni.binDir,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name}` },
      stdio: ["pipe", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => { const o = JSON.parse(out) as { msg?: string }; resolve({ code, out: o, ...(o.msg ? { msg: o.msg } : {}) }); });
    child.stdin.end(JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...entry, prevResult: PREV }));
  });
}
const passes = async (ns: string, name: string) => expect(await add(ns, name)).toEqual({ code: 0, out: PREV });
const refused = async (ns: string, name: string, why: RegExp) => {
  const o = await add(ns, name);
  expect(o.code, JSON.stringify(o.out)).toBe(1);
  expect(o.msg).toMatch(/^the ambit cni-agent is unreachable \(connect ENOENT .*\) and /);
  expect(o.msg).toMatch(why);
  expect(o.msg).toMatch(/refusing to start it unprotected$/);
};

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  await api.post("/api/v1/namespaces", { metadata: { name: SYSTEM } });
  // The chart's own ServiceAccount and RBAC for the agent (and so the plugin), as helm renders them.
  rendered = await helm(["template", "ambit", CHART_DIR, "--namespace", SYSTEM, "--show-only", "templates/cni-serviceaccount.yaml", "--show-only", "templates/cni-rbac.yaml"]);
  await kubectl(["apply", "-f", "-"], rendered);
  await api.post("/api/v1/namespaces", { metadata: { name: "shop", labels: { "istio.io/dataplane-mode": "ambient" } } });
  await api.post("/api/v1/namespaces", { metadata: { name: "plain" } });
  await api.post("/api/v1/namespaces/shop/pods", pod("app"));
  await api.post("/api/v1/namespaces/shop/pods", pod("optout", { "istio.io/dataplane-mode": "none" }));
  await api.post("/api/v1/namespaces/plain/pods", pod("free"));
  await api.post("/api/v1/namespaces/plain/pods", pod("optin", { "istio.io/dataplane-mode": "ambient" }));
  // The pod's service-account directory, with a token of the chart's account.
  mkdirSync(saDir, { recursive: true });
  mkdirSync(cni.confDir, { recursive: true });
  const admin = JSON.parse(readFileSync(paths.adminKubeconfig(), "utf8")) as { clusters: { cluster: { "certificate-authority-data": string } }[] };
  putFile("ca.crt", Buffer.from(admin.clusters[0]!.cluster["certificate-authority-data"], "base64").toString());
  putFile("namespace", SYSTEM);
  putFile("token", await mintToken("cni-token-a"));
  writeFileSync(join(cni.confDir, "10-bridge.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "k8s-pod-network", plugins: [{ type: "bridge" }] }));
});

afterAll(async () => {
  await down();
  rmSync(root, { recursive: true, force: true });
});

describe("the plugin with the agent down, with the credentials of the chart's cni ServiceAccount", () => {
  it("the chart's RBAC lets the account get pods and namespaces (what the plugin needs), and not read secrets", async () => {
    const can = async (verb: string, resource: string, namespace?: string) => (await api.post<{ status: { allowed: boolean } }>("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview",
      spec: { user: `system:serviceaccount:${SYSTEM}:${SA}`, groups: ["system:serviceaccounts", `system:serviceaccounts:${SYSTEM}`], resourceAttributes: { verb, resource, ...(namespace ? { namespace } : {}) } },
    })).status.allowed;
    expect(await can("get", "pods", "shop")).toBe(true);
    expect(await can("get", "namespaces")).toBe(true);
    expect(await can("get", "secrets", "shop")).toBe(false);
    expect(await can("create", "pods", "shop")).toBe(false);
  });

  it("refuses an enrolled pod and passes a non-enrolled one", async () => {
    const agent = inClusterAgent();
    await agent.start();
    await agent.stop(); // a restart: the plugin and its kubeconfig stay; the agent's socket is gone
    const kubeconfig = pluginKubeconfig();
    expect(kubeconfig.users[0]!.user).toEqual({ token: readFileSync(join(saDir, "token"), "utf8") });
    expect(statSync(join(cni.confDir, PLUGIN_KUBECONFIG)).mode & 0o777).toBe(0o600);
    await refused("shop", "app", /and shop\/app belongs in the mesh \(namespace shop is labelled istio\.io\/dataplane-mode=ambient\): /);
    await refused("plain", "optin", /and plain\/optin belongs in the mesh \(the pod is labelled istio\.io\/dataplane-mode=ambient\): /);
    await passes("plain", "free");
    await passes("shop", "optout");
    await passes(SYSTEM, "anything"); // excluded: no API call
    await refused("shop", "nosuchpod", /and the API server answered 404 Not Found for pod shop\/nosuchpod: cannot prove/);
  });

  it("uses the token the kubelet rotated in while the agent ran", async () => {
    const first = readFileSync(join(saDir, "token"), "utf8");
    const agent = inClusterAgent();
    await agent.start();
    try {
      const next = await mintToken("cni-token-b");
      putFile("token", next);
      await waitFor("the rotated token in the plugin's kubeconfig", async () => pluginKubeconfig().users[0]!.user["token"] === next, 30_000, 50);
    } finally {
      await agent.stop();
    }
    // The old token revoked (its Secret deleted): the plugin does not need it any more.
    await api.delete(`/api/v1/namespaces/${SYSTEM}/secrets/cni-token-a`);
    await waitFor("the old token revoked", async () => !(await authenticated(first)), 60_000, 200);
    await refused("shop", "app", /belongs in the mesh/);
    await passes("plain", "free");
  });

  it("refuses every pod it cannot check when the RBAC is gone (403)", async () => {
    await api.delete("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ambit-cni");
    try {
      await waitFor("403 for the plugin", async () => /answered 403 Forbidden/.test((await add("plain", "free")).msg ?? ""), 60_000, 200);
      await refused("plain", "free", /and the API server answered 403 Forbidden for pod plain\/free: cannot prove plain\/free stays out of the mesh, /);
      await refused("shop", "app", /answered 403 Forbidden for pod shop\/app/);
      await passes("kube-system", "coredns"); // excluded: no API call
    } finally {
      await kubectl(["apply", "-f", "-"], rendered);
    }
    await waitFor("the RBAC back", async () => (await add("plain", "free")).code === 0, 60_000, 200);
  });

  it("refuses every pod it cannot check when its token is revoked (401)", async () => {
    await api.delete(`/api/v1/namespaces/${SYSTEM}/secrets/cni-token-b`);
    await waitFor("401 for the plugin", async () => /answered 401 Unauthorized/.test((await add("plain", "free")).msg ?? ""), 60_000, 200);
    await refused("plain", "free", /and the API server answered 401 Unauthorized for pod plain\/free: cannot prove plain\/free stays out of the mesh, /);
    await refused("shop", "optout", /answered 401 Unauthorized for pod shop\/optout/);
    expect(readdirSync(cni.confDir).sort()).toEqual(["10-bridge.conflist", PLUGIN_KUBECONFIG]);
  });
});
