// Telemetry of one ztunnel process: the traffic metrics and access log of every proxied connection (reference §8.1,
// §8.2), plus the xDS and workload-manager metrics. The proxy calls `open()` when a connection is accepted, sets
// `record.sent` / `record.received` from the sockets' byte counters when it ends, then calls `record.close()` once.
import { performance } from "node:perf_hooks";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Logger } from "pino";
import { accessFields, ACCESS_SCOPE, errorText, logComplete, failedFields, logOpened, type AccessFields } from "./access-log.js";
import { trafficLabels, ZtunnelMetrics, type ConnectionInfo, type HboneRefusalReason, type ResponseFlag, type TrafficLabels, type XdsTerminationReason } from "./metrics.js";
import { ThrottledLog } from "./throttled-log.js";

export * from "./metrics.js";
export * from "./access-log.js";
export * from "./throttled-log.js";

/** "connection failed" records logged per pod, reporter and flag in each refusal-log window before summarising. */
export const FAILED_LOG_BURST = 100;

export interface TelemetryOptions {
  /** Where the metrics go; a new (non-global) registry when omitted. */
  registry?: Registry;
  /** The process logger; access logs go to its child with `scope: "access"`. */
  logger: Logger;
  /** Fills `*_cluster` (and the access log's `*.cluster`) for a known workload whose xDS `cluster_id` is empty. */
  clusterId?: string;
  /** The `tag` label of `istio_build` (the version); "unknown" when omitted. */
  tag?: string;
  /** Also collect prom-client's process/Node.js metrics (open fds, memory, …) into the registry. Default true. */
  processMetrics?: boolean;
  /** The window of the refusal warnings (one line at once, one summary per window per pod and reason). Default 10 s. */
  refusalLogWindowMs?: number;
}

export class Telemetry {
  readonly registry: Registry;
  readonly metrics: ZtunnelMetrics;
  /** The `access` logger; its level can be changed on its own (admin `/logging?level=access:debug`). */
  readonly accessLog: Logger;
  readonly clusterId: string | undefined;
  private readonly refusalLog: ThrottledLog;
  private readonly failedLog: ThrottledLog;

  constructor(o: TelemetryOptions) {
    this.registry = o.registry ?? new Registry();
    this.clusterId = o.clusterId || undefined;
    this.metrics = new ZtunnelMetrics(this.registry, o.tag || "unknown");
    this.accessLog = o.logger.child({ scope: ACCESS_SCOPE });
    this.refusalLog = new ThrottledLog(o.logger, o.refusalLogWindowMs);
    // Failed connections are access-log records an operator reads (a denial, a refused CONNECT): many are kept per
    // window, and only a flood is summarised.
    this.failedLog = new ThrottledLog(this.accessLog, o.refusalLogWindowMs, FAILED_LOG_BURST);
    if ((o.processMetrics ?? true) && !this.registry.getSingleMetric("process_cpu_user_seconds_total")) {
      collectDefaultMetrics({ register: this.registry });
    }
  }

  /** A connection was accepted and is about to be proxied: opened_total++, sockets_open{reporter}++, debug log. */
  open(info: ConnectionInfo): ConnectionRecord {
    return new ConnectionRecord(this, info);
  }

  /**
   * A connection refused before it was opened (ztunnel's "early deny": e.g. no workload for the source address, a
   * CONNECT that cannot even be parsed, a policy that denies before any stream is set up). Upstream records these
   * before it has built the per-connection result that counts opens and closes, so they are not counted in
   * `istio_tcp_connections_opened_total` / `_closed_total` nor in `istio_tcp_sockets_open`; only
   * `istio_tcp_connections_failed_total` (with the flag as `response_flags`) and a warn "connection failed" line,
   * which a flood cannot multiply: per `pod` (the proxy's pod, when given), direction and flag, one line at once and
   * one summary per window (the metric counts every one).
   * A connection that was already opened must instead end with `record.close(error, flag)`, which counts the
   * open/close pair and the failure, so never call both for one connection.
   */
  failed(info: ConnectionInfo, flag: ResponseFlag, error: string, pod = ""): void {
    this.metrics.failed.inc(trafficLabels(info, flag, this.clusterId));
    if (this.accessLog.isLevelEnabled("warn")) this.failedLog.warn(`${pod}|${info.reporter}|${flag}`, failedFields(info, error), "connection failed");
  }

