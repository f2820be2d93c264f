// The agent on the local cluster: enrollment by namespace label without restarts, the hand-off to a ztunnel
// over ZDS (a test client speaking the protocol), pending until acked, blocked-not-bypassed without ztunnel,
// un-enrollment, excluded namespaces, and a restart that leaves the rules identical and repairs tampering; on exit,
// a restart (the agent's DaemonSet present) that keeps everything and an uninstall (the DaemonSet gone) that
// leaves the node clean with the apps running.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { Server } from "node:net";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { adminApi, down, paths, up, waitFor, type Api } from "@ambit/localcluster";
import { decodeRequest, encodeAck, encodeHello, type ZdsRequest } from "@ambit/protocol";
import { SeqpacketSocket, closeFd, getOriginalDst, isNetnsFd, listenInNetns } from "@ambit/sys";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CniAgent } from "../src/agent.js";
import { inspectRules } from "../src/redirect/index.js";
import { decideOnExit, kubeExitCheckApi, type ExitCheckApi } from "../src/uninstall.js";
import { UNINSTALL_ANNOTATION, requestUninstall, watchUninstallRequest } from "../src/uninstall-hook.js";

if (process.getuid?.() !== 0) throw new Error("the agent's cluster tests need root");

const NS = "shop";
const socketPath = () => join(paths.nodeRoot("node-1"), "var/run/ztunnel/ztunnel.sock");
let api: Api;
let agent: CniAgent;

/** Every agent's log lines, in order. */
const agentLog: { msg: string; fields?: object }[] = [];
const newAgent = () => {
  const kc = new KubeConfig();
  kc.loadFromFile(paths.adminKubeconfig());
  const root = paths.nodeRoot("node-1");
  return new CniAgent({
    kc, nodeName: "node-1", excludedNamespaces: ["istio-system", "kube-system"], zdsSocket: socketPath(), dnsCapture: false, monitoringPort: 0,
    log: (msg: string, fields?: object) => void agentLog.push({ msg, ...(fields ? { fields } : {}) }),
    cni: { confDir: join(root, "etc/cni/net.d"), binDir: join(root, "opt/cni/bin"), socket: join(root, "var/run/ambit/cni.sock") },
  });
};

/**
 * A ztunnel stand-in: says hello, records every request, keeps the received netns fds and acks everything. With
 * `proxy`, like ztunnel it first opens 15001 inside each added pod's netns (recording original destinations).
 */
async function fakeZtunnel(proxy = false) {
  const sock = await SeqpacketSocket.connect(socketPath());
  const requests: (ZdsRequest & { fd?: number })[] = [];
  const seen = new Map<string, string[]>();
  const servers: Server[] = [];
  let chain = Promise.resolve();
  sock.on("message", ({ data, fds }) => {
    const req = decodeRequest(data, fds.length);
    requests.push({ ...req, ...(fds[0] !== undefined ? { fd: fds[0] } : {}) });
    chain = chain.then(async () => {
      if (proxy && req.kind === "add" && fds[0] !== undefined) {
        const server = await listenInNetns({ netns: fds[0], host: "0.0.0.0", port: 15001 });
        server.on("connection", (c) => { const d = getOriginalDst(c); seen.set(req.info.name, [...(seen.get(req.info.name) ?? []), `${d.address}:${d.port}`]); c.end(); });
        servers.push(server);
      }
      await sock.send(encodeAck()).catch(() => undefined);
    });
  });
  await sock.send(encodeHello());
  return { sock, requests, seen, close: () => {
    sock.destroy();
    for (const srv of servers) srv.close();
    for (const r of requests) if (r.fd !== undefined) try { closeFd(r.fd); } catch { /* closed */ }
  } };
}

const annotation = async (name: string, ns = NS) =>
  (await api.get<{ metadata: { annotations?: Record<string, string> } }>(`/api/v1/namespaces/${ns}/pods/${name}`)).metadata.annotations?.["ambient.istio.io/redirection"];
