// The HBONE client (tls.ts, pool.ts) and the relay (relay.ts) against a real HTTP/2 TLS server with certificates
// from a real CertificateAuthority, over loopback sockets.
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { CertificateAuthority } from "@ambit/pki";
import { connectTcp, listenInNetns } from "@ambit/sys";
import type { WorkloadCertificate } from "../src/identity/index.js";
import { HboneError, HbonePool, type H2Settings, type TunnelTarget } from "../src/proxy/pool.js";
import { relay, type Relay } from "../src/proxy/relay.js";
import { ALPN_H2, IdentityMismatch, clientTlsOptions, peerIdentity, secureContextOf, serverTlsOptions, uriSans } from "../src/proxy/tls.js";
import { issue, newCa } from "./helpers/certs.js";
import { HboneTestServer, TcpUpstream } from "./helpers/hbone-server.js";
import { createNetns, removeAllNetns } from "./helpers/netns.js";
import { once, until, waitFor } from "./helpers/wait.js";

const CLIENT = "spiffe://cluster.local/ns/shop/sa/web";
const CLIENT2 = "spiffe://cluster.local/ns/shop/sa/cart";
const SERVER = "spiffe://cluster.local/ns/shop/sa/db";
const OTHER = "spiffe://cluster.local/ns/shop/sa/other";

let ca: CertificateAuthority;
let foreignCa: CertificateAuthority;
let clientCert: WorkloadCertificate;
let client2Cert: WorkloadCertificate;
let serverCert: WorkloadCertificate;
let echo: TcpUpstream;
let server: HboneTestServer;

const cleanups: (() => unknown)[] = [];
const later = <T>(x: T, close: (x: T) => unknown): T => { cleanups.push(() => close(x)); return x; };

const SETTINGS: H2Settings = { streamWindow: 4 * 1024 * 1024, connectionWindow: 16 * 1024 * 1024, maxFrameSize: 1024 * 1024, maxStreamsPerConnection: 100, idleReleaseMs: 300_000, keepaliveIntervalMs: 10_000, keepaliveTimeoutMs: 20_000 };
const dials: string[] = [];
function tcpDial(ip: string, port: number): Promise<net.Socket> {
  dials.push(`${ip}:${port}`);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ip, port, allowHalfOpen: true });
    s.once("connect", () => { s.off("error", reject); resolve(s); });
    s.once("error", reject);
  });
}
function pool(over: Partial<H2Settings> = {}, dial: (ip: string, port: number, timeoutMs: number) => Promise<net.Socket> = tcpDial): HbonePool {
  return later(new HbonePool({ ...SETTINGS, ...over }, dial), (p) => p.destroy());
}
async function startServer(cert = serverCert, settings: http2.Settings = {}): Promise<HboneTestServer> {
  return later(await new HboneTestServer(cert, settings).listen(), (s) => s.close());
}
const target = (over: Partial<TunnelTarget> = {}, s = server): TunnelTarget => ({ cert: clientCert, expected: [SERVER], ip: "127.0.0.1", port: s.port, ...over });
const headers = (port = echo.port) => ({ ":authority": `127.0.0.1:${port}` });

async function hboneError(p: Promise<unknown>): Promise<HboneError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(HboneError);
  return err as HboneError;
}
/** Reads a stream until it ends; resolves with everything read. */
function readAll(s: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = "";
    s.on("data", (c: Buffer) => (data += c.toString()));
    s.once("end", () => resolve(data));
    s.once("error", reject);
  });
}
/** An app's connection to the proxy: `app` is the app's end, `down` the proxy's (both closed after the test). */
async function appConnection(): Promise<{ app: net.Socket; down: net.Socket }> {
  const front = later(net.createServer({ allowHalfOpen: true }), (s) => new Promise((r) => s.close(r)));
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  const accepted = once<net.Socket>(front, "connection");
  const app = later(net.connect({ host: "127.0.0.1", port: (front.address() as net.AddressInfo).port, allowHalfOpen: true }), (s) => s.destroy());
  app.on("error", () => undefined);
  const down = later(await accepted, (s) => s.destroy());
  down.on("error", () => undefined);
  return { app, down };
}
/** The pool's timers on a fake clock, so a test checks exactly when one fires; sockets stay real. */
const fakeTimers = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
function firstData(s: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => s.once("data", (c: Buffer) => resolve(c.toString())));
}

