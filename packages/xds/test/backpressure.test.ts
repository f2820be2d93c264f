// A client that stops reading must cost the server no more than its dirty set and one response being written,
// and must not delay pushes to other clients.
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionDebug, DeltaXdsServer } from "../src/index.js";
import { ADDRESS, RawClient, type Response, sleep, startServer, until } from "./helpers.js";

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

/** A client that ACKs everything as soon as it arrives and records when each name arrived. */
function healthyClient(port: number): { client: RawClient; seen: Map<string, number[]> } {
  const client = new RawClient(port);
  cleanups.push(() => client.close());
  const seen = new Map<string, number[]>();
  client.call.on("data", (r: Response) => {
    client.ack(r);
    const now = performance.now();
    for (const res of r.resources) {
      const name = res.name ?? "";
      let list = seen.get(name);
      if (!list) seen.set(name, (list = []));
      list.push(now);
    }
  });
  client.open(ADDRESS, {}, HEALTHY_NODE);
  return { client, seen };
}

/** Time from a change of "probe" until the healthy client has it. */
async function probeLatency(server: DeltaXdsServer, seen: Map<string, number[]>, tag: string): Promise<number> {
  const before = seen.get("probe")?.length ?? 0;
  const t0 = performance.now();
  server.set(ADDRESS, "probe", Buffer.from(tag));
  await until(() => (seen.get("probe")?.length ?? 0) > before, 5000, "probe at the healthy client");
  return seen.get("probe")![before]! - t0;
}

/** Changes every resource every 30 ms (the debounce is 10 ms) until `done()`. */
async function churnUntil(server: DeltaXdsServer, nextRound: () => number, done: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out churning");
    fill(server, nextRound());
    await sleep(30);
  }
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

    const { seen } = healthyClient(port);
    await until(() => seen.size >= RESOURCES, 5000, "healthy initial sync");
    const baseline = await probeLatency(server, seen, "baseline");

    // Churn (slower than the debounce) until the server's write to the stalled client is stuck: the client's
    // gRPC library buffers up to 16 messages before HTTP/2 flow control stops the server.
    let round = 1;
    await churnUntil(server, () => round++, () => {
      const c = stalledConn(server);
      return Boolean(c?.writing && c.writing.sinceMs > 300 && stalled.call.readableLength >= 16);
    });
    const stuckNonce = stalledConn(server)!.writing!.nonce;

    // Keep changing everything while it is stuck: memory stays bounded by names, not by responses.
    for (let i = 0; i < 20; i++) {
      fill(server, round++);
      await sleep(30);
      const c = stalledConn(server)!;
      expect(c.writing?.nonce).toBe(stuckNonce); // the same response, still not written
      expect(c.queuedWrites).toBe(0);
      expect(c.watches[0]!.pendingNames).toBeLessThanOrEqual(server.store.size(ADDRESS));
    }
    server.flush(); // whatever the debounce still holds
    const stuck = stalledConn(server)!;
    expect(stuck.watches[0]!.pendingNames).toBe(RESOURCES); // every name dirty, once
    expect(stuck.writing!.sinceMs).toBeGreaterThan(400);

    // The healthy client still gets pushes as fast as before.
    const during = await probeLatency(server, seen, "during-stall");
    if (process.env["XDS_TEST_VERBOSE"]) console.log(`probe latency: baseline ${baseline.toFixed(1)} ms, while stalled ${during.toFixed(1)} ms`);
    expect(during).toBeLessThan(Math.max(4 * baseline, 300));
    // And the churn reached it too (many rounds, merged by the debounce).
    expect(seen.get("r0")!.length).toBeGreaterThan(1);
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

    const { seen } = healthyClient(port);
    await until(() => seen.size >= RESOURCES, 5000, "healthy initial sync");
    const baseline = await probeLatency(server, seen, "baseline");
    for (let round = 1; round <= 20; round++) {
      fill(server, round);
      await sleep(30);
    }
    await sleep(50);
    const c = stalledConn(server)!;
    expect(c.writing).toBeNull();
    expect(c.queuedWrites).toBe(0);
    expect(c.watches[0]).toMatchObject({ awaitingAck: true, responses: 1 });
    expect(c.watches[0]!.pendingNames).toBeLessThanOrEqual(server.store.size(ADDRESS));
    const during = await probeLatency(server, seen, "during");
    expect(during).toBeLessThan(Math.max(4 * baseline, 300));
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
    let round = 1;
    await churnUntil(server, () => round++, () => !stalledConn(server));
    expect(await registry.metrics()).toMatch(/pilot_xds_write_timeout 1/);
    stalled.call.resume();
    const st = await stalled.statusPromise;
    expect(st.code).toBe(1); // CANCELLED: the stream was reset
  });
});
