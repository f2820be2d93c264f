// The pod's inbound HBONE server (15008) against peers that go away, hang, half-close, flood or abuse it: a real
// PodProxy in a real network namespace, real mTLS, a real app server inside the pod counting the connections
// ztunnel opens to it, and `ss` inside the netns for ztunnel's own sockets. Timeouts are set short through the
// config; every wait is for a condition.
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CertificateAuthority } from "@ambit/pki";
import { connectTcp } from "@ambit/sys";
import { newCa } from "./helpers/certs.js";
import { RawH2Client, SETTINGS_MAX_CONCURRENT_STREAMS } from "./helpers/h2-raw.js";
import { removeAllNetns } from "./helpers/netns.js";
import { APP_AUTHORITY, APP_PORT, POD_IP, appReleased, startPod, type Pod } from "./helpers/pod.js";
import { waitFor } from "./helpers/wait.js";

const REFUSED = "ztunnel_hbone_refused_connections_total";
const ENHANCE_YOUR_CALM = 0xb;
const REFUSED_STREAM = 0x7;

let ca: CertificateAuthority;
let pod: Pod | undefined;

beforeAll(async () => {
  ca = await newCa();
});
afterEach(async () => {
  await pod?.close();
  pod = undefined;
});
afterAll(() => removeAllNetns());

async function client(p: Pod, identity?: string): Promise<RawH2Client> {
  const c = new RawH2Client(await p.hbone(identity));
  await waitFor(() => c.remoteSettings.size > 0, "the server's SETTINGS");
  return c;
}

/** Opens `n` tunnels to the app on `c` and waits until each answered 200 and echoed a byte. */
async function tunnels(p: Pod, c: RawH2Client, n: number): Promise<number[]> {
  const ids = Array.from({ length: n }, () => c.connect(APP_AUTHORITY));
  await waitFor(() => ids.every((id) => c.responses.get(id) === 200), "every tunnel to be answered 200");
  for (const id of ids) c.send(id, "x");
  await waitFor(() => ids.every((id) => c.text(id) === "x"), "every tunnel to echo");
  return ids;
}

/** ztunnel's ends of HBONE connections (CLOSE-WAIT included). */
const socketsOn15008 = (p: Pod) => p.held("sport = :15008");

describe("inbound HBONE: peers that go away", { timeout: 120_000 }, () => {
  it("a client that drops its connections: every app connection and every 15008 socket closes", async () => {
    pod = await startPod(ca);
    pod.app.echo = true;
    const clients = await Promise.all([1, 2, 3].map(() => client(pod!)));
    for (const c of clients) await tunnels(pod, c, 20);
    expect(pod.heldToApp()).toHaveLength(60);
    // The client goes away: its sockets close (FIN), as when its ztunnel crashes.
    for (const c of clients) c.socket.destroy();
    await appReleased(pod, "the app connections of the dropped tunnels to close");
    await waitFor(() => socketsOn15008(pod!).length === 0, "no 15008 socket left (none in CLOSE-WAIT)");
  });

  it("a peer that stops answering (no FIN, no PONG) is dropped by the keepalive PING; a live peer is kept", async () => {
    pod = await startPod(ca, { HTTP2_KEEPALIVE_INTERVAL: "100ms", HTTP2_KEEPALIVE_TIMEOUT: "300ms" });
    pod.app.echo = true;
    const hung = await client(pod);
    const live = await client(pod);
    await tunnels(pod, hung, 10);
    const [kept] = await tunnels(pod, live, 1);
    hung.answerPings = false;
    await waitFor(() => hung.closed, "the hung peer's connection to be closed");
    await waitFor(() => pod!.heldToApp().length === 1, "the hung peer's app connections to close");
    expect(hung.pingsReceived).toBeGreaterThan(0);
    expect(await pod.metric(REFUSED, { reason: "keepalive_timeout" })).toBe(1);
    // The peer that answers is still served, on its old tunnel and on a new one.
    await waitFor(() => live.pingsReceived > 1, "more PINGs to the live peer");
    live.send(kept!, "y");
    await waitFor(() => live.text(kept!) === "xy", "the live tunnel to echo");
    await tunnels(pod, live, 1);
    expect(live.closed).toBe(false);
  });

  it("a peer that sends GOAWAY and then goes silent: its tunnels and app connections are released", async () => {
    pod = await startPod(ca, { HTTP2_KEEPALIVE_INTERVAL: "100ms", HTTP2_KEEPALIVE_TIMEOUT: "300ms" });
    pod.app.echo = true;
    const c = await client(pod);
    await tunnels(pod, c, 5);
    // GOAWAY(NO_ERROR): Node closes the session gracefully, and a closing session refuses PINGs. (The peer still
    // answers a PING already in flight, so only the bound on a closing connection can release it.)
    c.sendGoaway();
    await appReleased(pod, "the app connections of the silent peer's tunnels to close");
    await waitFor(() => c.closed, "the connection to be closed");
    await waitFor(() => socketsOn15008(pod!).length === 0, "no 15008 socket left");
    expect(await pod.metric(REFUSED, { reason: "keepalive_timeout" })).toBe(1);
  });

  it("half-close is relayed both ways; a half-closed tunnel that goes idle is closed on both sides", async () => {
    pod = await startPod(ca, { HALF_CLOSE_IDLE_TIMEOUT: "300ms" });
    const c = await client(pod);
    const id = c.connect(APP_AUTHORITY);
    await waitFor(() => c.responses.get(id) === 200, "the tunnel");
    const app = await waitFor(() => [...pod!.app.open][0], "the app connection");
    const ended = new Promise<string>((resolve) => { let got = ""; app.on("data", (d: Buffer) => (got += d.toString())); app.once("end", () => resolve(got)); });
    c.send(id, "request", true); // END_STREAM: the client is done sending
    expect(await ended).toBe("request");
    // The app answers after the client's FIN: the answer still reaches the client.
    app.write("late answer");
    await waitFor(() => c.text(id) === "late answer", "the answer after the half-close");
    // Then the app says nothing more and never closes: the tunnel is not pinned.
    await appReleased(pod, "the idle half-closed app connection to be closed");
    await waitFor(() => c.ended.has(id) || c.resets.has(id), "the stream to be ended or reset");
  });
});

