// Test helper: an HBONE server written from the protocol facts (reference §4) — an HTTP/2 TLS 1.3 server that
// requires a client certificate, answers CONNECT streams by dialing the :authority on loopback, and records what it
// saw — plus a TCP upstream whose accepted sockets the test controls.
import http2, { type Http2SecureServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import net from "node:net";
import type { TLSSocket } from "node:tls";
import type { WorkloadCertificate } from "../../src/identity/index.js";
import { relay, type Relay } from "../../src/proxy/relay.js";
import { peerIdentity, serverTlsOptions } from "../../src/proxy/tls.js";

export interface SeenConnection {
  protocol: string | null;
  alpn: string | false | null;
  servername: string | false | undefined;
  peer: string | null;
}

export interface SeenStream {
  headers: IncomingHttpHeaders;
  session: Http2Session;
  stream: ServerHttp2Stream;
}

/** What the server does with a CONNECT: relay to 127.0.0.1:<authority port>, answer a status, or reset/hang. */
export type Behaviour = { kind: "relay" } | { kind: "status"; status: number } | { kind: "reset"; code: number } | { kind: "hang" };

export class HboneTestServer {
  readonly server: Http2SecureServer;
  readonly connections: SeenConnection[] = [];
  readonly streams: SeenStream[] = [];
  readonly sessions = new Set<Http2Session>();
  readonly relays: Relay[] = [];
  sessionCount = 0;
  /** Highest number of simultaneously open streams seen on one session. */
  maxConcurrentPerSession = 0;
  behaviour: Behaviour = { kind: "relay" };
  port = 0;
  private readonly open = new Map<Http2Session, number>();

  constructor(cert: WorkloadCertificate, settings: http2.Settings = {}) {
    this.server = http2.createSecureServer({ ...serverTlsOptions(cert), allowHTTP1: false, settings });
    this.server.on("secureConnection", (s: TLSSocket) => {
      const peer = peerIdentity(s);
      this.connections.push({ protocol: s.getProtocol(), alpn: s.alpnProtocol, servername: (s as TLSSocket & { servername?: string | false }).servername, peer: peer?.uri ?? null });
    });
    this.server.on("tlsClientError", () => undefined);
    this.server.on("session", (session) => {
      this.sessionCount++;
      this.sessions.add(session);
      this.open.set(session, 0);
      session.on("error", () => undefined);
      session.once("close", () => { this.sessions.delete(session); this.open.delete(session); });
    });
    this.server.on("stream", (stream, headers) => {
      const session = stream.session!;
      const n = (this.open.get(session) ?? 0) + 1;
      this.open.set(session, n);
      this.maxConcurrentPerSession = Math.max(this.maxConcurrentPerSession, n);
      stream.once("close", () => this.open.set(session, (this.open.get(session) ?? 1) - 1));
      stream.on("error", () => undefined);
      this.streams.push({ headers, session, stream });
      void this.handle(stream, headers);
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  private async handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const b = this.behaviour;
    if (b.kind === "status") return void stream.respond({ ":status": b.status }, { endStream: true });
    if (b.kind === "reset") return void stream.close(b.code);
    if (b.kind === "hang") return;
    const port = Number(String(headers[":authority"]).split(":").pop());
    const upstream = await new Promise<net.Socket | Error>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
      s.once("connect", () => { s.off("error", resolve); resolve(s); });
      s.once("error", resolve);
    });
    if (upstream instanceof Error) return void stream.respond({ ":status": 503 }, { endStream: true });
    stream.respond({ ":status": 200 });
    this.relays.push(relay(stream, upstream));
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A loopback TCP server; `echo` copies every byte back and answers a FIN with a FIN, otherwise the test takes the sockets. */
export class TcpUpstream {
  readonly server: net.Server;
  readonly sockets: net.Socket[] = [];
  private waiters: ((s: net.Socket) => void)[] = [];
  port = 0;

  constructor(readonly echo: boolean) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on("error", () => undefined);
      this.sockets.push(s);
      if (echo) s.pipe(s);
      this.waiters.shift()?.(s);
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  /** The next accepted socket (or one already accepted and not yet taken). */
  private taken = 0;
  accepted(): Promise<net.Socket> {
    const i = this.taken++;
    if (this.sockets[i]) return Promise.resolve(this.sockets[i]);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
