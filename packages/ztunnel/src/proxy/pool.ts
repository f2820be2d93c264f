// The HBONE client of one pod: HTTP/2 connections over mTLS, shared per (source identity, expected destination
// identities, destination address). A connection takes streams until one more would pass min(the pool limit, the
// peer's MAX_CONCURRENT_STREAMS); then another one is dialled. Only one dial per key runs at a time, the others
// wait for it. Idle connections are released, and a PING every 10 s (20 s without a PONG drops the connection, and
// with it every stream on it: their relays then close the apps' sockets) keeps them honest.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import type { Socket } from "node:net";
import tls from "node:tls";
import { formatAuthority } from "@ambit/protocol";
import type { WorkloadCertificate } from "../identity/index.js";
import { keepalive } from "./keepalive.js";
import { ALPN_H2, clientTlsOptions, secureContextOf } from "./tls.js";

export interface H2Settings {
  streamWindow: number;
  connectionWindow: number;
  maxFrameSize: number;
  maxStreamsPerConnection: number;
  idleReleaseMs: number;
  /** PING every this long (after the previous PONG) … */
  keepaliveIntervalMs: number;
  /** … and drop the connection when its PONG does not come within this long. */
  keepaliveTimeoutMs: number;
}

/** Why a tunnel could not be opened; `flag` is the metrics response flag. */
export class HboneError extends Error {
  override name = "HboneError";
  constructor(message: string, readonly flag: "CONNECT" | "TLS_FAILURE" | "H2_HANDSHAKE_FAILURE" | "NETWORK_POLICY", readonly status?: number) {
    super(message);
  }
}

export interface TunnelTarget {
  /** The source pod's certificate. */
  cert: WorkloadCertificate;
  /** Acceptable server identities (SPIFFE URIs). */
  expected: readonly string[];
  /** Where the HBONE server listens (pod IP:15008, or the waypoint). */
  ip: string;
  port: number;
}

interface PooledSession {
  session: ClientHttp2Session;
  active: number;
  idleTimer?: NodeJS.Timeout;
}

const CONNECT_TIMEOUT_MS = 10_000;

export class HbonePool {
  private readonly sessions = new Map<string, PooledSession[]>();
  private readonly dialing = new Map<string, Promise<PooledSession>>();
  private readonly contexts = new WeakMap<WorkloadCertificate, tls.SecureContext>();
  private closed = false;

  constructor(
    private readonly settings: H2Settings,
    /** Opens the TCP connection (from the pod's netns, with ztunnel's mark). */
    private readonly dialTcp: (ip: string, port: number, timeoutMs: number) => Promise<Socket>,
  ) {}

