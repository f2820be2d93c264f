// Delta ADS client, shaped after ztunnel's: watched types in a fixed order, node on each type's first request,
// partial apply with NACKs listing the rejected names, resume with the accepted versions, reconnect with
// exponential back-off (10 ms doubling to 15 s by default).
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import type { envoy, google } from "@ambit/protocol";
import { silentLogger, type Logger } from "./log.js";
import { DELTA_ADS_PATH, MAX_MESSAGE_BYTES, deltaAggregatedResources, type DeltaRequestProperties, type NodeProperties } from "./service.js";

type DeltaResponse = envoy.service.discovery.v3.DeltaDiscoveryResponse;
type AdsClientCall = grpc.ClientDuplexStream<DeltaRequestProperties, DeltaResponse>;

/**
 * wildcard: everything of the type (plus `names`, re-sent on request). named: only `names` (and `subscribe`d
 * ones). on-demand: ztunnel's shape — subscribe "*" and unsubscribe "*" (nothing), then names as asked.
 * On-demand watches do not hold readiness back.
 */
export type WatchMode = "wildcard" | "named" | "on-demand";

export interface ReceivedResource {
  name: string;
  version: string;
  resource: google.protobuf.Any.$Properties;
  aliases: string[];
}

export interface HandlerResult {
  /** name → reason, for resources that were not applied; the client NACKs with them. */
  errors?: Record<string, string>;
}

export interface HandlerContext {
  typeUrl: string;
  nonce: string;
  /** The first response of this type on the current stream. */
  initial: boolean;
}

/** Applies the good resources and reports the bad ones (partial apply, as ztunnel). */
export type ResourceHandler = (
  added: ReceivedResource[],
  removed: string[],
  context: HandlerContext,
) => HandlerResult | void | Promise<HandlerResult | void>;

export interface WatchOptions {
  typeUrl: string;
  mode?: WatchMode;
  names?: readonly string[];
  handler: ResourceHandler;
}

export interface DeltaXdsClientOptions {
  /** "host:port", optionally with an http:// (plaintext) or https:// (TLS) scheme. */
  address: string;
  /** TLS (server-authenticated): `ca` PEM (system roots when absent) and the name to verify. Plaintext when absent. */
  tls?: { ca?: string | Buffer; servername?: string };
  node: NodeProperties;
  /** Watched types, in the order their first requests are sent. */
  watches: readonly WatchOptions[];
  /** Metadata for each new stream (re-evaluated per connection), e.g. `{ authorization: "Bearer …", clusterid }`. */
  metadata?: () => Record<string, string | readonly string[]> | Promise<Record<string, string | readonly string[]>>;
  /** Reconnect back-off: starts at `initialMs` (10), doubles, capped at `maxMs` (15 000). */
  backoff?: { initialMs?: number; maxMs?: number };
  logger?: Logger;
  /** Extra grpc-js channel options (merged over the defaults). */
  channelOptions?: grpc.ChannelOptions;
}

export interface ResponseEvent {
  typeUrl: string;
  nonce: string;
  added: number;
  removed: number;
  /** name → reason of the rejected resources (empty when ACKed). */
  rejected: Record<string, string>;
}

export interface DisconnectEvent {
  code: grpc.status;
  details: string;
  /** Delay before the next attempt. */
  retryInMs: number | null;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

class ClientWatch {
  readonly names: Set<string>;
  /** Accepted versions by resource name (NACKed ones are left out, so a resume gets them again). */
  readonly versions = new Map<string, string>();
  readonly waiters = new Map<string, Waiter[]>();
  applied = false;

