// The Helm chart on the local cluster: every rendered manifest accepted by the real API server (server-side
// dry-run), install → Ready, an enrolled app working, `helm upgrade` with a changed value rolling only the pods it
// affects, and `helm uninstall` removing everything it created — no rules left in pod netns, no redirection
// annotations — while the apps keep running.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHART_DIR, MESH_NAMESPACE, adminApi, down, helm, installMesh, kubectl, paths, uninstallMesh, up, waitFor, type Api } from "@ambit/localcluster";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accessLog, readyPods, tcpEcho, waitEnrolled, ztunnelOn } from "../src/mesh.js";

if (process.getuid?.() !== 0) throw new Error("the end-to-end suites need root");

let api: Api;
const NS = "chart-app";
const apply = (...objs: object[]) => kubectl(["apply", "-f", "-"], objs.map((o) => JSON.stringify(o)).join("\n"));
const pod = (name: string, node: string) => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace: NS, labels: { app: name } }, spec: { nodeName: node, containers: [{ name: "echo", image: "ambit/echo" }] } });

interface PodMeta { metadata: { name: string; uid: string; annotations?: Record<string, string>; labels?: Record<string, string> }; status: { podIP?: string } }
const meshPods = async () => (await api.get<{ items: PodMeta[] }>(`/api/v1/namespaces/${MESH_NAMESPACE}/pods`)).items;
const uidsOf = async (app: string) => (await meshPods()).filter((p) => p.metadata.labels?.["app"] === app).map((p) => p.metadata.uid).sort();
const appPods = async () => (await api.get<{ items: PodMeta[] }>(`/api/v1/namespaces/${NS}/pods`)).items;
/** The nat rules of both nodes' netns. */
const nodeNat = () => ["node-1", "node-2"].map((n) => execFileSync("ip", ["netns", "exec", `ambit-${n}`, "iptables-save", "-t", "nat"]).toString()).join("\n");
const iptablesIn = (uid: string) => execFileSync("ip", ["netns", "exec", `ambit-pod-${uid}`, "sh", "-c", "iptables-save; ip6tables-save; ip rule"]).toString();

beforeAll(async () => {
  await up({ nodes: 2, progress: () => undefined });
  api = adminApi();
}, 300_000);

afterAll(async () => {
  if (!process.env["AMBIT_E2E_KEEP"]) await down();
}, 120_000);