  /**
   * The inbound HBONE server refused or dropped a connection (`ztunnel_hbone_refused_connections_total{reason}`++);
   * warned without amplification: per pod and reason, one line at once and one summary per window.
   */
  hboneRefused(reason: HboneRefusalReason, pod: string, fields: object, msg: string): void {
    this.metrics.hboneRefused.inc({ reason });
    this.refusalLog.warn(`${pod}|${reason}`, { pod, reason, ...fields }, msg);
  }

  xdsTermination(reason: XdsTerminationReason): void {
    this.metrics.xdsTerminations.inc({ reason });
  }

  /** One xDS response of `typeUrl` received (and its encoded size when known). */
  xdsMessage(typeUrl: string, bytes?: number): void {
    this.metrics.xdsMessages.inc({ url: typeUrl });
    if (bytes !== undefined && bytes > 0) this.metrics.xdsMessageBytes.inc({ url: typeUrl }, bytes);
  }

  /** A workload proxy started: started_total++ and active++. */
  proxyStarted(): void {
    this.metrics.proxiesStarted.inc();
    this.metrics.activeProxies.inc();
  }

  /** A workload proxy stopped: stopped_total++ and active--. */
  proxyStopped(): void {
    this.metrics.proxiesStopped.inc();
    this.metrics.activeProxies.dec();
  }

  setActiveProxies(n: number): void {
    this.metrics.activeProxies.set(n);
  }

  setPendingProxies(n: number): void {
    this.metrics.pendingProxies.set(n);
  }
}

/**
 * One proxied connection. Byte fields follow ztunnel's copy loop, from the proxy's point of view and the same for
 * both reporters: `received` = bytes read from the downstream (the side that opened the connection) and written
 * upstream, i.e. the request direction; `sent` = bytes read from upstream and written to the downstream, the
 * response direction. Outbound, downstream is the app's socket; inbound, it is the HBONE stream.
 *
 * Metrics keep Istio's (Envoy's) convention: `istio_tcp_received_bytes_total` gets the request bytes and
 * `istio_tcp_sent_bytes_total` the response bytes for both reporters, which is "flipped" from the point of view of
 * a source workload (istio/istio#32399). The access log un-flips it: for the source reporter `bytes_sent` is what the
 * client sent (the request bytes); for the destination reporter `bytes_sent` is what the server sent.
 */
export class ConnectionRecord {
  /** Bytes written to the downstream (response direction), set when the connection ends. */
  sent = 0;
  /** Bytes read from the downstream (request direction), set when the connection ends. */
  received = 0;
  readonly info: ConnectionInfo;
  readonly startedAt = performance.now();
  private readonly labels: TrafficLabels;
  private readonly fields: AccessFields;
  private done = false;

  constructor(private readonly t: Telemetry, info: ConnectionInfo) {
    this.info = info;
    this.labels = trafficLabels(info, "-", t.clusterId);
    this.fields = accessFields(info, t.clusterId);
    t.metrics.opened.inc(this.labels);
    t.metrics.socketsOpen.inc({ reporter: info.reporter });
    logOpened(t.accessLog, this.fields);
  }

  get closed(): boolean {
    return this.done;
  }

  /**
   * Records the end of the connection; later calls do nothing. closed_total++ (with `flag` as `response_flags`),
   * byte counters += this connection's bytes (under the labels it was opened with, as ztunnel binds them at open),
   * sockets_open--, and "connection complete" at info, or at error with `error`. With `error`,
   * `istio_tcp_connections_failed_total` is counted too.
   */
  close(error?: Error | string, flag: ResponseFlag = "-"): void {
    if (this.done) return;
    this.done = true;
    const m = this.t.metrics;
    const closeLabels = flag === this.labels.response_flags ? this.labels : { ...this.labels, response_flags: flag };
    m.closed.inc(closeLabels);
    m.sentBytes.inc(this.labels, this.sent);
    m.receivedBytes.inc(this.labels, this.received);
    m.socketsOpen.dec({ reporter: this.info.reporter });
    const err = errorText(error);
    if (err !== undefined) m.failed.inc(closeLabels);
    const source = this.info.reporter === "source";
    logComplete(this.t.accessLog, this.fields, {
      bytesSent: source ? this.received : this.sent,
      bytesRecv: source ? this.sent : this.received,
      durationMs: performance.now() - this.startedAt,
      error: err,
    });
  }
}
