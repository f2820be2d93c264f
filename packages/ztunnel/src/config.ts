// ztunnel's configuration: Istio's environment variables, validated at start. A bad value stops the program with
// a message that names the variable and what to set it to.
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import {
  ConfigError, DEFAULT_CLUSTER_ID, DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, DEFAULT_ZDS_SOCKET, Http2Defaults, Marks, Ports, envVar, parseDuration, parseEnv,
} from "@ambit/protocol";

const { int, port, bool, duration, size, dnsName: name } = envVar;
/** A duration that must be more than zero (a timer of 0 would fire at once). */
const positive = (def: string) => duration(def).refine((ms) => ms > 0, { message: "must be more than 0" });

const Env = z.object({
  XDS_ADDRESS: z.string().optional(),
  CA_ADDRESS: z.string().optional(),
  XDS_ROOT_CA: z.string().default("/var/run/secrets/istio/root-cert.pem"),
  CA_ROOT_CA: z.string().default("/var/run/secrets/istio/root-cert.pem"),
  ALT_XDS_HOSTNAME: z.string().optional(),
  ALT_CA_HOSTNAME: z.string().optional(),
  AUTH_TOKEN: z.string().default("/var/run/secrets/tokens/istio-token"),
  CLUSTER_ID: z.string().min(1).default(DEFAULT_CLUSTER_ID),
  ISTIO_META_CLUSTER_ID: z.string().optional(),
  NODE_NAME: z.string().min(1),
  POD_NAME: z.string().default(""),
  POD_NAMESPACE: name.default("istio-system"),
  INSTANCE_IP: z.string().default(""),
  SERVICE_ACCOUNT: name.default(DEFAULT_SERVICE_ACCOUNT),
  TRUST_DOMAIN: name.default(DEFAULT_TRUST_DOMAIN),
  NETWORK: z.string().default(""),
  SECRET_TTL: duration("24h"),
  INPOD_UDS: z.string().min(1).default(DEFAULT_ZDS_SOCKET),
  PACKET_MARK: int(Marks.ztunnel, 1, 0xffffffff),
  IPV6_ENABLED: bool(true),
  ENABLE_ORIG_SRC: z.enum(["true", "false", "auto"]).default("auto"),
  HTTP2_STREAM_WINDOW_SIZE: size(Http2Defaults.streamWindow, 65_535, 2 ** 31 - 1),
  HTTP2_CONNECTION_WINDOW_SIZE: size(Http2Defaults.connectionWindow, 65_535, 2 ** 31 - 1),
  HTTP2_FRAME_SIZE: size(Http2Defaults.maxFrameSize, 16_384, 16_777_215),
  POOL_MAX_STREAMS_PER_CONNECTION: int(Http2Defaults.clientMaxStreams, 1, 10_000),
  POOL_UNUSED_RELEASE_TIMEOUT: duration("5m"),
  HTTP2_KEEPALIVE_INTERVAL: positive(`${Http2Defaults.pingIntervalMs}ms`),
  HTTP2_KEEPALIVE_TIMEOUT: positive(`${Http2Defaults.pingTimeoutMs}ms`),
  HBONE_HANDSHAKE_TIMEOUT: positive("5s"),
  HBONE_MAX_STREAMS_PER_CONNECTION: int(Http2Defaults.serverMaxStreams, 1, 10_000),
  HBONE_MAX_CONNECTIONS_PER_IDENTITY: int(512, 1, 1_000_000),
  HBONE_IDLE_TIMEOUT: positive("10m"),
  HBONE_MAX_STREAMS_PER_IDENTITY: int(2048, 1, 10_000_000),
  HBONE_MAX_EARLY_RESETS: int(100, 1, 1_000_000),
  HALF_CLOSE_IDLE_TIMEOUT: positive("5m"),
  KEEPALIVE_ENABLED: bool(true),
  KEEPALIVE_TIME: positive("180s"),
  CONNECTION_TERMINATION_DEADLINE: z.string().optional(),
  TERMINATION_GRACE_PERIOD_SECONDS: z.coerce.number().int().min(0).optional(),
  ADMIN_PORT: port(Ports.ztunnelAdmin),
  STATS_PORT: port(Ports.metrics),
  READINESS_PORT: port(Ports.readiness),
  LOG_LEVEL: envVar.logLevel,
});

