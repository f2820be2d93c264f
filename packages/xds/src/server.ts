// Delta ADS server: serves the resources of a ResourceStore to every connected client, generic over type URLs.
//
// Per connection and type a Watch keeps the subscription (wildcard or names/aliases) and a *dirty set*: the
// names to re-evaluate on the next response. A response is built from the store's current content at the
// moment it can be sent, so bursts merge for free, and the memory a slow client costs is its dirty sets (names
// only) plus the one response being written. The next response goes out only when the previous write has
// completed and, by default, when the previous response of that type was ACKed or NACKed.
import { randomUUID } from "node:crypto";
import { constants as h2constants } from "node:http2";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import type { envoy } from "@ambit/protocol";
import type { Registry } from "prom-client";
import { XdsMetrics, metricType } from "./metrics.js";
import { silentLogger, type Logger } from "./log.js";
import { ClientLogLimiter, truncate, type ClientLogLimits, type TokenBucket } from "./log-limit.js";
import {
  DELTA_ADS_METHOD,
  MAX_MESSAGE_BYTES,
  MAX_REQUEST_BYTES,
  aggregatedDiscoveryService,
  encodeDeltaResponse,
  type NodeProperties,
} from "./service.js";
import { ResourceStore, type ResourceBody, type ResourceInput, type StoredResource } from "./store.js";

type DeltaRequest = envoy.service.discovery.v3.DeltaDiscoveryRequest;
type AdsCall = grpc.ServerDuplexStream<DeltaRequest, Uint8Array>;
export type AuthContext = ReturnType<grpc.ServerDuplexStream<unknown, unknown>["getAuthContext"]>;

export interface PeerInfo {
  /** "ip:port" of the client. */
  address: string;
  /** TLS details (peer certificate) when the connection is TLS. */
  authContext: AuthContext;
}

export interface AuthResult {
  /** The authenticated identity, e.g. a SPIFFE id. */
  identity: string;
  [key: string]: unknown;
}

/**
 * Authenticates a stream from its metadata (e.g. `authorization: Bearer …`); throw to refuse (UNAUTHENTICATED), or
 * throw an `AuthenticationUnavailable` when the caller could not be checked now (UNAVAILABLE: the client retries).
 */
export type Authenticate = (metadata: grpc.Metadata, peer: PeerInfo) => Promise<AuthResult> | AuthResult;
/** Authentication could not be attempted now (e.g. too many in progress): the stream is refused with UNAVAILABLE. */
export class AuthenticationUnavailable extends Error {
  override name = "AuthenticationUnavailable";
}

/** Authorizes an authenticated identity for a node; throw or return false to refuse (PERMISSION_DENIED). */
export type Authorize = (auth: AuthResult, node: NodeProperties) => Promise<boolean | void> | boolean | void;

/** istiod's accepted proxy types (first part of the node id). */
export const NODE_TYPES = ["sidecar", "router", "waypoint", "ztunnel"] as const;

export interface DeltaXdsServerOptions {
  store?: ResourceStore;
  logger?: Logger;
  /** Registry for the metrics; a fresh one when absent. Ignored when `metrics` is given. */
  registry?: Registry;
  metrics?: XdsMetrics;
  /** Quiet time before a merged push (istiod PILOT_DEBOUNCE_AFTER). Default 100 ms. */
  debounceMs?: number;
  /** Longest a change waits under constant churn (istiod PILOT_DEBOUNCE_MAX). Default 10 s. */
  debounceMaxMs?: number;
  /** Send the next response of a type only after the previous one was ACKed/NACKed. Default true. */
  waitForAck?: boolean;
  /** Abort a stream whose response write has not completed after this long (0 = never, the default). */
  sendTimeoutMs?: number;
  /**
   * Responses larger than this are split: the rest stays dirty and follows in the next response of the type.
   * Default 100 MiB (ztunnel's decode limit is 200 MiB).
   */
  maxResponseBytes?: number;
  authenticate?: Authenticate;
  authorize?: Authorize;
  /** Node types accepted in the node id. Default: istiod's (sidecar, router, waypoint, ztunnel). */
  nodeTypes?: readonly string[];
  /** Serve from the start (default false: streams are refused until `setReady(true)`). */
  ready?: boolean;
  /** Rate limits of the lines clients cause (NACKs, malformed requests, refused streams); see `ClientLogLimits`. */
  clientLogLimits?: ClientLogLimits;
  /** Explicit subscriptions (names and aliases) one watch may hold; more ends the stream. Default 100 000. */
  maxSubscriptionsPerWatch?: number;
  /** Explicit subscriptions over all the watches of one stream. Default 200 000. */
  maxSubscriptionsPerStream?: number;
}

