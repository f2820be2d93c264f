import { afterEach, describe, expect, it, vi } from "vitest";
import type { DeltaXdsServer } from "../src/index.js";
import { ADDRESS, AUTHZ, RawClient, type Response, bytes, names, removed, startServer, summary, until } from "./helpers.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: Parameters<typeof startServer>[0] = {}): Promise<{ server: DeltaXdsServer; port: number; client: () => RawClient; registry: import("prom-client").Registry }> {
  const { server, port, registry } = await startServer(options);
  cleanups.push(() => server.close(100));
  const client = (): RawClient => {
    const c = new RawClient(port);
    cleanups.push(() => c.close());
    return c;
  };
  return { server, port, client, registry };
}

describe("wildcard", () => {
  it("initial sync sends everything, with content versions", async () => {
    const { server, client } = await setup();
    server.update(ADDRESS, [
      { name: "a", resource: bytes("A") },
      { name: "b", resource: bytes("B") },
      { name: "c", resource: bytes("C"), aliases: ["/10.0.0.3"] },
    ]);
    const c = client();
    c.open(ADDRESS);
    const r = await c.nextAcked();
    expect(summary(r)).toEqual({ type: ADDRESS, names: ["a", "b", "c"], removed: [] });
    expect(r.nonce).not.toBe("");
    const byName = Object.fromEntries(r.resources.map((x) => [x.name, x]));
    expect(byName["a"]!.version).toBe(server.store.get(ADDRESS, "a")!.version);
    expect(byName["c"]!.aliases).toEqual(["/10.0.0.3"]);
    expect(byName["b"]!.resource!.type_url).toBe(ADDRESS);
    expect(Buffer.from(byName["b"]!.resource!.value!).toString()).toBe("B");
  });

  it("answers the initial request of an empty type with an empty response", async () => {
    const { client } = await setup();
    const c = client();
    c.open(AUTHZ);
    const r = await c.nextAcked();
    expect(summary(r)).toEqual({ type: AUTHZ, names: [], removed: [] });
  });

  it("an incremental push carries only changed names and removals", async () => {
    const { server, client } = await setup();
    server.update(ADDRESS, ["a", "b", "c"].map((n) => ({ name: n, resource: bytes(n) })));
    const c = client();
    c.open(ADDRESS);
    await c.nextAcked();
    server.set(ADDRESS, "a", bytes("a2"));
    server.delete(ADDRESS, "b");
    server.set(ADDRESS, "d", bytes("d"));
    const r = await c.nextAcked();
    expect(summary(r)).toEqual({ type: ADDRESS, names: ["a", "d"], removed: ["b"] });
    await c.nothingDue(server);
  });

  it("an unchanged set does not push", async () => {
    const { server, client } = await setup();
    server.set(ADDRESS, "a", bytes("a"));
    const c = client();
    c.open(ADDRESS);
    await c.nextAcked();
    expect(server.set(ADDRESS, "a", bytes("a"))).toBe(false);
    expect(server.update(ADDRESS, [{ name: "a", resource: bytes("a") }])).toEqual([]);
    await c.nothingDue(server);
  });

  it("types are independent: a change of one type pushes only that type", async () => {
    const { server, client } = await setup();
    const c = client();
    c.open(ADDRESS);
    c.open(AUTHZ);
    const first = [await c.nextAcked(), await c.nextAcked()].map((r) => r.type_url).sort();
    expect(first).toEqual([ADDRESS, AUTHZ].sort());
    server.set(AUTHZ, "ns/policy", bytes("p"));
    const r = await c.nextAcked();
    expect(summary(r)).toEqual({ type: AUTHZ, names: ["ns/policy"], removed: [] });
    await c.nothingDue(server, ADDRESS);
    await c.nothingDue(server, AUTHZ);
  });
});

