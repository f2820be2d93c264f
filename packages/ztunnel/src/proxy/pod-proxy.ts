// The proxy of one enrolled pod: listeners 15001 (outbound capture), 15006 (inbound plaintext) and 15008 (inbound
// HBONE) bound inside the pod's network namespace, outbound sockets created there too and marked 0x539, an HBONE
// pool of its own, and the pod's inbound connections (re-checked when policies change). Removal drains: listeners
// close at once, open connections get until the deadline. Limits of the inbound HBONE server (README "Limits and
// timeouts"): a TLS handshake deadline, SETTINGS_MAX_CONCURRENT_STREAMS, connections per peer identity, streams reset
// before their answer, PING keepalive; every proxied socket has TCP keepalive and every relay a half-close bound.
import { randomBytes } from "node:crypto";
import { setImmediate as nextTurn } from "node:timers/promises";
import http2, { type Http2SecureServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import net, { type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import {
  HboneHeaders, Ports, ZTUNNEL_SELF_PORTS, formatAuthority, formatBaggage, formatForwarded, formatSpiffeId, formatTraceparent,
  ipToBytes, parseAuthority, workloadIdentity, type Identity, type ZdsWorkloadInfo,
} from "@ambit/protocol";
import { closeQuietly, connectTcp, getOriginalDst, listenInNetns } from "@ambit/sys";
import type { WorkloadCertificate } from "../identity/index.js";
import { authorize, type Connection } from "../rbac.js";
import type { ConnectionInfo, ConnectionRecord, ResponseFlag } from "../telemetry/index.js";
import type { Workload } from "../state.js";
import type { ProxyContext } from "./context.js";
import { KeepaliveTimeout, keepalive } from "./keepalive.js";
import { HboneError, HbonePool } from "./pool.js";
import { relay, type End, type Relay } from "./relay.js";
import { route } from "./route.js";
import { peerIdentity, serverTlsOptions } from "./tls.js";

const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
/** The window of HBONE_MAX_EARLY_RESETS. */
const EARLY_RESET_WINDOW_MS = 10_000;
/** Session errors of the HTTP/2 layer that mean the peer broke the protocol (e.g. more streams than advertised). */
const PROTOCOL_ERRORS = new Set(["ERR_HTTP2_ERROR", "ERR_HTTP2_TOO_MANY_INVALID_FRAMES"]);

/** "::ffff:10.0.0.1" → "10.0.0.1". */
const plainIp = (ip: string | undefined) => (ip ?? "").replace(/^::ffff:(?=\d+\.)/, "");

interface InboundConnection {
  relay: Relay;
  authz: Connection;
}

export class PodProxy {
  readonly pool: HbonePool;
  private readonly listeners: net.Server[] = [];
  private hbone?: Http2SecureServer;
  private readonly sessions = new Set<Http2Session>();
  private readonly relays = new Set<Relay>();
  private readonly inbound = new Set<InboundConnection>();
  /** Open inbound HBONE connections per peer SPIFFE identity. */
  private readonly peerConnections = new Map<string, number>();
  /** Open inbound HBONE streams per peer SPIFFE identity, over all its connections. */
  private readonly peerStreams = new Map<string, number>();
  /** Streams refused, or reset by the peer before their answer, per inbound HBONE connection, in the current window. */
  private readonly earlyResets = new WeakMap<Http2Session, { count: number; since: number }>();
  private cached?: { generation: number; workload: Workload | undefined; identityUri?: string };
  private draining = false;
  private readonly onCertUpdate = (identity: string, cert: WorkloadCertificate) => {
    if (identity === this.identityUri && this.hbone) { this.hbone.setSecureContext(serverTlsOptions(cert)); }
  };

  constructor(
    private readonly ctx: ProxyContext,
    readonly uid: string,
    readonly info: ZdsWorkloadInfo,
    /** The pod's netns fd; owned (closed on drain). */
    readonly netns: number,
  ) {
    const { config } = ctx;
    this.pool = new HbonePool(config.h2, async (ip, port, timeout) =>
      this.tcpKeepalive(await connectTcp({ netns, host: ip, port, mark: config.packetMark, timeout, allowHalfOpen: true })));
    ctx.certs.on("updated", this.onCertUpdate);
  }

  /** The pod's xDS workload (joined by node, namespace, name and service account), when known. */
  workload(): Workload | undefined {
    return this.current().workload;
  }

  /** The pod's SPIFFE identity: its namespace and service account, the trust domain of its workload (or ours). */
  get identity(): Identity {
    return workloadIdentity({ trust_domain: this.workload()?.trust_domain || this.ctx.config.trustDomain, namespace: this.info.namespace, service_account: this.info.serviceAccount });
  }

  /** The identity as a SPIFFE URI (validated once per xDS state). */
  get identityUri(): string {
    const c = this.current();
    return (c.identityUri ??= formatSpiffeId(this.identity));
  }

  /** The pod's xDS workload, looked up again only when the xDS state changed. */
  private current(): NonNullable<PodProxy["cached"]> {
    const { state, config } = this.ctx;
    if (this.cached?.generation !== state.generation) {
      this.cached = { generation: state.generation, workload: state.localWorkload(config.nodeName, this.info.name, this.info.namespace, this.info.serviceAccount || "default") };
    }
    return this.cached;
  }

  /** Binds the three listeners inside the pod's netns and starts fetching the pod's certificate. */
  async start(): Promise<void> {
    this.ctx.certs.prefetch(this.identityUri);
    const host = this.ctx.config.ipv6 ? "::" : "0.0.0.0";
    const listen = async (port: number, onConnection: (s: Socket) => void) => {
      // Plain TCP carries half-close through; HBONE has its own (END_STREAM), so a FIN there means the peer is gone.
      const allowHalfOpen = port !== Ports.hbone;
      const server = net.createServer({ allowHalfOpen, pauseOnConnect: true, noDelay: true }, (s) => onConnection(this.tcpKeepalive(s)));
      const opts = { netns: this.netns, port, mark: this.ctx.config.packetMark, reusePort: true, backlog: 128, server };
      try {
        await listenInNetns({ ...opts, host });
      } catch (err) {
        // A pod without IPv6: fall back to IPv4 only.
        if (host !== "::" || (err as NodeJS.ErrnoException).code !== "EAFNOSUPPORT" && (err as NodeJS.ErrnoException).code !== "EADDRNOTAVAIL") throw err;
        await listenInNetns({ ...opts, host: "0.0.0.0" });
      }
      server.on("error", (err) => this.ctx.log.warn({ err, pod: this.name }, "listener error"));
      this.listeners.push(server);
    };
    try {
      await listen(Ports.outbound, (s) => this.guard(this.outbound(s), s));
      await listen(Ports.inboundPlaintext, (s) => this.guard(this.plaintextInbound(s), s));
      await listen(Ports.hbone, (s) => this.guard(this.hboneConnection(s), s));
    } catch (err) {
      for (const l of this.listeners) l.close();
      this.listeners.length = 0;
      this.ctx.certs.off("updated", this.onCertUpdate);
      throw err;
    }
  }

  /** A connection handler that fails unexpectedly (e.g. malformed xDS data) ends its connection, not the process. */
  private guard(handling: Promise<void>, conn: { destroy(): void }): void {
    handling.catch((err: Error) => {
      this.ctx.log.error({ err, pod: this.name }, "connection handler failed");
      conn.destroy();
    });
  }

  get name(): string {
    return `${this.info.namespace}/${this.info.name}`;
  }

  /** TCP keepalive (KEEPALIVE_TIME), so a peer that vanished without a FIN is noticed by the kernel. */
  private tcpKeepalive(s: Socket): Socket {
    const ms = this.ctx.config.tcpKeepaliveMs;
    if (ms !== null) s.setKeepAlive(true, ms);
    return s;
  }

  private relay(a: End, b: End): Relay {
    return relay(a, b, { halfCloseIdleMs: this.ctx.config.halfCloseIdleMs });
  }

  get connectionCount(): number {
    return this.relays.size;
  }

  /** Stops accepting, lets open connections finish until the deadline, then ends them; closes the netns fd. */
  async drain(deadlineMs: number): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.ctx.certs.off("updated", this.onCertUpdate);
    for (const l of this.listeners) l.close();
    this.pool.close();
    for (const s of this.sessions) s.close();
    const all = Promise.all([...this.relays].map((r) => r.done));
    const timer = new Promise<void>((r) => setTimeout(r, deadlineMs).unref());
    await Promise.race([all, timer]);
    for (const r of this.relays) r.destroy(new Error("drain deadline reached"));
    for (const s of this.sessions) s.destroy();
    this.pool.destroy();
    await Promise.race([Promise.all([...this.relays].map((r) => r.done)), new Promise((r) => setTimeout(r, 1000).unref())]);
    closeQuietly(this.netns);
  }

  /** Re-evaluates every open inbound connection against the current policies; closes those now denied. */
  recheckPolicies(): void {
    const w = this.workload();
    for (const c of this.inbound) {
      const denial = this.authorize(w, c.authz);
      if (denial) {
        this.ctx.log.info({ pod: this.name, reason: denial }, "connection closed due to policy change");
        c.relay.destroy(new Error(`connection closed due to policy change: ${denial}`));
      }
    }
  }

  /** counts: bytes written to / read from the downstream (the client side), when the relay ends. */
  private track(r: Relay, record: ConnectionRecord, counts: () => { sent: number; received: number }, inbound?: InboundConnection): void {
    this.relays.add(r);
    if (inbound) this.inbound.add(inbound);
    void r.done.then((err) => {
      this.relays.delete(r);
      if (inbound) this.inbound.delete(inbound);
      const c = counts();
      record.sent = c.sent;
      record.received = c.received;
      record.close(err);
    });
  }

  // ---- outbound (15001) ----

  private async outbound(downstream: Socket): Promise<void> {
    downstream.on("error", () => undefined);
    const { ctx } = this;
    const srcIp = plainIp(downstream.remoteAddress);
    let dst: { address: string; port: number };
    try {
      dst = getOriginalDst(downstream);
    } catch (err) {
      ctx.log.warn({ err, pod: this.name }, "outbound: no original destination");
      downstream.destroy();
      return;
    }
    const dstIp = plainIp(dst.address);
    const source = this.workload();
    const base: ConnectionInfo = { reporter: "source", src: { addr: formatAuthority(srcIp, downstream.remotePort ?? 0), ...(source ? { workload: source } : {}) }, dst: { addr: formatAuthority(dstIp, dst.port) }, mtls: false };
    if ((dstIp === "127.0.0.1" || dstIp === "::1") && ZTUNNEL_SELF_PORTS.includes(dst.port)) {
      ctx.telemetry.failed(base, "CONNECT", `refusing a connection to ztunnel's own port ${dst.port}`, this.name);
      downstream.destroy();
      return;
    }
    const r = route({ state: ctx.state, network: ctx.config.network, ...(source ? { source } : {}), dstIp, dstPort: dst.port });
    if (r.kind === "refuse") {
      ctx.telemetry.failed({ ...base, dst: { ...base.dst, ...(r.service ? { service: r.service } : {}) } }, "CONNECT", r.reason, this.name);
      downstream.resetAndDestroy();
      return;
    }
    if (r.kind === "tcp") {
      const info: ConnectionInfo = { ...base, dst: { addr: formatAuthority(r.ip, r.port), ...(r.workload ? { workload: r.workload } : {}), ...(r.service ? { service: r.service } : {}) } };
      let upstream: Socket;
      try {
        upstream = await connectTcp({ netns: this.netns, host: r.ip, port: r.port, mark: ctx.config.packetMark, timeout: UPSTREAM_CONNECT_TIMEOUT_MS, allowHalfOpen: true });
      } catch (err) {
        ctx.telemetry.failed(info, "CONNECT", (err as Error).message, this.name);
        downstream.resetAndDestroy();
        return;
      }
      upstream.setNoDelay(true);
      this.tcpKeepalive(upstream);
      const record = ctx.telemetry.open(info);
      this.track(this.relay(downstream, upstream), record, () => ({ sent: downstream.bytesWritten, received: downstream.bytesRead }));
      downstream.resume();
      return;
    }
    // HBONE, with the source pod's certificate: no certificate, no traffic.
    const srcIdentity = this.identityUri;
    const info: ConnectionInfo = {
      ...base, mtls: true,
      src: { ...base.src, identity: srcIdentity },
      dst: { addr: formatAuthority(r.ip, r.port), hboneAddr: formatAuthority(r.authority.ip, r.authority.port), workload: r.workload, identity: r.expected[0]!, ...(r.service ? { service: r.service } : {}) },
    };
    let cert: WorkloadCertificate;
    try {
      cert = await ctx.certs.fetch(srcIdentity);
    } catch (err) {
      ctx.telemetry.failed(info, "IDENTITY_ERROR", `no certificate for ${srcIdentity}: ${(err as Error).message}`, this.name);
      downstream.resetAndDestroy();
      return;
    }
    const headers = {
      ":authority": formatAuthority(r.authority.ip, r.authority.port),
      [HboneHeaders.forwarded]: formatForwarded(srcIp, downstream.remotePort ?? 0, r.service?.hostname ?? undefined),
      [HboneHeaders.baggage]: baggageOf(source, ctx.config.clusterId),
      [HboneHeaders.traceparent]: formatTraceparent(randomBytes(16), randomBytes(8)),
    };
    try {
      const { stream } = await this.pool.connect({ cert, expected: r.expected, ip: r.ip, port: r.port }, headers);
      if (downstream.destroyed) { stream.close(http2.constants.NGHTTP2_CANCEL); return; }
      const record = ctx.telemetry.open(info);
      this.track(this.relay(downstream, stream), record, () => ({ sent: downstream.bytesWritten, received: downstream.bytesRead }));
      downstream.resume();
    } catch (err) {
      const flag: ResponseFlag = err instanceof HboneError ? err.flag : "CONNECT";
      ctx.telemetry.failed(info, flag, (err as Error).message, this.name);
      downstream.resetAndDestroy();
    }
  }

  // ---- inbound plaintext (15006) ----

  private async plaintextInbound(downstream: Socket): Promise<void> {
    downstream.on("error", () => undefined);
    const srcIp = plainIp(downstream.remoteAddress);
    let dst: { address: string; port: number };
    try {
      dst = getOriginalDst(downstream);
    } catch {
      // TPROXY-style capture: the local address is the original destination.
      dst = { address: downstream.localAddress ?? "", port: downstream.localPort ?? 0 };
    }
    const dstIp = plainIp(dst.address);
    const local = this.workload();
    const info: ConnectionInfo = {
      reporter: "destination", mtls: false,
      src: { addr: formatAuthority(srcIp, downstream.remotePort ?? 0), ...this.sourceWorkload(srcIp) },
      dst: { addr: formatAuthority(dstIp, dst.port), ...(local ? { workload: local } : {}) },
    };
    if (ZTUNNEL_SELF_PORTS.includes(dst.port)) {
      this.ctx.telemetry.failed(info, "CONNECT", `refusing a connection to ztunnel's own port ${dst.port}`, this.name);
      downstream.destroy();
      return;
    }
    const authz: Connection = { srcIp: ipToBytes(srcIp), dstIp: ipToBytes(dstIp), dstPort: dst.port, srcIdentity: null };
    const denial = this.authorize(local, authz);
    if (denial) {
      this.ctx.telemetry.failed(info, "DENY", denial, this.name);
      downstream.resetAndDestroy();
      return;
    }
    const upstream = await this.connectApp(srcIp, dstIp, dst.port).catch((err: Error) => err);
    if (upstream instanceof Error) {
      this.ctx.telemetry.failed(info, "CONNECT", upstream.message, this.name);
      downstream.resetAndDestroy();
      return;
    }
    const record = this.ctx.telemetry.open(info);
    const r = this.relay(downstream, upstream);
    this.track(r, record, () => ({ sent: upstream.bytesRead, received: upstream.bytesWritten }), { relay: r, authz });
    downstream.resume();
  }

  // ---- inbound HBONE (15008) ----

  private async hboneConnection(socket: Socket): Promise<void> {
    socket.on("error", () => undefined);
    socket.setNoDelay(true);
    try {
      await this.hboneServer();
    } catch (err) {
      this.ctx.telemetry.hboneRefused("no_certificate", this.name, { err: (err as Error).message, peerAddr: plainIp(socket.remoteAddress) }, "inbound HBONE refused: no certificate for the pod");
      socket.destroy();
      return;
    }
    if (this.draining) { socket.destroy(); return; }
    this.hbone!.emit("connection", socket);
    socket.resume();
  }

  /** The pod's HTTP/2 TLS server, created with the first certificate and re-keyed on rotation. */
  private async hboneServer(): Promise<Http2SecureServer> {
    const cert = await this.ctx.certs.fetch(this.identityUri);
    if (this.hbone) return this.hbone;
    const { h2, hbone } = this.ctx.config;
    const server = http2.createSecureServer({
      ...serverTlsOptions(cert),
      allowHTTP1: false,
      maxSessionMemory: 64,
      handshakeTimeout: hbone.handshakeTimeoutMs,
      // Enforced by the HTTP/2 layer: a peer that opens more loses the connection (GOAWAY PROTOCOL_ERROR).
      settings: { initialWindowSize: h2.streamWindow, maxFrameSize: h2.maxFrameSize, maxConcurrentStreams: hbone.maxStreamsPerConnection, maxHeaderListSize: 64 * 1024, enablePush: false },
    });
    server.on("secureConnection", (tlsSocket: TLSSocket) => {
      // The client's trust domain must be ours.
      const peer = peerIdentity(tlsSocket);
      if (!peer || peer.id.trustDomain !== this.identity.trustDomain) {
        this.ctx.telemetry.hboneRefused("untrusted_peer", this.name, { peer: peer?.uri ?? null, peerAddr: plainIp(tlsSocket.remoteAddress) }, "inbound HBONE refused: client identity is not in our trust domain");
        tlsSocket.destroy();
      }
    });
    server.on("session", (session) => this.onSession(session));
    server.on("stream", (stream, headers) => this.guard(this.connect(stream, headers), stream));
    server.on("tlsClientError", (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      if (err.code === "ERR_TLS_HANDSHAKE_TIMEOUT") {
        this.ctx.telemetry.hboneRefused("handshake_timeout", this.name, { peerAddr: plainIp(socket.remoteAddress) }, `inbound HBONE: TLS handshake not done within ${hbone.handshakeTimeoutMs} ms: connection closed`);
      }
    });
    this.hbone = server;
    return server;
  }

  /** A new inbound HBONE connection: the per-identity cap, PING keepalive, and the count of its protocol errors. */
  private onSession(session: Http2Session): void {
    const { h2, hbone } = this.ctx.config;
    const tlsSocket = session.socket as TLSSocket;
    const peer = peerIdentity(tlsSocket)?.uri ?? "";
    const log = { peer, peerAddr: plainIp(tlsSocket.remoteAddress) };
    session.on("error", (err: NodeJS.ErrnoException) => {
      if (err instanceof KeepaliveTimeout) this.ctx.telemetry.hboneRefused("keepalive_timeout", this.name, log, `inbound HBONE: ${err.message}: connection closed`);
      else if (PROTOCOL_ERRORS.has(err.code ?? "")) this.ctx.telemetry.hboneRefused("protocol_error", this.name, { ...log, err: err.message }, "inbound HBONE: HTTP/2 protocol error (e.g. more concurrent streams than advertised): connection closed");
    });
    const open = this.peerConnections.get(peer) ?? 0;
    if (open >= hbone.maxConnectionsPerIdentity) {
      this.ctx.telemetry.hboneRefused("connection_limit", this.name, log, `inbound HBONE: ${peer || "a peer"} already has ${open} connections (HBONE_MAX_CONNECTIONS_PER_IDENTITY): connection refused`);
      calmDown(session);
      return;
    }
    this.peerConnections.set(peer, open + 1);
    this.sessions.add(session);
    session.once("close", () => {
      this.sessions.delete(session);
      decrement(this.peerConnections, peer);
    });
    this.earlyResets.set(session, { count: 0, since: Date.now() });
    session.setLocalWindowSize(h2.connectionWindow);
    keepalive(session, { intervalMs: h2.keepaliveIntervalMs, timeoutMs: h2.keepaliveTimeoutMs });
    this.settingsDeadline(session, log);
    this.closeWhenIdle(session);
  }

  /** After TLS, the peer's preface and first SETTINGS must come within HBONE_HANDSHAKE_TIMEOUT too. */
  private settingsDeadline(session: Http2Session, log: object): void {
    const ms = this.ctx.config.hbone.handshakeTimeoutMs;
    const timer = setTimeout(() => {
      this.ctx.telemetry.hboneRefused("handshake_timeout", this.name, log, `inbound HBONE: no HTTP/2 SETTINGS within ${ms} ms after TLS: connection closed`);
      session.destroy();
    }, ms);
    timer.unref();
    const clear = () => clearTimeout(timer);
    session.once("remoteSettings", clear);
    session.once("close", clear);
  }

  /** A connection that has had no open stream for HBONE_IDLE_TIMEOUT is closed (GOAWAY NO_ERROR). */
  private closeWhenIdle(session: Http2Session): void {
    const ms = this.ctx.config.hbone.idleTimeoutMs;
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => {
        this.ctx.log.debug({ pod: this.name }, `inbound HBONE: no stream for ${ms} ms: connection closed`);
        session.close();
      }, ms);
      timer.unref();
    };
    arm();
    session.on("stream", (stream: ServerHttp2Stream) => {
      if (open++ === 0) clearTimeout(timer);
      stream.once("close", () => { if (--open === 0 && !session.closed) arm(); });
    });
    session.once("close", () => clearTimeout(timer));
  }

  /**
   * A stream that came to nothing: the peer reset it before it was answered (before or during the app dial), or we
   * refused it (400/401/503). Past HBONE_MAX_EARLY_RESETS in a window the connection is closed with GOAWAY
   * ENHANCE_YOUR_CALM: a flood of HEADERS + RST_STREAM (rapid reset) or of refused streams cannot make us work, dial
   * the app, or log without bound.
   */
  private wasted(session: Http2Session): void {
    const r = this.earlyResets.get(session);
    if (!r || session.destroyed) return;
    const now = Date.now();
    if (now - r.since > EARLY_RESET_WINDOW_MS) { r.since = now; r.count = 0; }
    const max = this.ctx.config.hbone.maxEarlyResets;
    if (++r.count <= max) return;
    const tlsSocket = session.socket as TLSSocket;
    this.ctx.telemetry.hboneRefused("rapid_reset", this.name, { peer: peerIdentity(tlsSocket)?.uri ?? null, peerAddr: plainIp(tlsSocket.remoteAddress) },
      `inbound HBONE: more than ${max} streams refused or reset before their answer within ${EARLY_RESET_WINDOW_MS} ms (HBONE_MAX_EARLY_RESETS): connection closed`);
    calmDown(session);
  }

  private async connect(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => undefined);
    const session = stream.session!;
    const tlsSocket = session.socket as TLSSocket | undefined;
    const peer = tlsSocket ? peerIdentity(tlsSocket) : null;
    if (!this.takeStreamSlot(stream, peer?.uri ?? "", tlsSocket)) return;
    const srcIp = plainIp(tlsSocket?.remoteAddress);
    const localIp = plainIp(tlsSocket?.localAddress);
    const authority = String(headers[":authority"] ?? "");
    const local = this.workload();
    // The destination Service, named by the forwarded header's host= (telemetry only).
    const fwdHost = /;host=([^;,\s]+)/.exec(String(headers[HboneHeaders.forwarded] ?? ""))?.[1];
    const service = fwdHost ? this.ctx.state.serviceByHostname(fwdHost, local?.namespace ?? "") : undefined;
    const info: ConnectionInfo = {
      reporter: "destination", mtls: true,
      src: { addr: formatAuthority(srcIp, tlsSocket?.remotePort ?? 0), ...(peer ? { identity: peer.uri } : {}), ...this.sourceWorkload(srcIp) },
      dst: { addr: formatAuthority(localIp, Ports.hbone), hboneAddr: authority, ...(local ? { workload: local } : {}), ...(service ? { service } : {}), identity: this.identityUri },
    };
    const refuse = (status: number, flag: ResponseFlag, reason: string) => {
      this.ctx.telemetry.failed(info, flag, reason, this.name);
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ":status": status }, { endStream: true });
      this.wasted(session);
    };
    if (headers[":method"] !== "CONNECT") return refuse(400, "CONNECT", `method ${headers[":method"]} is not CONNECT`);
    const target = parseAuthority(authority);
    if (!target) return refuse(400, "CONNECT", `unparsable :authority "${authority}"`);
    // Only the pod's own address (the waypoint sandwich and app tunnels are not supported yet).
    if (plainIp(target.host) !== localIp) return refuse(400, "CONNECT", `:authority ${authority} is not this pod's address ${localIp}`);
    if (ZTUNNEL_SELF_PORTS.includes(target.port)) return refuse(400, "CONNECT", `:authority ${authority} names one of ztunnel's own ports`);
    if (!local) return refuse(503, "CONNECT", `the local workload ${this.name} is not known from xDS yet`);
    const authz: Connection = { srcIp: ipToBytes(srcIp), dstIp: ipToBytes(localIp), dstPort: target.port, srcIdentity: peer?.id ?? null };
    const denial = this.authorize(local, authz);
    if (denial) return refuse(401, "DENY", denial);
    // The frames read together with this HEADERS are handled after one turn: a stream already reset is not dialled.
    await nextTurn();
    if (stream.closed || stream.destroyed) return this.wasted(session);
    // A reset during the dial aborts it.
    const dial = new AbortController();
    const abortDial = () => dial.abort();
    stream.once("close", abortDial);
    const upstream = await this.connectApp(srcIp, localIp, target.port, dial.signal).catch((err: Error) => err);
    stream.off("close", abortDial);
    if (stream.closed || stream.destroyed) {
      if (!(upstream instanceof Error)) upstream.destroy();
      return this.wasted(session);
    }
    if (upstream instanceof Error) return refuse(503, "CONNECT", `upstream ${authority}: ${upstream.message}`);
    stream.respond({ ":status": 200, [HboneHeaders.baggage]: baggageOf(local, this.ctx.config.clusterId) });
    const record = this.ctx.telemetry.open(info);
    const r = this.relay(stream, upstream);
    this.track(r, record, () => ({ sent: upstream.bytesRead, received: upstream.bytesWritten }), { relay: r, authz });
  }

  /**
   * Counts the stream against HBONE_MAX_STREAMS_PER_IDENTITY until it closes; past the cap it is reset with
   * REFUSED_STREAM (the client may retry it elsewhere or later) and false is returned.
   */
  private takeStreamSlot(stream: ServerHttp2Stream, peer: string, tlsSocket: TLSSocket | undefined): boolean {
    const open = this.peerStreams.get(peer) ?? 0;
    const max = this.ctx.config.hbone.maxStreamsPerIdentity;
    if (open >= max) {
      this.ctx.telemetry.hboneRefused("stream_limit", this.name, { peer, peerAddr: plainIp(tlsSocket?.remoteAddress) },
        `inbound HBONE: ${peer || "a peer"} already has ${open} open streams (HBONE_MAX_STREAMS_PER_IDENTITY): stream refused`);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return false;
    }
    this.peerStreams.set(peer, open + 1);
    stream.once("close", () => decrement(this.peerStreams, peer));
    return true;
  }

  /** null when allowed, else the reason of the denial (fails closed without the local workload). */
  private authorize(local: Workload | undefined, c: Connection): string | null {
    if (!local) return "the local workload is not known from xDS yet";
    const d = authorize(this.ctx.state.policies, { namespace: local.namespace ?? "", authorizationPolicies: local.authorization_policies ?? [] }, c);
    for (const k of d.dryRun) this.ctx.log.info({ pod: this.name, policy: k }, "dry-run policy matched");
    return d.allowed ? null : d.reason;
  }

  /** The client's workload by its address, as the `src` fields of telemetry (`{}` when unknown). */
  private sourceWorkload(ip: string): { workload?: Workload } {
    const w = ip ? this.ctx.state.workloadByIp(this.ctx.config.network, ip) : undefined;
    return w ? { workload: w } : {};
  }

  /** Connects to the app inside the pod, from the original client's address when that can be spoofed. */
  private async connectApp(srcIp: string, dstIp: string, port: number, signal?: AbortSignal): Promise<Socket> {
    const { config } = this.ctx;
    const base = { netns: this.netns, host: dstIp, port, mark: config.packetMark, timeout: UPSTREAM_CONNECT_TIMEOUT_MS, allowHalfOpen: true, ...(signal ? { signal } : {}) };
    const spoof = config.origSrc !== "false" && srcIp && srcIp.includes(":") === dstIp.includes(":") && srcIp !== dstIp;
    let socket: Socket;
    if (spoof) {
      try {
        socket = await connectTcp({ ...base, localAddress: srcIp, transparent: true, freebind: true });
      } catch (err) {
        if (config.origSrc === "true" || !["EPERM", "EACCES", "EADDRNOTAVAIL", "EINVAL"].includes((err as NodeJS.ErrnoException).code ?? "")) throw err;
        socket = await connectTcp(base);
      }
    } else {
      socket = await connectTcp(base);
    }
    socket.setNoDelay(true);
    return this.tcpKeepalive(socket);
  }

  /** For the config dump. */
  dump(): object {
    return { uid: this.uid, name: this.info.name, namespace: this.info.namespace, serviceAccount: this.info.serviceAccount, identity: this.identityUri, connections: this.relays.size, hboneConnections: this.pool.connectionCount, state: this.draining ? "draining" : "up" };
  }
}

/** One less for `key`; the entry goes at zero. */
function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** GOAWAY ENHANCE_YOUR_CALM, then the connection and its streams are destroyed (destroy() alone would say NO_ERROR). */
function calmDown(session: Http2Session): void {
  session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  session.destroy();
}

function baggageOf(w: Workload | undefined, clusterId: string): string {
  if (!w) return "";
  const type = ["deployment", "cronjob", "pod", "job"][w.workload_type ?? 0] ?? "deployment";
  return formatBaggage({
    clusterName: w.cluster_id || clusterId, namespace: w.namespace ?? "", workloadType: type, workloadName: w.workload_name ?? "",
    serviceName: w.canonical_name ?? "", serviceVersion: w.canonical_revision ?? "", region: w.locality?.region ?? "", zone: w.locality?.zone ?? "",
  });
}