/** Longest node id accepted (it is logged with every line about the stream). */
export const MAX_NODE_ID_CHARS = 1024;
/** Longest type URL accepted (longer: INVALID_ARGUMENT); also the longest client-supplied name (nonce) logged. */
export const MAX_TYPE_URL_CHARS = 256;
const MAX_NAME_CHARS = MAX_TYPE_URL_CHARS;
/** Longest resource name (or alias) accepted in a subscription or `initial_resource_versions` (longer: INVALID_ARGUMENT). */
export const MAX_RESOURCE_NAME_CHARS = 1024;
/** HTTP/2 streams one connection may have open at once (a node proxy needs one for xDS and a few CA calls). */
export const MAX_STREAMS_PER_CONNECTION = 100;
/**
 * Memory one HTTP/2 connection may use, in MB (Node's `maxSessionMemory`; grpc-js would lift it): beyond it new
 * streams on that connection are refused. The streams' request buffers (64 KiB each) fit many times over.
 */
export const MAX_SESSION_MEMORY_MB = 64;
/** Resource types one stream may watch (a client needs two or three; each watch keeps state on the server). */
export const MAX_WATCHES_PER_STREAM = 16;

export interface ListenOptions {
  port: number;
  /** Default "0.0.0.0". */
  host?: string;
  /** PEM key and certificate chain; plaintext when absent. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Extra grpc-js server options (merged over `grpcServerOptions()`). */
  serverOptions?: grpc.ServerOptions;
}

/**
 * Server options: requests up to `MAX_REQUEST_BYTES` (4 MiB, istiod's limit; larger ones are refused from their
 * length prefix), responses up to 200 MiB (large pushes), at most `MAX_STREAMS_PER_CONNECTION` concurrent streams
 * and `MAX_SESSION_MEMORY_MB` per connection (so one connection cannot make the server buffer a request window for
 * thousands of streams), keepalive pings as istiod sends them, and `endRequestWithResponse` as the first
 * interceptor. `extra` overrides; its interceptors run after that one.
 */
export function grpcServerOptions(extra: grpc.ServerOptions = {}): grpc.ServerOptions {
  return {
    "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_concurrent_streams": MAX_STREAMS_PER_CONNECTION,
    "grpc-node.max_session_memory": MAX_SESSION_MEMORY_MB,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    ...extra,
    interceptors: [endRequestWithResponse, ...(extra.interceptors ?? [])],
  };
}

/** The part of node:http2's ServerHttp2Stream that `endRequestWithResponse` uses. */
interface H2ServerStream {
  readonly readableEnded: boolean;
  readonly destroyed: boolean;
  readonly headersSent: boolean;
  pause(): unknown;
  close(code: number): void;
  once(event: "wantTrailers", listener: () => void): unknown;
}

/**
 * A grpc-js server interceptor that stops reading a request once its response is complete. grpc-js sends the
 * status (RESOURCE_EXHAUSTED for an oversized message, UNAUTHENTICATED, …) but would go on reading and discarding
 * whatever the client still sends, 150 MiB if it claimed 150 MiB. This pauses the HTTP/2 stream at once (flow
 * control stops the client within a window) and, once the status is on its way, resets the stream with NO_ERROR
 * (RFC 9113 §8.1: a server may ask a client to stop sending once its response is complete). It reaches the HTTP/2
 * stream under grpc-js' base call, which is not public API, so it must be the server's first interceptor; when that
 * stream is not there it does nothing.
 */
export const endRequestWithResponse: grpc.ServerInterceptor = (_method, call) => {
  const base = call as unknown as { stream?: H2ServerStream; sendStatus?: (status: unknown) => void };
  const stream = base.stream;
  const sendStatus = base.sendStatus;
  if (stream && typeof stream.close === "function" && typeof stream.pause === "function" && typeof sendStatus === "function") {
    base.sendStatus = function (this: unknown, status: unknown) {
      const trailersOnly = !stream.headersSent;
      sendStatus.call(this, status);
      if (stream.readableEnded || stream.destroyed) return;
      stream.pause();
      // The reset waits for the status to be submitted (with trailers: when grpc-js sends them), so it follows it.
      const reset = (): void => {
        setImmediate(() => {
          if (!stream.destroyed) stream.close(h2constants.NGHTTP2_NO_ERROR);
        });
      };
      if (trailersOnly) reset();
      else stream.once("wantTrailers", reset);
    };
  }
  return new grpc.ServerInterceptingCall(call);
};

export interface WatchDebug {
  typeUrl: string;
  wildcard: boolean;
  /** Explicit subscriptions (names and aliases). */
  subscriptions: string[];
  /** Names waiting for the next response of this type (the dirty set). */
  pendingNames: number;
  /** Everything is pending (initial or re-subscribed wildcard). */
  pendingFull: boolean;
  lastNonceSent: string | null;
  awaitingAck: boolean;
  lastAckNonce: string | null;
  lastAckTime: string | null;
  nackCount: number;
  lastNack: { nonce: string; message: string; time: string } | null;
  responses: number;
}

export interface ConnectionDebug {
  id: string;
  nodeId: string | null;
  peer: string;
  identity: string | null;
  connectedAt: string;
  /** A response write is in progress (at most one per connection). */
  writing: { typeUrl: string; nonce: string; bytes: number; sinceMs: number } | null;
  /** Responses buffered in the stream beyond the one being written (always 0 by construction). */
  queuedWrites: number;
  watches: WatchDebug[];
}

export interface SnapshotEntry {
  name: string;
  version: string;
  aliases: string[];
  resource: StoredResource["resource"];
}

