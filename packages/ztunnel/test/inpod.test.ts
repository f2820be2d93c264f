// ZDS client + workload manager against a real SeqpacketServer playing the CNI agent, with real network namespaces:
// adding a pod opens ztunnel's listeners inside its netns, deleting it (or leaving it out of a snapshot) closes them.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { CertificateAuthority } from "@ambit/pki";
import { decodeAck, decodeHello, encodeRequest, type ZdsRequest } from "@ambit/protocol";
import { SeqpacketServer, closeFd, connectTcp, listenInNetns, openNetns, type SeqpacketMessage, type SeqpacketSocket } from "@ambit/sys";
import { loadConfig } from "../src/config.js";
import { CertificateManager } from "../src/identity/index.js";
import { WorkloadManager } from "../src/inpod/manager.js";
import { ZdsClient } from "../src/inpod/zds-client.js";
import type { ProxyContext } from "../src/proxy/context.js";
import { ProxyState } from "../src/state.js";
import { Telemetry } from "../src/telemetry/index.js";
import { issue, newCa } from "./helpers/certs.js";
import { createNetns, removeAllNetns, type Netns } from "./helpers/netns.js";
import { waitFor } from "./helpers/wait.js";

const PORTS = [15001, 15006, 15008];
const info = (name: string) => ({ name, namespace: "shop", serviceAccount: `sa-${name}` });

/** Plays the CNI agent's side of one ZDS connection. */
class Agent {
  private readonly inbox: SeqpacketMessage[] = [];
  private wake?: () => void;
  closed = false;
  constructor(readonly socket: SeqpacketSocket) {
    socket.on("error", () => undefined);
    socket.on("message", (m) => { this.inbox.push(m); this.wake?.(); });
    socket.once("close", () => { this.closed = true; this.wake?.(); });
  }
  async next(timeoutMs = 15_000): Promise<SeqpacketMessage> {
    const deadline = Date.now() + timeoutMs;
    while (!this.inbox.length) {
      if (this.closed) throw new Error("ZDS connection closed");
      if (Date.now() > deadline) throw new Error("no message from ztunnel");
      await new Promise<void>((r) => { const t = setTimeout(r, 100); this.wake = () => { clearTimeout(t); r(); }; });
    }
    return this.inbox.shift()!;
  }
  async hello(): Promise<void> {
    expect(decodeHello((await this.next()).data)).toEqual({ version: 1 });
  }
  /** Sends raw bytes (+ fds) and returns the ack's error ("" = ACK). */
  async raw(data: Uint8Array, fds: number[] = []): Promise<string> {
    await this.socket.send(data, fds);
    return decodeAck((await this.next()).data).error;
  }
  send(req: ZdsRequest, fds: number[] = []): Promise<string> {
    return this.raw(encodeRequest(req), fds);
  }
  /** AddWorkload with a fresh fd of the namespace. */
  async add(uid: string, ns: Netns, name = uid): Promise<string> {
    const fd = openNetns(ns.path);
    try { return await this.send({ kind: "add", uid, info: info(name) }, [fd]); } finally { closeFd(fd); }
  }
  async waitClosed(): Promise<void> {
    await waitFor(() => this.closed, "ztunnel to drop the ZDS connection");
  }
}

let ca: CertificateAuthority;
let dir: string;
/** This test's ZDS server: a new socket per test, so a connection from an earlier test's client never reaches it. */
let zdsServer: SeqpacketServer;
let zdsServers = 0;
const agents: Agent[] = [];
let taken = 0;
let client: ZdsClient | undefined;
let manager: WorkloadManager | undefined;
let ctx: ProxyContext;
let nsA: Netns;
let nsB: Netns;
let nsC: Netns;
const fdsAtStart = () => fs.readdirSync("/proc/self/fd").length;
/** Open fds of this process that refer to a network namespace. */
const netnsFds = () => fs.readdirSync("/proc/self/fd").filter((fd) => { try { const l = fs.readlinkSync(`/proc/self/fd/${fd}`); return l.startsWith("net:") || l.includes("/netns/"); } catch { return false; } }).length;

/** The next ZDS connection ztunnel opens, greeted. */
async function nextAgent(): Promise<Agent> {
  const a = await waitFor(() => agents[taken], "ztunnel to connect to the ZDS socket");
  taken++;
  await a.hello();
  return a;
}

function newContext(): ProxyContext {
  const log = pino({ level: "silent" }, new Writable({ write: (_c, _e, cb) => cb() }));
  return {
    config: loadConfig({ NODE_NAME: "node-1", CONNECTION_TERMINATION_DEADLINE: "200ms" }),
    state: new ProxyState(),
    certs: new CertificateManager({ source: { createCertificate: (id) => Promise.resolve(issue(ca, id)) } }),
    telemetry: new Telemetry({ logger: log, processMetrics: false }),
    log,
  };
}

function start(): { manager: WorkloadManager; client: ZdsClient } {
  ctx = newContext();
  manager = new WorkloadManager(ctx);
  client = new ZdsClient(zdsServer.path!, manager, ctx.log);
  client.start();
  return { manager, client };
}