const podNetns = async (name: string, ns = NS) => `/var/run/netns/ambit-pod-${(await api.get<{ metadata: { uid: string } }>(`/api/v1/namespaces/${ns}/pods/${name}`)).metadata.uid}`;
const iptablesSave = (netns: string) => execFileSync("nsenter", [`--net=${netns}`, "iptables-save"]).toString().split("\n").filter((l) => !l.startsWith("#") && !l.startsWith(":")).join("\n");
const echoPod = (name: string) => ({ metadata: { name }, spec: { nodeName: "node-1", containers: [{ name: "echo", image: "ambit/echo" }] } });

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  for (const ns of [NS, "istio-system"]) await api.post("/api/v1/namespaces", { metadata: { name: ns } });
  await api.post(`/api/v1/namespaces/${NS}/pods`, echoPod("web"));
  await api.post("/api/v1/namespaces/kube-system/pods", { ...echoPod("sys"), metadata: { name: "sys", labels: { "istio.io/dataplane-mode": "ambient" } } });
  await waitFor("running pods", async () => {
    const phases = await Promise.all([`${NS}/pods/web`, "kube-system/pods/sys"].map((p) => api.get<{ status: { phase?: string } }>(`/api/v1/namespaces/${p}`).then((x) => x.status.phase)));
    return phases.every((p) => p === "Running");
  }, 60_000, 200);
  agent = newAgent();
  await agent.start();
});

afterAll(async () => {
  await agent?.stop();
  await down();
});

describe("enrollment", () => {
  it("leaves pods alone until their namespace is labelled, then enrolls them in place (pending without ztunnel)", async () => {
    const web = await podNetns("web");
    expect((await inspectRules(web, { dnsCapture: false, ipv6: true })).present).toBe(false);
    expect(await annotation("web")).toBeUndefined();
    await api.patch(`/api/v1/namespaces/${NS}`, { metadata: { labels: { "istio.io/dataplane-mode": "ambient" } } });
    await waitFor("web pending", async () => (await annotation("web")) === "pending", 30_000, 100);
    expect((await inspectRules(web, { dnsCapture: false, ipv6: true })).clean).toBe(true);
    // No ztunnel: the pod's outbound TCP goes to 15001, where nothing listens: blocked, not bypassed.
    const res = execFileSync("nsenter", [`--net=${web}`, process.execPath, "-e",
      `require("net").connect(443,"10.96.0.1").on("connect",()=>{console.log("connected");process.exit(0)}).on("error",e=>{console.log(e.code);process.exit(0)})`]).toString().trim();
    expect(res).toBe("ECONNREFUSED");
    // The pod was not restarted.
    const pod = await api.get<{ status: { containerStatuses: { restartCount: number }[] } }>(`/api/v1/namespaces/${NS}/pods/web`);
    expect(pod.status.containerStatuses[0]!.restartCount).toBe(0);
  });

  it("never enrolls a pod of an excluded namespace, even when it asks", async () => {
    // sys was Running (and asking) before the agent started, and start() returns only once every existing pod
    // has been reconciled: the agent has decided about it.
    expect(await annotation("sys", "kube-system")).toBeUndefined();
    expect((await inspectRules(await podNetns("sys", "kube-system"), { dnsCapture: false, ipv6: true })).present).toBe(false);
  });
});