class Watch {
  wildcard = false;
  /** Explicit subscriptions: resource names or aliases. */
  readonly names = new Set<string>();
  /** Named watches only: names the client holds from us (to tell it when one stops matching). */
  readonly sent = new Set<string>();
  readonly dirty = new Set<string>();
  full = false;
  mustRespond = false;
  /** initial_resource_versions, used by the first response only. */
  skip: Map<string, string> | null = null;
  dirtySince: number | null = null;
  /** Store changes up to this sequence number are reflected in the watch's first response. */
  baseSeq = 0;
  lastNonceSent: string | null = null;
  awaitingNonce: string | null = null;
  lastAckNonce: string | null = null;
  lastAckAt: Date | null = null;
  nackCount = 0;
  lastNack: { nonce: string; message: string; at: Date } | null = null;
  /** The last NACK logged (nonce and error), so a repeated one is not logged again. */
  lastLoggedNack: string | null = null;
  responses = 0;

  constructor(readonly typeUrl: string) {}

  hasWork(): boolean {
    return this.full || this.mustRespond || this.dirty.size > 0;
  }

  visible(r: StoredResource): boolean {
    if (this.wildcard || this.names.has(r.name)) return true;
    for (const alias of r.aliases) if (this.names.has(alias)) return true;
    return false;
  }

  /** Whether a store change of `name` may concern this client. */
  interested(name: string, store: ResourceStore): boolean {
    if (this.wildcard || this.names.has(name) || this.sent.has(name)) return true;
    const r = store.get(this.typeUrl, name);
    return r !== undefined && this.visible(r);
  }
}

class Connection {
  node: NodeProperties | null = null;
  auth: AuthResult | null = null;
  initializing = false;
  registered = false;
  closed = false;
  readonly watches = new Map<string, Watch>();
  writing: { typeUrl: string; nonce: string; bytes: number; startedAt: number } | null = null;
  writeTimer: NodeJS.Timeout | null = null;
  readonly backlog: DeltaRequest[] = [];
  readonly connectedAt = new Date();
  versionLabel = "unknown";
  /** Round-robin start among watches, so one busy type cannot starve the others. */
  next = 0;

  constructor(
    readonly id: string,
    readonly call: AdsCall,
    readonly peer: string,
    /** The stream's share of the lines clients may cause. */
    readonly logBudget: TokenBucket,
  ) {}
}

interface Built {
  resources: StoredResource[];
  removed: string[];
}

/** A name of the request (subscribed, unsubscribed or in `initial_resource_versions`) longer than `max`, if any. */
function nameLongerThan(req: DeltaRequest, max: number): string | undefined {
  for (const list of [req.resource_names_subscribe, req.resource_names_unsubscribe, Object.keys(req.initial_resource_versions ?? {})]) {
    for (const n of list ?? []) if (n.length > max) return n;
  }
  return undefined;
}

function statusError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details });
}

/** Finds the HTTP/2 stream under a grpc-js server call (not public API; used only to abort a stalled stream). */
function http2StreamOf(call: AdsCall): { close(code: number): void; destroyed: boolean } | null {
  let cur: unknown = (call as unknown as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && cur && typeof cur === "object"; depth++) {
    const o = cur as { stream?: { close?: unknown; destroyed?: boolean }; nextCall?: unknown };
    if (o.stream && typeof o.stream.close === "function") return o.stream as { close(code: number): void; destroyed: boolean };
    cur = o.nextCall;
  }
  return null;
}

export class DeltaXdsServer {
  readonly store: ResourceStore;
  readonly metrics: XdsMetrics;
  private readonly logger: Logger;
  private readonly clientLog: ClientLogLimiter;
  /** The same limits for "connected"/"disconnected" lines, with their own budget (churn must not silence NACKs). */
  private readonly connectionLog: ClientLogLimiter;
  private readonly debounceMs: number;
  private readonly debounceMaxMs: number;
  private readonly waitForAck: boolean;
  private readonly sendTimeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly authenticate: Authenticate | undefined;
  private readonly authorize: Authorize | undefined;
  private readonly nodeTypes: ReadonlySet<string>;
  private readonly maxSubscriptionsPerWatch: number;
  private readonly maxSubscriptionsPerStream: number;
  private ready: boolean;
  private closing = false;
  private nextConnId = 1;
  /** Every open stream, registered or not. */
  private readonly streams = new Set<Connection>();
  /** Streams whose node was accepted. */
  private readonly connections = new Map<string, Connection>();
  /** Pending store changes: type → name → sequence number of its latest change. */
  private pending = new Map<string, Map<string, number>>();
  private seq = 0;
  private firstPendingAt: number | null = null;
  private quietTimer: NodeJS.Timeout | null = null;
  private maxTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribeStore: () => void;
  private ownServer: grpc.Server | null = null;

