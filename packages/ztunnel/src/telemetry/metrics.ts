// ztunnel's Prometheus metrics with Istio's names and labels (reference §8.1): the TCP traffic family, sockets open,
// build info, xDS client counters and the in-pod workload manager gauges/counters. Also an OpenMetrics renderer,
// because prom-client picks the exposition format per registry (and mutates counter names when it renders
// OpenMetrics), while the stats server must answer both formats from one registry.
import { Counter, Gauge, Registry, type RegistryContentType } from "prom-client";
import { formatSpiffeId, workloadIdentity, type istio } from "@ambit/protocol";

export type WorkloadInfo = istio.workload.Workload.$Properties;
export type ServiceInfo = istio.workload.Service.$Properties;

export type ResponseFlag = "-" | "DENY" | "CONNECT" | "TLS_FAILURE" | "H2_HANDSHAKE_FAILURE" | "NETWORK_POLICY" | "IDENTITY_ERROR";

/** What is known about one proxied connection when it is opened. */
export interface ConnectionInfo {
  /** `source` for outbound (the proxy of the client), `destination` for inbound. */
  reporter: "source" | "destination";
  /** identity: the verified SPIFFE id of the TLS peer; set only when the connection arrived over mTLS. */
  src: { addr: string; workload?: WorkloadInfo; identity?: string };
  /** hboneAddr: the HBONE `:authority` (inbound: dst.addr is the pod IP:15008). identity: the destination's SPIFFE id. */
  dst: { addr: string; hboneAddr?: string; workload?: WorkloadInfo; service?: ServiceInfo; identity?: string };
  /** connection_security_policy: `mutual_tls` when true, else `unknown`. */
  mtls: boolean;
}

/** The traffic label set, in Istio's declaration order (the order Prometheus output shows them in). */
export const TRAFFIC_LABELS = [
  "reporter",
  "source_workload",
  "source_canonical_service",
  "source_canonical_revision",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_cluster",
  "destination_service",
  "destination_service_namespace",
  "destination_service_name",
  "destination_workload",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_cluster",
  "request_protocol",
  "response_flags",
  "connection_security_policy",
] as const;

/** Rendered only when a source or destination workload is known (Istio adds them together with the workload labels). */
export const LOCALITY_LABELS = ["source_region", "source_zone", "destination_region", "destination_zone"] as const;

export type TrafficLabel = (typeof TRAFFIC_LABELS)[number] | (typeof LOCALITY_LABELS)[number];
export type TrafficLabels = Partial<Record<TrafficLabel, string>>;

const UNKNOWN = "unknown";
const ALL_TRAFFIC_LABELS: TrafficLabel[] = [...TRAFFIC_LABELS, ...LOCALITY_LABELS];

const orUnknown = (v: string | null | undefined): string => (v ? v : UNKNOWN);

/** Istio renders principals as SPIFFE URIs; accept a bare `<td>/ns/<ns>/sa/<sa>` too. */
export function renderPrincipal(id: string | undefined): string | undefined {
  if (!id) return undefined;
  return id.startsWith("spiffe://") ? id : `spiffe://${id}`;
}

/** The SPIFFE id xDS implies for a workload (trust domain / namespace / service account with Istio's defaults). */
export function workloadPrincipal(w: WorkloadInfo | undefined): string | undefined {
  if (!w?.namespace) return undefined;
  try {
    return formatSpiffeId(workloadIdentity(w));
  } catch {
    return undefined; // a malformed name in xDS must not break telemetry; the label becomes "unknown"
  }
}

/**
 * Builds the label set of a connection. Missing values are "unknown"; `source_principal` comes only from the verified
 * peer identity (never from xDS), while `destination_principal` prefers the verified/expected identity and falls back
 * to the one xDS gives the destination workload. `*_app` / `*_version` are the canonical service / revision, as Istio
 * renders them for ztunnel. `clusterId` fills `*_cluster` for a known workload whose xDS `cluster_id` is empty.
 */
