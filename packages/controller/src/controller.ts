// The controller (istiod's role): informers → ambient index → delta xDS on 15010/15012, admin on 15014,
// status and events written by the leader only.
import type { Server as HttpServer } from "node:http";
import { AuthenticationV1Api, AuthorizationV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  ApiError as KubeApiError, StaticCollection, getJson, informerCollection, join, kubeKey, resourceTypes, source, type Collection, type NamedObject, type ResourceType,
} from "@ambit/kube";
import { DeltaXdsServer, type AuthResult } from "@ambit/xds";
import pino, { type Logger } from "pino";
import { Counter, Registry, collectDefaultMetrics } from "prom-client";
import * as grpc from "@grpc/grpc-js";
import { grpcServerOptions } from "@ambit/xds";
import { NodeAuthorizer } from "./ca/node-authorizer.js";
import { RootCertPublisher } from "./ca/publisher.js";
import { RootOfTrust } from "./ca/roots.js";
import { ServingIdentity, istiodDnsNames } from "./ca/serving.js";
import { certificateAuthInterceptor, registerCertificateService, type CaServiceOptions } from "./ca/service.js";
import { startAdmin } from "./admin.js";
import { DebugAccess, TokenAuthenticator, type TokenReviewStatus } from "./auth.js";
import type { Config } from "./config.js";
import { LeaderElection } from "./leader.js";
import { failClosedStandIn, type AuthorizationPolicy } from "./model/authorization.js";
import { buildAmbientIndex, type AmbientIndex, type Inputs } from "./model/index.js";
import type { MeshSettings } from "./model/types.js";
import { StatusWriter } from "./status.js";
import { feedXds, nodeMatchesIdentity } from "./xds.js";
import { TypeUrl } from "@ambit/protocol";

/**
 * The gRPC server of 15010/15012: delta xDS and the CA. Requests over `maxRequestBytes` are refused from their
 * length prefix and the client stopped; xDS streams and CA calls are authenticated before their messages are read.
 */
export function controllerGrpcServer(xds: DeltaXdsServer, ca: CaServiceOptions, maxRequestBytes: number): grpc.Server {
  const server = new grpc.Server(grpcServerOptions({
    "grpc.max_receive_message_length": maxRequestBytes,
    interceptors: [certificateAuthInterceptor(ca)],
  }));
  xds.register(server);
  registerCertificateService(server, ca);
  return server;
}

export interface ControllerOptions {
  config: Config;
  kc: KubeConfig;
  logger?: Logger;
  /** Interface to bind the servers to (default all). */
  host?: string;
}

export class Controller {
  readonly registry = new Registry();
  readonly log: Logger;
  readonly settings: MeshSettings;
  readonly xds: DeltaXdsServer;
  index!: AmbientIndex;
  private readonly status: StatusWriter;
  private readonly leader: LeaderElection;
  private admin: HttpServer | undefined;
  private stopFeed: (() => void) | undefined;
  private reaper: NodeJS.Timeout | undefined;
  private readonly tokens: TokenAuthenticator;
  private readonly debugAccess: DebugAccess;
  readonly roots: RootOfTrust;
  private publisher: RootCertPublisher | undefined;
  private readonly grpcServers: grpc.Server[] = [];
  private readonly certs: Counter<"result">;
  private readonly informers: { stop(): Promise<void> | void }[] = [];
  private readonly missing = new Set<string>();
  /** Bound ports, once listening. */
  ports: { plaintext?: number; tls?: number; monitoring?: number } = {};