describe("the Helm chart on the local cluster", () => {
  it("renders manifests that the API server accepts (server-side dry-run)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ambit-chart-"));
    try {
      const rendered = await helm(["template", "ambit", CHART_DIR, "--namespace", MESH_NAMESPACE, "--include-crds"]);
      const file = join(dir, "rendered.yaml");
      writeFileSync(file, rendered);
      await kubectl(["create", "namespace", MESH_NAMESPACE]);
      // CRDs first (a dry-run cannot establish them), then everything with a server-side dry-run.
      await kubectl(["apply", "-f", join(CHART_DIR, "crds")]);
      const out = await kubectl(["apply", "--server-side", "--dry-run=server", "-f", file]);
      const kinds = out.split("\n").filter(Boolean);
      expect(kinds.length).toBeGreaterThan(10);
      for (const line of kinds) expect(line).toMatch(/serverside-applied \(server dry run\)|unchanged/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("installs: every mesh pod Ready; an enrolled app talks over the mesh", async () => {
    await installMesh();
    await apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: NS, labels: { "istio.io/dataplane-mode": "ambient" } } }, pod("a", "node-1"), pod("b", "node-2"));
    await waitFor("app pods Ready and redirected", async () => {
      const pods = await readyPods(api, NS, "app");
      return pods.length === 2 && (await appPods()).every((p) => p.metadata.annotations?.["ambient.istio.io/redirection"] === "enabled");
    }, 60_000, 300);
    await waitEnrolled(api, NS);
    const b = (await appPods()).find((p) => p.metadata.name === "b")!;
    await waitFor("a → b through the mesh", async () => (await tcpEcho(`${NS}/a`, b.status.podIP!, 9000, "via-mesh")).stdout === "via-mesh", 30_000, 300);
    // Through the mesh: b's ztunnel logged the exchange with a's SPIFFE identity.
    const z = await ztunnelOn("node-2");
    await waitFor("the exchange in b's ztunnel access log", async () => (await accessLog(z)).some((r) => r["msg"] === "connection complete" && r["src.identity"] === `spiffe://cluster.local/ns/${NS}/sa/default` && r["dst.hbone_addr"] === `${b.status.podIP}:9000`), 10_000, 300);
    for (const p of await appPods()) expect(iptablesIn(p.metadata.uid)).toContain("ISTIO_OUTPUT");
    // Each node SNATs its probes of its enrolled pods to 169.254.7.127.
    await waitFor("probe SNAT on the nodes", async () => (await appPods()).every((p) => nodeNat().includes(`-d ${p.status.podIP}/32 -p tcp -m owner --socket-exists -j SNAT --to-source 169.254.7.127`)), 10_000, 300);
  });

  it("upgrades with a changed value by rolling only the pods it affects", async () => {
    const before = { istiod: await uidsOf("istiod"), ztunnel: await uidsOf("ztunnel"), cni: await uidsOf("istio-cni-node") };
    await installMesh({ set: ["ztunnel.logLevel=debug"] });
    await waitFor("old ztunnel pods gone", async () => (await uidsOf("ztunnel")).every((u) => !before.ztunnel.includes(u)) && (await uidsOf("ztunnel")).length === 2, 120_000, 500);
    expect(await uidsOf("istiod")).toEqual(before.istiod);
    expect(await uidsOf("istio-cni-node")).toEqual(before.cni);
    const ds = await api.get<{ spec: { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } } }>(`/apis/apps/v1/namespaces/${MESH_NAMESPACE}/daemonsets/ztunnel`);
    expect(ds.spec.template.spec.containers[0]!.env).toContainEqual({ name: "LOG_LEVEL", value: "debug" });
    // The app still talks through the mesh after the ztunnels were replaced.
    const b = (await appPods()).find((p) => p.metadata.name === "b")!;
    await waitFor("a → b after the upgrade", async () => (await tcpEcho(`${NS}/a`, b.status.podIP!, 9000, "after-upgrade")).stdout === "after-upgrade", 30_000, 300);
  });

  it("uninstalls everything it created while the apps keep running", async () => {
    const appsBefore = (await appPods()).map((p) => p.metadata.uid).sort();
    await uninstallMesh();
    const left = await kubectl(["get", "all,serviceaccounts,roles,rolebindings,configmaps,poddisruptionbudgets", "-n", MESH_NAMESPACE, "-l", "app.kubernetes.io/instance=ambit", "-o", "name"]);
    expect(left.trim()).toBe("");
    const cluster = await kubectl(["get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/instance=ambit", "-o", "name"]);
    expect(cluster.trim()).toBe("");
    await waitFor("redirection annotations removed", async () => (await appPods()).every((p) => !p.metadata.annotations?.["ambient.istio.io/redirection"]), 30_000, 300);
    expect((await appPods()).map((p) => p.metadata.uid).sort()).toEqual(appsBefore);
    for (const p of await appPods()) {
      const rules = iptablesIn(p.metadata.uid);
      expect(rules).not.toContain("ISTIO_");
      expect(rules).not.toMatch(/fwmark 0x111/);
    }
    expect(nodeNat()).not.toContain("ISTIO_POSTRT");
    // The CNI conflist no longer chains our plugin, so new pods start.
    for (const node of ["node-1", "node-2"]) {
      const conf = execFileSync("sh", ["-c", `cat ${paths.nodeRoot(node)}/etc/cni/net.d/*.conflist`]).toString();
      expect(conf).not.toContain("ambit-cni");
    }
    await apply(pod("c", "node-1"));
    await waitFor("a new pod starts", async () => (await readyPods(api, NS, "app=c")).length === 1, 60_000, 300);
    const b = (await appPods()).find((p) => p.metadata.name === "b")!;
    expect((await tcpEcho(`${NS}/a`, b.status.podIP!, 9000, "plain-again")).stdout).toBe("plain-again");
  });
});
