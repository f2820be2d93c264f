// A lost AddWorkload on the local cluster: the newest ZDS client (a real client on the real SEQPACKET socket)
// never acks. The agent closes it as broken after the ack timeout, says so ("ztunnel did not acknowledge … within
// N s", not "no ztunnel is connected"), and the new pod recovers by itself: its AddWorkload goes to the responsive
// ztunnel still connected, or reaches the ztunnel that connects next, and the pod starts with
// `ambient.istio.io/redirection: enabled`. No manual step.
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { adminApi, down, paths, up, waitFor, type Api } from "@ambit/localcluster";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CniAgent } from "../src/agent.js";
import { FakeZtunnel, type Received } from "./fake-ztunnel.js";

if (process.getuid?.() !== 0) throw new Error("the agent's cluster tests need root");

const NS = "wedge";
const ACK_TIMEOUT_MS = 1000;
let api: Api;
let agent: CniAgent;
const logs: { msg: string; fields?: Record<string, unknown> }[] = [];
const clients: FakeZtunnel[] = [];

const socketPath = () => join(paths.nodeRoot("node-1"), "var/run/ztunnel/ztunnel.sock");
const echoPod = (name: string) => ({ metadata: { name }, spec: { nodeName: "node-1", containers: [{ name: "echo", image: "ambit/echo" }] } });
interface PodView { metadata: { uid: string; annotations?: Record<string, string> }; status: { phase?: string } }
const getPod = (name: string) => api.get<PodView>(`/api/v1/namespaces/${NS}/pods/${name}`);
const events = async (name: string) => (await api.get<{ items: { involvedObject: { name: string }; reason: string; message: string }[] }>(`/api/v1/namespaces/${NS}/events`))
  .items.filter((e) => e.involvedObject.name === name);

async function ztunnel(): Promise<FakeZtunnel> {
  const c = await FakeZtunnel.connect(socketPath());
  clients.push(c);
  await c.hello();
  return c;
}
const addsFor = (got: Received[], name: string) => got.filter((r) => r.req.kind === "add" && r.req.info.name === name);

/** Waits until the pod runs, marked enabled; returns its uid. */
async function runningAndEnabled(name: string): Promise<string> {
  await waitFor(`${name} running and enabled`, async () => {
    const p = await getPod(name);
    return p.status.phase === "Running" && p.metadata.annotations?.["ambient.istio.io/redirection"] === "enabled";
  }, 120_000, 200);
  return (await getPod(name)).metadata.uid;
}

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  await api.post("/api/v1/namespaces", { metadata: { name: NS, labels: { "istio.io/dataplane-mode": "ambient" } } });
  await api.post("/api/v1/namespaces", { metadata: { name: "istio-system" } });
  const kc = new KubeConfig();
  kc.loadFromFile(paths.adminKubeconfig());
  const root = paths.nodeRoot("node-1");
  agent = new CniAgent({
    kc, nodeName: "node-1", excludedNamespaces: ["istio-system", "kube-system"], zdsSocket: socketPath(), zdsAckTimeoutMs: ACK_TIMEOUT_MS, dnsCapture: false,
    log: (msg, fields) => logs.push({ msg, ...(fields ? { fields: fields as Record<string, unknown> } : {}) }),
    cni: { confDir: join(root, "etc/cni/net.d"), binDir: join(root, "opt/cni/bin"), socket: join(root, "var/run/ambit/cni.sock") },
  });
  await agent.start();
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await agent?.stop();
  await down();
});

describe("an AddWorkload the newest ztunnel never acknowledges", () => {
  it("goes to the responsive ztunnel still connected: the pod starts, enabled, and the log says what happened", async () => {
    const good = await ztunnel();
    const goodGot = good.autoAck();
    await waitFor("the good client's snapshot", async () => goodGot.some((r) => r.req.kind === "snapshot_sent"), 30_000, 50);
    const stuck = await ztunnel(); // acks its snapshot, then never again: the newest connection, wedged
    await stuck.takeSnapshot();
    await api.post(`/api/v1/namespaces/${NS}/pods`, echoPod("first"));
    const uid = await runningAndEnabled("first");
    // The stuck client got the Add first and was closed as broken; the good one got it next and acked it.
    expect((await stuck.next()).req).toMatchObject({ kind: "add", uid });
    await stuck.closed;
    expect(addsFor(goodGot, "first").map((r) => r.req)).toContainEqual(expect.objectContaining({ kind: "add", uid }));
    expect(agent.zds.connected).toBe(1);
    expect(logs.map((l) => l.msg)).toContain(`ztunnel did not acknowledge AddWorkload for pod ${uid} within 1 s (ZDS connection 2); the connection is closed as broken`);
    expect(logs.map((l) => l.msg)).not.toContain("no ztunnel is connected to the ZDS socket");
    await good.close();
  });

  it("with no other ztunnel: the CNI error names the ack timeout, and the ztunnel that connects next gets the pod, which then starts", async () => {
    await waitFor("the good client gone", async () => agent.zds.connected === 0, 30_000, 50);
    const stuck = await ztunnel();
    await stuck.takeSnapshot();
    await api.post(`/api/v1/namespaces/${NS}/pods`, echoPod("second"));
    const add = await stuck.next(120_000); // never acked
    expect(add.req).toMatchObject({ kind: "add", info: { name: "second", namespace: NS } });
    await stuck.closed;
    const uid = (await getPod("second")).metadata.uid;
    await waitFor("the sandbox event naming the ack timeout", async () => (await events("second")).some((e) =>
      e.reason === "FailedCreatePodSandBox" && e.message.includes(`ztunnel did not acknowledge AddWorkload for pod ${uid} within 1 s`)), 60_000, 200);
    expect((await getPod("second")).status.phase).toBe("Pending");
    // The ztunnel comes back (restarted) and acks: its snapshot carries the pod; the runtime's retry then succeeds.
    const back = await ztunnel();
    const got = back.autoAck();
    expect(await runningAndEnabled("second")).toBe(uid);
    expect(addsFor(got, "second").map((r) => r.req)).toContainEqual(expect.objectContaining({ kind: "add", uid }));
  });
});