describe("inbound HBONE: streams that are abandoned or reset", { timeout: 120_000 }, () => {
  it("a HEADERS + RST_STREAM burst (rapid reset) dials the app a bounded number of times, leaves no app connection, and gets GOAWAY", async () => {
    pod = await startPod(ca, { HBONE_MAX_EARLY_RESETS: "20" });
    const c = await client(pod);
    // Fewer than nghttp2's own RST_STREAM burst limit (1000), which would answer first with INTERNAL_ERROR.
    for (let i = 0; i < 500; i++) c.reset(c.connect(APP_AUTHORITY));
    await waitFor(() => c.goaway, "GOAWAY");
    expect(c.goaway!.code).toBe(ENHANCE_YOUR_CALM);
    await waitFor(() => c.closed, "the connection to be closed");
    await appReleased(pod, "every app connection of the reset streams to close");
    expect(pod.app.accepted).toBeLessThanOrEqual(20);
    expect(await pod.metric(REFUSED, { reason: "rapid_reset" })).toBe(1);
    // Other connections are served.
    pod.app.echo = true;
    await tunnels(pod, await client(pod), 1);
  });

  it("a stream reset after its answer: ztunnel passes the FIN on and closes its socket to the app (the app never answers the FIN)", async () => {
    pod = await startPod(ca);
    const c = await client(pod);
    const ids = Array.from({ length: 10 }, () => c.connect(APP_AUTHORITY));
    await waitFor(() => ids.every((id) => c.responses.get(id) === 200), "the tunnels");
    await waitFor(() => pod!.heldToApp().length === 10, "the app connections");
    for (const id of ids) c.reset(id);
    await appReleased(pod, "the app connections of the reset streams to close");
    expect(c.closed).toBe(false);
  });

  it("a stream reset while the app dial is in progress aborts the dial", async () => {
    pod = await startPod(ca, { HBONE_MAX_EARLY_RESETS: "3" });
    // The app's SYNs go nowhere: the dial hangs.
    pod.ns.exec("iptables", "-A", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", String(APP_PORT), "--syn", "-j", "DROP");
    const c = await client(pod);
    const synSent = () => pod!.ss("state", "syn-sent", "dport", `= :${APP_PORT}`);
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(c.connect(APP_AUTHORITY));
      await waitFor(() => synSent().length === i + 1, "the app dial to start");
    }
    for (const id of ids) c.reset(id);
    await waitFor(() => synSent().length === 0, "the dials to be aborted");
    expect(pod.app.accepted).toBe(0);
    // A fourth reset during a dial passes the bound: GOAWAY.
    c.reset(c.connect(APP_AUTHORITY));
    await waitFor(() => c.goaway, "GOAWAY after too many resets");
    expect(c.goaway!.code).toBe(ENHANCE_YOUR_CALM);
    await waitFor(() => synSent().length === 0, "no dial left");
  });
});