beforeAll(async () => {
  ca = await newCa();
  foreignCa = await newCa();
  clientCert = issue(ca, CLIENT);
  client2Cert = issue(ca, CLIENT2);
  serverCert = issue(ca, SERVER);
  echo = await new TcpUpstream(true).listen();
});

afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
  dials.length = 0;
});

afterAll(async () => {
  await echo.close();
  removeAllNetns();
});

// =============================================================================================================
describe("HBONE TLS", () => {
  it("TLS 1.3, ALPN h2, no SNI, the source certificate presented; CONNECT carries only :method and :authority plus given headers", async () => {
    server = await startServer();
    const p = pool();
    const { stream, response } = await p.connect(target(), { ...headers(), forwarded: 'for="10.0.0.1:1234"', baggage: "k8s.namespace.name=shop" });
    expect(response[":status"]).toBe(200);
    expect(server.connections).toEqual([{ protocol: "TLSv1.3", alpn: ALPN_H2, servername: false, peer: CLIENT }]);
    const h = server.streams[0]!.headers;
    expect(h[":method"]).toBe("CONNECT");
    expect(h[":authority"]).toBe(`127.0.0.1:${echo.port}`);
    expect(h[":scheme"]).toBeUndefined();
    expect(h[":path"]).toBeUndefined();
    expect(h["forwarded"]).toBe('for="10.0.0.1:1234"');
    expect(h["baggage"]).toBe("k8s.namespace.name=shop");
    // The tunnel is a byte stream: through the server's relay to the echo upstream and back.
    const back = readAll(stream);
    stream.end("hello through HBONE");
    expect(await back).toBe("hello through HBONE");
  });

  it("accepts the server when any URI SAN of its leaf is expected", async () => {
    server = await startServer(issue(ca, [OTHER, SERVER]));
    const { stream } = await pool().connect(target({ expected: [SERVER] }), headers());
    stream.close();
  });

  it("refuses a server whose identity is not expected (IdentityMismatch → TLS_FAILURE)", async () => {
    server = await startServer();
    const err = await hboneError(pool().connect(target({ expected: [OTHER, CLIENT] }), headers()));
    expect(err.flag).toBe("TLS_FAILURE");
    expect(err.message).toBe(`TLS with 127.0.0.1:${server.port}: peer identity ${SERVER} is not the expected ${OTHER} or ${CLIENT}`);
    expect(server.streams).toHaveLength(0);
  });

  it("refuses a server whose certificate is from an untrusted CA", async () => {
    server = await startServer(issue(foreignCa, SERVER));
    const err = await hboneError(pool().connect(target(), headers()));
    expect(err.flag).toBe("TLS_FAILURE");
    expect(err.message).toMatch(/^TLS with 127\.0\.0\.1:\d+: .*(certificate|verify)/i);
    expect(server.streams).toHaveLength(0);
  });

  it("the server refuses a client certificate from an untrusted CA: the tunnel fails", async () => {
    server = await startServer();
    const err = await hboneError(pool().connect(target({ cert: issue(foreignCa, CLIENT) }), headers()));
    expect(["TLS_FAILURE", "H2_HANDSHAKE_FAILURE", "CONNECT"]).toContain(err.flag);
    expect(server.streams).toHaveLength(0);
  });

  it("a server that does not negotiate ALPN h2 → H2_HANDSHAKE_FAILURE", async () => {
    const plain = later(tls.createServer({ key: serverCert.keyPem, cert: serverCert.certPem, ca: serverCert.rootsPem, requestCert: true, minVersion: "TLSv1.3" }, (s) => s.on("error", () => undefined)), (s) => new Promise((r) => s.close(r)));
    await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
    const port = (plain.address() as net.AddressInfo).port;
    const err = await hboneError(pool().connect({ cert: clientCert, expected: [SERVER], ip: "127.0.0.1", port }, headers()));
    expect(err.flag).toBe("H2_HANDSHAKE_FAILURE");
    expect(err.message).toBe(`127.0.0.1:${port} did not negotiate ALPN h2`);
  });

  it("a TLS handshake that never completes times out after 10 s", async () => {
    const silent = later(net.createServer((s) => s.on("error", () => undefined)), (s) => new Promise((r) => s.close(r)));
    const held: net.Socket[] = [];
    silent.on("connection", (s) => held.push(s));
    cleanups.push(() => held.forEach((s) => s.destroy()));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as net.AddressInfo).port;
    fakeTimers();
    let settled = false;
    const failed = hboneError(pool().connect({ cert: clientCert, expected: [SERVER], ip: "127.0.0.1", port }, headers())).finally(() => (settled = true));
    await until(() => held.length === 1 && vi.getTimerCount() === 1, "the TCP connection and the handshake's timer");
    await vi.advanceTimersByTimeAsync(9_999);
    await until(() => held[0]!.bytesRead > 0, "the ClientHello"); // the handshake did start and is waiting
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const err = await failed;
    expect(err.flag).toBe("TLS_FAILURE");
    expect(err.message).toMatch(/TLS handshake timed out/);
  });

  it("clientTlsOptions / serverTlsOptions / secureContextOf", () => {
    const sock = new net.Socket();
    const o = clientTlsOptions(sock, secureContextOf(clientCert), "10.0.0.1", [SERVER]);
    expect(o).toMatchObject({ socket: sock, host: "10.0.0.1", servername: "", ALPNProtocols: ["h2"], minVersion: "TLSv1.3", rejectUnauthorized: true });
    const peer = { subjectaltname: `DNS:db.shop.svc, URI:${SERVER}` } as tls.PeerCertificate;
    expect(o.checkServerIdentity!("10.0.0.1", peer)).toBeUndefined();
    const e = o.checkServerIdentity!("10.0.0.1", { subjectaltname: "DNS:db.shop.svc" } as tls.PeerCertificate);
    expect(e).toBeInstanceOf(IdentityMismatch);
    expect(e!.message).toBe(`peer identity (none) is not the expected ${SERVER}`);
    expect(serverTlsOptions(serverCert)).toMatchObject({ requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", ALPNProtocols: ["h2"], ca: serverCert.rootsPem });
    sock.destroy();
  });

  it("uriSans / peerIdentity: URI entries only; the first parsable SPIFFE id", () => {
    expect(uriSans(null)).toEqual([]);
    expect(uriSans({ subjectaltname: "" } as tls.PeerCertificate)).toEqual([]);
    expect(uriSans({ subjectaltname: `DNS:a, URI:https://x.example, IP Address:10.0.0.1, URI:${SERVER}` } as tls.PeerCertificate)).toEqual(["https://x.example", SERVER]);
    const fake = (alt: string) => ({ getPeerCertificate: () => ({ subjectaltname: alt }) }) as unknown as tls.TLSSocket;
    expect(peerIdentity(fake(`URI:https://x.example, URI:${SERVER}`))).toEqual({ uri: SERVER, id: { trustDomain: "cluster.local", namespace: "shop", serviceAccount: "db" } });
    expect(peerIdentity(fake("URI:spiffe://cluster.local/not-a-workload"))).toBeNull();
    expect(peerIdentity(fake("DNS:x"))).toBeNull();
  });
});

// =============================================================================================================
describe("HbonePool", () => {
  it("shares one connection per (source identity, expected identities, address); another key dials again", async () => {
    server = await startServer(issue(ca, [SERVER, OTHER]));
    const p = pool();
    const a = await p.connect(target(), headers());
    const b = await p.connect(target({ expected: [SERVER] }), headers());
    expect([p.connectionCount, server.sessionCount]).toEqual([1, 1]);
    const c = await p.connect(target({ expected: [OTHER, SERVER] }), headers());
    const d = await p.connect(target({ expected: [SERVER, OTHER] }), headers()); // same set, other order: same key
    expect([p.connectionCount, server.sessionCount]).toEqual([2, 2]);
    const e = await p.connect(target({ cert: client2Cert }), headers());
    expect([p.connectionCount, server.sessionCount]).toEqual([3, 3]);
    expect(server.connections.map((x) => x.peer)).toEqual([CLIENT, CLIENT, CLIENT2]);
    for (const t of [a, b, c, d, e]) t.stream.close();
  });

  it("opens another connection once the pool's stream limit is reached", async () => {
    server = await startServer();
    const p = pool({ maxStreamsPerConnection: 2 });
    const tunnels = [];
    for (let i = 0; i < 5; i++) tunnels.push(await p.connect(target(), headers()));
    expect([p.connectionCount, server.sessionCount, server.maxConcurrentPerSession]).toEqual([3, 3, 2]);
    // A finished stream frees a slot on its connection: no new dial.
    tunnels[0]!.stream.close();
    await once(tunnels[0]!.stream, "close");
    tunnels.push(await p.connect(target(), headers()));
    expect(server.sessionCount).toBe(3);
    for (const t of tunnels) t.stream.close();
  });

  it("honours the peer's SETTINGS_MAX_CONCURRENT_STREAMS", async () => {
    server = await startServer(serverCert, { maxConcurrentStreams: 1 });
    const p = pool();
    const a = await p.connect(target(), headers());
    const b = await p.connect(target(), headers());
    expect([p.connectionCount, server.sessionCount, server.maxConcurrentPerSession]).toEqual([2, 2, 1]);
    a.stream.close();
    b.stream.close();
  });

  it("concurrent connects for one key dial once", async () => {
    server = await startServer();
    const p = pool();
    const tunnels = await Promise.all(Array.from({ length: 8 }, () => p.connect(target(), headers())));
    expect(dials).toHaveLength(1);
    expect([p.connectionCount, server.sessionCount]).toEqual([1, 1]);
    for (const t of tunnels) t.stream.close();
  });

  it("concurrent connects never put more streams on a connection than the limit", async () => {
    server = await startServer();
    const p = pool({ maxStreamsPerConnection: 1 });
    const tunnels = await Promise.all(Array.from({ length: 4 }, () => p.connect(target(), headers())));
    expect(server.maxConcurrentPerSession).toBe(1);
    expect([p.connectionCount, server.sessionCount, dials.length]).toEqual([4, 4, 4]);
    for (const t of tunnels) t.stream.close();
  });

  it("releases a connection that stayed unused for the idle timeout", async () => {
    server = await startServer();
    const p = pool({ idleReleaseMs: 200 });
    const { stream } = await p.connect(target(), headers());
    const session = server.streams[0]!.session;
    const closed = once(session, "close");
    stream.close();
    await closed;
    await waitFor(() => p.connectionCount === 0, "the pool to forget the released connection");
    // The next tunnel dials a new connection.
    const again = await p.connect(target(), headers());
    expect(server.sessionCount).toBe(2);
    again.stream.close();
  });

  it("a connection in use is not released", async () => {
    server = await startServer();
    const p = pool({ idleReleaseMs: 100 });
    const first = await p.connect(target(), headers());
    const second = await p.connect(target(), headers());
    const session = second.stream.session!;
    fakeTimers();
    first.stream.close();
    await once(first.stream, "close");
    // Still in use by the second tunnel: ten idle timeouts later the connection is open and carries data.
    await vi.advanceTimersByTimeAsync(1_000);
    expect(session.closed).toBe(false);
    expect(p.connectionCount).toBe(1);
    const reply = firstData(second.stream);
    second.stream.write("still here");
    expect(await reply).toBe("still here");
    expect(server.sessions.size).toBe(1);
    // Unused now: released after exactly the idle timeout (so the clock above did reach it).
    second.stream.close();
    await once(second.stream, "close");
    await vi.advanceTimersByTimeAsync(99);
    expect(session.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(session.closed).toBe(true);
  });

  it("a non-200 answer is an HboneError with the status; the stream is released and the connection reused", async () => {
    server = await startServer();
    const p = pool({ maxStreamsPerConnection: 1 });
    for (const status of [401, 503, 400]) {
      server.behaviour = { kind: "status", status };
      const err = await hboneError(p.connect(target(), headers()));
      expect([err.flag, err.status]).toEqual(["CONNECT", status]);
      expect(err.message).toBe(`CONNECT to 127.0.0.1:${echo.port} via 127.0.0.1:${server.port} answered ${status}`);
    }
    server.behaviour = { kind: "relay" };
    const ok = await p.connect(target(), headers());
    expect(server.sessionCount).toBe(1);
    ok.stream.close();
  });

  it("the server's own relay answers 503 when the upstream refuses", async () => {
    server = await startServer();
    const closedPort = await new Promise<number>((resolve) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const port = (s.address() as net.AddressInfo).port; s.close(() => resolve(port)); }); });
    const err = await hboneError(pool().connect(target(), headers(closedPort)));
    expect(err.status).toBe(503);
  });

  it("a stream reset before any response is an HboneError", async () => {
    server = await startServer();
    server.behaviour = { kind: "reset", code: http2.constants.NGHTTP2_REFUSED_STREAM };
    const err = await hboneError(pool().connect(target(), headers()));
    expect(err.flag).toBe("CONNECT");
    expect(err.message).toMatch(/^CONNECT (failed|stream closed before a response)/);
  });

  it("a connection that goes away mid-CONNECT fails the tunnel and is forgotten", async () => {
    server = await startServer();
    server.behaviour = { kind: "hang" };
    const p = pool();
    const pending = p.connect(target(), headers());
    await waitFor(() => server.streams.length === 1, "the CONNECT to arrive");
    server.streams[0]!.session.destroy();
    await hboneError(pending);
    await waitFor(() => p.connectionCount === 0, "the pool to forget the dead connection");
    server.behaviour = { kind: "relay" };
    (await p.connect(target(), headers())).stream.close();
    expect(server.sessionCount).toBe(2);
  });

  it("a GOAWAY from the server: the next tunnel uses a new connection", async () => {
    server = await startServer();
    const p = pool();
    (await p.connect(target(), headers())).stream.close();
    const session = server.streams[0]!.session;
    const gone = once(session, "close");
    session.close();
    await gone;
    await waitFor(() => p.connectionCount === 0, "the pool to forget the closed connection");
    (await p.connect(target(), headers())).stream.close();
    expect(server.sessionCount).toBe(2);
  });

  it("connect refused → HboneError CONNECT", async () => {
    const port = await new Promise<number>((resolve) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const x = (s.address() as net.AddressInfo).port; s.close(() => resolve(x)); }); });
    const err = await hboneError(pool().connect({ cert: clientCert, expected: [SERVER], ip: "127.0.0.1", port }, headers()));
    expect(err.flag).toBe("CONNECT");
    expect(err.message).toMatch(new RegExp(`^connect to 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  });

  it("a TCP connect timeout is reported as a NetworkPolicy problem (NETWORK_POLICY)", async () => {
    // A real timeout: a namespace whose firewall drops the SYN.
    const ns = createNetns();
    ns.exec("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "15008", "-j", "DROP");
    let asked = 0;
    const p = pool({}, (ip, port, timeoutMs) => { asked = timeoutMs; return connectTcp({ netns: ns.path, host: ip, port, timeout: 300 }); });
    const err = await hboneError(p.connect({ cert: clientCert, expected: [SERVER], ip: "127.0.0.1", port: 15008 }, headers()));
    expect(asked).toBe(10_000);
    expect(err.flag).toBe("NETWORK_POLICY");
    expect(err.message).toBe("connect to 127.0.0.1:15008 timed out (maybe a NetworkPolicy is blocking HBONE port 15008)");
  });

  it("a pooled connection whose server stops answering is dropped by the PING keepalive; its relays close the apps' sockets", async () => {
    // The server listens in a namespace whose firewall can silence it: no FIN, no RST, no PONG, as a vanished node.
    const ns = createNetns();
    const silenced = later(new HboneTestServer(serverCert), (s) => s.close());
    await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 0, server: silenced.server });
    const port = (silenced.server.address() as net.AddressInfo).port;
    const p = pool({ keepaliveIntervalMs: 100, keepaliveTimeoutMs: 300 }, (ip, prt, timeout) => connectTcp({ netns: ns.path, host: ip, port: prt, timeout }));
    const { app, down } = await appConnection();
    const { stream } = await p.connect({ cert: clientCert, expected: [SERVER], ip: "127.0.0.1", port }, headers());
    const r = relay(down, stream);
    const echoed = firstData(app);
    app.write("before");
    expect(await echoed).toBe("before");
    const appClosed = new Promise<void>((resolve) => { app.resume(); app.once("close", () => resolve()); });
    ns.exec("iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", String(port), "-j", "DROP");
    expect((await r.done)?.message).toMatch(/no PONG within 300 ms|HBONE connection was lost/);
    await appClosed;
    await waitFor(() => p.connectionCount === 0, "the pool to forget the dead connection");
  });

  it("IPv6 destinations use bracketed authorities in messages", async () => {
    const err = await hboneError(pool({}, () => Promise.reject(Object.assign(new Error("connect ENETUNREACH"), { code: "ENETUNREACH" }))).connect({ cert: clientCert, expected: [SERVER], ip: "fd00::1", port: 15008 }, headers()));
    expect(err.message).toBe("connect to [fd00::1]:15008: connect ENETUNREACH");
  });

  it("close() refuses new tunnels and lets open ones finish; destroy() ends them", async () => {
    server = await startServer();
    const p = pool();
    const { stream } = await p.connect(target(), headers());
    p.close();
    const err = await hboneError(p.connect(target(), headers()));
    expect(err.message).toBe("the pod's proxy is shutting down");
    const back = readAll(stream);
    stream.end("after close");
    expect(await back).toBe("after close");
    await waitFor(() => p.connectionCount === 0, "the closed connection to go");

    const q = pool();
    const t = await q.connect(target(), headers());
    const closed = once(t.stream, "close");
    q.destroy();
    await closed;
    await waitFor(() => q.connectionCount === 0, "the destroyed connection to go");
  });
});

// =============================================================================================================
describe("relay", () => {
  /** app ⇄ [downstream socket ⇄ relay ⇄ HBONE stream] ⇄ server relay ⇄ upstream socket (the test holds `up`). */
  async function chain(): Promise<{ app: net.Socket; up: net.Socket; client: Relay; server: Relay }> {
    server = await startServer();
    const upstream = later(await new TcpUpstream(false).listen(), (u) => u.close());
    const { app, down } = await appConnection();
    const { stream } = await pool().connect(target(), headers(upstream.port));
    const client = relay(down, stream);
    const up = await upstream.accepted();
    return { app, up, client, server: server.relays[0]! };
  }
  const ended = (s: net.Socket) => new Promise<void>((resolve) => { s.resume(); s.once("end", resolve); });
  /** Reads until the socket closes (answering an EOF like an application would); the error code, or "" after a FIN. */
  const closedWith = (s: net.Socket) => new Promise<string>((resolve) => {
    let code = "";
    s.on("error", (e: NodeJS.ErrnoException) => (code = e.code ?? e.message));
    s.once("end", () => s.end());
    s.once("close", () => resolve(code));
    s.resume();
  });

  it("copies both ways and carries half-closes through the tunnel", async () => {
    const { app, up, client, server: srv } = await chain();
    const atUp = firstData(up);
    app.write("request");
    expect(await atUp).toBe("request");
    // The app closes its sending side: the upstream sees EOF, and can still answer.
    const upEnded = ended(up);
    app.end();
    await upEnded;
    const atApp = readAll(app);
    up.write("response after the client's FIN");
    up.end();
    expect(await atApp).toBe("response after the client's FIN");
    expect(await client.done).toBeUndefined();
    expect(await srv.done).toBeUndefined();
  });

  it("keeps the order of small (written at once) and bulk (coalesced) chunks from the tunnel", async () => {
    const { app, up, client } = await chain();
    const parts = [10, 200_000, 3, 70_000, 1, 5000, 40_000, 2].map((n, i) => Buffer.alloc(n, i + 1));
    const atApp = new Promise<Buffer>((resolve) => {
      const got: Buffer[] = [];
      app.on("data", (d: Buffer) => got.push(d));
      app.once("end", () => resolve(Buffer.concat(got)));
    });
    for (const p of parts) up.write(p);
    up.end();
    app.end();
    expect((await atApp).equals(Buffer.concat(parts))).toBe(true);
    expect(await client.done).toBeUndefined();
  });

  it("the upstream closing first: the app sees EOF and may still send", async () => {
    const { app, up, client } = await chain();
    const appEnded = ended(app);
    up.end("bye");
    await appEnded;
    const atUp = readAll(up);
    app.end("late words");
    expect(await atUp).toBe("late words");
    expect(await client.done).toBeUndefined();
  });

  // Node's stream.close(code) sends END_STREAM just before RST_STREAM, so the far side may pass on a FIN before it
  // learns of the reset; either way the connection must end and both relays must report the failure.
  it("an upstream reset ends the app's connection and fails both relays (RST_STREAM CONNECT_ERROR across the tunnel)", async () => {
    const { app, up, client, server: srv } = await chain();
    const appClosed = closedWith(app);
    up.resetAndDestroy();
    expect(["ECONNRESET", ""]).toContain(await appClosed);
    expect((await srv.done)?.message).toMatch(/ECONNRESET/);
    expect((await client.done)?.message).toMatch(/NGHTTP2_CONNECT_ERROR|code 10/);
    expect(server.streams[0]!.stream.rstCode).toBe(http2.constants.NGHTTP2_CONNECT_ERROR);
  });

  it("an app reset ends the upstream connection and fails both relays", async () => {
    const { app, up, client, server: srv } = await chain();
    const upClosed = closedWith(up);
    app.resetAndDestroy();
    expect(["ECONNRESET", ""]).toContain(await upClosed);
    expect((await client.done)?.message).toMatch(/ECONNRESET/);
    expect((await srv.done)?.message).toMatch(/NGHTTP2_CONNECT_ERROR|code 10/);
  });

  it("a reset while the app is still sending resets the app (no silent truncation)", async () => {
    const { app, up, client } = await chain();
    const atUp = firstData(up);
    app.write("x");
    await atUp;
    const appClosed = closedWith(app);
    up.resetAndDestroy();
    await client.done;
    // Whatever came first, the app cannot keep writing into the void: its next writes fail.
    await waitFor(() => { if (!app.destroyed) app.write("more"); return app.destroyed; }, "the app's connection to fail");
    expect(["ECONNRESET", "EPIPE", ""]).toContain(await appClosed);
  });

  it("a stream reset with CANCEL is an EOF, not a failure", async () => {
    const { app, client } = await chain();
    const appEnded = ended(app);
    server.streams[0]!.stream.close(http2.constants.NGHTTP2_CANCEL);
    await appEnded;
    app.end();
    expect(await client.done).toBeUndefined();
  });

  it("destroy(reason) ends both sides abruptly and reports the reason", async () => {
    const { app, up, client } = await chain();
    const appClosed = closedWith(app);
    const upClosed = closedWith(up);
    const reason = new Error("drain deadline reached");
    client.destroy(reason);
    expect(await client.done).toBe(reason);
    expect(await appClosed).toBe("ECONNRESET");
    expect(["ECONNRESET", ""]).toContain(await upClosed);
    expect(await server.relays[0]!.done).toBeInstanceOf(Error);
  });

  it("relays plain TCP to TCP too", async () => {
    const upstream = later(await new TcpUpstream(true).listen(), (u) => u.close());
    const front = later(net.createServer({ allowHalfOpen: true }), (s) => new Promise((r) => s.close(r)));
    const relays: Relay[] = [];
    front.on("connection", (down: net.Socket) => {
      const up = net.connect({ host: "127.0.0.1", port: upstream.port, allowHalfOpen: true });
      relays.push(relay(down, up));
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
    const app = later(net.connect({ host: "127.0.0.1", port: (front.address() as net.AddressInfo).port, allowHalfOpen: true }), (s) => s.destroy());
    const back = readAll(app);
    app.end("ping");
    expect(await back).toBe("ping");
    expect(await relays[0]!.done).toBeUndefined();
  });
});
