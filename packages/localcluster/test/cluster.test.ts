// The local cluster end to end, through the real CLI: control plane, CRDs, TokenRequest/TokenReview,
// node network, cluster DNS and Service IPs, clean teardown (also after a crash).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Api, ApiError, targetFromKubeconfig, waitFor } from "../src/api.js";
import { dnsAnswers } from "../src/cluster.js";
import { attachPod, createNetns, deleteNetns } from "../src/network.js";
import { KUBERNETES_SERVICE_IP, nodeNetns, paths, stateDir } from "../src/layout.js";
import { run } from "../src/run.js";
import { loadState } from "../src/state.js";
import { CLI, cli, snapshot, type HostSnapshot } from "./helpers.js";

if (process.getuid?.() !== 0) throw new Error("the local-cluster tests need root (network namespaces, iptables)");

let before: HostSnapshot;
let api: Api;
let kubectl: string;
let kubeconfig: string;

beforeAll(async () => {
  await cli("down");
  before = await snapshot();
  const res = await cli("up", "--nodes", "2");
  expect(res.code, res.stderr).toBe(0);
  kubeconfig = (await cli("kubeconfig")).stdout.trim();
  api = new Api(targetFromKubeconfig(kubeconfig));
  kubectl = join(loadState()!.binDir!, "kubectl");
});

afterAll(async () => {
  await cli("down");
});

describe("control plane", () => {
  it("answers /readyz through kubectl with the printed kubeconfig", async () => {
    expect(kubeconfig).toBe(paths.adminKubeconfig());
    expect((await run(kubectl, ["--kubeconfig", kubeconfig, "get", "--raw", "/readyz"])).trim()).toBe("ok");
  });

  it("has two Ready nodes with their pod ranges", async () => {
    const out = JSON.parse(await run(kubectl, ["--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"]));
    const nodes = out.items.map((n: { metadata: { name: string }; spec: { podCIDR: string; taints?: unknown[] }; status: { conditions: { type: string; status: string }[] } }) =>
      [n.metadata.name, n.spec.podCIDR, n.status.conditions.find((c) => c.type === "Ready")?.status, n.spec.taints ?? []]);
    expect(nodes).toEqual([["node-1", "10.244.1.0/24", "True", []], ["node-2", "10.244.2.0/24", "True", []]]);
  });

  it("establishes a CRD and serves its objects", async () => {
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition",
      metadata: { name: "widgets.test.ambit.dev" },
      spec: {
        group: "test.ambit.dev", scope: "Namespaced",
        names: { plural: "widgets", singular: "widget", kind: "Widget" },
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: {
          type: "object", properties: { spec: { type: "object", properties: { size: { type: "integer", minimum: 1 } } } },
        } } }],
      },
    };
    await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
    await waitFor("CRD Established", async () => {
      const c = await api.get<{ status: { conditions?: { type: string; status: string }[] } }>("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.ambit.dev");
      return c.status.conditions?.some((x) => x.type === "Established" && x.status === "True");
    }, 30_000);
    await waitFor("discovery of test.ambit.dev/v1", () => api.get("/apis/test.ambit.dev/v1").then(() => true), 30_000);
    await api.post("/apis/test.ambit.dev/v1/namespaces/default/widgets", { apiVersion: "test.ambit.dev/v1", kind: "Widget", metadata: { name: "w1" }, spec: { size: 3 } });
    const w = await api.get<{ spec: { size: number } }>("/apis/test.ambit.dev/v1/namespaces/default/widgets/w1");
    expect(w.spec.size).toBe(3);
    // The structural schema is enforced.
    await expect(api.post("/apis/test.ambit.dev/v1/namespaces/default/widgets", { apiVersion: "test.ambit.dev/v1", kind: "Widget", metadata: { name: "w2" }, spec: { size: 0 } }))
      .rejects.toThrow(/spec.size: Invalid value: 0/);
  });

  it("issues TokenRequest tokens that pass TokenReview for their audience only", async () => {
    await api.post("/api/v1/namespaces", { metadata: { name: "tokens" } });
    await api.post("/api/v1/namespaces/tokens/serviceaccounts", { metadata: { name: "app" } });
    const tr = await api.post<{ status: { token: string } }>("/api/v1/namespaces/tokens/serviceaccounts/app/token",
      { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { audiences: ["istio-ca"], expirationSeconds: 600 } });
    const review = (audiences: string[]) => api.post<{ status: { authenticated?: boolean; user?: { username: string }; audiences?: string[]; error?: string } }>(
      "/apis/authentication.k8s.io/v1/tokenreviews", { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token: tr.status.token, audiences } });
    const ok = await review(["istio-ca"]);
    expect(ok.status.authenticated).toBe(true);
    expect(ok.status.user?.username).toBe("system:serviceaccount:tokens:app");
    expect(ok.status.audiences).toEqual(["istio-ca"]);
    const wrong = await review(["some-other-audience"]);
    expect(wrong.status.authenticated).toBeFalsy();
    expect(wrong.status.error).toMatch(/audience/i);
  });

  it("runs the controllers: a namespace's default ServiceAccount and root CA ConfigMap appear", async () => {
    await waitFor("default SA in tokens", () => api.get("/api/v1/namespaces/tokens/serviceaccounts/default").then(() => true), 30_000);
    await waitFor("kube-root-ca.crt in tokens", async () => {
      const cm = await api.get<{ data: Record<string, string> }>("/api/v1/namespaces/tokens/configmaps/kube-root-ca.crt");
      return cm.data["ca.crt"] === readFileSync(join(stateDir(), "pki/ca.crt"), "utf8");
    }, 30_000);
  });

  it("rejects unauthenticated and unauthorized requests", async () => {
    const anon = new Api({ ...targetFromKubeconfig(kubeconfig), token: "not-a-token" });
    await expect(anon.get("/api/v1/nodes")).rejects.toSatisfy((e: unknown) => e instanceof ApiError && e.status === 401);
    const node = new Api(targetFromKubeconfig(paths.kubeconfig("node-1")));
    await expect(node.get("/api/v1/secrets")).rejects.toSatisfy((e: unknown) => e instanceof ApiError && e.status === 403);
  });
});