  constructor(options: DeltaXdsServerOptions = {}) {
    this.store = options.store ?? new ResourceStore();
    this.logger = options.logger ?? silentLogger;
    this.clientLog = new ClientLogLimiter(this.logger, options.clientLogLimits);
    this.connectionLog = new ClientLogLimiter(this.logger, options.clientLogLimits);
    this.metrics = options.metrics ?? new XdsMetrics(options.registry);
    this.debounceMs = options.debounceMs ?? 100;
    this.debounceMaxMs = options.debounceMaxMs ?? 10_000;
    this.waitForAck = options.waitForAck ?? true;
    this.sendTimeoutMs = options.sendTimeoutMs ?? 0;
    this.maxResponseBytes = options.maxResponseBytes ?? 100 * 1024 * 1024;
    this.authenticate = options.authenticate;
    this.authorize = options.authorize;
    this.nodeTypes = new Set(options.nodeTypes ?? NODE_TYPES);
    this.maxSubscriptionsPerWatch = options.maxSubscriptionsPerWatch ?? 100_000;
    this.maxSubscriptionsPerStream = options.maxSubscriptionsPerStream ?? 200_000;
    this.ready = options.ready ?? false;
    this.unsubscribeStore = this.store.onChange((typeUrl, names) => this.onStoreChange(typeUrl, names));
    this.metrics.bindSources({ resources: () => this.countResources(), pending: () => this.countPending() });
  }

  // --- feeding ------------------------------------------------------------------------------------------

  set(typeUrl: string, name: string, resource: ResourceBody, options: { aliases?: readonly string[] } = {}): boolean {
    return this.store.set(typeUrl, name, resource, options);
  }

  delete(typeUrl: string, name: string): boolean {
    return this.store.delete(typeUrl, name);
  }

  update(typeUrl: string, upserts: Iterable<ResourceInput>, removals: Iterable<string> = []): string[] {
    return this.store.update(typeUrl, upserts, removals);
  }

  replace(typeUrl: string, resources: Iterable<ResourceInput>): string[] {
    return this.store.replace(typeUrl, resources);
  }

  /** Ready = caches synced; before that every new stream is refused with UNAVAILABLE. */
  setReady(ready: boolean): void {
    this.ready = ready;
  }

  isReady(): boolean {
    return this.ready;
  }

  // --- serving ------------------------------------------------------------------------------------------

  /** Adds the delta ADS service to a grpc-js server (e.g. one shared with the CA service). */
  register(server: grpc.Server): void {
    server.addService(aggregatedDiscoveryService, {
      [DELTA_ADS_METHOD]: (call: AdsCall) => this.handleCall(call),
    });
  }