describe("inbound HBONE: caps", { timeout: 120_000 }, () => {
  it("advertises the stream cap in SETTINGS; a peer that exceeds it loses its connection and its tunnels", async () => {
    pod = await startPod(ca, { HBONE_MAX_STREAMS_PER_CONNECTION: "5" });
    pod.app.echo = true;
    const c = await client(pod);
    expect(c.remoteSettings.get(SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(5);
    for (let i = 0; i < 8; i++) c.connect(APP_AUTHORITY);
    await waitFor(() => c.closed, "the connection to be closed");
    expect([...c.responses.values()].filter((s) => s === 200).length).toBeLessThanOrEqual(5);
    expect(pod.app.accepted).toBeLessThanOrEqual(5);
    await appReleased(pod, "the app connections of the closed connection to close");
    expect(await pod.metric(REFUSED, { reason: "protocol_error" })).toBe(1);
  });

  it("caps the connections of one peer identity; other identities and freed slots are served", async () => {
    pod = await startPod(ca, { HBONE_MAX_CONNECTIONS_PER_IDENTITY: "2" });
    pod.app.echo = true;
    const a1 = await client(pod);
    const a2 = await client(pod);
    await tunnels(pod, a1, 1);
    await tunnels(pod, a2, 1);
    const a3 = new RawH2Client(await pod.hbone());
    a3.connect(APP_AUTHORITY);
    await waitFor(() => a3.closed, "the third connection of one identity to be closed");
    expect(a3.goaway?.code).toBe(ENHANCE_YOUR_CALM);
    expect(a3.responses.size).toBe(0);
    expect(await pod.metric(REFUSED, { reason: "connection_limit" })).toBe(1);
    // Another identity is not affected.
    await tunnels(pod, await client(pod, "spiffe://cluster.local/ns/shop/sa/other"), 1);
    // A closed connection frees its slot.
    a1.socket.destroy();
    await waitFor(() => pod!.heldToApp().length === 2, "a1's tunnel to close");
    await tunnels(pod, await client(pod), 1);
  });

  it("caps the open streams of one peer identity over all its connections; other identities and freed slots are served", async () => {
    pod = await startPod(ca, { HBONE_MAX_STREAMS_PER_IDENTITY: "4" });
    pod.app.echo = true;
    const a1 = await client(pod);
    const a2 = await client(pod);
    const held = [...await tunnels(pod, a1, 2), ...await tunnels(pod, a2, 2)];
    // A fifth stream of the same identity, on either connection, is refused; its connection stays.
    const over = a2.connect(APP_AUTHORITY);
    await waitFor(() => a2.resets.has(over), "the fifth stream to be reset");
    expect(a2.resets.get(over)).toBe(REFUSED_STREAM);
    expect(a2.responses.has(over)).toBe(false);
    expect(await pod.metric(REFUSED, { reason: "stream_limit" })).toBe(1);
    expect(pod.heldToApp()).toHaveLength(4);
    // Another identity is not affected.
    await tunnels(pod, await client(pod, "spiffe://cluster.local/ns/shop/sa/other"), 1);
    // A closed stream frees its slot.
    a1.reset(held[0]!);
    await waitFor(() => pod!.heldToApp().length === 4, "the reset tunnel's app connection to close");
    await tunnels(pod, a2, 1);
    expect(a1.closed || a2.closed).toBe(false);
  });

  it("TLS done but no HTTP/2 preface or SETTINGS: the connection is cut after the handshake deadline", async () => {
    pod = await startPod(ca, { HBONE_HANDSHAKE_TIMEOUT: "300ms" });
    const silent = await pod.hbone();
    const prefaceOnly = await pod.hbone();
    prefaceOnly.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const closed = (s: net.Socket) => new Promise<void>((resolve) => { s.resume(); if (s.destroyed) resolve(); else s.once("close", () => resolve()); });
    await Promise.all([closed(silent), closed(prefaceOnly)]);
    expect(await pod.metric(REFUSED, { reason: "handshake_timeout" })).toBe(2);
    await waitFor(() => socketsOn15008(pod!).length === 0, "no 15008 socket left");
    // A peer that sends its SETTINGS is served.
    pod.app.echo = true;
    await tunnels(pod, await client(pod), 1);
  });

  it("a connection without an open stream is closed after HBONE_IDLE_TIMEOUT; one with a stream is kept until its last stream ends", async () => {
    pod = await startPod(ca, { HBONE_IDLE_TIMEOUT: "1s", HTTP2_KEEPALIVE_INTERVAL: "100ms", HTTP2_KEEPALIVE_TIMEOUT: "5s" });
    pod.app.echo = true;
    const busy = await client(pod);
    const [id] = await tunnels(pod, busy, 1);
    // Answers every PING, never opens a stream.
    const idle = await client(pod);
    await waitFor(() => idle.closed, "the idle connection to be closed");
    expect(idle.goaway?.code).toBe(0);
    expect(idle.pingsReceived).toBeGreaterThan(0);
    expect(busy.closed).toBe(false);
    busy.send(id!, "y");
    await waitFor(() => busy.text(id!) === "xy", "the busy connection's tunnel to echo");
    busy.send(id!, "", true);
    await waitFor(() => busy.closed, "the busy connection to be closed once its last stream ended");
    await waitFor(() => socketsOn15008(pod!).length === 0, "no 15008 socket left");
  });

  it("a TLS handshake that never completes is cut (silent peer, partial ClientHello)", async () => {
    pod = await startPod(ca, { HBONE_HANDSHAKE_TIMEOUT: "300ms" });
    const silent = await connectTcp({ netns: pod.ns.path, host: POD_IP, port: 15008, timeout: 10_000 });
    const partial = await connectTcp({ netns: pod.ns.path, host: POD_IP, port: 15008, timeout: 10_000 });
    partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])); // a ClientHello's first bytes
    const closed = (s: net.Socket) => new Promise<void>((resolve) => { s.on("error", () => undefined); s.resume(); s.once("close", () => resolve()); });
    await Promise.all([closed(silent), closed(partial)]);
    expect(await pod.metric(REFUSED, { reason: "handshake_timeout" })).toBe(2);
    await waitFor(() => socketsOn15008(pod!).length === 0, "no 15008 socket left");
  });
});