async function listening(ns: Netns, port: number): Promise<boolean> {
  try {
    const s = await connectTcp({ netns: ns.path, host: "127.0.0.1", port, timeout: 5000 });
    s.destroy();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ECONNREFUSED") return false;
    throw err;
  }
}
const allListening = async (ns: Netns) => (await Promise.all(PORTS.map((p) => listening(ns, p)))).every(Boolean);
const noneListening = async (ns: Netns) => !(await Promise.all(PORTS.map((p) => listening(ns, p)))).some(Boolean);

beforeAll(async () => {
  ca = await newCa();
  nsA = createNetns();
  nsB = createNetns();
  nsC = createNetns();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ambit-ztunnel-zds-"));
});

beforeEach(() => {
  zdsServer = new SeqpacketServer((s) => agents.push(new Agent(s)), { maxMessageSize: 1024 });
  zdsServer.listen(path.join(dir, `ztunnel-${++zdsServers}.sock`));
});

afterEach(async () => {
  await client?.stop();
  zdsServer.close();
  await manager?.stop();
  ctx?.certs.stop();
  client = undefined;
  manager = undefined;
  for (const a of agents) a.socket.destroy();
  agents.length = 0;
  taken = 0;
});

afterAll(() => {
  removeAllNetns();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("ZDS and the workload manager", () => {
  it("hello, add → listeners 15001/15006/15008 inside the pod's netns, snapshot → ready, del → listeners closed", async () => {
    const before = netnsFds();
    const { manager } = start();
    const agent = await nextAgent();
    await waitFor(() => client!.connected, "the client to be connected");
    expect(manager.ready).toBe(false);
    expect(manager.pendingReasons()).toEqual(["workload proxy manager: no snapshot from the CNI agent yet"]);
    expect(await agent.add("uid-a", nsA, "a")).toBe("");
    expect([...manager.proxies.keys()]).toEqual(["uid-a"]);
    expect(await allListening(nsA)).toBe(true);
    expect(await noneListening(nsB)).toBe(true);
    expect(manager.dump()).toEqual([expect.objectContaining({ uid: "uid-a", name: "a", namespace: "shop", identity: "spiffe://cluster.local/ns/shop/sa/sa-a", state: "up" })]);
    // The pod's certificate is fetched ahead of time.
    await waitFor(() => ctx.certs.get("spiffe://cluster.local/ns/shop/sa/sa-a"), "the pod's certificate");

    // Idempotent per uid and netns.
    expect(await agent.add("uid-a", nsA, "a")).toBe("");
    expect(manager.proxies.size).toBe(1);
    expect(netnsFds()).toBe(before + 1); // the duplicate add's fd was closed

    expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
    expect(manager.ready).toBe(true);

    expect(await agent.send({ kind: "del", uid: "uid-a" })).toBe("");
    expect(manager.proxies.size).toBe(0);
    await waitFor(() => noneListening(nsA), "the pod's listeners to close");
    expect(ctx.certs.identities()).toEqual([]);
    // Deleting an unknown pod is fine.
    expect(await agent.send({ kind: "del", uid: "uid-zzz" })).toBe("");

    await client!.stop();
    await agent.waitClosed();
    // The pod's netns fd was released.
    await waitFor(() => netnsFds() === before, "the netns fds to be released");
  });

  it("the same uid with another netns replaces the proxy", async () => {
    const { manager } = start();
    const agent = await nextAgent();
    expect(await agent.add("uid-a", nsA, "a")).toBe("");
    expect(await agent.add("uid-a", nsB, "a")).toBe("");
    expect(manager.proxies.size).toBe(1);
    await waitFor(() => noneListening(nsA), "the old netns' listeners to close");
    expect(await allListening(nsB)).toBe(true);
  });

  it("after a reconnect the snapshot drains the proxies it did not name; Keep keeps one", async () => {
    const { manager } = start();
    let agent = await nextAgent();
    expect(await agent.add("uid-a", nsA, "a")).toBe("");
    expect(await agent.add("uid-b", nsB, "b")).toBe("");
    expect(await agent.add("uid-c", nsC, "c")).toBe("");
    expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
    expect(manager.ready).toBe(true);

    // The agent restarts: ztunnel reconnects and is not ready until the new snapshot.
    agent.socket.destroy();
    agent = await nextAgent();
    expect(manager.ready).toBe(false);
    expect(await agent.add("uid-a", nsA, "a")).toBe(""); // same netns: kept as is
    expect(await agent.send({ kind: "keep", uid: "uid-c" })).toBe("");
    expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
    expect(manager.ready).toBe(true);
    expect([...manager.proxies.keys()].sort()).toEqual(["uid-a", "uid-c"]);
    await waitFor(() => noneListening(nsB), "the unnamed pod's listeners to close");
    expect(await allListening(nsA)).toBe(true);
    expect(await allListening(nsC)).toBe(true);
  });

  it.each<[string, (a: Agent) => Promise<string>, RegExp]>([
    ["a malformed message", (a) => a.raw(Uint8Array.from([0xff, 0xff, 0xff, 0x01])), /malformed WorkloadRequest/],
    ["a request without payload", (a) => a.raw(new Uint8Array(0)), /no payload/],
    ["an add without an fd", (a) => a.send({ kind: "add", uid: "uid-x", info: info("x") }), /add must carry 1 fd\(s\), got 0/],
    ["an fd with a request that takes none", (a) => { const fd = openNetns(nsA.path); return a.send({ kind: "del", uid: "uid-x" }, [fd]).finally(() => closeFd(fd)); }, /del must carry 0 fd\(s\), got 1/],
    ["an add whose fd is not a netns", (a) => { const fd = fs.openSync("/dev/null", "r"); return a.send({ kind: "add", uid: "uid-x", info: info("x") }, [fd]).finally(() => fs.closeSync(fd)); }, /AddWorkload uid-x: the fd is not a network namespace/],
  ])("%s: NACK, the connection is dropped, ztunnel reconnects", async (_what, act, message) => {
    const before = fdsAtStart();
    const { manager } = start();
    const agent = await nextAgent();
    expect(await act(agent)).toMatch(message);
    await agent.waitClosed();
    expect(manager.proxies.size).toBe(0);
    const again = await nextAgent();
    expect(await again.send({ kind: "snapshot_sent" })).toBe("");
    await client!.stop();
    await again.waitClosed();
    await waitFor(() => fdsAtStart() <= before, "the received fds to be closed");
  });

  it("Keep after the snapshot and a second snapshot are protocol errors", async () => {
    const { manager } = start();
    let agent = await nextAgent();
    expect(await agent.add("uid-a", nsA, "a")).toBe("");
    expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
    expect(await agent.send({ kind: "keep", uid: "uid-a" })).toBe("KeepWorkload after the snapshot");
    await agent.waitClosed();
    expect(manager.ready).toBe(false);

    agent = await nextAgent();
    expect(await agent.add("uid-a", nsA, "a")).toBe("");
    expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
    expect(await agent.send({ kind: "snapshot_sent" })).toBe("a second SnapshotSent on one connection");
    await agent.waitClosed();
    // The pod's proxy survives the protocol errors.
    expect(await allListening(nsA)).toBe(true);
  });

  it("a proxy that cannot start is NACKed and pending; del clears it", async () => {
    // Something else holds 15001 in the pod's netns (no SO_REUSEPORT): the proxy's listener cannot bind.
    const squatter = await listenInNetns({ netns: nsC.path, host: "::", port: 15001, server: net.createServer() });
    try {
      const { manager } = start();
      const agent = await nextAgent();
      expect(await agent.add("uid-c", nsC, "c")).toMatch(/^failure to start proxy for shop\/c: /);
      expect(manager.proxies.size).toBe(0);
      expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
      expect(manager.ready).toBe(false);
      expect(manager.pendingReasons()).toEqual(["workload proxy manager: pod shop/c (uid-c) not started"]);
      expect(manager.dump()).toEqual([{ uid: "uid-c", name: "c", namespace: "shop", serviceAccount: "sa-c", state: "pending" }]);
      expect(await agent.send({ kind: "del", uid: "uid-c" })).toBe("");
      expect(manager.ready).toBe(true);
      expect(manager.dump()).toEqual([]);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });

  it("a pending proxy is retried until it starts", async () => {
    const squatter = await listenInNetns({ netns: nsC.path, host: "::", port: 15006, server: net.createServer() });
    const { manager } = start();
    const agent = await nextAgent();
    expect(await agent.add("uid-c", nsC, "c")).toMatch(/failure to start proxy/);
    await new Promise((r) => squatter.close(r));
    await waitFor(() => manager.proxies.has("uid-c"), "the retry (every 5 s) to start the proxy", 20_000);
    expect(await allListening(nsC)).toBe(true);
  });

  it("keeps retrying to connect while the agent is not there", async () => {
    const sock = path.join(dir, "later.sock");
    ctx = newContext();
    manager = new WorkloadManager(ctx);
    // Each failed attempt logs the back-off before the next one; three of them are "a few".
    const retries: number[] = [];
    const log = pino({ level: "warn" }, new Writable({ write: (c: Buffer, _e, cb) => { const r = JSON.parse(c.toString()) as { msg: string; retryInMs?: number }; if (r.msg.startsWith("ZDS: ")) retries.push(r.retryInMs!); cb(); } }));
    client = new ZdsClient(sock, manager, log);
    client.start();
    await waitFor(() => retries.length >= 3, "three failed attempts to connect to the absent agent");
    expect(retries.slice(0, 3)).toEqual([10, 20, 40]); // the back-off doubles
    const late = new SeqpacketServer((s) => agents.push(new Agent(s)), { maxMessageSize: 1024 });
    late.listen(sock);
    try {
      const agent = await nextAgent();
      expect(await agent.send({ kind: "snapshot_sent" })).toBe("");
      expect(manager.ready).toBe(true);
    } finally {
      late.close();
    }
  });
});