export function trafficLabels(info: ConnectionInfo, flag: ResponseFlag = "-", clusterId?: string): TrafficLabels {
  const s = info.src.workload;
  const d = info.dst.workload;
  const svc = info.dst.service;
  const cluster = (w: WorkloadInfo | undefined) => orUnknown(w ? w.cluster_id || clusterId : undefined);
  const labels: TrafficLabels = {
    reporter: info.reporter,
    source_workload: orUnknown(s?.workload_name),
    source_canonical_service: orUnknown(s?.canonical_name),
    source_canonical_revision: orUnknown(s?.canonical_revision),
    source_workload_namespace: orUnknown(s?.namespace),
    source_principal: orUnknown(renderPrincipal(info.src.identity)),
    source_app: orUnknown(s?.canonical_name),
    source_version: orUnknown(s?.canonical_revision),
    source_cluster: cluster(s),
    destination_service: orUnknown(svc?.hostname),
    destination_service_namespace: orUnknown(svc?.namespace),
    destination_service_name: orUnknown(svc?.name),
    destination_workload: orUnknown(d?.workload_name),
    destination_canonical_service: orUnknown(d?.canonical_name),
    destination_canonical_revision: orUnknown(d?.canonical_revision),
    destination_workload_namespace: orUnknown(d?.namespace),
    destination_principal: orUnknown(renderPrincipal(info.dst.identity) ?? workloadPrincipal(d)),
    destination_app: orUnknown(d?.canonical_name),
    destination_version: orUnknown(d?.canonical_revision),
    destination_cluster: cluster(d),
    request_protocol: "tcp",
    response_flags: flag,
    connection_security_policy: info.mtls ? "mutual_tls" : UNKNOWN,
  };
  if (s || d) {
    labels.source_region = orUnknown(s?.locality?.region);
    labels.source_zone = orUnknown(s?.locality?.zone);
    labels.destination_region = orUnknown(d?.locality?.region);
    labels.destination_zone = orUnknown(d?.locality?.zone);
  }
  return labels;
}

export type XdsTerminationReason = "ConnectionError" | "Error" | "Reconnect" | "Complete";

/**
 * Why the inbound HBONE server (15008) refused or dropped a connection: too many connections of the peer's identity,
 * too many streams refused or reset before their answer (rapid reset), a TLS handshake not done in time, an HTTP/2
 * protocol violation (e.g. more concurrent streams than advertised), no PONG to the keepalive PING, no certificate
 * for the pod yet, a client certificate outside our trust domain, or (a stream, not a connection) too many open
 * streams of the peer's identity.
 */
export const HBONE_REFUSAL_REASONS = ["connection_limit", "rapid_reset", "handshake_timeout", "protocol_error", "keepalive_timeout", "no_certificate", "untrusted_peer", "stream_limit"] as const;
export type HboneRefusalReason = (typeof HBONE_REFUSAL_REASONS)[number];

/** Every metric ztunnel registers, created on one registry. */
export class ZtunnelMetrics {
  readonly opened: Counter<TrafficLabel>;
  readonly closed: Counter<TrafficLabel>;
  readonly sentBytes: Counter<TrafficLabel>;
  readonly receivedBytes: Counter<TrafficLabel>;
  readonly failed: Counter<TrafficLabel>;
  readonly socketsOpen: Gauge<"reporter">;
  readonly build: Gauge<"component" | "tag">;
  readonly xdsTerminations: Counter<"reason">;
  readonly xdsMessages: Counter<"url">;
  readonly xdsMessageBytes: Counter<"url">;
  readonly activeProxies: Gauge;
  readonly pendingProxies: Gauge;
  readonly proxiesStarted: Counter;
  readonly proxiesStopped: Counter;
  readonly hboneRefused: Counter<"reason">;