describe("inbound HBONE: refusals a peer can repeat", { timeout: 120_000 }, () => {
  const FAILED = "istio_tcp_connections_failed_total";
  const warned = (p: Pod, msg: string) => p.logs.filter((l) => String(l["msg"]).startsWith(msg)).length;

  it("refused streams: every one is counted, the warn lines are bounded, and past the budget the connection gets GOAWAY", async () => {
    pod = await startPod(ca, { HBONE_MAX_EARLY_RESETS: "20" });
    const c = await client(pod);
    // 20 streams to an address that is not the pod's: each is answered 400, within the budget.
    const ids = Array.from({ length: 20 }, () => c.connect("10.9.9.9:80"));
    await waitFor(() => ids.every((id) => c.responses.has(id)), "every refused stream to be answered");
    expect(ids.every((id) => c.responses.get(id) === -1 && c.ended.has(id))).toBe(true);
    expect(await pod.metric(FAILED, { reporter: "destination", response_flags: "CONNECT" })).toBe(20);
    expect(warned(pod, "connection failed")).toBe(20); // each an access-log record, within FAILED_LOG_BURST
    expect(c.goaway).toBeUndefined();
    // One more passes the budget.
    c.connect("10.9.9.9:80");
    await waitFor(() => c.goaway, "GOAWAY");
    expect(c.goaway!.code).toBe(ENHANCE_YOUR_CALM);
    await waitFor(() => c.closed, "the connection to be closed");
    expect(await pod.metric(FAILED, { reporter: "destination", response_flags: "CONNECT" })).toBe(21);
    expect(await pod.metric(REFUSED, { reason: "rapid_reset" })).toBe(1);
    expect(pod.app.accepted).toBe(0);
  });

  it("clients outside our trust domain: each is refused and counted, the warn lines are bounded", async () => {
    pod = await startPod(ca);
    for (let i = 0; i < 20; i++) {
      const s = await pod.hbone("spiffe://evil.local/ns/x/sa/y").catch(() => undefined);
      if (s && !s.destroyed) await new Promise((r) => { s.once("close", r); s.resume(); });
    }
    await waitFor(async () => (await pod!.metric(REFUSED, { reason: "untrusted_peer" })) === 20, "20 refusals counted");
    expect(warned(pod, "inbound HBONE refused: client identity is not in our trust domain")).toBeLessThanOrEqual(2);
    expect(pod.app.accepted).toBe(0);
  });

  it("connections while the pod has no certificate: each is refused and counted, the warn lines are bounded", async () => {
    pod = await startPod(ca);
    // The CA is down (a fault the test CA cannot produce by itself).
    pod.ctx.certs.fetch = () => Promise.reject(new Error("CA unavailable"));
    for (let i = 0; i < 20; i++) {
      const s = await connectTcp({ netns: pod.ns.path, host: POD_IP, port: 15008, timeout: 10_000 });
      await new Promise((r) => { s.on("error", () => undefined); s.once("close", r); s.resume(); });
    }
    expect(await pod.metric(REFUSED, { reason: "no_certificate" })).toBe(20);
    expect(warned(pod, "inbound HBONE refused: no certificate for the pod")).toBeLessThanOrEqual(2);
  });
});
