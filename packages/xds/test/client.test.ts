import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { packAddress, packAuthorization, unpackAddress, unpackAuthorization } from "@ambit/protocol";
import { DeltaXdsClient, DeltaXdsServer, type DeltaXdsClientOptions, type DisconnectEvent, type HandlerResult, type ReceivedResource } from "../src/index.js";
import { ADDRESS, AUTHZ, NODE_ID, startServer, until } from "./helpers.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const workload = (name: string, ip?: string) => ({
  name: `c1//Pod/ns/${name}`,
  resource: packAddress({ workload: { uid: `c1//Pod/ns/${name}`, name, namespace: "ns" } }),
  aliases: ip ? [`/${ip}`] : [],
});
const policy = (name: string) => ({ name: `ns/${name}`, resource: packAuthorization({ name, namespace: "ns" }) });
/** Bytes that are not a valid istio.workload.Address (a length prefix pointing past the end). */
const malformed = { type_url: ADDRESS, value: new Uint8Array([0x0a, 0x05, 0x01]) };

/** ztunnel-like state: applies what parses, rejects the rest. */
class State {
  readonly addresses = new Map<string, string>();
  readonly policies = new Map<string, string>();
  readonly batches: Array<{ typeUrl: string; added: string[]; removed: string[] }> = [];

  handler(typeUrl: string) {
    return (added: ReceivedResource[], removed: string[]): HandlerResult => {
      this.batches.push({ typeUrl, added: added.map((a) => a.name).sort(), removed: [...removed].sort() });
      const errors: Record<string, string> = {};
      const target = typeUrl === ADDRESS ? this.addresses : this.policies;
      for (const a of added) {
        try {
          const decoded = typeUrl === ADDRESS ? unpackAddress(a.resource) : unpackAuthorization(a.resource);
          target.set(a.name, JSON.stringify(decoded.toJSON()));
        } catch (err) {
          errors[a.name] = (err as Error).message;
        }
      }
      for (const r of removed) target.delete(r);
      return { errors };
    };
  }
}

function makeClient(port: number, state: State, extra: Partial<DeltaXdsClientOptions> = {}): DeltaXdsClient {
  const client = new DeltaXdsClient({
    address: `127.0.0.1:${port}`,
    node: { id: NODE_ID, metadata: { fields: { NAME: { string_value: "ztunnel-x1" } } } },
    watches: [
      { typeUrl: ADDRESS, handler: state.handler(ADDRESS) },
      { typeUrl: AUTHZ, handler: state.handler(AUTHZ) },
    ],
    ...extra,
  });
  cleanups.push(() => client.close());
  return client;
}