describe("debounce", () => {
  // The debounce runs on plain timers: the churn below advances a fake clock, synchronously, so what the server
  // does at each moment of that clock is observed without waiting for time. (Nothing in the fake-clock part
  // yields to the event loop; the client's sockets and gRPC's own timers run on the real one.)
  const fakeClock = (): void => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  };
  /** Responses the server has written on the (only) connection so far. */
  const responses = (server: DeltaXdsServer): number => server.debugConnections()[0]!.watches[0]!.responses;
  /** Waits until the server has processed the ACK of `r` (a push of the type is due only then). */
  const ackSeen = (server: DeltaXdsServer, r: Response): Promise<unknown> =>
    until(() => server.debugConnections()[0]?.watches[0]?.lastAckNonce === r.nonce, undefined, "the ACK at the server");

  it("merges a burst into one push, sent when the quiet time after the last change has passed", async () => {
    const { server, client } = await setup({ debounceMs: 100 });
    const c = client();
    c.open(ADDRESS);
    await ackSeen(server, await c.nextAcked());
    fakeClock();
    try {
      for (let i = 0; i < 20; i++) {
        server.set(ADDRESS, `n${i}`, bytes(`v${i}`));
        if (i % 2 === 0) server.set(ADDRESS, `n${i}`, bytes(`v${i}-again`));
        vi.advanceTimersByTime(5); // each change restarts the quiet time
      }
      // The last change was at 95 ms: nothing is pushed until 195 ms, then everything at once.
      vi.advanceTimersByTime(94);
      expect(responses(server)).toBe(1);
      vi.advanceTimersByTime(1);
      expect(responses(server)).toBe(2);
    } finally {
      vi.useRealTimers();
    }
    const r = await c.nextAcked();
    expect(names(r)).toHaveLength(20);
    expect(Buffer.from(r.resources.find((x) => x.name === "n0")!.resource!.value!).toString()).toBe("v0-again");
    await c.nothingDue(server);
  });

  it("max wait forces a push under constant churn", async () => {
    const { server, client } = await setup({ debounceMs: 100, debounceMaxMs: 300 });
    const c = client();
    c.open(ADDRESS);
    let last = await c.nextAcked();
    let i = 0;
    for (let round = 1; round <= 2; round++) {
      await ackSeen(server, last);
      fakeClock();
      try {
        // A change every 20 ms: the 100 ms of quiet never come, so only the 300 ms cap can push.
        for (let t = 0; t < 300; t += 20) {
          expect(responses(server)).toBe(round);
          server.set(ADDRESS, "hot", bytes(`v${i++}`));
          vi.advanceTimersByTime(20);
        }
        expect(responses(server)).toBe(round + 1);
      } finally {
        vi.useRealTimers();
      }
      last = await c.nextAcked();
      expect(names(last)).toEqual(["hot"]);
      expect(Buffer.from(last.resources[0]!.resource!.value!).toString()).toBe(`v${i - 1}`);
    }
  });
});

