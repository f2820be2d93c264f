// ZdsServer against a fake ztunnel on real SOCK_SEQPACKET sockets, with real network namespaces.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { ZDS_MAX_MESSAGE, encodeAck } from "@ambit/protocol";
import { closeFd, isNetnsFd, openNetns } from "@ambit/sys";

import { ZdsAckTimeoutError, ZdsConnectionLostError, ZdsNackError, ZdsNotConnectedError, ZdsRequestError, ZdsServer, type ZdsLogger, type ZdsPodStatus, type ZdsServerOptions } from "../src/zds/index.js";
import { FakeZtunnel } from "./fake-ztunnel.js";

// ---- helpers: real namespaces ----

/** Real network namespaces for the duration of a test file. */
class TestNetns {
  readonly names: string[] = [];
  readonly #prefix = `ambit-cni-test-${randomBytes(4).toString("hex")}`;

  add(suffix: string): string {
    const name = `${this.#prefix}-${suffix}`;
    execFileSync("ip", ["netns", "add", name]);
    this.names.push(name);
    return `/var/run/netns/${name}`;
  }

  removeAll(): void {
    for (const name of this.names.splice(0)) {
      try {
        execFileSync("ip", ["netns", "delete", name], { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
  }
}

function openFdCount(): number {
  return fs.readdirSync("/proc/self/fd").length;
}

/** Inode of the namespace an fd (or a path) refers to. */
function nsInode(fdOrPath: number | string): number {
  return typeof fdOrPath === "number" ? fs.fstatSync(fdOrPath).ino : fs.statSync(fdOrPath).ino;
}

/** A logger that counts the requests the server has sent (its "ZDS request sent" debug line, logged as it sends). */
function sendCounter(): { logger: ZdsLogger; sent: () => number } {
  let sent = 0;
  const noop = (): void => undefined;
  return { logger: { debug: (_obj, msg) => void (msg === "ZDS request sent" && sent++), info: noop, warn: noop, error: noop }, sent: () => sent };
}

// ---- the tests ----

const netns = new TestNetns();
let nsA = "";
let nsB = "";
let dir = "";
const servers: ZdsServer[] = [];
const clients: FakeZtunnel[] = [];

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error("the ZDS tests need root (ip netns add)");
  nsA = netns.add("a");
  nsB = netns.add("b");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ambit-zds-"));
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.close();
});

afterAll(() => {
  netns.removeAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

let socketSeq = 0;
async function startServer(opts: ZdsServerOptions = {}): Promise<ZdsServer> {
  // A nested directory that does not exist yet: listen() must create it.
  const server = new ZdsServer({ socketPath: path.join(dir, `node-${++socketSeq}`, "ztunnel.sock"), ...opts });
  servers.push(server);
  await server.listen();
  return server;
}

async function connect(server: ZdsServer, { hello = true } = {}): Promise<FakeZtunnel> {
  const client = await FakeZtunnel.connect(server.socketPath);
  clients.push(client);
  if (hello) await client.hello();
  return client;
}

const info = (name: string) => ({ name, namespace: "default", serviceAccount: `sa-${name}` });

describe("ZdsServer handshake and snapshot", () => {
  it("replays known pods as Add (one netns fd each) or Keep, waiting for each ack, then SnapshotSent", async () => {
    const { logger, sent } = sendCounter();
    const server = await startServer({ logger });
    const acked = new Promise<number>((resolve) => server.once("snapshot-acked", ({ id }) => resolve(id)));
    server.setPod("uid-a", info("a"), openNetns(nsA));
    server.setPod("uid-b", info("b"), openNetns(nsB));
    server.setPod("uid-c", info("c"), null);
    expect(fs.statSync(server.socketPath).isSocket()).toBe(true);

    const client = await connect(server);
    const first = await client.next();
    expect(first.req).toEqual({ kind: "add", uid: "uid-a", info: info("a") });
    expect(first.fds).toHaveLength(1);
    expect(isNetnsFd(first.fds[0]!)).toBe(true);
    expect(nsInode(first.fds[0]!)).toBe(nsInode(nsA));
    // One request in flight: the server has sent nothing more before the ack.
    expect(sent()).toBe(1);
    expect(client.pending).toBe(0);
    await client.ack();

    const second = await client.next();
    expect(second.req).toEqual({ kind: "add", uid: "uid-b", info: info("b") });
    expect(second.fds).toHaveLength(1);
    expect(isNetnsFd(second.fds[0]!)).toBe(true);
    expect(nsInode(second.fds[0]!)).toBe(nsInode(nsB));
    await client.ack();

    const third = await client.next();
    expect(third.req).toEqual({ kind: "keep", uid: "uid-c" });
    expect(third.fds).toHaveLength(0);
    await client.ack();

    expect((await client.next()).req).toEqual({ kind: "snapshot_sent" });
    expect(server.connected).toBe(1);
    await client.ack();
    expect(await acked).toBeGreaterThan(0);
  });

  it("reports a NACK during the snapshot and carries on with the next pod", async () => {
    const server = await startServer();
    const statuses: ZdsPodStatus[] = [];
    server.on("pod-status", (s) => statuses.push(s));
    server.setPod("uid-a", info("a"), openNetns(nsA));
    server.setPod("uid-b", info("b"), openNetns(nsB));
    const client = await connect(server);
    expect((await client.next()).req).toMatchObject({ kind: "add", uid: "uid-a" });
    await client.ack("failure to start proxy");
    expect((await client.next()).req).toMatchObject({ kind: "add", uid: "uid-b" });
    await client.ack();
    expect((await client.next()).req.kind).toBe("snapshot_sent");
    const acked = new Promise((resolve) => server.once("snapshot-acked", resolve));
    await client.ack();
    await acked;
    expect(statuses.map((s) => [s.uid, s.kind, s.ok, s.error])).toEqual([
      ["uid-a", "add", false, "failure to start proxy"],
      ["uid-b", "add", true, ""],
      ["", "snapshot_sent", true, ""],
    ]);
  });

  it("drops a client whose first message is not a hello, and keeps serving others", async () => {
    const server = await startServer();
    const bad = await connect(server, { hello: false });
    await bad.socket.send(encodeAck());
    await bad.closed;
    expect(server.connected).toBe(0);

    const good = await connect(server);
    expect((await good.takeSnapshot()).map((r) => r.req.kind)).toEqual(["snapshot_sent"]);
    expect(server.connected).toBe(1);
  });

  it("survives a client that leaves mid-snapshot; a reconnecting client gets a fresh snapshot", async () => {
    const server = await startServer();
    server.setPod("uid-a", info("a"), openNetns(nsA));
    server.setPod("uid-b", info("b"), openNetns(nsB));
    const gone = new Promise<string>((resolve) => server.once("disconnected", (_c, reason) => resolve(reason)));

    const first = await connect(server);
    expect((await first.next()).req.kind).toBe("add");
    await first.close(); // never acks
    expect(await gone).toMatch(/closed/);
    expect(server.connected).toBe(0);

    const second = await connect(server);
    const snapshot = await second.takeSnapshot();
    expect(snapshot.map((r) => [r.req.kind, r.req.kind === "snapshot_sent" ? "" : r.req.uid])).toEqual([
      ["add", "uid-a"],
      ["add", "uid-b"],
      ["snapshot_sent", ""],
    ]);
    for (const r of snapshot.filter((r) => r.req.kind === "add")) expect(isNetnsFd(r.fds[0]!)).toBe(true);
    // The store still owns its fds: a third connection gets them again.
    const third = await connect(server);
    expect((await third.takeSnapshot()).filter((r) => r.req.kind === "add")).toHaveLength(2);
  });

  it("creates the socket's parent directory and removes the socket file on close", async () => {
    const server = await startServer();
    const file = server.socketPath;
    expect(fs.existsSync(file)).toBe(true);
    await server.close();
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe("ZdsServer steady state", () => {
  it("sends adds to the newest ztunnel only and deletes to all; promises follow ACK and NACK", async () => {
    const statuses: ZdsPodStatus[] = [];
    const server = await startServer({ onPodStatus: (s) => statuses.push(s) });
    const older = await connect(server);
    await older.takeSnapshot();
    const newer = await connect(server);
    await newer.takeSnapshot();
    expect(server.connected).toBe(2);

    const added = server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) });
    const add = await newer.next();
    expect(add.req).toEqual({ kind: "add", uid: "uid-a", info: info("a") });
    expect(add.fds).toHaveLength(1);
    expect(isNetnsFd(add.fds[0]!)).toBe(true);
    await newer.ack();
    await expect(added).resolves.toBeUndefined();

    // A NACK rejects with ztunnel's text, and is reported.
    const nacked = server.addWorkload({ uid: "uid-b", info: info("b"), netnsFd: openNetns(nsB) });
    expect((await newer.next()).req.kind).toBe("add");
    await newer.ack("failure to start proxy");
    await expect(nacked).rejects.toThrow(new ZdsNackError("uid-b", "add", 0, "failure to start proxy").message);
    await expect(nacked).rejects.toBeInstanceOf(ZdsNackError);
    expect(statuses.at(-1)).toMatchObject({ uid: "uid-b", kind: "add", ok: false, error: "failure to start proxy" });

    // Deletes are broadcast and resolve once every ztunnel acked.
    const deleted = server.delWorkload("uid-a");
    const [d1, d2] = await Promise.all([older.next(), newer.next()]);
    expect(d1.req).toEqual({ kind: "del", uid: "uid-a" });
    expect(d2.req).toEqual({ kind: "del", uid: "uid-a" });
    expect(d1.fds).toHaveLength(0);
    await older.ack();
    await newer.ack();
    await expect(deleted).resolves.toBeUndefined();
    expect(server.getPod("uid-a")).toBeUndefined();

    // One NACK among the acks rejects the delete with that text.
    const delB = server.delWorkload("uid-b");
    await Promise.all([older.next(), newer.next()]);
    await older.ack("no such workload");
    await newer.ack();
    await expect(delB).rejects.toThrow("no such workload");

    expect(older.pending).toBe(0); // the older ztunnel never saw an add
  });

  it("serializes requests per connection: one outstanding, the rest queued in order", async () => {
    const { logger, sent } = sendCounter();
    const server = await startServer({ logger });
    const client = await connect(server);
    await client.takeSnapshot();
    const snapshot = sent();
    const p1 = server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) });
    const p2 = server.delWorkload("uid-x");
    const p3 = server.addWorkload({ uid: "uid-b", info: info("b"), netnsFd: openNetns(nsB) });
    expect((await client.next()).req).toMatchObject({ kind: "add", uid: "uid-a" });
    expect(sent() - snapshot).toBe(1); // the other two wait for the ack
    expect(client.pending).toBe(0);
    await client.ack();
    expect((await client.next()).req).toEqual({ kind: "del", uid: "uid-x" });
    await client.ack();
    expect((await client.next()).req).toMatchObject({ kind: "add", uid: "uid-b" });
    await client.ack();
    await Promise.all([p1, p2, p3]);
  });

  it("rejects when no ztunnel is connected, but keeps the pod for the next snapshot", async () => {
    const server = await startServer();
    await expect(server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) })).rejects.toBeInstanceOf(ZdsNotConnectedError);
    await expect(server.delWorkload("uid-zzz")).rejects.toBeInstanceOf(ZdsNotConnectedError);
    const client = await connect(server);
    const snapshot = await client.takeSnapshot();
    expect(snapshot[0]!.req).toMatchObject({ kind: "add", uid: "uid-a" });
  });