  constructor(private readonly o: ControllerOptions) {
    const c = o.config;
    this.log = o.logger ?? pino({ level: c.LOG_LEVEL, base: { component: "controller" } });
    this.settings = { clusterId: c.CLUSTER_ID, trustDomain: c.TRUST_DOMAIN, domainSuffix: c.DOMAIN_SUFFIX, network: c.NETWORK, rootNamespace: c.POD_NAMESPACE };
    collectDefaultMetrics({ register: this.registry });
    const tokenApi = o.kc.makeApiClient(AuthenticationV1Api);
    const review = async (token: string, audiences: string[]): Promise<TokenReviewStatus> =>
      (await tokenApi.createTokenReview({ body: { spec: { token, audiences } } })).status ?? {};
    const busy = new Counter({
      name: "ambit_auth_reviews_busy", help: "Requests refused at once because the most token reviews allowed were in progress, by endpoint.",
      labelNames: ["endpoint"], registers: [this.registry],
    });
    // One authenticator for xDS and the CA: one cache of TokenReview results and one cap on reviews in progress.
    this.tokens = new TokenAuthenticator(review, c.TOKEN_AUDIENCES, c.TRUST_DOMAIN, { onBusy: () => busy.inc({ endpoint: "grpc" }) });
    const accessApi = o.kc.makeApiClient(AuthorizationV1Api);
    this.debugAccess = new DebugAccess({
      review,
      onBusy: () => busy.inc({ endpoint: "debug" }),
      accessReview: async (user, path) =>
        (await accessApi.createSubjectAccessReview({
          body: { spec: { user: user.username, uid: user.uid, groups: user.groups, extra: user.extra, nonResourceAttributes: { path, verb: "get" } } },
        })).status ?? {},
    });
    this.roots = new RootOfTrust(o.kc, c.POD_NAMESPACE, c.TRUST_DOMAIN, this.log.child({ scope: "ca" }));
    this.certs = new Counter({ name: "citadel_server_csr_count", help: "The number of certificate signing requests, by result.", labelNames: ["result"], registers: [this.registry] });
    this.xds = new DeltaXdsServer({
      registry: this.registry,
      logger: this.log.child({ scope: "xds" }),
      debounceMs: c.PILOT_DEBOUNCE_AFTER,
      debounceMaxMs: c.PILOT_DEBOUNCE_MAX,
      ready: false,
      authenticate: c.XDS_AUTH
        ? async (md) => ({ ...(await this.tokens.authenticate(md.get("authorization")[0]?.toString())) }) as AuthResult
        : () => ({ identity: "anonymous" }),
      authorize: c.XDS_AUTH
        ? (auth, node) => {
          const problem = nodeMatchesIdentity(node.id ?? undefined, String(auth["namespace"]));
          if (problem) throw new Error(problem);
        }
        : undefined,
    });
    this.status = new StatusWriter(o.kc, this.log.child({ scope: "status" }));
    this.leader = new LeaderElection(o.kc, {
      namespace: c.POD_NAMESPACE, name: "ambit-controller-leader", identity: c.POD_NAME || `controller-${process.pid}`,
      onChange: (leading) => {
        this.status.leading = leading && c.AMBIENT_ENABLE_STATUS;
        this.log.info({ leading }, leading ? "became the leader: writing status" : "not the leader");
        if (this.publisher) this.publisher.leading = leading;
        if (leading) {
          this.status.resync(this.index.policyTranslations);
          this.publisher?.resyncAll();
        }
      },
    });
  }