const FIX: Record<string, string> = {
  NODE_NAME: "the node's name (downward API spec.nodeName)",
  SECRET_TTL: "a duration such as 24h",
  POOL_UNUSED_RELEASE_TIMEOUT: "a duration such as 5m",
  HTTP2_KEEPALIVE_INTERVAL: "a duration above 0 such as 10s",
  HTTP2_KEEPALIVE_TIMEOUT: "a duration above 0 such as 20s",
  HBONE_HANDSHAKE_TIMEOUT: "a duration above 0 such as 5s",
  HBONE_MAX_STREAMS_PER_CONNECTION: "a number of streams from 1 to 10000, such as 200",
  HBONE_MAX_CONNECTIONS_PER_IDENTITY: "a number of connections from 1, such as 512",
  HBONE_IDLE_TIMEOUT: "a duration above 0 such as 5m",
  HBONE_MAX_STREAMS_PER_IDENTITY: "a number of streams from 1, such as 2048",
  HBONE_MAX_EARLY_RESETS: "a number of streams from 1, such as 100",
  HALF_CLOSE_IDLE_TIMEOUT: "a duration above 0 such as 5m",
  KEEPALIVE_ENABLED: "true or false",
  KEEPALIVE_TIME: "a duration above 0 such as 180s",
  CONNECTION_TERMINATION_DEADLINE: "a duration such as 5s",
  TERMINATION_GRACE_PERIOD_SECONDS: "a whole number of seconds such as 30",
  POOL_MAX_STREAMS_PER_CONNECTION: "a number of streams from 1 to 10000, such as 100",
  PACKET_MARK: "a number such as 1337",
  IPV6_ENABLED: "true or false",
  ENABLE_ORIG_SRC: "true, false or auto",
  HTTP2_STREAM_WINDOW_SIZE: "a size such as 4Mi",
  HTTP2_CONNECTION_WINDOW_SIZE: "a size such as 16Mi",
  HTTP2_FRAME_SIZE: "a size such as 1Mi",
  ADMIN_PORT: "a port number",
  STATS_PORT: "a port number",
  READINESS_PORT: "a port number",
};

export interface Config {
  xdsAddress: string;
  caAddress: string;
  /** PEM of the control plane's roots, or null for the system roots; re-read on reconnect. */
  xdsRoots: () => string | null;
  caRoots: () => string | null;
  xdsServername?: string;
  caServername?: string;
  /** The bearer token, re-read per request; undefined when there is none. */
  token: () => string | undefined;
  clusterId: string;
  xdsHeaders: Record<string, string>;
  caHeaders: Record<string, string>;
  /** ISTIO_META_* (prefix stripped) and ISTIO_METAJSON_* (parsed) for the xDS node metadata. */
  nodeMetadata: Record<string, unknown>;
  nodeName: string;
  podName: string;
  podNamespace: string;
  instanceIp: string;
  serviceAccount: string;
  trustDomain: string;
  network: string;
  secretTtlSeconds: number;
  zdsSocket: string;
  packetMark: number;
  ipv6: boolean;
  origSrc: "true" | "false" | "auto";
  /** The HBONE client (pool): windows, frame size, streams per pooled connection, idle release, PING keepalive. */
  h2: { streamWindow: number; connectionWindow: number; maxFrameSize: number; maxStreamsPerConnection: number; idleReleaseMs: number; keepaliveIntervalMs: number; keepaliveTimeoutMs: number };
  /** The inbound HBONE server (15008): its limits (see README "Limits and timeouts"). */
  hbone: {
    /** TLS, and then the peer's first SETTINGS, each within this. */
    handshakeTimeoutMs: number;
    /** A connection without an open stream for this long is closed (GOAWAY NO_ERROR). */
    idleTimeoutMs: number;
    /** SETTINGS_MAX_CONCURRENT_STREAMS advertised (and enforced) per connection. */
    maxStreamsPerConnection: number;
    /** Open connections per peer SPIFFE identity, per pod. */
    maxConnectionsPerIdentity: number;
    /** Open streams (tunnels) per peer SPIFFE identity, over all its connections, per pod. */
    maxStreamsPerIdentity: number;
    /** Streams a peer may reset before they were answered, per connection and per 10 s, before GOAWAY. */
    maxEarlyResets: number;
  };
  /** A relay with one direction finished (a FIN passed, or a side closed) ends when no byte moved for this long. */
  halfCloseIdleMs: number;
  /** TCP keepalive idle time on every proxied socket; null when KEEPALIVE_ENABLED=false. */
  tcpKeepaliveMs: number | null;
  drainDeadlineMs: number;
  ports: { admin: number; stats: number; readiness: number };
  logLevel: "trace" | "debug" | "info" | "warn" | "error";
}

/** Roots from a file path, the literal SYSTEM (null: the OS roots), or inline PEM when no such file exists. */
function rootsReader(value: string, fs: { exists: (p: string) => boolean; read: (p: string) => string }): () => string | null {
  if (value === "SYSTEM") return () => null;
  if (!fs.exists(value) && value.includes("-----BEGIN")) return () => value;
  return () => {
    if (!fs.exists(value)) throw new ConfigError(`control-plane root certificate ${value} does not exist (mount the istio-ca-root-cert ConfigMap there, or set XDS_ROOT_CA/CA_ROOT_CA)`);
    return fs.read(value);
  };
}

function prefixed(env: NodeJS.ProcessEnv, prefix: string): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith(prefix) && k.length > prefix.length && v !== undefined).map(([k, v]) => [k.slice(prefix.length), v!]));
}

function withScheme(address: string): string {
  return /^[a-z]+:\/\//i.test(address) ? address : `https://${address}`;
}