describe("network", () => {
  it("has a netns per node", async () => {
    const names = (await run("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0]);
    expect(names).toEqual(expect.arrayContaining(["ambit-cluster", "ambit-node-1", "ambit-node-2"]));
  });

  it("routes a process in node-1's pod range to one in node-2's, keeping the source IP", async () => {
    const [a, b] = ["ambit-pod-test-a", "ambit-pod-test-b"];
    await createNetns(a);
    await createNetns(b);
    try {
      await attachPod(1, a, "10.244.1.200");
      await attachPod(2, b, "10.244.2.200");
      const server = spawn("ip", ["netns", "exec", b, process.execPath, "-e",
        `require("net").createServer(s=>s.end(s.remoteAddress)).listen(7000,"10.244.2.200",()=>console.log("listening"))`]);
      try {
        await new Promise<void>((r) => server.stdout.once("data", () => r()));
        const seen = await run("ip", ["netns", "exec", a, process.execPath, "-e",
          `const s=require("net").connect(7000,"10.244.2.200");let d="";s.on("data",c=>d+=c);s.on("end",()=>console.log(d))`]);
        expect(seen.trim()).toBe("10.244.1.200");
      } finally {
        server.kill();
      }
    } finally {
      await deleteNetns(a);
      await deleteNetns(b);
    }
  });

  it("serves the kubernetes Service IP and cluster DNS inside the nodes", async () => {
    for (const ns of [nodeNetns(1), nodeNetns(2)]) {
      expect(await dnsAnswers(ns, "kubernetes.default.svc.cluster.local")).toBe(KUBERNETES_SERVICE_IP);
      const ca = join(stateDir(), "pki/ca.crt");
      const script = `require("https").get({host:"${KUBERNETES_SERVICE_IP}",port:443,path:"/version",ca:require("fs").readFileSync("${ca}"),` +
        `servername:"kubernetes.default.svc"},r=>{let d="";r.on("data",c=>d+=c);r.on("end",()=>console.log(r.statusCode))}).on("error",e=>console.log(e.message))`;
      // /version is readable anonymously; through kube-proxy's DNAT and the API server forwarder.
      expect((await run("ip", ["netns", "exec", ns, process.execPath, "-e", script])).trim()).toBe("200");
    }
  });
});

describe("CLI", () => {
  it("reports status", async () => {
    const s = await cli("status");
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/phase: up/);
    expect(s.stdout).toMatch(/ready: node-1, node-2/);
  });

  it("explains bad input with a clear error and no change", async () => {
    const bad = await cli("up", "--nodes", "0");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--nodes must be a whole number from 1 to 20, got 0/);
    expect((await cli("up", "--nodes", "many")).stderr).toMatch(/got NaN/);
    const unknown = await cli("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    expect((await cli("exec", "default/nope", "--", "true")).stderr).toMatch(/pods "nope" not found/);
    expect((await cli("exec", "nope")).stderr).toMatch(/usage: ambit-local exec/);
    expect((await cli("logs", "default")).stderr).toMatch(/expected <namespace>\/<pod>/);
    // The cluster is untouched by all of that.
    expect((await cli("status")).code).toBe(0);
  });
});

describe("teardown", () => {
  it("down leaves no netns, link, iptables rule or process of ours", async () => {
    const during = await snapshot();
    expect(during.ownedProcesses.length).toBeGreaterThan(5);
    expect((await cli("down")).code).toBe(0);
    const after = await snapshot();
    expect(after).toEqual(before);
    expect(after.netns).toEqual([]);
    expect(after.ownedProcesses).toEqual([]);
    expect(after.clusterProcesses).toEqual([]);
    expect(existsSync(paths.state())).toBe(false);
    expect((await cli("status")).stdout).toMatch(/no cluster/);
  });

  it("cleans up after `up` is killed with SIGKILL half-way, and `up` on the dirty state starts afresh", async () => {
    const child = spawn(process.execPath, [CLI, "up", "--nodes", "2"], { stdio: "ignore" });
    // Kill it once the network exists and some processes run.
    await waitFor("a half-started cluster", async () => (loadState()?.processes.length ?? 0) >= 2, 60_000, 20);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const dirty = await snapshot();
    expect(dirty.netns.length).toBeGreaterThan(0);
    expect(dirty.ownedProcesses.length).toBeGreaterThan(0);

    // The processes it left run on: kill -9 them too, as a crash would.
    for (const pid of dirty.ownedProcesses) process.kill(pid, "SIGKILL");
    const res = await cli("up", "--nodes", "1");
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/removing the previous cluster/);
    expect((await cli("status")).stdout).toMatch(/ready: node-1\)/);

    expect((await cli("down")).code).toBe(0);
    expect(await snapshot()).toEqual(before);
  });
});