  constructor(readonly registry: Registry, tag: string) {
    const registers = [registry];
    const traffic = (name: string, help: string) => new Counter({ name, help, labelNames: ALL_TRAFFIC_LABELS, registers });
    this.opened = traffic("istio_tcp_connections_opened_total", "The total number of TCP connections opened");
    this.closed = traffic("istio_tcp_connections_closed_total", "The total number of TCP connections closed");
    this.sentBytes = traffic("istio_tcp_sent_bytes_total", "The size of total bytes sent during response in case of a TCP connection");
    this.receivedBytes = traffic("istio_tcp_received_bytes_total", "The size of total bytes received during request in case of a TCP connection");
    this.failed = traffic("istio_tcp_connections_failed_total", "The total number of TCP connections that failed (unstable)");
    this.socketsOpen = new Gauge({ name: "istio_tcp_sockets_open", help: "The current number of open proxied TCP connections (unstable)", labelNames: ["reporter"], registers });
    this.build = new Gauge({ name: "istio_build", help: "Istio component build info", labelNames: ["component", "tag"], registers });
    this.build.set({ component: "ztunnel", tag }, 1);
    this.xdsTerminations = new Counter({ name: "istio_xds_connection_terminations_total", help: "The total number of completed xDS connections (unstable)", labelNames: ["reason"], registers });
    this.xdsMessages = new Counter({ name: "istio_xds_message_total", help: "Total number of xDS messages received (unstable)", labelNames: ["url"], registers });
    this.xdsMessageBytes = new Counter({ name: "istio_xds_message_bytes_total", help: "Total size of xDS messages received, in bytes (unstable)", labelNames: ["url"], registers });
    this.activeProxies = new Gauge({ name: "workload_manager_active_proxy_count", help: "The current number of workload proxies running (unstable)", registers });
    this.pendingProxies = new Gauge({ name: "workload_manager_pending_proxy_count", help: "The current number of workload proxies waiting to start (unstable)", registers });
    this.proxiesStarted = new Counter({ name: "workload_manager_proxies_started_total", help: "The total number of workload proxies started (unstable)", registers });
    this.proxiesStopped = new Counter({ name: "workload_manager_proxies_stopped_total", help: "The total number of workload proxies stopped (unstable)", registers });
    this.hboneRefused = new Counter({ name: "ztunnel_hbone_refused_connections_total", help: "Inbound HBONE connections refused or dropped by ztunnel's limits, by reason", labelNames: ["reason"], registers });
    // Series that exist from the start, so dashboards see zeros rather than gaps.
    for (const reason of HBONE_REFUSAL_REASONS) this.hboneRefused.inc({ reason }, 0);
    this.socketsOpen.set({ reporter: "source" }, 0);
    this.socketsOpen.set({ reporter: "destination" }, 0);
  }
}

// ---- OpenMetrics text exposition (https://github.com/OpenObservability/OpenMetrics spec) ----

export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
export const OPENMETRICS_CONTENT_TYPE = Registry.OPENMETRICS_CONTENT_TYPE;

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

function renderNumber(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function renderLabels(labels: Record<string, string | number> | undefined): string {
  if (!labels) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (v === undefined) continue;
    parts.push(`${k}="${escapeLabel(typeof v === "number" ? renderNumber(v) : String(v))}"`);
  }
  return parts.length ? `{${parts.join(",")}}` : "";
}

/**
 * Renders a registry in the OpenMetrics text format without touching the registry or its metrics (counter families
 * are named without `_total`, their samples with it; the output ends with `# EOF`).
 */
export async function renderOpenMetrics(registry: Registry<RegistryContentType>): Promise<string> {
  const families = await registry.getMetricsAsJSON();
  const out: string[] = [];
  for (const m of families) {
    const type = String(m.type); // prom-client declares an enum, but the values are the plain type names
    const isCounter = type === "counter";
    const family = isCounter ? m.name.replace(/_total$/, "") : m.name;
    out.push(`# TYPE ${family} ${type}`, `# HELP ${family} ${escapeHelp(m.help)}`);
    for (const v of m.values) {
      const sample = (v as { metricName?: string }).metricName ?? (isCounter ? `${family}_total` : m.name);
      out.push(`${sample}${renderLabels(v.labels as Record<string, string | number>)} ${renderNumber(v.value)}`);
    }
  }
  out.push("# EOF");
  return `${out.join("\n")}\n`;
}
