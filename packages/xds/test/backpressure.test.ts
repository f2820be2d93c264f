// A client that stops reading must cost the server no more than its dirty set and one response being written,
// and must not delay pushes to other clients.
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionDebug, DeltaXdsServer } from "../src/index.js";
import { ADDRESS, RawClient, type Response, startServer, until } from "./helpers.js";

const STALLED_NODE = "ztunnel~10.0.0.2~ztunnel-stalled.istio-system~istio-system.svc.cluster.local";
const HEALTHY_NODE = "ztunnel~10.0.0.3~ztunnel-healthy.istio-system~istio-system.svc.cluster.local";
const RESOURCES = 40;
const SIZE = 32 * 1024;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function fill(server: DeltaXdsServer, round: number): void {
  server.update(
    ADDRESS,
    Array.from({ length: RESOURCES }, (_, i) => ({ name: `r${i}`, resource: Buffer.alloc(SIZE, `${round}:${i};`) })),
  );
}

/** A client that ACKs everything as soon as it arrives and keeps the round of the last "r0" it got. */
function healthyClient(port: number): { client: RawClient; seen: Map<string, number>; lastRound: () => number } {
  const client = new RawClient(port);
  cleanups.push(() => client.close());
  const seen = new Map<string, number>();
  let lastRound = -1;
  client.call.on("data", (r: Response) => {
    client.ack(r);
    for (const res of r.resources) {
      const name = res.name ?? "";
      seen.set(name, (seen.get(name) ?? 0) + 1);
      if (name === "r0") lastRound = Number(Buffer.from(res.resource!.value!).toString("latin1").split(":")[0]);
    }
  });
  client.open(ADDRESS, {}, HEALTHY_NODE);
  return { client, seen, lastRound: () => lastRound };
}

/** Changes every resource, pushes at once (no debounce) and waits until the healthy client has that round. */
async function pushRound(server: DeltaXdsServer, round: number, lastRound: () => number): Promise<void> {
  fill(server, round);
  server.flush();
  await until(() => lastRound() === round, undefined, `round ${round} at the healthy client`);
}

/**
 * Pushes rounds until the stalled client's gRPC library has buffered its 16 messages and a write to it stays in
 * flight across a whole round the healthy client received: HTTP/2 flow control now holds it. Returns its nonce.
 */
async function stallWrites(server: DeltaXdsServer, stalled: RawClient, nextRound: () => number, lastRound: () => number): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const before = stalledConn(server)?.writing?.nonce;
    await pushRound(server, nextRound(), lastRound);
    const now = stalledConn(server)?.writing?.nonce;
    if (now !== undefined && now === before && stalled.call.readableLength >= 16) return now;
  }
  throw new Error("the write to the stalled client never got stuck");
}

const stalledConn = (server: DeltaXdsServer): ConnectionDebug | undefined =>
  server.debugConnections().find((c) => c.nodeId === STALLED_NODE);

describe("back-pressure", () => {
  it("a client that stops reading: one write in flight, dirty set ≤ resources, others unaffected (waitForAck off)", async () => {
    const { server, port } = await startServer({ debounceMs: 10, waitForAck: false });
    cleanups.push(() => server.close(50));
    fill(server, 0);

    const stalled = new RawClient(port);
    cleanups.push(() => stalled.close());
    stalled.open(ADDRESS, {}, STALLED_NODE);
    const first = await stalled.next();
    expect(first.resources).toHaveLength(RESOURCES);
    stalled.ack(first);
    stalled.call.pause(); // stops reading: HTTP/2 flow control now holds the server's writes

    const { seen, lastRound } = healthyClient(port);
    await until(() => seen.size >= RESOURCES, undefined, "healthy initial sync");

    let round = 1;
    const stuckNonce = await stallWrites(server, stalled, () => round++, lastRound);

    // Keep changing everything while it is stuck: memory stays bounded by names, not by responses; and the
    // healthy client gets every round meanwhile (its pushes do not wait behind the stuck write).
    for (let i = 0; i < 20; i++) {
      await pushRound(server, round++, lastRound);
      const c = stalledConn(server)!;
      expect(c.writing?.nonce).toBe(stuckNonce); // the same response, still not written
      expect(c.queuedWrites).toBe(0);
      expect(c.watches[0]!.pendingNames).toBeLessThanOrEqual(server.store.size(ADDRESS));
    }
    server.flush(); // whatever the debounce still holds
    const stuck = stalledConn(server)!;
    expect(stuck.writing!.nonce).toBe(stuckNonce);
    expect(stuck.watches[0]!.pendingNames).toBe(RESOURCES); // every name dirty, once
  });

  it("with waitForAck (default), a client that neither reads nor ACKs gets one response and then only a dirty set", async () => {
    const { server, port } = await startServer({ debounceMs: 10 });
    cleanups.push(() => server.close(50));
    fill(server, 0);
    const stalled = new RawClient(port);
    cleanups.push(() => stalled.close());
    stalled.open(ADDRESS, {}, STALLED_NODE);
    await stalled.next(); // never ACKed
    stalled.call.pause();

    const { seen, lastRound } = healthyClient(port);
    await until(() => seen.size >= RESOURCES, undefined, "healthy initial sync");
    for (let round = 1; round <= 20; round++) {
      await pushRound(server, round, lastRound); // the healthy client gets every round
      const c = stalledConn(server)!;
      expect(c.writing).toBeNull();
      expect(c.queuedWrites).toBe(0);
      expect(c.watches[0]).toMatchObject({ awaitingAck: true, responses: 1 });
      expect(c.watches[0]!.pendingNames).toBe(RESOURCES); // every name dirty, once
    }
  });

  it("sendTimeoutMs aborts a stream whose write stays stuck, counting pilot_xds_write_timeout", async () => {
    const { server, port, registry } = await startServer({ debounceMs: 10, waitForAck: false, sendTimeoutMs: 300 });
    cleanups.push(() => server.close(50));
    fill(server, 0);
    const stalled = new RawClient(port);
    cleanups.push(() => stalled.close());
    stalled.open(ADDRESS, {}, STALLED_NODE);
    await stalled.next();
    stalled.call.pause();
    // Push rounds until a write to the paused client is in flight with its buffer full; then that write cannot
    // complete, and the timer must end the stream (waited for, with a generous bound).
    let round = 1;
    await until(() => {
      const c = stalledConn(server);
      if (!c) return true; // already aborted
      if (c.writing && stalled.call.readableLength >= 16) return true;
      fill(server, round++);
      server.flush();
      return false;
    }, undefined, "a write to the paused client in flight with its buffer full");
    await until(() => !stalledConn(server), undefined, "the stream aborted");
    expect(await registry.metrics()).toMatch(/pilot_xds_write_timeout 1/);
    stalled.call.resume();
    const st = await stalled.statusPromise;
    expect(st.code).toBe(1); // CANCELLED: the stream was reset
  });
});