  /** Creates a grpc-js server with `grpcServerOptions()`, registers the service and binds; returns the port. */
  async listen(options: ListenOptions): Promise<number> {
    if (this.ownServer) throw new Error("already listening");
    const server = new grpc.Server(grpcServerOptions(options.serverOptions));
    this.register(server);
    const creds = options.tls
      ? grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(options.tls.key), cert_chain: Buffer.from(options.tls.cert) }], false)
      : grpc.ServerCredentials.createInsecure();
    const host = options.host ?? "0.0.0.0";
    const target = host.includes(":") && !host.startsWith("[") ? `[${host}]:${options.port}` : `${host}:${options.port}`;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(target, creds, (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    this.ownServer = server;
    return port;
  }

  /**
   * Stops pushing, ends every stream (UNAVAILABLE, so clients reconnect elsewhere) and, when `listen` created
   * the gRPC server, shuts it down (forcibly after `graceMs`).
   */
  async close(graceMs = 1000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.clearDebounce();
    this.unsubscribeStore();
    for (const conn of [...this.streams]) this.endStream(conn, grpc.status.UNAVAILABLE, "server shutting down");
    this.clientLog.summarise();
    this.connectionLog.summarise();
    const server = this.ownServer;
    this.ownServer = null;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Pushes pending store changes now instead of waiting for the debounce. */
  flush(): void {
    this.clearDebounce();
    const changes = this.pending;
    const since = this.firstPendingAt ?? Date.now();
    this.pending = new Map();
    this.firstPendingAt = null;
    if (changes.size === 0) return;
    this.metrics.debounceTime.observe((Date.now() - since) / 1000);
    for (const conn of this.connections.values()) {
      let touched = false;
      for (const [typeUrl, names] of changes) {
        const w = conn.watches.get(typeUrl);
        if (!w) continue;
        const before = w.dirty.size;
        if (!w.full) {
          for (const [name, seq] of names) {
            // Changes older than the watch are already in its first response.
            if (seq > w.baseSeq && w.interested(name, this.store)) w.dirty.add(name);
          }
        }
        if (w.dirty.size > before || w.full) {
          w.dirtySince ??= since;
          touched = true;
        }
      }
      if (touched) this.trySend(conn);
    }
  }

  // --- introspection ------------------------------------------------------------------------------------

  get connectionCount(): number {
    return this.connections.size;
  }

  /** For /debug/connections. */
  debugConnections(): ConnectionDebug[] {
    const now = Date.now();
    return [...this.connections.values()].map((conn) => ({
      id: conn.id,
      nodeId: conn.node?.id ?? null,
      peer: conn.peer,
      identity: conn.auth?.identity ?? null,
      connectedAt: conn.connectedAt.toISOString(),
      writing: conn.writing
        ? { typeUrl: conn.writing.typeUrl, nonce: conn.writing.nonce, bytes: conn.writing.bytes, sinceMs: now - conn.writing.startedAt }
        : null,
      queuedWrites: Math.max(0, conn.call.writableLength - (conn.writing ? 1 : 0)),
      watches: [...conn.watches.values()].map((w) => ({
        typeUrl: w.typeUrl,
        wildcard: w.wildcard,
        subscriptions: [...w.names].sort(),
        pendingNames: w.dirty.size,
        pendingFull: w.full,
        lastNonceSent: w.lastNonceSent,
        awaitingAck: w.awaitingNonce !== null,
        lastAckNonce: w.lastAckNonce,
        lastAckTime: w.lastAckAt?.toISOString() ?? null,
        nackCount: w.nackCount,
        lastNack: w.lastNack ? { nonce: w.lastNack.nonce, message: w.lastNack.message, time: w.lastNack.at.toISOString() } : null,
        responses: w.responses,
      })),
    }));
  }

  /** The store's content of one type, sorted by name, for config dumps. */
  snapshot(typeUrl: string): SnapshotEntry[] {
    return [...this.store.values(typeUrl)]
      .map((r) => ({ name: r.name, version: r.version, aliases: [...r.aliases], resource: r.resource }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // --- stream lifecycle ---------------------------------------------------------------------------------

  private handleCall(call: AdsCall): void {
    const conn = new Connection(`${this.nextConnId++}`, call, call.getPeer(), this.clientLog.streamBucket());
    this.streams.add(conn);
    call.on("error", () => this.drop(conn, "stream error"));
    call.on("cancelled", () => this.drop(conn, "cancelled by client"));
    call.on("end", () => {
      // The client half-closed: finish our side with OK.
      if (!conn.closed) call.end();
      this.drop(conn, "closed by client");
    });
    if (this.closing || !this.ready) {
      this.endStream(conn, grpc.status.UNAVAILABLE, "caches not synced");
      return;
    }
    void this.authenticateStream(conn);
  }

  private async authenticateStream(conn: Connection): Promise<void> {
    const call = conn.call;
    try {
      conn.auth = this.authenticate
        ? await this.authenticate(call.metadata, { address: conn.peer, authContext: call.getAuthContext() })
        : { identity: "" };
    } catch (err) {
      const code = err instanceof AuthenticationUnavailable ? grpc.status.UNAVAILABLE : grpc.status.UNAUTHENTICATED;
      this.endStream(conn, code, (err as Error)?.message || "authentication failed");
      return;
    }
    if (conn.closed) return;
    // Reading starts only now: requests wait in gRPC's flow-controlled buffers meanwhile.
    call.on("data", (req: DeltaRequest) => this.onRequest(conn, req));
  }

  private onRequest(conn: Connection, req: DeltaRequest): void {
    if (conn.closed) return;
    if (conn.node) {
      this.handleRequest(conn, req);
      return;
    }
    if (conn.initializing) {
      conn.backlog.push(req);
      return;
    }
    conn.initializing = true;
    conn.call.pause();
    void this.initNode(conn, req).then((ok) => {
      conn.initializing = false;
      if (!ok || conn.closed) return;
      this.handleRequest(conn, req);
      for (const queued of conn.backlog.splice(0)) if (!conn.closed) this.handleRequest(conn, queued);
      conn.call.resume();
    });
  }

  private async initNode(conn: Connection, req: DeltaRequest): Promise<boolean> {
    const node = req.node;
    if (!node || !node.id) {
      this.endStream(conn, grpc.status.INVALID_ARGUMENT, "missing node information");
      return false;
    }
    if (node.id.length > MAX_NODE_ID_CHARS) {
      this.endStream(conn, grpc.status.INVALID_ARGUMENT, `invalid node id "${truncate(node.id, MAX_NAME_CHARS)}": longer than ${MAX_NODE_ID_CHARS} characters`);
      return false;
    }
    const parts = node.id.split("~");
    if (parts.length !== 4) {
      this.endStream(conn, grpc.status.INVALID_ARGUMENT, `invalid node id "${node.id}": expected 4 "~"-separated parts (type~ip~id~domain)`);
      return false;
    }
    if (!this.nodeTypes.has(parts[0]!)) {
      this.endStream(conn, grpc.status.INVALID_ARGUMENT, `invalid node type "${truncate(parts[0]!, MAX_NAME_CHARS)}" in node id "${node.id}" (valid types: ${[...this.nodeTypes].join(", ")})`);
      return false;
    }
    if (this.authorize) {
      try {
        const allowed = await this.authorize(conn.auth!, node);
        if (allowed === false) throw new Error(`identity "${conn.auth!.identity}" is not authorized for node "${node.id}"`);
      } catch (err) {
        this.endStream(conn, grpc.status.PERMISSION_DENIED, (err as Error)?.message || "not authorized");
        return false;
      }
    }
    if (conn.closed) return false;
    conn.node = node;
    const version = node.metadata?.fields?.["ISTIO_VERSION"]?.string_value;
    conn.versionLabel = version || "unknown";
    conn.registered = true;
    this.connections.set(conn.id, conn);
    this.metrics.clients.inc({ version: conn.versionLabel });
    // Clients choose how often they connect: these lines pass the shared limit of client-caused lines.
    if (this.connectionLog.allow("xDS client connected")) {
      this.logger.info({ conn: conn.id, node: node.id, peer: conn.peer, identity: conn.auth?.identity }, "xDS client connected");
    }
    return true;
  }

  /** Ends a stream with a status (trailers). */
  private endStream(conn: Connection, code: grpc.status, details: string): void {
    if (conn.closed) return;
    this.metrics.rejectedStreams.inc({ code: grpc.status[code] ?? String(code) });
    // Any client can have its streams refused, as fast as it opens them: these lines are rate-limited too.
    if (this.clientLog.allow("xDS stream ended", conn.logBudget)) {
      this.logger.warn({ conn: conn.id, node: conn.node?.id, peer: conn.peer, code: grpc.status[code], details }, "xDS stream ended");
    }
    this.drop(conn, details);
    conn.call.emit("error", statusError(code, details));
  }

  /** Resets a stream whose writes are stuck (status trailers could not get past the stuck data). */
  private abortStream(conn: Connection, reason: string): void {
    if (conn.closed) return;
    this.logger.warn({ conn: conn.id, node: conn.node?.id, peer: conn.peer, reason }, "xDS stream aborted");
    this.drop(conn, reason);
    const stream = http2StreamOf(conn.call);
    if (stream && !stream.destroyed) stream.close(h2constants.NGHTTP2_CANCEL);
    else conn.call.emit("error", statusError(grpc.status.UNAVAILABLE, reason));
  }

  private drop(conn: Connection, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.writeTimer) clearTimeout(conn.writeTimer);
    conn.writeTimer = null;
    conn.backlog.length = 0;
    this.streams.delete(conn);
    if (conn.registered) {
      conn.registered = false;
      this.connections.delete(conn.id);
      this.metrics.clients.dec({ version: conn.versionLabel });
      if (this.connectionLog.allow("xDS client disconnected")) {
        this.logger.info({ conn: conn.id, node: conn.node?.id, peer: conn.peer, reason }, "xDS client disconnected");
      }
    }
  }

  // --- requests -----------------------------------------------------------------------------------------

  private handleRequest(conn: Connection, req: DeltaRequest): void {
    try {
      this.processRequest(conn, req);
    } catch (err) {
      this.internalError(conn, err);
    }
  }

  /** A bug, not bad input: count it, log it and end the stream (the client reconnects and resyncs). */
  private internalError(conn: Connection, err: unknown): void {
    this.metrics.internalErrors.inc();
    this.logger.error({ conn: conn.id, node: conn.node?.id, err: (err as Error)?.stack ?? String(err) }, "xDS internal error");
    this.endStream(conn, grpc.status.INTERNAL, "internal error");
  }

  private processRequest(conn: Connection, req: DeltaRequest): void {
    const typeUrl = req.type_url;
    if (!typeUrl) {
      if (this.clientLog.allow("xDS request without type_url ignored", conn.logBudget)) {
        this.logger.warn({ conn: conn.id, node: conn.node?.id }, "xDS request without type_url ignored");
      }
      return;
    }
    if (typeUrl.length > MAX_TYPE_URL_CHARS) {
      return this.endStream(conn, grpc.status.INVALID_ARGUMENT, `type URL "${truncate(typeUrl, 64)}" is longer than ${MAX_TYPE_URL_CHARS} characters`);
    }
    const long = nameLongerThan(req, MAX_RESOURCE_NAME_CHARS);
    if (long !== undefined) {
      return this.endStream(conn, grpc.status.INVALID_ARGUMENT, `resource name "${truncate(long, 64)}" is longer than ${MAX_RESOURCE_NAME_CHARS} characters`);
    }
    let w = conn.watches.get(typeUrl);
    if (!w) {
      if (conn.watches.size >= MAX_WATCHES_PER_STREAM) {
        return this.endStream(conn, grpc.status.RESOURCE_EXHAUSTED, `more than ${MAX_WATCHES_PER_STREAM} resource types on one stream (the last was "${truncate(typeUrl, MAX_NAME_CHARS)}")`);
      }
      w = this.newWatch(typeUrl, req);
      w.baseSeq = this.seq;
      conn.watches.set(typeUrl, w);
    } else {
      if (req.response_nonce) this.onAck(conn, w, req);
      this.changeSubscription(w, req);
    }
    const tooMany = this.subscriptionExcess(conn, w);
    if (tooMany) return this.endStream(conn, grpc.status.RESOURCE_EXHAUSTED, tooMany);
    this.trySend(conn);
  }

  /** Why the stream holds too many explicit subscriptions after a request to `w`, or null. */
  private subscriptionExcess(conn: Connection, w: Watch): string | null {
    if (w.names.size > this.maxSubscriptionsPerWatch) {
      return `more than ${this.maxSubscriptionsPerWatch} subscribed names for type "${w.typeUrl}"`;
    }
    let total = 0;
    for (const x of conn.watches.values()) total += x.names.size;
    return total > this.maxSubscriptionsPerStream ? `more than ${this.maxSubscriptionsPerStream} subscribed names on one stream` : null;
  }

  private newWatch(typeUrl: string, req: DeltaRequest): Watch {
    const w = new Watch(typeUrl);
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    const initial = req.initial_resource_versions ?? {};
    // Wildcard: nothing named, or "*" subscribed. ztunnel's on-demand shape subscribes and unsubscribes "*" in
    // the same message: subscribed to nothing, names follow.
    w.wildcard = (subscribe.length === 0 && unsubscribe.length === 0) || (subscribe.includes("*") && !unsubscribe.includes("*"));
    for (const n of subscribe) if (n !== "*") w.names.add(n);
    // As istiod does, the names a reconnecting client says it has count as subscribed.
    const initialNames = Object.keys(initial);
    if (!w.wildcard) for (const n of initialNames) w.names.add(n);
    for (const n of unsubscribe) if (n !== "*") w.names.delete(n);
    if (initialNames.length > 0) w.skip = new Map(Object.entries(initial));
    if (w.wildcard) {
      w.full = true;
      for (const n of initialNames) w.dirty.add(n);
    } else {
      for (const n of w.names) w.dirty.add(n);
      for (const n of initialNames) if (w.names.has(n)) w.sent.add(n);
    }
    w.mustRespond = true;
    w.dirtySince = Date.now();
    return w;
  }

  private onAck(conn: Connection, w: Watch, req: DeltaRequest): void {
    const nonce = req.response_nonce;
    const type = metricType(w.typeUrl);
    const fresh = nonce === w.lastNonceSent;
    if (req.error_detail) {
      // Every NACK is counted; the log shows the first of each (nonce, error) of a watch, within the rate limits.
      const message = truncate(req.error_detail.message ?? "", this.clientLog.maxDetailChars);
      const shownNonce = truncate(nonce, MAX_NAME_CHARS);
      w.nackCount++;
      w.lastNack = { nonce: shownNonce, message, at: new Date() };
      this.metrics.rejects.inc({ type });
      const key = `${shownNonce}\n${message}`;
      if (key === w.lastLoggedNack) this.clientLog.suppress("xDS NACK");
      else if (this.clientLog.allow("xDS NACK", conn.logBudget)) {
        w.lastLoggedNack = key;
        this.logger.warn(
          { conn: conn.id, node: conn.node?.id, typeUrl: truncate(w.typeUrl, MAX_NAME_CHARS), nonce: shownNonce, code: req.error_detail.code ?? 0, message, nacks: w.nackCount },
          "xDS NACK",
        );
      }
    } else if (fresh) {
      w.lastAckNonce = nonce;
      w.lastAckAt = new Date();
    }
    if (fresh) w.awaitingNonce = null;
    else this.metrics.expiredNonce.inc({ type });
  }

  private changeSubscription(w: Watch, req: DeltaRequest): void {
    for (const n of req.resource_names_subscribe ?? []) {
      if (n === "*") {
        if (!w.wildcard) {
          w.wildcard = true;
          w.full = true;
          w.sent.clear();
        }
      } else {
        // A subscribed name is sent even if the client already has it.
        w.names.add(n);
        w.dirty.add(n);
      }
      w.dirtySince ??= Date.now();
    }
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    for (const n of unsubscribe) {
      if (n === "*") {
        w.wildcard = false;
        w.full = false;
      } else {
        w.names.delete(n);
        if (!w.wildcard) w.dirty.delete(n);
      }
    }
    if (unsubscribe.length > 0 && !w.wildcard) {
      // The client drops what it unsubscribed from; forget what no longer matches.
      for (const name of w.sent) {
        const r = this.store.get(w.typeUrl, name);
        if (!r || !w.visible(r)) w.sent.delete(name);
      }
    }
  }

  // --- pushing ------------------------------------------------------------------------------------------

  private onStoreChange(typeUrl: string, names: readonly string[]): void {
    this.metrics.inboundUpdates.inc({ type: metricType(typeUrl) }, names.length);
    let changes = this.pending.get(typeUrl);
    if (!changes) this.pending.set(typeUrl, (changes = new Map()));
    const seq = ++this.seq;
    for (const n of names) changes.set(n, seq);
    if (this.closing) return;
    const now = Date.now();
    if (this.firstPendingAt === null) {
      this.firstPendingAt = now;
      this.maxTimer = setTimeout(() => this.flush(), this.debounceMaxMs);
      this.maxTimer.unref();
    }
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.flush(), this.debounceMs);
    this.quietTimer.unref();
  }

  private clearDebounce(): void {
    if (this.quietTimer) clearTimeout(this.quietTimer);
    if (this.maxTimer) clearTimeout(this.maxTimer);
    this.quietTimer = this.maxTimer = null;
  }

  /** Sends the next response of this connection if one is due and nothing is being written. */
  private trySend(conn: Connection): void {
    try {
      this.sendNext(conn);
    } catch (err) {
      this.internalError(conn, err);
    }
  }

  private sendNext(conn: Connection): void {
    if (conn.closed || conn.writing || this.closing) return;
    const watches = [...conn.watches.values()];
    for (let i = 0; i < watches.length; i++) {
      const w = watches[(conn.next + i) % watches.length]!;
      if (!w.hasWork() || (this.waitForAck && w.awaitingNonce !== null)) continue;
      const mustRespond = w.mustRespond;
      const since = w.dirtySince;
      const built = this.build(w);
      if (built.resources.length === 0 && built.removed.length === 0 && !mustRespond) continue;
      this.splitOversized(w, built, since);
      conn.next = (conn.next + i + 1) % watches.length;
      this.write(conn, w, built, since);
      return;
    }
  }

  /** Evaluates the watch's dirty names against the store now, and clears them. */
  private build(w: Watch): Built {
    const store = this.store;
    const typeUrl = w.typeUrl;
    const upserts = new Map<string, StoredResource>();
    const removed = new Set<string>();
    const skip = w.skip;
    const add = (r: StoredResource): void => {
      if (!w.wildcard) w.sent.add(r.name);
      if (skip && skip.get(r.name) === r.version) return;
      upserts.set(r.name, r);
    };
    const remove = (name: string): void => {
      w.sent.delete(name);
      removed.add(name);
    };
    if (w.full) for (const r of store.values(typeUrl)) add(r);
    for (const key of w.dirty) {
      const r = store.get(typeUrl, key);
      if (r) {
        if (w.visible(r)) {
          if (!w.full) add(r);
        } else if (w.sent.has(key)) remove(key);
        continue;
      }
      const explicit = w.names.has(key);
      const targets = w.wildcard || explicit ? store.byAlias(typeUrl, key) : [];
      if (targets.length > 0) {
        if (!w.full) for (const t of targets) add(t);
      } else if (w.wildcard || explicit || w.sent.has(key)) {
        // Gone, or never existed: a subscribed name that does not exist is answered with a removal.
        remove(key);
      }
    }
    w.dirty.clear();
    w.full = false;
    w.mustRespond = false;
    w.skip = null;
    w.dirtySince = null;
    return { resources: [...upserts.values()], removed: [...removed] };
  }

  /** Keeps a response under maxResponseBytes; what does not fit goes back to the dirty set. */
  private splitOversized(w: Watch, built: Built, since: number | null): void {
    let size = 0;
    for (const n of built.removed) size += n.length + 8;
    for (let i = 0; i < built.resources.length; i++) {
      size += built.resources[i]!.encoded.byteLength + 8;
      if (size > this.maxResponseBytes && i > 0) {
        for (const r of built.resources.splice(i)) w.dirty.add(r.name);
        w.dirtySince ??= since;
        return;
      }
    }
  }

  private write(conn: Connection, w: Watch, built: Built, since: number | null): void {
    const nonce = randomUUID();
    const bytes = encodeDeltaResponse({
      typeUrl: w.typeUrl,
      nonce,
      resources: built.resources.map((r) => r.encoded),
      removed: built.removed,
    });
    const type = metricType(w.typeUrl);
    w.lastNonceSent = nonce;
    w.awaitingNonce = nonce;
    w.responses++;
    conn.writing = { typeUrl: w.typeUrl, nonce, bytes: bytes.byteLength, startedAt: Date.now() };
    this.logger.debug(
      { conn: conn.id, node: conn.node?.id, typeUrl: w.typeUrl, nonce, resources: built.resources.length, removed: built.removed.length, bytes: bytes.byteLength },
      "xDS push",
    );
    if (this.sendTimeoutMs > 0) {
      conn.writeTimer = setTimeout(() => {
        conn.writeTimer = null;
        if (conn.writing?.nonce !== nonce) return;
        this.metrics.writeTimeouts.inc();
        this.abortStream(conn, `response write not completed after ${this.sendTimeoutMs} ms`);
      }, this.sendTimeoutMs);
      conn.writeTimer.unref();
    }
    const t0 = performance.now();
    conn.call.write(bytes, (err?: Error | null) => {
      if (conn.writeTimer) clearTimeout(conn.writeTimer);
      conn.writeTimer = null;
      conn.writing = null;
      if (err) {
        this.metrics.pushes.inc({ type: `${type}_senderr` });
        this.logger.warn({ conn: conn.id, node: conn.node?.id, typeUrl: w.typeUrl, err: err.message }, "xDS send failed");
        return;
      }
      this.metrics.pushes.inc({ type });
      this.metrics.pushTime.observe({ type }, (performance.now() - t0) / 1000);
      this.metrics.configSize.observe({ type }, bytes.byteLength);
      if (since !== null) this.metrics.convergenceTime.observe((Date.now() - since) / 1000);
      this.trySend(conn);
    });
  }

  // --- metrics collection -------------------------------------------------------------------------------

  private countResources(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const typeUrl of this.store.typeUrls()) {
      const type = metricType(typeUrl);
      counts.set(type, (counts.get(type) ?? 0) + this.store.size(typeUrl));
    }
    return counts;
  }

  private countPending(): Map<string, number> {
    const sums = new Map<string, number>();
    for (const conn of this.connections.values()) {
      for (const w of conn.watches.values()) {
        const type = metricType(w.typeUrl);
        sums.set(type, (sums.get(type) ?? 0) + (w.full ? this.store.size(w.typeUrl) : 0) + w.dirty.size);
      }
    }
    return sums;
  }
}