describe("named subscriptions", () => {
  it("subscribes and unsubscribes by name; requested names are re-sent", async () => {
    const { server, client } = await setup();
    server.update(ADDRESS, ["a", "b", "c"].map((n) => ({ name: n, resource: bytes(n) })));
    const c = client();
    c.open(ADDRESS, { resource_names_subscribe: ["a"] });
    expect(summary(await c.nextAcked())).toMatchObject({ names: ["a"], removed: [] });

    c.send({ type_url: ADDRESS, resource_names_subscribe: ["b", "missing"] });
    // A name that does not exist is answered with a removal.
    expect(summary(await c.nextAcked())).toMatchObject({ names: ["b"], removed: ["missing"] });

    server.set(ADDRESS, "c", bytes("c2")); // not subscribed
    await c.nothingDue(server);
    server.set(ADDRESS, "a", bytes("a2"));
    expect(names(await c.nextAcked())).toEqual(["a"]);

    c.send({ type_url: ADDRESS, resource_names_unsubscribe: ["a"] });
    await until(() => !server.debugConnections()[0]!.watches[0]!.subscriptions.includes("a"), undefined, "the unsubscribe at the server");
    server.set(ADDRESS, "a", bytes("a3"));
    await c.nothingDue(server);

    // Re-subscribing sends it even though nothing changed for the client.
    c.send({ type_url: ADDRESS, resource_names_subscribe: ["b"] });
    expect(names(await c.nextAcked())).toEqual(["b"]);

    // A subscribed name that appears later is pushed; its deletion is a removal.
    server.set(ADDRESS, "missing", bytes("now here"));
    expect(names(await c.nextAcked())).toEqual(["missing"]);
    server.delete(ADDRESS, "b");
    expect(removed(await c.nextAcked())).toEqual(["b"]);
  });

  it("ztunnel's on-demand shape subscribes to nothing, then to names and aliases", async () => {
    const { server, client } = await setup();
    server.set(ADDRESS, "c1//Pod/ns/w1", bytes("w1"), { aliases: ["/10.0.0.5"] });
    server.set(ADDRESS, "c1//Pod/ns/w2", bytes("w2"), { aliases: ["/10.0.0.6"] });
    const c = client();
    c.open(ADDRESS, { resource_names_subscribe: ["*"], resource_names_unsubscribe: ["*"] });
    expect(summary(await c.nextAcked())).toMatchObject({ names: [], removed: [] });
    server.set(ADDRESS, "c1//Pod/ns/w2", bytes("w2-changed"), { aliases: ["/10.0.0.6"] });
    await c.nothingDue(server);

    // Lookup by alias: the resource carrying it comes back, with its aliases.
    c.send({ type_url: ADDRESS, resource_names_subscribe: ["/10.0.0.5"] });
    const r = await c.nextAcked();
    expect(names(r)).toEqual(["c1//Pod/ns/w1"]);
    expect(r.resources[0]!.aliases).toEqual(["/10.0.0.5"]);

    // Changes of the matched resource follow; unrelated ones do not.
    server.set(ADDRESS, "c1//Pod/ns/w1", bytes("w1-v2"), { aliases: ["/10.0.0.5"] });
    expect(names(await c.nextAcked())).toEqual(["c1//Pod/ns/w1"]);
    server.set(ADDRESS, "c1//Pod/ns/w2", bytes("w2-v3"), { aliases: ["/10.0.0.6"] });
    await c.nothingDue(server);

    // An unknown address is answered with a removal; once a resource carries it, it is pushed.
    c.send({ type_url: ADDRESS, resource_names_subscribe: ["/10.0.0.9"] });
    expect(summary(await c.nextAcked())).toMatchObject({ names: [], removed: ["/10.0.0.9"] });
    server.set(ADDRESS, "c1//Pod/ns/w9", bytes("w9"), { aliases: ["/10.0.0.9"] });
    expect(names(await c.nextAcked())).toEqual(["c1//Pod/ns/w9"]);

    // The resource losing the alias it was matched by is removed from the client; deletion likewise.
    server.set(ADDRESS, "c1//Pod/ns/w9", bytes("w9"), { aliases: ["/10.0.0.10"] });
    expect(removed(await c.nextAcked())).toEqual(["c1//Pod/ns/w9"]);
    server.delete(ADDRESS, "c1//Pod/ns/w1");
    expect(removed(await c.nextAcked())).toEqual(["c1//Pod/ns/w1"]);
  });

  it("subscribing to * later turns a named watch into a wildcard one", async () => {
    const { server, client } = await setup();
    server.update(ADDRESS, ["a", "b"].map((n) => ({ name: n, resource: bytes(n) })));
    const c = client();
    c.open(ADDRESS, { resource_names_subscribe: ["a"] });
    expect(names(await c.nextAcked())).toEqual(["a"]);
    c.send({ type_url: ADDRESS, resource_names_subscribe: ["*"] });
    expect(names(await c.nextAcked())).toEqual(["a", "b"]);
    server.set(ADDRESS, "z", bytes("z"));
    expect(names(await c.nextAcked())).toEqual(["z"]);
  });
});

describe("resume", () => {
  it("initial_resource_versions: only changed resources, plus removals of names that are gone", async () => {
    const { server, client } = await setup();
    server.update(ADDRESS, ["a", "b", "c"].map((n) => ({ name: n, resource: bytes(n) })));
    const c = client();
    c.open(ADDRESS, {
      initial_resource_versions: {
        a: server.store.get(ADDRESS, "a")!.version, // current: not re-sent
        b: "stale-version", // changed: sent
        gone: "whatever", // no longer exists: removed
      },
    });
    expect(summary(await c.nextAcked())).toEqual({ type: ADDRESS, names: ["b", "c"], removed: ["gone"] });
  });

  it("a resumed named watch keeps the names it had (as istiod), skipping current versions", async () => {
    const { server, client } = await setup();
    server.update(ADDRESS, ["a", "b", "c"].map((n) => ({ name: n, resource: bytes(n) })));
    const c = client();
    c.open(ADDRESS, {
      resource_names_subscribe: ["*"],
      resource_names_unsubscribe: ["*"],
      initial_resource_versions: { a: server.store.get(ADDRESS, "a")!.version, b: "" },
    });
    expect(summary(await c.nextAcked())).toEqual({ type: ADDRESS, names: ["b"], removed: [] });
    server.set(ADDRESS, "a", bytes("a2"));
    expect(names(await c.nextAcked())).toEqual(["a"]);
    server.set(ADDRESS, "c", bytes("c2"));
    await c.nothingDue(server);
  });
});

