// Prometheus metrics of the xDS server, with istiod's names, labels and buckets where istiod has them.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { TypeUrl } from "@ambit/protocol";

const WDS = TypeUrl.address;
const WORKLOAD = "type.googleapis.com/istio.workload.Workload";
const WADS = TypeUrl.authorization;

/**
 * istiod's `type` label value for a type URL ("wds", "wads"). Any other type URL is the client's own text, so it is
 * "other": a client naming new type URLs must not create new metric series.
 */
export function metricType(typeUrl: string): string {
  switch (typeUrl) {
    case WDS:
    case WORKLOAD:
      return "wds";
    case WADS:
      return "wads";
    default:
      return "other";
  }
}

const PUSH_TIME_BUCKETS = [0.01, 0.1, 1, 3, 5, 10, 20, 30];
const CONVERGENCE_BUCKETS = [0.1, 0.5, 1, 3, 5, 10, 20, 30];
const CONFIG_SIZE_BUCKETS = [1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000];

/** Values read at scrape time. */
export interface MetricSources {
  /** Resources in the store, by metric type label. */
  resources(): Map<string, number>;
  /** Pending (dirty) names summed over connections, by metric type label. */
  pending(): Map<string, number>;
}

export class XdsMetrics {
  readonly registry: Registry;
  private sources: MetricSources | null = null;
  /** Connected xDS clients (`version` = the proxy's ISTIO_VERSION metadata). */
  readonly clients: Gauge<"version">;
  /** Responses sent per type; send errors count under `<type>_senderr`. */
  readonly pushes: Counter<"type">;
  readonly pushTime: Histogram<"type">;
  readonly configSize: Histogram<"type">;
  readonly debounceTime: Histogram;
  readonly convergenceTime: Histogram;
  readonly rejects: Counter<"type">;
  readonly expiredNonce: Counter<"type">;
  readonly writeTimeouts: Counter;
  readonly internalErrors: Counter;
  readonly inboundUpdates: Counter<"type">;
  /** Ambit: resources in the store per type. */
  readonly resources: Gauge<"type">;
  /** Ambit: names waiting in per-connection dirty sets, summed over connections, per type. */
  readonly pendingResources: Gauge<"type">;
  /** Ambit: streams refused or ended by the server, by gRPC status name. */
  readonly rejectedStreams: Counter<"code">;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.clients = new Gauge({ name: "pilot_xds", help: "Number of endpoints connected to this pilot using XDS.", labelNames: ["version"], registers });
    this.pushes = new Counter({ name: "pilot_xds_pushes", help: "Pilot build and send errors for lds, rds, cds and eds.", labelNames: ["type"], registers });
    this.pushTime = new Histogram({ name: "pilot_xds_push_time", help: "Total time in seconds Pilot takes to push lds, rds, cds and eds.", labelNames: ["type"], buckets: PUSH_TIME_BUCKETS, registers });
    this.configSize = new Histogram({ name: "pilot_xds_config_size_bytes", help: "Distribution of configuration sizes pushed to clients", labelNames: ["type"], buckets: CONFIG_SIZE_BUCKETS, registers });
    this.debounceTime = new Histogram({ name: "pilot_debounce_time", help: "Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.", buckets: PUSH_TIME_BUCKETS, registers });
    this.convergenceTime = new Histogram({ name: "pilot_proxy_convergence_time", help: "Delay in seconds between config change and a proxy receiving all required configuration.", buckets: CONVERGENCE_BUCKETS, registers });
    this.rejects = new Counter({ name: "pilot_total_xds_rejects", help: "Total number of XDS responses from pilot rejected by proxy.", labelNames: ["type"], registers });
    this.expiredNonce = new Counter({ name: "pilot_xds_expired_nonce", help: "Total number of XDS requests with an expired nonce.", labelNames: ["type"], registers });
    this.writeTimeouts = new Counter({ name: "pilot_xds_write_timeout", help: "Pilot XDS response write timeouts.", registers });
    this.internalErrors = new Counter({ name: "pilot_total_xds_internal_errors", help: "Total number of internal XDS errors in pilot.", registers });
    this.inboundUpdates = new Counter({ name: "pilot_inbound_updates", help: "Total number of updates received by pilot.", labelNames: ["type"], registers });
    const sources = (): MetricSources | null => this.sources;
    this.resources = new Gauge({
      name: "ambit_xds_resources",
      help: "Resources in the xDS store, per type.",
      labelNames: ["type"],
      registers,
      collect() {
        const values = sources()?.resources();
        if (!values) return;
        this.reset();
        for (const [type, n] of values) this.set({ type }, n);
      },
    });
    this.pendingResources = new Gauge({
      name: "ambit_xds_pending_resources",
      help: "Resource names waiting to be pushed, summed over connections, per type.",
      labelNames: ["type"],
      registers,
      collect() {
        const values = sources()?.pending();
        if (!values) return;
        this.reset();
        for (const [type, n] of values) this.set({ type }, n);
      },
    });
    this.rejectedStreams = new Counter({ name: "ambit_xds_rejected_streams", help: "xDS streams refused or ended by the server, by gRPC status.", labelNames: ["code"], registers });
  }

  /** Connects the scrape-time gauges to a server (one server per XdsMetrics). */
  bindSources(sources: MetricSources): void {
    this.sources = sources;
  }
}