  it("an ack timeout drops the stuck connection and rejects its pending requests", async () => {
    const server = await startServer({ ackTimeoutMs: 200 });
    const client = await connect(server);
    await client.takeSnapshot();
    const reason = new Promise<string>((resolve) => server.once("disconnected", (_c, r) => resolve(r)));
    const p1 = server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) });
    const p2 = server.delWorkload("uid-x");
    expect((await client.next()).req.kind).toBe("add"); // and never acked
    await expect(p1).rejects.toBeInstanceOf(ZdsAckTimeoutError);
    await expect(p1).rejects.toThrow("ztunnel did not acknowledge AddWorkload for pod uid-a within 0.2 s (ZDS connection 1); the connection is closed as broken");
    await expect(p2).rejects.toBeInstanceOf(ZdsConnectionLostError);
    await expect(p2).rejects.toThrow("ZDS connection 1 lost before the ack: ztunnel did not acknowledge AddWorkload for pod uid-a within 0.2 s");
    expect(await reason).toBe("ztunnel did not acknowledge AddWorkload for pod uid-a within 0.2 s");
    await client.closed;
    expect(server.connected).toBe(0);
  });

  it("an AddWorkload the newest ztunnel never acks goes to the next connection once that one is closed as broken", async () => {
    const warnings: string[] = [];
    const logger: ZdsLogger = { debug: () => {}, info: () => {}, warn: (_o, msg) => warnings.push(msg ?? ""), error: () => {} };
    const statuses: ZdsPodStatus[] = [];
    const server = await startServer({ ackTimeoutMs: 500, logger, onPodStatus: (st) => statuses.push(st) });
    const good = await connect(server);
    await good.takeSnapshot();
    const stuck = await connect(server); // acks its snapshot, then nothing more: the newest, and wedged
    await stuck.takeSnapshot();
    const added = server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) });
    expect((await stuck.next()).req).toEqual({ kind: "add", uid: "uid-a", info: info("a") }); // never acked
    const resent = await good.next(60_000);
    expect(resent.req).toEqual({ kind: "add", uid: "uid-a", info: info("a") });
    expect(nsInode(resent.fds[0]!)).toBe(nsInode(nsA));
    await good.ack();
    await expect(added).resolves.toBeUndefined();
    await stuck.closed;
    expect(server.connected).toBe(1);
    expect(statuses).toContainEqual({ connectionId: 1, uid: "uid-a", kind: "add", error: "", ok: true });
    expect(warnings).toContain("ztunnel did not acknowledge AddWorkload for pod uid-a within 0.5 s (ZDS connection 2); the connection is closed as broken");
    expect(warnings).toContain("re-sending AddWorkload to the next ztunnel connection");
  });

  it("with only a ztunnel that never acks, the Add fails with the ack timeout (not 'no ztunnel'); the reconnecting ztunnel gets the pod", async () => {
    const statuses: ZdsPodStatus[] = [];
    const server = await startServer({ ackTimeoutMs: 500, onPodStatus: (st) => statuses.push(st) });
    const stuck = await connect(server);
    await stuck.takeSnapshot();
    const added = server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) });
    expect((await stuck.next()).req.kind).toBe("add"); // never acked
    await expect(added).rejects.toBeInstanceOf(ZdsAckTimeoutError);
    await expect(added).rejects.toThrow(/^ztunnel did not acknowledge AddWorkload for pod uid-a within 0\.5 s/);
    await stuck.closed;
    // The same ztunnel, restarted, acks: its snapshot carries the pod, with its netns.
    const again = await connect(server);
    const snapshot = await again.takeSnapshot();
    expect(snapshot[0]!.req).toEqual({ kind: "add", uid: "uid-a", info: info("a") });
    expect(nsInode(snapshot[0]!.fds[0]!)).toBe(nsInode(nsA));
    expect(statuses).toContainEqual({ connectionId: 2, uid: "uid-a", kind: "add", error: "", ok: true });
    // And a later explicit re-send goes to it.
    const resent = server.sendWorkload("uid-a");
    expect((await again.next()).req).toMatchObject({ kind: "add", uid: "uid-a" });
    await again.ack();
    await expect(resent).resolves.toBeUndefined();
  });

  it("drops a connection that never says hello", async () => {
    const server = await startServer({ ackTimeoutMs: 150 });
    const silent = await connect(server, { hello: false });
    await silent.closed;
  });

  it("refuses a message larger than ZDS_MAX_MESSAGE before sending; the caller keeps its fd", async () => {
    const server = await startServer();
    const fd = openNetns(nsA);
    try {
      expect(() => server.setPod("uid-big", info("x".repeat(ZDS_MAX_MESSAGE)), fd)).toThrow(ZdsRequestError);
      expect(() => server.setPod("uid-big", info("x".repeat(ZDS_MAX_MESSAGE)), fd)).toThrow(/exceeds the 1024-byte ZDS limit/);
      expect(server.getPod("uid-big")).toBeUndefined();
      expect(isNetnsFd(fd)).toBe(true); // still open, still ours
    } finally {
      closeFd(fd);
    }
    // A non-netns fd is refused too.
    const notNs = fs.openSync(dir, "r");
    try {
      expect(() => server.setPod("uid-file", info("f"), notNs)).toThrow(/not a network namespace/);
    } finally {
      fs.closeSync(notNs);
    }
  });

  it("close() rejects outstanding requests", async () => {
    const server = await startServer();
    const client = await connect(server);
    await client.takeSnapshot();
    const pending = server.addWorkload({ uid: "uid-a", info: info("a"), netnsFd: openNetns(nsA) });
    await client.next();
    await server.close();
    await expect(pending).rejects.toThrow(/server closed/);
    await client.closed;
  });
});

describe("ZdsServer fd ownership", () => {
  it("leaks no fd over connect, snapshot, adds, deletes, removePod and close", async () => {
    // Warm up the addon's poller so its own fds are not counted as a leak.
    const warm = await startServer();
    await (await connect(warm)).takeSnapshot();
    for (const c of clients.splice(0)) await c.close();
    for (const s of servers.splice(0)) await s.close();

    const before = openFdCount();
    const server = await startServer();
    server.setPod("uid-a", info("a"), openNetns(nsA));
    server.setPod("uid-a", info("a"), openNetns(nsA)); // replaces (and closes) the first fd
    server.setPod("uid-keep", info("k"), null);
    const client = await connect(server);
    await client.takeSnapshot();
    const add = server.addWorkload({ uid: "uid-b", info: info("b"), netnsFd: openNetns(nsB) });
    await client.next();
    await client.ack();
    await add;
    const del = server.delWorkload("uid-a");
    await client.next();
    await client.ack();
    await del;
    expect(server.removePod("uid-b")).toBe(true);
    server.setPod("uid-c", info("c"), openNetns(nsB)); // still owned at close()
    await client.close();
    await server.close();
    servers.splice(0);
    clients.splice(0);
    expect(openFdCount()).toBe(before);
  });
});