describe("ACK / NACK", () => {
  it("waits for the ACK of a type before pushing that type again", async () => {
    const { server, client } = await setup();
    const c = client();
    c.open(ADDRESS);
    const first = await c.next();
    c.ack(first);
    server.set(ADDRESS, "a", bytes("1"));
    const second = await c.next(); // not ACKed
    expect(names(second)).toEqual(["a"]);
    server.set(ADDRESS, "b", bytes("1"));
    server.flush(); // the change is due now, but held: nothing is written until the ACK
    expect(server.debugConnections()[0]!.watches[0]).toMatchObject({ awaitingAck: true, pendingNames: 1, responses: 2 });
    c.ack(second);
    expect(names(await c.nextAcked())).toEqual(["b"]);
  });

  it("a NACK is logged and counted, and nothing is re-sent until something changes", async () => {
    const logged: Array<{ obj: object; msg?: string }> = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (obj: object, msg?: string) => logged.push({ obj, msg }) };
    const { server, client, registry } = await setup({ logger });
    server.set(ADDRESS, "bad", bytes("x"));
    const c = client();
    c.open(ADDRESS);
    const r = await c.next();
    c.ack(r, "bad: cannot parse");
    await until(() => server.debugConnections()[0]?.watches[0]?.nackCount === 1, 2000, "NACK recorded");
    const w = server.debugConnections()[0]!.watches[0]!;
    expect(w.lastNack).toMatchObject({ nonce: r.nonce, message: "bad: cannot parse" });
    expect(w.awaitingAck).toBe(false);
    const text = await registry.metrics();
    expect(text).toMatch(/pilot_total_xds_rejects\{type="wds"\} 1/);
    expect(logged.some((l) => l.msg === "xDS NACK")).toBe(true);
    await c.nothingDue(server);
    server.set(ADDRESS, "bad", bytes("fixed"));
    expect(names(await c.nextAcked())).toEqual(["bad"]);
  });
});

describe("stream validation", () => {
  it("refuses streams with UNAVAILABLE until ready", async () => {
    const { server, client } = await setup({ ready: false });
    const c = client();
    c.open(ADDRESS);
    const st = await c.statusPromise;
    expect(st.code).toBe(14);
    expect(st.details).toBe("caches not synced");
    server.setReady(true);
    const ok = client();
    ok.open(ADDRESS);
    await ok.nextAcked();
  });

  it("ends with INVALID_ARGUMENT for a node id without 4 parts, a bad type or no node", async () => {
    const { client } = await setup();
    const bad = client();
    bad.open(ADDRESS, {}, "ztunnel~10.0.0.1~x");
    const st = await bad.statusPromise;
    expect(st.code).toBe(3);
    expect(st.details).toMatch(/4 "~"-separated parts/);

    const badType = client();
    badType.open(ADDRESS, {}, "gateway~10.0.0.1~x.ns~ns.svc.cluster.local");
    expect((await badType.statusPromise).code).toBe(3);

    const noNode = client();
    noNode.send({ type_url: ADDRESS });
    expect(await noNode.statusPromise).toMatchObject({ code: 3, details: "missing node information" });
  });

  it("ends with UNAUTHENTICATED when authenticate throws, with its message", async () => {
    const seen: string[] = [];
    const { port } = await setup({
      authenticate: async (md) => {
        const token = String(md.get("authorization")[0] ?? "");
        seen.push(token);
        if (token !== "Bearer good") throw new Error("token rejected: bad signature");
        return { identity: "spiffe://cluster.local/ns/istio-system/sa/ztunnel" };
      },
    });
    const bad = new RawClient(port, { authorization: "Bearer bad" });
    cleanups.push(() => bad.close());
    bad.open(ADDRESS);
    expect(await bad.statusPromise).toMatchObject({ code: 16, details: "token rejected: bad signature" });

    const good = new RawClient(port, { authorization: "Bearer good" });
    cleanups.push(() => good.close());
    good.open(ADDRESS);
    await good.nextAcked();
    expect(seen).toEqual(["Bearer bad", "Bearer good"]);
  });

  it("ends with PERMISSION_DENIED when authorize refuses the node", async () => {
    const { server, client } = await setup({
      authenticate: () => ({ identity: "spiffe://cluster.local/ns/other/sa/x" }),
      authorize: (auth, node) => {
        const ns = node.id!.split("~")[3]!.split(".")[0];
        if (!auth.identity.includes(`/ns/${ns}/`)) throw new Error(`identity ${auth.identity} may not act for namespace ${ns}`);
      },
    });
    const c = client();
    c.open(ADDRESS);
    const st = await c.statusPromise;
    expect(st.code).toBe(7);
    expect(st.details).toMatch(/may not act for namespace istio-system/);
    expect(server.connectionCount).toBe(0);
  });
});

