// The ztunnel program: xDS state and certificates from the control plane, pods from the CNI agent over ZDS, one
// proxy per pod, and the admin (15000), metrics (15020) and readiness (15021) servers. As upstream, pods are
// proxied only once the first xDS responses of both types were applied. SIGTERM (or POST /quitquitquit) drains:
// readiness fails, pods' listeners close, open connections get until the drain deadline.
import type { Server } from "node:http";
import { pino, type Logger } from "pino";
import { TypeUrl, ztunnelNodeId, type google } from "@ambit/protocol";
import { DeltaXdsClient } from "@ambit/xds";
import { pinoLogLevels, startAdmin, startReadiness, startStats } from "./admin/servers.js";
import type { Config } from "./config.js";
import { CaClient, CertificateManager } from "./identity/index.js";
import { WorkloadManager } from "./inpod/manager.js";
import { ZdsClient } from "./inpod/zds-client.js";
import type { ProxyContext } from "./proxy/context.js";
import { ProxyState } from "./state.js";
import { Telemetry } from "./telemetry/index.js";

export const VERSION = "ambit-0.1.0";

function toStruct(meta: Record<string, unknown>): google.protobuf.Struct.$Properties {
  const value = (v: unknown): google.protobuf.Value.$Properties => {
    if (v === null) return { null_value: 0 };
    if (typeof v === "string") return { string_value: v };
    if (typeof v === "number") return { number_value: v };
    if (typeof v === "boolean") return { bool_value: v };
    if (Array.isArray(v)) return { list_value: { values: v.map(value) } };
    return { struct_value: toStruct(v as Record<string, unknown>) };
  };
  return { fields: Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, value(v)])) };
}

export interface ZtunnelOptions {
  config: Config;
  log?: Logger;
}

export class Ztunnel {
  readonly config: Config;
  readonly log: Logger;
  readonly state = new ProxyState();
  readonly telemetry: Telemetry;
  readonly certs: CertificateManager;
  readonly manager: WorkloadManager;
  readonly xds: DeltaXdsClient;
  private readonly ca: CaClient;
  private readonly zds: ZdsClient;
  private servers: Server[] = [];
  private stopping?: Promise<void>;
  private resolveDone!: () => void;
  /** Resolves once a stop (SIGTERM, /quitquitquit) has drained everything. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));
  private recheckQueued = false;

  constructor({ config, log }: ZtunnelOptions) {
    this.config = config;
    this.log = log ?? pino({ level: config.logLevel, base: { component: "ztunnel" } });
    this.telemetry = new Telemetry({ logger: this.log, clusterId: config.clusterId, tag: VERSION });
    const bearer = (): Record<string, string> => { const t = config.token(); return t ? { authorization: `Bearer ${t}` } : {}; };
    this.ca = new CaClient({
      address: config.caAddress, rootsPem: () => config.caRoots() ?? "", ...(config.caServername ? { servername: config.caServername } : {}),
      token: config.token, clusterId: config.clusterId, headers: config.caHeaders, ttlSeconds: config.secretTtlSeconds, impersonate: true,
    });
    this.certs = new CertificateManager({ source: this.ca, log: this.log.child({ scope: "identity" }) });
    const ctx: ProxyContext = { config, state: this.state, certs: this.certs, telemetry: this.telemetry, log: this.log };
    this.manager = new WorkloadManager(ctx);
    this.zds = new ZdsClient(config.zdsSocket, this.manager, this.log.child({ scope: "inpod" }));
    const roots = config.xdsRoots();
    this.xds = new DeltaXdsClient({
      address: config.xdsAddress,
      ...(config.xdsAddress.startsWith("https://") ? { tls: { ...(roots ? { ca: roots } : {}), ...(config.xdsServername ? { servername: config.xdsServername } : {}) } } : {}),
      node: {
        id: ztunnelNodeId(config.instanceIp, config.podName, config.podNamespace),
        metadata: toStruct({ ...config.nodeMetadata, NAME: config.podName, NAMESPACE: config.podNamespace, INSTANCE_IPS: config.instanceIp, NODE_NAME: config.nodeName, CLUSTER_ID: config.clusterId }),
      },
      watches: [
        { typeUrl: TypeUrl.address, handler: (added, removed) => this.state.applyAddresses(added, removed) },
        { typeUrl: TypeUrl.authorization, handler: (added, removed) => this.state.applyAuthorizations(added, removed) },
      ],
      metadata: () => ({ ...config.xdsHeaders, ...bearer(), clusterid: config.clusterId }),
      logger: this.log.child({ scope: "xds" }),
    });
    this.xds.on("response", (e: { typeUrl: string }) => this.telemetry.xdsMessage(e.typeUrl));
    this.xds.on("disconnected", (e: { code: number }) => this.telemetry.xdsTermination(e.code === 0 ? "Complete" : "Error"));
    // Policy or workload changes re-check open inbound connections (once per burst of responses).
    this.state.on("change", () => {
      if (this.recheckQueued) return;
      this.recheckQueued = true;
      setImmediate(() => { this.recheckQueued = false; this.manager.recheckPolicies(); });
    });
  }

  /** Starts the servers and xDS; pods are taken from the CNI agent once xDS is ready. */
  async start(): Promise<void> {
    const { ports } = this.config;
    this.servers = await Promise.all([
      startAdmin({ port: ports.admin, configDump: () => this.configDump(), onQuit: () => void this.stop(), logLevel: pinoLogLevels(this.log, { access: this.telemetry.accessLog }) }),
      startStats({ port: ports.stats, registry: this.telemetry.registry }),
      startReadiness({ port: ports.readiness, status: () => this.readiness() }),
    ]);
    this.xds.start();
    await this.xds.ready();
    if (this.stopping) return;
    this.log.info("xDS ready: taking pods from the CNI agent");
    this.zds.start();
  }

  readiness(): { ready: boolean; pending: string[] } {
    const pending: string[] = [];
    if (this.stopping) pending.push("draining");
    if (!this.xds.isReady) pending.push("state manager: waiting for the first xDS responses");
    pending.push(...this.manager.pendingReasons());
    return { ready: pending.length === 0, pending };
  }

  /** Drains and stops; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ deadlineMs: this.config.drainDeadlineMs }, "draining");
      await this.zds.stop();
      await this.manager.stop();
      await this.xds.close();
      this.certs.stop();
      this.ca.close();
      await Promise.all(this.servers.map((s) => new Promise((r) => { s.close(r); s.closeAllConnections(); })));
      this.log.info("stopped");
      this.resolveDone();
    })();
    return this.stopping;
  }

  /** /config_dump: the shape istioctl ztunnel-config reads (workloads, services, policies, certificates). */
  configDump(): object {
    const { config } = this;
    return {
      workloads: [...this.state.workloads.values()],
      services: [...this.state.services.values()],
      policies: this.state.policies.all(),
      certificates: this.certs.dump(),
      workloadState: this.manager.dump(),
      config: { nodeName: config.nodeName, clusterId: config.clusterId, network: config.network, xdsAddress: config.xdsAddress, caAddress: config.caAddress, trustDomain: config.trustDomain },
      version: VERSION,
    };
  }
}