  constructor(
    readonly typeUrl: string,
    readonly mode: WatchMode,
    names: readonly string[],
    readonly handler: ResourceHandler,
  ) {
    this.names = new Set(names);
  }
}

interface StreamState {
  client: grpc.Client;
  call: AdsClientCall;
  ended: boolean;
  gotResponse: boolean;
  /** Types whose first request went out on this stream. */
  opened: Set<string>;
  /** Types that got a response on this stream. */
  responded: Set<string>;
}

/** Terminations after which ztunnel reconnects at the initial back-off. */
function isBenign(code: grpc.status, details: string): boolean {
  if (code === grpc.status.OK || code === grpc.status.UNKNOWN || code === grpc.status.CANCELLED || code === grpc.status.DEADLINE_EXCEEDED) return true;
  return code === grpc.status.UNAVAILABLE && /transport is closing|received prior goaway/i.test(details);
}

function parseAddress(address: string): { target: string; scheme: "http" | "https" | null } {
  const m = /^(https?):\/\/(.*)$/i.exec(address);
  if (!m) return { target: address, scheme: null };
  return { target: m[2]!.replace(/\/+$/, ""), scheme: m[1]!.toLowerCase() as "http" | "https" };
}

export class DeltaXdsClient extends EventEmitter {
  private readonly options: DeltaXdsClientOptions;
  private readonly logger: Logger;
  private readonly watches = new Map<string, ClientWatch>();
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private nextDelayMs: number;
  private stream: StreamState | null = null;
  private timer: NodeJS.Timeout | null = null;
  private started = false;
  private closed = false;
  private isReadyFlag = false;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;

  constructor(options: DeltaXdsClientOptions) {
    super();
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.initialBackoffMs = options.backoff?.initialMs ?? 10;
    this.maxBackoffMs = options.backoff?.maxMs ?? 15_000;
    this.nextDelayMs = this.initialBackoffMs;
    for (const w of options.watches) {
      if (this.watches.has(w.typeUrl)) throw new Error(`type ${w.typeUrl} is watched twice`);
      this.watches.set(w.typeUrl, new ClientWatch(w.typeUrl, w.mode ?? "wildcard", w.names ?? [], w.handler));
    }
    this.readyPromise = new Promise((resolve) => (this.resolveReady = resolve));
  }

  /** Connects (and keeps reconnecting until `close()`). */
  start(): this {
    if (this.started) return this;
    this.started = true;
    void this.connect();
    return this;
  }

  /** Resolves once the first response of every watched (non-on-demand) type has been applied. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  get isReady(): boolean {
    return this.isReadyFlag;
  }

  get connected(): boolean {
    return this.stream !== null && this.stream.gotResponse;
  }

  /** Accepted versions of a type, by resource name. */
  versions(typeUrl: string): ReadonlyMap<string, string> {
    return this.watch(typeUrl).versions;
  }

  /**
   * Subscribes to names (or aliases) of a type; resolves when each has been answered, by a resource with that
   * name or alias, or by its removal (it does not exist). Rejects if the client is closed first.
   */
  subscribe(typeUrl: string, names: readonly string[]): Promise<void> {
    const w = this.watch(typeUrl);
    if (this.closed) return Promise.reject(new Error("xDS client closed"));
    const waits = names.map(
      (n) =>
        new Promise<void>((resolve, reject) => {
          let list = w.waiters.get(n);
          if (!list) w.waiters.set(n, (list = []));
          list.push({ resolve, reject });
        }),
    );
    for (const n of names) w.names.add(n);
    const s = this.stream;
    if (s && !s.ended && s.opened.has(typeUrl) && names.length > 0) s.call.write({ type_url: typeUrl, resource_names_subscribe: [...names] });
    return Promise.all(waits).then(() => undefined);
  }

  /** Unsubscribes from names; their resources are forgotten (no removal is delivered for them). */
  unsubscribe(typeUrl: string, names: readonly string[]): void {
    const w = this.watch(typeUrl);
    for (const n of names) {
      w.names.delete(n);
      w.versions.delete(n);
    }
    const s = this.stream;
    if (s && !s.ended && s.opened.has(typeUrl) && names.length > 0) s.call.write({ type_url: typeUrl, resource_names_unsubscribe: [...names] });
  }