describe("introspection", () => {
  it("debugConnections, snapshot and metrics with istiod's names", async () => {
    const { server, client, registry } = await setup({ authenticate: () => ({ identity: "spiffe://td/ns/istio-system/sa/ztunnel" }) });
    server.set(ADDRESS, "b", bytes("b"), { aliases: ["/10.0.0.2"] });
    server.set(ADDRESS, "a", bytes("a"));
    const c = client();
    c.open(ADDRESS, { resource_names_subscribe: ["*"], resource_names_unsubscribe: ["*"] });
    c.send({ type_url: ADDRESS, resource_names_subscribe: ["b"] });
    await c.nextAcked();
    await c.nextAcked();
    await until(() => server.debugConnections()[0]?.watches[0]?.lastAckNonce === c.responses[1]!.nonce, 2000, "ACK recorded");
    const [conn] = server.debugConnections();
    expect(conn).toMatchObject({
      nodeId: "ztunnel~10.0.0.1~ztunnel-x1.istio-system~istio-system.svc.cluster.local",
      identity: "spiffe://td/ns/istio-system/sa/ztunnel",
      writing: null,
      queuedWrites: 0,
    });
    expect(conn!.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(conn!.watches[0]).toMatchObject({ typeUrl: ADDRESS, wildcard: false, subscriptions: ["b"], pendingNames: 0, nackCount: 0, responses: 2 });

    expect(server.snapshot(ADDRESS).map((e) => [e.name, e.aliases])).toEqual([
      ["a", []],
      ["b", ["/10.0.0.2"]],
    ]);

    const text = await registry.metrics();
    for (const name of [
      "pilot_xds",
      "pilot_xds_pushes",
      "pilot_xds_push_time",
      "pilot_xds_config_size_bytes",
      "pilot_total_xds_rejects",
      "pilot_xds_write_timeout",
      "pilot_xds_expired_nonce",
      "pilot_proxy_convergence_time",
      "pilot_debounce_time",
      "ambit_xds_resources",
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(text).toMatch(/pilot_xds\{version="unknown"\} 1/);
    expect(text).toMatch(/pilot_xds_pushes\{type="wds"\} 2/);
    expect(text).toMatch(/pilot_xds_push_time_count\{type="wds"\} 2/);
    expect(text).toMatch(/pilot_xds_config_size_bytes_bucket\{le="10000",type="wds"\} 2/);
    expect(text).toMatch(/ambit_xds_resources\{type="wds"\} 2/);

    c.close();
    await until(() => server.connectionCount === 0, 2000, "disconnect");
    expect(await registry.metrics()).toMatch(/pilot_xds\{version="unknown"\} 0/);
  });
});

describe("large pushes", () => {
  it("splits a response larger than maxResponseBytes into several", async () => {
    const { server, client } = await setup({ maxResponseBytes: 100_000 });
    server.update(ADDRESS, Array.from({ length: 10 }, (_, i) => ({ name: `r${i}`, resource: Buffer.alloc(30_000, i) })));
    const c = client();
    c.open(ADDRESS);
    const got: string[] = [];
    while (got.length < 10) {
      const r = await c.nextAcked();
      expect(r.resources.length).toBeLessThanOrEqual(3);
      got.push(...names(r));
    }
    expect(got.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`).sort());
    await c.nothingDue(server);
  });
});