describe("the hand-off to ztunnel", () => {
  let zt: Awaited<ReturnType<typeof fakeZtunnel>>;
  afterAll(() => zt?.close());

  it("sends ztunnel a snapshot with a usable netns fd per enrolled pod, then marks them enabled", async () => {
    zt = await fakeZtunnel();
    await waitFor("the snapshot", async () => zt.requests.some((r) => r.kind === "snapshot_sent"), 30_000, 50);
    const add = zt.requests.find((r) => r.kind === "add" && r.info.name === "web") as ZdsRequest & { fd?: number; kind: "add" };
    expect(add.info).toEqual({ name: "web", namespace: NS, serviceAccount: "default" });
    expect(isNetnsFd(add.fd!)).toBe(true);
    await waitFor("web enabled", async () => (await annotation("web")) === "enabled", 30_000, 100);
    // The fd really is the pod's netns: a listener made through it on 15001 receives the pod's redirected traffic.
    const server = await listenInNetns({ netns: add.fd!, host: "0.0.0.0", port: 15001 });
    const dst = new Promise<string>((resolve) => server.once("connection", (s) => { const d = getOriginalDst(s); resolve(`${d.address}:${d.port}`); s.destroy(); }));
    execFileSync("nsenter", [`--net=${await podNetns("web")}`, process.execPath, "-e", `require("net").connect(443,"10.96.0.1").on("error",()=>{}).on("connect",function(){this.destroy()})`]);
    expect(await dst).toBe("10.96.0.1:443");
    server.close();
  });

  it("hands over a pod started in an enrolled namespace", async () => {
    await api.post(`/api/v1/namespaces/${NS}/pods`, echoPod("late"));
    await waitFor("late enabled", async () => (await annotation("late")) === "enabled", 60_000, 100);
    expect(zt.requests.some((r) => r.kind === "add" && r.info.name === "late")).toBe(true);
  });

  it("redirects a pod created in an enrolled namespace before its first connection (the chained CNI plugin)", async () => {
    zt.close();
    zt = await fakeZtunnel(true);
    await waitFor("the snapshot", async () => zt.requests.some((r) => r.kind === "snapshot_sent"), 30_000, 50);
    const conflist = execFileSync("sh", ["-c", `cat ${join(paths.nodeRoot("node-1"), "etc/cni/net.d")}/*.conflist`]).toString();
    expect(JSON.parse(conflist).plugins.map((p: { type: string }) => p.type)).toEqual(["ambit-local-bridge", "ambit-cni"]);
    await api.post(`/api/v1/namespaces/${NS}/pods`, { metadata: { name: "first" }, spec: { nodeName: "node-1", restartPolicy: "Never", containers: [{
      name: "main", image: "ambit/host", command: [process.execPath, "-e",
        `require("net").connect(443,"10.96.0.1").on("connect",()=>{console.log("connected");process.exit(0)}).on("error",e=>{console.log(e.code);process.exit(1)})`],
    }] } });
    await waitFor("first finished", async () => ["Succeeded", "Failed"].includes((await api.get<{ status: { phase: string } }>(`/api/v1/namespaces/${NS}/pods/first`)).status.phase), 60_000, 100);
    // The very first connection of the container reached "ztunnel" on 15001, with its real destination.
    expect(zt.seen.get("first")).toEqual(["10.96.0.1:443"]);
    expect((await api.get<{ status: { phase: string } }>(`/api/v1/namespaces/${NS}/pods/first`)).status.phase).toBe("Succeeded");
  });

  it("keeps a pod of an enrolled namespace from starting while the agent is down, but not other pods", async () => {
    await agent.stop();
    await api.post(`/api/v1/namespaces/${NS}/pods`, echoPod("blocked"));
    await api.post("/api/v1/namespaces/default/pods", echoPod("free"));
    await waitFor("free running", async () => (await api.get<{ status: { phase: string } }>("/api/v1/namespaces/default/pods/free")).status.phase === "Running", 60_000, 100);
    await waitFor("the refusal event", async () => {
      const ev = await api.get<{ items: { involvedObject: { name: string }; reason: string; message: string }[] }>(`/api/v1/namespaces/${NS}/events`);
      return ev.items.some((e) => e.involvedObject.name === "blocked" && e.reason === "FailedCreatePodSandBox" && /refusing to start it unprotected/.test(e.message));
    }, 30_000, 100);
    expect((await api.get<{ status: { phase?: string } }>(`/api/v1/namespaces/${NS}/pods/blocked`)).status.phase).toBe("Pending");
    zt.close();
    agent = newAgent();
    await agent.start();
    zt = await fakeZtunnel(true);
    await waitFor("blocked running once the agent is back", async () => (await api.get<{ status: { phase?: string } }>(`/api/v1/namespaces/${NS}/pods/blocked`)).status.phase === "Running", 90_000, 200);
    await waitFor("blocked enabled", async () => (await annotation("blocked")) === "enabled", 30_000, 100);
  });

  it("restarts without touching the rules, re-sends the snapshot, and repairs tampered rules", async () => {
    const web = await podNetns("web");
    const before = iptablesSave(web);
    execFileSync("nsenter", [`--net=${await podNetns("late")}`, "iptables", "-t", "nat", "-F", "ISTIO_OUTPUT"]);
    await agent.stop();
    zt.close();
    expect(iptablesSave(web)).toBe(before);
    agent = newAgent();
    await agent.start();
    zt = await fakeZtunnel();
    await waitFor("a new snapshot", async () => zt.requests.some((r) => r.kind === "snapshot_sent"), 30_000, 50);
    expect(zt.requests.filter((r) => r.kind === "add").map((r) => (r as { info: { name: string } }).info.name).sort()).toEqual(["blocked", "late", "web"]);
    expect(iptablesSave(web)).toBe(before);
    await waitFor("late repaired", async () => (await inspectRules(await podNetns("late"), { dnsCapture: false, ipv6: true })).clean, 30_000, 100);
  });

  it("reports readiness and metrics", async () => {
    const base = `http://127.0.0.1:${agent.monitoringPort}`;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/ambit_cni_pods_enrolled 3/);
    expect(metrics).toMatch(/ambit_cni_ztunnel_connections 1/);
  });

  it("un-enrolls when the label goes: rules removed, ztunnel told, annotation dropped, no restart", async () => {
    const web = await podNetns("web");
    await api.patch(`/api/v1/namespaces/${NS}`, { metadata: { labels: { "istio.io/dataplane-mode": null } } });
    await waitFor("web un-enrolled", async () => (await annotation("web")) === undefined, 30_000, 100);
    expect((await inspectRules(web, { dnsCapture: false, ipv6: true })).present).toBe(false);
    await waitFor("DelWorkload", async () => zt.requests.filter((r) => r.kind === "del").length >= 3, 30_000, 50);
    const pod = await api.get<{ status: { containerStatuses: { restartCount: number }[] } }>(`/api/v1/namespaces/${NS}/pods/web`);
    expect(pod.status.containerStatuses[0]!.restartCount).toBe(0);
  });

  // The agent runs in-process here, so it has no pod of its own: the decision reads a stand-in for it (owned by the
  // DaemonSet, as a DaemonSet's pod is) and the real DaemonSet from the API server.
  const DS = "ambit-cni-node";
  let dsUid = "";
  const exitApi = (): ExitCheckApi => ({
    readPod: async () => ({ metadata: { ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: DS, uid: dsUid, controller: true }] } }),
    readDaemonSet: (ns, name) => { const kc = new KubeConfig(); kc.loadFromFile(paths.adminKubeconfig()); return kubeExitCheckApi(kc).readDaemonSet(ns, name); },
  });
  const SELF = { podName: `${DS}-x7k2p`, namespace: "istio-system" };
  const ENROLLED = ["web", "late", "blocked"];
  const cniRoot = () => paths.nodeRoot("node-1");
  const conflistTypes = () => (JSON.parse(execFileSync("sh", ["-c", `cat ${join(cniRoot(), "etc/cni/net.d")}/*.conflist`]).toString()) as { plugins: { type: string }[] }).plugins.map((p) => p.type);
  const pluginFiles = () => [join(cniRoot(), "etc/cni/net.d/ZZZ-ambit-cni-kubeconfig"), join(cniRoot(), "opt/cni/bin/ambit-cni")];
  const podIp = async (name: string) => (await api.get<{ status: { podIP: string } }>(`/api/v1/namespaces/${NS}/pods/${name}`)).status.podIP;
  /** HTTP GET from a pod's netns: the status, or the connection error's code. */
  const httpFrom = (netns: string, url: string) => execFileSync("nsenter", [`--net=${netns}`, process.execPath, "-e",
    `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(5000)}).then(r=>console.log(r.status),e=>console.log(e.cause?.code??e.name))`]).toString().trim();

  it("on exit with its DaemonSet present (a restart or upgrade) keeps the pods enrolled and the plugin chained", async () => {
    await api.patch(`/api/v1/namespaces/${NS}`, { metadata: { labels: { "istio.io/dataplane-mode": "ambient" } } });
    for (const name of ENROLLED) await waitFor(`${name} enabled`, async () => (await annotation(name)) === "enabled", 30_000, 100);
    const ds = await api.post<{ metadata: { uid: string } }>("/apis/apps/v1/namespaces/istio-system/daemonsets", {
      metadata: { name: DS },
      spec: {
        selector: { matchLabels: { app: DS } },
        // No node matches: the DaemonSet runs no pod here (the agent under test runs in-process).
        template: { metadata: { labels: { app: DS } }, spec: { nodeSelector: { "ambit.test/no-such-node": "true" }, containers: [{ name: "agent", image: "ambit/cni-agent" }] } },
      },
    });
    dsUid = ds.metadata.uid;
    const decision = await decideOnExit(exitApi(), SELF);
    expect(decision).toEqual({ uninstall: false, reason: `the DaemonSet istio-system/${DS} is present: a restart or upgrade` });
    const before = new Map<string, string>();
    for (const name of ENROLLED) before.set(name, iptablesSave(await podNetns(name)));
    await agent.stop({ uninstall: decision.uninstall });
    zt.close();
    for (const name of ENROLLED) {
      expect(iptablesSave(await podNetns(name))).toBe(before.get(name));
      expect(await annotation(name)).toBe("enabled");
    }
    expect(conflistTypes()).toEqual(["ambit-local-bridge", "ambit-cni"]);
    for (const f of pluginFiles()) expect(existsSync(f)).toBe(true);
    // Still isolated while no agent and no ztunnel run: inbound goes to 15006, where nothing listens.
    expect(httpFrom(await podNetns("sys", "kube-system"), `http://${await podIp("web")}:8080/`)).toBe("ECONNREFUSED");
    agent = newAgent();
    await agent.start();
    zt = await fakeZtunnel();
    await waitFor("a new snapshot", async () => zt.requests.some((r) => r.kind === "snapshot_sent"), 30_000, 50);
    expect(zt.requests.filter((r) => r.kind === "add").map((r) => (r as { info: { name: string } }).info.name).sort()).toEqual([...ENROLLED].sort());
    for (const name of ENROLLED) expect(iptablesSave(await podNetns(name))).toBe(before.get(name));
  });

  it("runs the pre-delete handshake: the hook's request reaches a watching agent; no DaemonSet means nothing to wait for", async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(paths.adminKubeconfig());
    let requested = 0;
    const stop = watchUninstallRequest(kc, "istio-system", DS, () => requested++);
    try {
      // The DaemonSet runs no pod here, so nobody has to answer.
      expect(await requestUninstall(kc, "istio-system", DS, 5000, () => undefined)).toEqual({ done: [], missing: [] });
      const ds = await api.get<{ metadata: { annotations?: Record<string, string> } }>(`/apis/apps/v1/namespaces/istio-system/daemonsets/${DS}`);
      expect(ds.metadata.annotations?.[UNINSTALL_ANNOTATION]).toBe("requested");
      await waitFor("the watching agent is told", async () => requested === 1, 10_000, 100);
      expect(await requestUninstall(kc, "istio-system", "no-such-daemonset", 5000, () => undefined)).toEqual({ done: [], missing: [] });
    } finally {
      await stop();
      await api.patch(`/apis/apps/v1/namespaces/istio-system/daemonsets/${DS}`, { metadata: { annotations: { [UNINSTALL_ANNOTATION]: null } } });
    }
    expect(requested).toBe(1);
  });

  it("on exit with its DaemonSet gone (helm uninstall) leaves the node clean, the apps running and reachable, new pods starting", async () => {
    await api.delete(`/apis/apps/v1/namespaces/istio-system/daemonsets/${DS}`);
    await waitFor("the DaemonSet gone", async () => api.get(`/apis/apps/v1/namespaces/istio-system/daemonsets/${DS}`).then(() => false, (e: { status?: number }) => e.status === 404), 30_000, 100);
    const decision = await decideOnExit(exitApi(), SELF);
    expect(decision).toEqual({ uninstall: true, reason: `the DaemonSet istio-system/${DS} is gone (404): the mesh is being uninstalled` });
    const netnses = new Map<string, string>();
    for (const name of ENROLLED) netnses.set(name, await podNetns(name));
    const uids = await Promise.all(ENROLLED.map(async (n) => (await api.get<{ metadata: { uid: string } }>(`/api/v1/namespaces/${NS}/pods/${n}`)).metadata.uid));
    const logged = agentLog.length;
    await agent.stop({ uninstall: decision.uninstall });
    // Every step finished within the uninstall's time budget: none ran out of time, no pod was left unfinished.
    const stopLog = agentLog.slice(logged);
    expect(stopLog.filter((l) => /ran out of time|deadline came/.test(l.msg))).toEqual([]);
    expect(stopLog.find((l) => l.msg === "uninstall: done")?.fields).toMatchObject({ unfinished: [] });
    // ztunnel (still connected) was told.
    const dels = zt.requests.filter((r) => r.kind === "del").map((r) => (r as { uid: string }).uid);
    for (const uid of uids) expect(dels).toContain(uid);
    zt.close();
    for (const name of ENROLLED) {
      const netns = netnses.get(name)!;
      expect((await inspectRules(netns, { dnsCapture: true, ipv6: true })).present).toBe(false);
      expect(iptablesSave(netns)).not.toMatch(/ISTIO_/);
      expect(execFileSync("nsenter", [`--net=${netns}`, "ip", "rule", "show"]).toString()).not.toMatch(/lookup 100/);
      expect(await annotation(name)).toBeUndefined();
      const pod = await api.get<{ status: { phase: string; containerStatuses: { restartCount: number }[] } }>(`/api/v1/namespaces/${NS}/pods/${name}`);
      expect(pod.status.phase).toBe("Running");
      expect(pod.status.containerStatuses[0]!.restartCount).toBe(0);
    }
    expect(conflistTypes()).toEqual(["ambit-local-bridge"]);
    for (const f of pluginFiles()) expect(existsSync(f)).toBe(false);
    expect(existsSync(join(cniRoot(), "var/run/ambit/cni.sock"))).toBe(false);
    // The apps answer directly again (no ztunnel, no agent).
    const sys = await podNetns("sys", "kube-system");
    for (const name of ["web", "late"]) expect(httpFrom(sys, `http://${await podIp(name)}:8080/`)).toBe("200");
    expect(httpFrom(netnses.get("late")!, `http://${await podIp("web")}:8080/`)).toBe("200");
    // A new pod of the (still labelled) namespace starts: the plugin that would fail it closed is gone.
    await api.post(`/api/v1/namespaces/${NS}/pods`, echoPod("after"));
    await waitFor("after running", async () => (await api.get<{ status: { phase?: string } }>(`/api/v1/namespaces/${NS}/pods/after`)).status.phase === "Running", 60_000, 100);
    expect(await annotation("after")).toBeUndefined();
    expect((await inspectRules(await podNetns("after"), { dnsCapture: false, ipv6: true })).present).toBe(false);
  });
});