  /** Opens a CONNECT tunnel; resolves once the server answered 200. */
  async connect(target: TunnelTarget, headers: OutgoingHttpHeaders): Promise<{ stream: ClientHttp2Stream; response: IncomingHttpHeaders }> {
    if (this.closed) throw new HboneError("the pod's proxy is shutting down", "CONNECT");
    // The slot on the connection is taken by session() itself (see acquire()).
    const pooled = await this.session(target);
    let released = false;
    const release = () => { if (!released) { released = true; this.release(pooled); } };
    let stream: ClientHttp2Stream;
    try {
      stream = pooled.session.request({ ":method": "CONNECT", ...headers }, { endStream: false });
    } catch (err) {
      release();
      throw new HboneError(`CONNECT failed: ${(err as Error).message}`, "CONNECT");
    }
    stream.once("close", release);
    const response = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
      const onError = (err: Error) => reject(new HboneError(`CONNECT failed: ${err.message}`, "CONNECT"));
      stream.once("error", onError);
      stream.once("close", () => reject(new HboneError(`CONNECT stream closed before a response (code ${stream.rstCode})`, "CONNECT")));
      stream.once("response", (h) => { stream.off("error", onError); resolve(h); });
    });
    const status = Number(response[":status"]);
    if (status !== 200) {
      stream.on("error", () => undefined);
      stream.close();
      release(); // the server ended the stream: its slot is free now, not only once 'close' is emitted
      throw new HboneError(`CONNECT to ${headers[":authority"]} via ${formatAuthority(target.ip, target.port)} answered ${status}`, "CONNECT", status);
    }
    return { stream, response };
  }

  /** Number of open HTTP/2 connections (for tests and the config dump). */
  get connectionCount(): number {
    let n = 0;
    for (const list of this.sessions.values()) n += list.length;
    return n;
  }

  /** GOAWAY on every connection; open streams finish. */
  close(): void {
    this.closed = true;
    for (const list of this.sessions.values()) for (const p of list) p.session.close();
  }

  destroy(): void {
    this.closed = true;
    for (const list of this.sessions.values()) for (const p of list) p.session.destroy();
  }

  private key(t: TunnelTarget): string {
    return `${t.cert.identity}|${[...t.expected].sort().join(",")}|${formatAuthority(t.ip, t.port)}`;
  }

  private usable(p: PooledSession): boolean {
    const s = p.session;
    if (s.closed || s.destroyed) return false;
    const peerMax = s.remoteSettings.maxConcurrentStreams ?? Number.MAX_SAFE_INTEGER;
    return p.active < Math.min(this.settings.maxStreamsPerConnection, peerMax);
  }

  /** Takes a stream slot on a connection, synchronously with the check, so concurrent callers cannot overfill it. */
  private acquire(p: PooledSession): PooledSession {
    p.active++;
    if (p.idleTimer) { clearTimeout(p.idleTimer); p.idleTimer = undefined; }
    return p;
  }

  /** A connection for the key with a slot taken for the caller. */
  private async session(t: TunnelTarget): Promise<PooledSession> {
    const key = this.key(t);
    for (;;) {
      const found = this.sessions.get(key)?.find((p) => this.usable(p));
      if (found) return this.acquire(found);
      const inFlight = this.dialing.get(key);
      if (!inFlight) break;
      await inFlight.catch(() => undefined);
      // re-check: the new connection may already be full
    }
    // The new connection is pooled with the dialer's slot already taken (dial() starts at active = 1).
    const dial = this.dial(key, t).finally(() => this.dialing.delete(key));
    this.dialing.set(key, dial);
    return dial;
  }

  private async dial(key: string, t: TunnelTarget): Promise<PooledSession> {
    let tcp: Socket;
    try {
      tcp = await this.dialTcp(t.ip, t.port, CONNECT_TIMEOUT_MS);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === "ETIMEDOUT") throw new HboneError(`connect to ${formatAuthority(t.ip, t.port)} timed out (maybe a NetworkPolicy is blocking HBONE port ${t.port})`, "NETWORK_POLICY");
      throw new HboneError(`connect to ${formatAuthority(t.ip, t.port)}: ${e.message}`, "CONNECT");
    }
    tcp.setNoDelay(true);
    // The TLS socket inherits this; a half-open HBONE connection would never notice the server closing it.
    tcp.allowHalfOpen = false;
    let context = this.contexts.get(t.cert);
    if (!context) this.contexts.set(t.cert, (context = secureContextOf(t.cert)));
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect(clientTlsOptions(tcp, context, t.ip, t.expected));
      const timer = setTimeout(() => s.destroy(new Error("TLS handshake timed out")), CONNECT_TIMEOUT_MS);
      s.once("secureConnect", () => { clearTimeout(timer); s.off("error", onError); resolve(s); });
      const onError = (err: Error) => { clearTimeout(timer); tcp.destroy(); reject(new HboneError(`TLS with ${formatAuthority(t.ip, t.port)}: ${err.message}`, "TLS_FAILURE")); };
      s.once("error", onError);
    });
    if (secure.alpnProtocol !== ALPN_H2) {
      secure.destroy();
      throw new HboneError(`${formatAuthority(t.ip, t.port)} did not negotiate ALPN h2`, "H2_HANDSHAKE_FAILURE");
    }
    const session = http2.connect(`https://${formatAuthority(t.ip, t.port)}`, {
      createConnection: () => secure,
      settings: { enablePush: false, initialWindowSize: this.settings.streamWindow, maxFrameSize: this.settings.maxFrameSize, maxHeaderListSize: 16 * 1024 },
      maxSessionMemory: 64,
      peerMaxConcurrentStreams: this.settings.maxStreamsPerConnection,
    });
    await new Promise<void>((resolve, reject) => {
      session.once("connect", () => { session.off("error", onError); resolve(); });
      const onError = (err: Error) => reject(new HboneError(`HTTP/2 with ${formatAuthority(t.ip, t.port)}: ${err.message}`, "H2_HANDSHAKE_FAILURE"));
      session.once("error", onError);
    });
    session.setLocalWindowSize(this.settings.connectionWindow);
    const pooled: PooledSession = { session, active: 1 };
    session.on("error", () => undefined); // reported through the streams
    session.once("close", () => this.forget(key, pooled));
    session.once("goaway", () => this.forget(key, pooled));
    keepalive(session, { intervalMs: this.settings.keepaliveIntervalMs, timeoutMs: this.settings.keepaliveTimeoutMs });
    let list = this.sessions.get(key);
    if (!list) this.sessions.set(key, (list = []));
    list.push(pooled);
    return pooled;
  }

  private release(p: PooledSession): void {
    p.active--;
    if (p.active > 0 || p.session.closed) return;
    p.idleTimer = setTimeout(() => p.session.close(), this.settings.idleReleaseMs);
    p.idleTimer.unref();
  }

  private forget(key: string, p: PooledSession): void {
    clearTimeout(p.idleTimer);
    const list = this.sessions.get(key);
    if (!list) return;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) this.sessions.delete(key);
  }
}