  /** Whether the API server serves a resource (a CRD may not be installed: Gateway API is optional). */
  private async served(type: ResourceType<unknown>): Promise<boolean> {
    if (type.group === "") return true;
    try {
      const list = await getJson(this.o.kc, `/apis/${type.group}/${type.version}`) as { resources?: { name: string }[] };
      return list.resources?.some((r) => r.name === type.plural) ?? false;
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 404) return false;
      throw err;
    }
  }

  private informer<T extends NamedObject>(type: ResourceType<T>, hasStatus = false, onInvalid?: (obj: unknown, problem: string) => void): Collection<T> {
    if (this.missing.has(type.plural)) {
      this.log.warn({ resource: `${type.plural}.${type.group}` }, `the API server does not serve ${type.kind} (its CRD is not installed): treated as empty until the controller restarts`);
      const empty = new StaticCollection<T>({ name: type.plural }); // synced from the start
      return empty;
    }
    const inf = informerCollection(this.o.kc, {
      ...source(this.o.kc, type),
      name: type.plural,
      onInvalid: (obj, err) => {
        const problem = err.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
        onInvalid?.(obj, problem);
        if (!onInvalid) void this.status.reportInvalid({ ...type, hasStatus }, obj, problem);
      },
      onError: (err, info) => this.log.warn({ err: (err as Error)?.message ?? String(err), ...info }, "collection error"),
    }) as unknown as Collection<T> & { stop(): Promise<void> };
    this.informers.push(inf);
    return inf;
  }

  async start(): Promise<void> {
    const c = this.o.config;
    const t = resourceTypes;
    for (const type of [t.authorizationPolicies, t.peerAuthentications, t.gateways]) if (!(await this.served(type))) this.missing.add(type.plural);
    // A policy that cannot be read must not fall open: it is replaced by a deny-all stand-in until fixed.
    const standIns = new StaticCollection<AuthorizationPolicy>({ name: "invalid-policy-stand-ins" });
    const validPolicies = this.informer(t.authorizationPolicies, true, (obj, problem) => {
      const s = failClosedStandIn(obj, problem);
      if (s) standIns.set(s);
      this.log.warn({ policy: s ? kubeKey(s) : "?", problem }, "unreadable AuthorizationPolicy replaced by a deny-all stand-in");
    }) as unknown as Collection<AuthorizationPolicy>;
    validPolicies.subscribe((batch) => { for (const e of batch) if (e.type !== "delete" && standIns.has(e.key)) standIns.delete(e.key); });
    // An unreadable object never enters the informer, so its deletion is noticed here.
    const custom = this.o.kc.makeApiClient(CustomObjectsApi);
    this.reaper = setInterval(() => {
      for (const p of standIns.list()) {
        custom.getNamespacedCustomObject({ group: "security.istio.io", version: "v1", plural: "authorizationpolicies", namespace: p.metadata.namespace, name: p.metadata.name })
          .catch((err: { code?: number }) => { if (err.code === 404) standIns.delete(kubeKey(p)); });
      }
    }, 5000);
    const inputs = {
      namespaces: this.informer(t.namespaces), pods: this.informer(t.pods), services: this.informer(t.services),
      endpointSlices: this.informer(t.endpointSlices), nodes: this.informer(t.nodes),
      authorizationPolicies: join([validPolicies, standIns], { name: "authorization-policies" }), peerAuthentications: this.informer(t.peerAuthentications, true),
      gateways: this.informer(t.gateways, true),
    } as unknown as Inputs;
    this.index = buildAmbientIndex(inputs, this.settings);
    this.stopFeed = feedXds(this.xds, this.index, this.settings.network);
    this.status.watchPolicies(this.index.policyTranslations);
    const host = this.o.host ?? "0.0.0.0";
    // The CA: its root of trust, the root published to every namespace, and the certificate service.
    await this.roots.start();
    this.publisher = new RootCertPublisher(this.o.kc, inputs.namespaces, () => this.roots.ca.rootsPem(), this.log.child({ scope: "root-cert" }));
    // On a new CA: first the serving certificate, then the root for clients — so a client that trusts the newly
    // published root never meets a certificate from the old one.
    let serving: ServingIdentity | undefined;
    this.roots.on("change", () => {
      this.log.info({ source: this.roots.source }, "the CA changed: re-issuing the serving certificate and republishing the root");
      void (serving?.issue(this.roots.ca) ?? Promise.resolve())
        .catch((err: Error) => this.log.error({ err: err.message }, "could not re-issue the serving certificate"))
        .then(() => this.publisher!.resyncAll());
    });
    const caOptions = {
      ca: () => this.roots.ca,
      authenticate: (authorization: string | undefined) => this.tokens.authenticate(authorization),
      nodeAuthorizer: new NodeAuthorizer(inputs.pods, new Set(c.CA_TRUSTED_NODE_ACCOUNTS), c.TRUST_DOMAIN),
      defaultTtlSeconds: c.DEFAULT_WORKLOAD_CERT_TTL / 1000,
      maxTtlSeconds: c.MAX_WORKLOAD_CERT_TTL / 1000,
      onIssued: (_identity: string, ok: boolean) => this.certs.inc({ result: ok ? "ok" : "error" }),
    };
    const serve = async (port: number, creds: grpc.ServerCredentials) => {
      const server = controllerGrpcServer(this.xds, caOptions, c.ISTIO_GPRC_MAXRECVMSGSIZE);
      const bound = await new Promise<number>((res, rej) => server.bindAsync(`${host}:${port}`, creds, (err, p) => (err ? rej(err) : res(p))));
      this.grpcServers.push(server);
      return bound;
    };
    if (c.XDS_PLAINTEXT_PORT) this.ports.plaintext = await serve(c.XDS_PLAINTEXT_PORT, grpc.ServerCredentials.createInsecure());
    if (c.XDS_TLS_PORT) {
      serving = new ServingIdentity(istiodDnsNames(c.POD_NAMESPACE, c.DOMAIN_SUFFIX));
      await serving.issue(this.roots.ca);
      this.ports.tls = await serve(c.XDS_TLS_PORT, serving.credentials());
    }
    this.admin = await startAdmin(c.MONITORING_PORT, host, {
      registry: this.registry,
      ready: () => this.xds.isReady(),
      configDump: () => ({
        workloads: this.index.workloads.list(), services: this.index.services.list(), authorizations: this.index.authorizations.list(),
        xds: { [TypeUrl.address]: this.xds.store.size(TypeUrl.address), [TypeUrl.authorization]: this.xds.store.size(TypeUrl.authorization) },
      }),
      connections: () => this.xds.debugConnections(),
      debugAccess: (authorization, path) => this.debugAccess.check(authorization, path),
    });
    this.ports.monitoring = (this.admin.address() as { port: number }).port;
    this.leader.start();
    await Promise.all(Object.values(inputs).map((col: Collection<unknown>) => col.synced));
    this.xds.flush();
    this.xds.setReady(true);
    this.log.info({ ports: this.ports }, "caches synced: serving xDS");
  }

  async stop(): Promise<void> {
    if (this.reaper) clearInterval(this.reaper);
    this.leader.stop();
    await this.roots.stop();
    await this.publisher?.stop();
    this.stopFeed?.();
    await Promise.all(this.informers.map((i) => i.stop()));
    await this.xds.close(500);
    for (const s of this.grpcServers) s.forceShutdown();
    await new Promise<void>((r) => (this.admin ? this.admin.close(() => r()) : r()));
  }
}