describe("DeltaXdsClient", () => {
  it("syncs every watched type and becomes ready; applies later deltas", async () => {
    const { server, port } = await startServer();
    cleanups.push(() => server.close(100));
    server.update(ADDRESS, [workload("a", "10.0.0.1"), workload("b")]);
    server.update(AUTHZ, [policy("p1")]);
    const state = new State();
    const client = makeClient(port, state).start();
    await client.ready();
    expect(client.isReady).toBe(true);
    expect([...state.addresses.keys()].sort()).toEqual(["c1//Pod/ns/a", "c1//Pod/ns/b"]);
    expect([...state.policies.keys()]).toEqual(["ns/p1"]);
    expect(client.versions(ADDRESS).get("c1//Pod/ns/a")).toBe(server.store.get(ADDRESS, "c1//Pod/ns/a")!.version);

    server.delete(ADDRESS, "c1//Pod/ns/b");
    server.update(AUTHZ, [policy("p2")]);
    await until(() => !state.addresses.has("c1//Pod/ns/b") && state.policies.has("ns/p2"), 3000, "delta applied");
    expect(client.versions(ADDRESS).has("c1//Pod/ns/b")).toBe(false);
    await until(() => server.debugConnections()[0]?.watches.every((w) => !w.awaitingAck), 2000, "ACKs");
  });

  it("partial apply: good resources applied, bad ones NACKed by name and counted by the server", async () => {
    const { server, port, registry } = await startServer();
    cleanups.push(() => server.close(100));
    server.update(ADDRESS, [workload("good"), { name: "c1//Pod/ns/bad", resource: malformed }]);
    const state = new State();
    const nacks: string[] = [];
    const client = makeClient(port, state).start();
    client.on("response", (e: { rejected: Record<string, string> }) => nacks.push(...Object.keys(e.rejected)));
    await client.ready();
    expect([...state.addresses.keys()]).toEqual(["c1//Pod/ns/good"]);
    expect(nacks).toEqual(["c1//Pod/ns/bad"]);
    expect(client.versions(ADDRESS).has("c1//Pod/ns/good")).toBe(true);
    expect(client.versions(ADDRESS).has("c1//Pod/ns/bad")).toBe(false);

    const w = await until(() => server.debugConnections()[0]?.watches.find((x) => x.typeUrl === ADDRESS && x.nackCount === 1), 2000, "NACK");
    expect(w.lastNack!.message).toMatch(/^c1\/\/Pod\/ns\/bad: malformed type\.googleapis\.com\/istio\.workload\.Address: /);
    expect(await registry.metrics()).toMatch(/pilot_total_xds_rejects\{type="wds"\} 1/);

    // Not re-sent until it changes: the server holds nothing for the client (with its debounce pushed out)...
    server.flush();
    expect(server.debugConnections()[0]!.watches.find((x) => x.typeUrl === ADDRESS)).toMatchObject({ responses: 1, pendingNames: 0, awaitingAck: false });
    // ...and once it changes it is sent, and this time ACKed: as the next response of the type (pushes arrive in
    // order, so a re-send would have come first).
    server.update(ADDRESS, [workload("bad")].map((x) => ({ ...x, name: "c1//Pod/ns/bad" })));
    await until(() => state.addresses.has("c1//Pod/ns/bad"), undefined, "fixed resource");
    expect(client.versions(ADDRESS).has("c1//Pod/ns/bad")).toBe(true);
    expect(state.batches.filter((b) => b.typeUrl === ADDRESS)).toEqual([
      { typeUrl: ADDRESS, added: ["c1//Pod/ns/bad", "c1//Pod/ns/good"], removed: [] },
      { typeUrl: ADDRESS, added: ["c1//Pod/ns/bad"], removed: [] },
    ]);
  });

  it("reconnects with doubling back-off after a server restart and resumes with its versions", async () => {
    const first = await startServer({
      authenticate: (md) => ({ identity: String(md.get("authorization")[0]) }),
    });
    const port = first.port;
    first.server.update(ADDRESS, [workload("a"), workload("b"), workload("c")]);
    let token = 0;
    const state = new State();
    const disconnects: DisconnectEvent[] = [];
    const client = makeClient(port, state, {
      metadata: () => ({ authorization: `Bearer t${++token}`, clusterid: "Kubernetes" }),
    });
    client.on("disconnected", (e: DisconnectEvent) => disconnects.push(e));
    client.start();
    await client.ready();
    expect(first.server.debugConnections()[0]!.identity).toBe("Bearer t1");
    const firstBatches = state.batches.length;

    await first.server.close(50);
    // Several failed attempts while nothing listens (the first "disconnected" is the closed stream).
    await until(() => disconnects.length >= 4, undefined, "failed attempts");

    const second = new DeltaXdsServer({
      ready: true,
      debounceMs: 20,
      authenticate: (md) => ({ identity: String(md.get("authorization")[0]) }),
    });
    cleanups.push(() => second.close(100));
    // a: same bytes (same version); b: changed; c: gone; d: new.
    second.update(ADDRESS, [workload("a"), { ...workload("b"), resource: packAddress({ workload: { uid: "c1//Pod/ns/b", name: "b2", namespace: "ns" } }) }, workload("d")]);
    await second.listen({ port, host: "127.0.0.1" });

    await until(() => second.connectionCount === 1 && state.batches.length >= firstBatches + 2, 5000, "resync after restart");
    const resync = state.batches.slice(firstBatches).find((b) => b.typeUrl === ADDRESS)!;
    expect(resync).toEqual({ typeUrl: ADDRESS, added: ["c1//Pod/ns/b", "c1//Pod/ns/d"], removed: ["c1//Pod/ns/c"] });
    expect([...state.addresses.keys()].sort()).toEqual(["c1//Pod/ns/a", "c1//Pod/ns/b", "c1//Pod/ns/d"]);
    // Metadata is re-read per connection.
    expect(second.debugConnections()[0]!.identity).toBe(`Bearer t${token}`);
    expect(token).toBeGreaterThan(2);

    // Back-off: reset after the healthy stream, then doubling.
    const delays = disconnects.map((d) => d.retryInMs!);
    expect(delays[0]).toBe(10);
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBe(Math.min(delays[i - 1]! * 2, 15_000));
    expect(delays.length).toBeGreaterThanOrEqual(3);
  });

  it("leaves NACKed names out of initial_resource_versions, so a resumed stream gets them again", async () => {
    const first = await startServer();
    const port = first.port;
    const content = [workload("good"), { name: "c1//Pod/ns/bad", resource: malformed }];
    first.server.update(ADDRESS, content);
    const state = new State();
    const client = makeClient(port, state).start();
    await client.ready();
    expect([...client.versions(ADDRESS).keys()]).toEqual(["c1//Pod/ns/good"]);
    const before = state.batches.length;
    await first.server.close(50);

    const second = new DeltaXdsServer({ ready: true, debounceMs: 20 });
    cleanups.push(() => second.close(100));
    second.update(ADDRESS, content);
    await second.listen({ port, host: "127.0.0.1" });
    await until(() => state.batches.slice(before).some((b) => b.typeUrl === ADDRESS), 5000, "resync");
    // Same content on the new server: only the rejected resource comes again.
    expect(state.batches.slice(before).find((b) => b.typeUrl === ADDRESS)).toEqual({ typeUrl: ADDRESS, added: ["c1//Pod/ns/bad"], removed: [] });
  });

  it("caps the back-off", async () => {
    const state = new State();
    const disconnects: number[] = [];
    // Nothing listens on this port.
    const { server, port } = await startServer();
    await server.close(10);
    const client = makeClient(port, state, { backoff: { initialMs: 5, maxMs: 40 } });
    client.on("disconnected", (e: DisconnectEvent) => disconnects.push(e.retryInMs!));
    client.start();
    await until(() => disconnects.length >= 6, 5000, "attempts");
    expect(disconnects.slice(0, 6)).toEqual([5, 10, 20, 40, 40, 40]);
  });

  it("on-demand: readiness does not wait for it; subscribe() resolves when each name is answered", async () => {
    const { server, port } = await startServer();
    cleanups.push(() => server.close(100));
    server.update(ADDRESS, [workload("a", "10.0.0.5"), workload("b", "10.0.0.6")]);
    const state = new State();
    const client = makeClient(port, state, {
      watches: [
        { typeUrl: ADDRESS, mode: "on-demand", handler: state.handler(ADDRESS) },
        { typeUrl: AUTHZ, handler: state.handler(AUTHZ) },
      ],
    }).start();
    await client.ready();
    expect(state.addresses.size).toBe(0);
    await client.subscribe(ADDRESS, ["/10.0.0.5", "/10.9.9.9"]);
    expect([...state.addresses.keys()]).toEqual(["c1//Pod/ns/a"]);
    const conn = server.debugConnections()[0]!;
    expect(conn.watches.find((w) => w.typeUrl === ADDRESS)).toMatchObject({ wildcard: false, subscriptions: ["/10.0.0.5", "/10.9.9.9"] });

    // Follows the subscribed resource only.
    server.update(ADDRESS, [{ ...workload("a", "10.0.0.5"), resource: packAddress({ workload: { uid: "c1//Pod/ns/a", name: "a2", namespace: "ns" } }) }]);
    server.update(ADDRESS, [{ ...workload("b", "10.0.0.6"), resource: packAddress({ workload: { uid: "c1//Pod/ns/b", name: "b2", namespace: "ns" } }) }]);
    await until(() => state.addresses.get("c1//Pod/ns/a")?.includes("a2"), undefined, "update of a");
    // Both changes were in the same debounce, so b would have come with a: the push carried a alone.
    expect(state.batches.filter((b) => b.typeUrl === ADDRESS).at(-1)).toEqual({ typeUrl: ADDRESS, added: ["c1//Pod/ns/a"], removed: [] });
    expect(state.addresses.has("c1//Pod/ns/b")).toBe(false);
    server.flush();
    expect(server.debugConnections()[0]!.watches.find((w) => w.typeUrl === ADDRESS)!.pendingNames).toBe(0);
  });

  it("close() ends the stream and stops reconnecting", async () => {
    const { server, port } = await startServer();
    cleanups.push(() => server.close(100));
    const state = new State();
    const client = makeClient(port, state).start();
    const reconnects: DisconnectEvent[] = [];
    client.on("disconnected", (e: DisconnectEvent) => reconnects.push(e)); // emitted for every reconnect scheduled
    await client.ready();
    expect(server.connectionCount).toBe(1);
    await client.close();
    await until(() => server.connectionCount === 0, undefined, "server sees the disconnect");
    // Every reconnect is announced by "disconnected" when the client handles the end of its stream, which for its
    // own cancelled stream comes before the server sees the disconnect; another client's whole sync is a further
    // barrier, after which only that client is connected.
    const other = makeClient(port, new State()).start();
    await other.ready();
    await until(() => server.connectionCount === 1, undefined, "the other client alone");
    expect(reconnects).toEqual([]);
    await expect(client.subscribe(ADDRESS, ["x"])).rejects.toThrow(/closed/);
  });

  const haveOpenssl = (() => {
    try {
      execFileSync("openssl", ["version"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!haveOpenssl)("connects over TLS with a CA and a server name", async () => {
    const dir = mkdtempSync(join(tmpdir(), "xds-tls-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key");
    run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test-ca", "-days", "1", "-out", "ca.pem");
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key");
    run("req", "-new", "-key", "server.key", "-subj", "/CN=istiod", "-out", "server.csr");
    execFileSync("sh", ["-c", "printf 'subjectAltName=DNS:istiod.istio-system.svc\\n' > ext.cnf"], { cwd: dir });
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "server.pem");
    expect(existsSync(join(dir, "server.pem"))).toBe(true);

    const server = new DeltaXdsServer({ ready: true, debounceMs: 20 });
    cleanups.push(() => server.close(100));
    server.update(AUTHZ, [policy("p1")]);
    const port = await server.listen({
      port: 0,
      host: "127.0.0.1",
      tls: { key: readFileSync(join(dir, "server.key")), cert: readFileSync(join(dir, "server.pem")) },
    });
    const state = new State();
    const client = makeClient(port, state, {
      address: `https://127.0.0.1:${port}`,
      tls: { ca: readFileSync(join(dir, "ca.pem")), servername: "istiod.istio-system.svc" },
    }).start();
    await client.ready();
    expect([...state.policies.keys()]).toEqual(["ns/p1"]);

    // The wrong name is refused by the TLS check (the client keeps retrying).
    const other = new State();
    const wrong = makeClient(port, other, {
      address: `127.0.0.1:${port}`,
      tls: { ca: readFileSync(join(dir, "ca.pem")), servername: "evil.example" },
    });
    const errors: DisconnectEvent[] = [];
    wrong.on("disconnected", (e: DisconnectEvent) => errors.push(e));
    wrong.start();
    await until(() => errors.length > 0, 5000, "TLS failure");
    expect(errors[0]!.code).toBe(14);
    expect(wrong.isReady).toBe(false);
  });
});