  /** Ends the stream and stops reconnecting. Pending `subscribe` promises reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const s = this.stream;
    this.stream = null;
    if (s) this.endStreamState(s);
    const err = new Error("xDS client closed");
    for (const w of this.watches.values()) {
      for (const list of w.waiters.values()) for (const waiter of list) waiter.reject(err);
      w.waiters.clear();
    }
  }

  // --- connection loop ----------------------------------------------------------------------------------

  private watch(typeUrl: string): ClientWatch {
    const w = this.watches.get(typeUrl);
    if (!w) throw new Error(`type ${typeUrl} is not watched`);
    return w;
  }

  private credentials(): { target: string; creds: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
    const { target, scheme } = parseAddress(this.options.address);
    const tls = this.options.tls ?? (scheme === "https" ? {} : undefined);
    const options: grpc.ChannelOptions = {
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      // One connection per client: a stalled stream must not share flow-control windows with another client.
      "grpc.use_local_subchannel_pool": 1,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc-node.flow_control_window": 4 * 1024 * 1024,
    };
    if (tls?.servername) {
      options["grpc.ssl_target_name_override"] = tls.servername;
      options["grpc.default_authority"] = tls.servername;
    }
    Object.assign(options, this.options.channelOptions);
    const creds = tls
      ? grpc.credentials.createSsl(tls.ca === undefined ? null : Buffer.from(tls.ca))
      : grpc.credentials.createInsecure();
    return { target, creds, options };
  }

  private async metadata(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    const values = (await this.options.metadata?.()) ?? {};
    for (const [key, value] of Object.entries(values)) {
      if (typeof value === "string") md.set(key, value);
      else for (const v of value) md.add(key, v);
    }
    return md;
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    let md: grpc.Metadata;
    let channel: ReturnType<DeltaXdsClient["credentials"]>;
    try {
      md = await this.metadata();
      channel = this.credentials();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "xDS connection setup failed");
      this.scheduleReconnect(grpc.status.UNAUTHENTICATED, (err as Error).message, false);
      return;
    }
    if (this.closed) return;
    // A fresh channel per attempt: the back-off here is the only one (grpc-js' own reconnect back-off would
    // otherwise stack on top), and credentials/metadata are re-read each time.
    const client = new grpc.Client(channel.target, channel.creds, channel.options);
    const call = client.makeBidiStreamRequest(
      DELTA_ADS_PATH,
      deltaAggregatedResources.requestSerialize,
      deltaAggregatedResources.responseDeserialize,
      md,
    );
    const s: StreamState = { client, call, ended: false, gotResponse: false, opened: new Set(), responded: new Set() };
    this.stream = s;
    call.on("data", (resp: DeltaResponse) => this.onResponse(s, resp));
    call.on("error", () => {
      /* reported through 'status' */
    });
    call.on("status", (st: grpc.StatusObject) => this.onStreamEnd(s, st.code, st.details));
    for (const w of this.watches.values()) this.sendInitial(s, w);
  }

  private sendInitial(s: StreamState, w: ClientWatch): void {
    const req: DeltaRequestProperties = { type_url: w.typeUrl, node: this.options.node };
    if (w.versions.size > 0) req.initial_resource_versions = Object.fromEntries(w.versions);
    const names = [...w.names];
    if (w.mode === "on-demand" || (w.mode === "named" && names.length === 0)) {
      // Subscribe to nothing ("*" in and out in the same message), then the names asked so far.
      req.resource_names_subscribe = ["*", ...names];
      req.resource_names_unsubscribe = ["*"];
    } else if (w.mode === "named") {
      req.resource_names_subscribe = names;
    } else if (names.length > 0) {
      req.resource_names_subscribe = ["*", ...names];
    }
    s.opened.add(w.typeUrl);
    s.call.write(req);
  }

  private onResponse(s: StreamState, resp: DeltaResponse): void {
    if (s.ended) return;
    if (!s.gotResponse) {
      s.gotResponse = true;
      // A healthy stream: the next failure starts the back-off over.
      this.nextDelayMs = this.initialBackoffMs;
      this.emit("connected");
    }
    // One response at a time: stop reading while the handler runs (gRPC flow control holds the rest).
    s.call.pause();
    void this.process(s, resp).then(
      () => {
        if (!s.ended) s.call.resume();
      },
      (err: unknown) => {
        this.logger.error({ err: (err as Error)?.message }, "xDS response processing failed");
        if (!s.ended) s.call.resume();
      },
    );
  }

  private async process(s: StreamState, resp: DeltaResponse): Promise<void> {
    const typeUrl = resp.type_url;
    const nonce = resp.nonce;
    const w = this.watches.get(typeUrl);
    if (!w) {
      this.logger.warn({ typeUrl, nonce }, "xDS response of an unwatched type; ACKed anyway");
      if (!s.ended) s.call.write({ type_url: typeUrl, response_nonce: nonce });
      return;
    }
    const added: ReceivedResource[] = (resp.resources ?? []).map((r) => ({
      name: r.name ?? "",
      version: r.version ?? "",
      resource: r.resource ?? { type_url: typeUrl },
      aliases: r.aliases ?? [],
    }));
    const removed = resp.removed_resources ?? [];
    const initial = !s.responded.has(typeUrl);
    s.responded.add(typeUrl);

    let errors: Record<string, string> = {};
    let failure: string | null = null;
    try {
      const result = await w.handler(added, removed, { typeUrl, nonce, initial });
      errors = result?.errors ?? {};
    } catch (err) {
      failure = (err as Error)?.message ?? String(err);
      errors = Object.fromEntries(added.map((a) => [a.name, failure!]));
    }
    for (const a of added) {
      if (Object.prototype.hasOwnProperty.call(errors, a.name)) w.versions.delete(a.name);
      else w.versions.set(a.name, a.version);
    }
    for (const name of removed) w.versions.delete(name);

    const rejected = Object.entries(errors);
    if (!s.ended) {
      const ack: DeltaRequestProperties = { type_url: typeUrl, response_nonce: nonce };
      if (rejected.length > 0 || failure !== null) {
        ack.error_detail = { message: failure !== null ? `handler failed: ${failure}` : rejected.map(([n, reason]) => `${n}: ${reason}`).join("; ") };
        this.logger.warn({ typeUrl, nonce, rejected: rejected.length, message: ack.error_detail.message }, "xDS NACK");
      }
      s.call.write(ack);
    }
    const event: ResponseEvent = { typeUrl, nonce, added: added.length, removed: removed.length, rejected: errors };
    this.emit("response", event);

    // Wake subscribers whose names were answered (by name, alias or removal).
    if (w.waiters.size > 0) {
      const answered = (key: string): void => {
        const list = w.waiters.get(key);
        if (!list) return;
        w.waiters.delete(key);
        for (const waiter of list) waiter.resolve();
      };
      for (const a of added) {
        answered(a.name);
        for (const alias of a.aliases) answered(alias);
      }
      for (const name of removed) answered(name);
    }

    if (!w.applied) {
      w.applied = true;
      this.checkReady();
    }
  }

  private checkReady(): void {
    if (this.isReadyFlag) return;
    const blocking = [...this.watches.values()].filter((w) => w.mode !== "on-demand");
    const ready = blocking.length > 0 ? blocking.every((w) => w.applied) : [...this.watches.values()].some((w) => w.applied);
    if (!ready) return;
    this.isReadyFlag = true;
    this.resolveReady();
    this.emit("ready");
  }

  private onStreamEnd(s: StreamState, code: grpc.status, details: string): void {
    if (s.ended) return;
    this.endStreamState(s);
    if (this.stream === s) this.stream = null;
    if (this.closed) return;
    this.scheduleReconnect(code, details, s.gotResponse);
  }

  private endStreamState(s: StreamState): void {
    if (s.ended) return;
    s.ended = true;
    s.call.cancel();
    s.client.close();
  }

  private scheduleReconnect(code: grpc.status, details: string, healthy: boolean): void {
    if (healthy || isBenign(code, details)) this.nextDelayMs = this.initialBackoffMs;
    const delay = this.nextDelayMs;
    this.nextDelayMs = Math.min(this.nextDelayMs * 2, this.maxBackoffMs);
    const event: DisconnectEvent = { code, details, retryInMs: delay };
    this.logger.info({ code: grpc.status[code], details, retryInMs: delay }, "xDS stream ended; reconnecting");
    this.emit("disconnected", event);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }
}