/** The drain deadline: CONNECTION_TERMINATION_DEADLINE, else the pod's grace period − 5 s (− 1 s if ≤ 10 s), else 5 s. */
function drainDeadline(deadline: string | undefined, grace: number | undefined): number {
  if (deadline !== undefined) {
    const ms = parseDuration(deadline);
    if (ms === null) throw new ConfigError(`CONNECTION_TERMINATION_DEADLINE=${JSON.stringify(deadline)}: is not a duration (set it to ${FIX["CONNECTION_TERMINATION_DEADLINE"]})`);
    return ms;
  }
  if (grace !== undefined) return Math.max(0, grace <= 10 ? grace - 1 : grace - 5) * 1000;
  return 5000;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, fs = { exists: existsSync, read: (p: string) => readFileSync(p, "utf8") }): Config {
  const e = parseEnv(Env, env, FIX);
  const defaultAddress = env["KUBERNETES_SERVICE_HOST"] ? "https://istiod.istio-system.svc:15012" : "https://localhost:15012";
  const metaJson = Object.fromEntries(Object.entries(prefixed(env, "ISTIO_METAJSON_")).map(([k, v]) => {
    try { return [k, JSON.parse(v) as unknown]; } catch { throw new ConfigError(`ISTIO_METAJSON_${k}: is not JSON`); }
  }));
  const meta = { ...prefixed(env, "ISTIO_META_"), ...metaJson };
  delete meta["CLUSTER_ID"];
  const tokenPath = e.AUTH_TOKEN;
  const token = fs.exists(tokenPath) || tokenPath.startsWith("/") ? () => (fs.exists(tokenPath) ? fs.read(tokenPath).trim() : undefined) : () => tokenPath;
  return {
    xdsAddress: withScheme(e.XDS_ADDRESS ?? defaultAddress),
    caAddress: withScheme(e.CA_ADDRESS ?? e.XDS_ADDRESS ?? defaultAddress),
    xdsRoots: rootsReader(e.XDS_ROOT_CA, fs),
    caRoots: rootsReader(e.CA_ROOT_CA, fs),
    ...(e.ALT_XDS_HOSTNAME ? { xdsServername: e.ALT_XDS_HOSTNAME } : {}),
    ...(e.ALT_CA_HOSTNAME ? { caServername: e.ALT_CA_HOSTNAME } : {}),
    token,
    clusterId: e.ISTIO_META_CLUSTER_ID || e.CLUSTER_ID,
    xdsHeaders: prefixed(env, "XDS_HEADER_"),
    caHeaders: prefixed(env, "CA_HEADER_"),
    nodeMetadata: meta,
    nodeName: e.NODE_NAME,
    podName: e.POD_NAME,
    podNamespace: e.POD_NAMESPACE,
    instanceIp: e.INSTANCE_IP,
    serviceAccount: e.SERVICE_ACCOUNT,
    trustDomain: e.TRUST_DOMAIN,
    network: e.NETWORK,
    secretTtlSeconds: Math.round(e.SECRET_TTL / 1000),
    zdsSocket: e.INPOD_UDS,
    packetMark: e.PACKET_MARK,
    ipv6: e.IPV6_ENABLED,
    origSrc: e.ENABLE_ORIG_SRC,
    h2: {
      streamWindow: e.HTTP2_STREAM_WINDOW_SIZE,
      connectionWindow: e.HTTP2_CONNECTION_WINDOW_SIZE,
      maxFrameSize: e.HTTP2_FRAME_SIZE,
      maxStreamsPerConnection: e.POOL_MAX_STREAMS_PER_CONNECTION,
      idleReleaseMs: e.POOL_UNUSED_RELEASE_TIMEOUT,
      keepaliveIntervalMs: e.HTTP2_KEEPALIVE_INTERVAL,
      keepaliveTimeoutMs: e.HTTP2_KEEPALIVE_TIMEOUT,
    },
    hbone: {
      handshakeTimeoutMs: e.HBONE_HANDSHAKE_TIMEOUT,
      idleTimeoutMs: e.HBONE_IDLE_TIMEOUT,
      maxStreamsPerConnection: e.HBONE_MAX_STREAMS_PER_CONNECTION,
      maxConnectionsPerIdentity: e.HBONE_MAX_CONNECTIONS_PER_IDENTITY,
      maxStreamsPerIdentity: e.HBONE_MAX_STREAMS_PER_IDENTITY,
      maxEarlyResets: e.HBONE_MAX_EARLY_RESETS,
    },
    halfCloseIdleMs: e.HALF_CLOSE_IDLE_TIMEOUT,
    tcpKeepaliveMs: e.KEEPALIVE_ENABLED ? e.KEEPALIVE_TIME : null,
    drainDeadlineMs: drainDeadline(e.CONNECTION_TERMINATION_DEADLINE, e.TERMINATION_GRACE_PERIOD_SECONDS),
    ports: { admin: e.ADMIN_PORT, stats: e.STATS_PORT, readiness: e.READINESS_PORT },
    logLevel: e.LOG_LEVEL,
  };
}
