// Ports, marks, header names, labels and annotations that Istio's ambient mode uses on the wire and on
// Kubernetes objects. Ambit uses the same values so that its components mix with Istio's.

/** ztunnel's listeners inside each enrolled pod's network namespace, and its own admin ports. */
export const Ports = {
  /** Outbound capture (TCP), in the pod netns. */
  outbound: 15001,
  /** Inbound plaintext capture, in the pod netns. */
  inboundPlaintext: 15006,
  /** Inbound HBONE (mTLS + HTTP/2 CONNECT), in the pod netns; also the HBONE destination port. */
  hbone: 15008,
  /** DNS proxy (UDP + TCP), in the pod netns. */
  dns: 15053,
  /** ztunnel admin (localhost): /config_dump, /quitquitquit, /logging. */
  ztunnelAdmin: 15000,
  /** Prometheus metrics: /metrics, /stats/prometheus. */
  metrics: 15020,
  /** Readiness: /healthz/ready. */
  readiness: 15021,
  /** Control plane: plaintext gRPC (xDS). */
  xdsPlaintext: 15010,
  /** Control plane: TLS gRPC (xDS + CA). */
  xdsTls: 15012,
  /** Control plane: monitoring (metrics, debug). */
  controlPlaneMonitoring: 15014,
} as const;

/** Ports a destination must never be when the target is ztunnel itself (self-call guard). */
export const ZTUNNEL_SELF_PORTS: readonly number[] = [Ports.outbound, Ports.inboundPlaintext, Ports.hbone];

/** Socket and packet marks shared by ztunnel and the CNI agent's in-pod rules. */
export const Marks = {
  /** SO_MARK on every socket ztunnel opens for a pod (1337). */
  ztunnel: 0x539,
  /** Connmark/fwmark for replies to ztunnel's spoofed-source connections. */
  tproxy: 0x111,
  /** Mask applied to both marks. */
  mask: 0xfff,
  /** Policy-routing table that delivers tproxy-marked packets locally. */
  routeTable: 100,
  /** Priority of the "fwmark 0x111/0xfff lookup 100" rule. */
  routeRulePriority: 32764,
} as const;

/** Source address the CNI agent SNATs kubelet probes to, so in-pod rules can exempt them. */
export const PROBE_SNAT_IPV4 = "169.254.7.127";
export const PROBE_SNAT_IPV6 = "fd16:9254:7127:1337:ffff:ffff:ffff:ffff";

/** HTTP/2 CONNECT request headers of HBONE. */
export const HboneHeaders = {
  baggage: "baggage",
  forwarded: "forwarded",
  traceparent: "traceparent",
  /** Only on the inner CONNECT of double HBONE. */
  forwardedNetwork: "x-forwarded-network",
} as const;

/** HTTP/2 settings ztunnel uses for HBONE. */
export const Http2Defaults = {
  streamWindow: 4 * 1024 * 1024,
  connectionWindow: 16 * 1024 * 1024,
  maxFrameSize: 1024 * 1024,
  clientMaxStreams: 100,
  serverMaxStreams: 200,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 20_000,
  poolIdleReleaseMs: 5 * 60_000,
} as const;

/** Labels and annotations of ambient mode on Kubernetes objects. */
export const Labels = {
  dataplaneMode: "istio.io/dataplane-mode",
  useWaypoint: "istio.io/use-waypoint",
  useWaypointNamespace: "istio.io/use-waypoint-namespace",
  waypointFor: "istio.io/waypoint-for",
  canonicalName: "service.istio.io/canonical-name",
  canonicalRevision: "service.istio.io/canonical-revision",
  workloadName: "service.istio.io/workload-name",
  network: "topology.istio.io/network",
  tunnel: "networking.istio.io/tunnel",
} as const;

export const Annotations = {
  /** Written by the CNI agent once ztunnel has the pod: "enabled" (or "pending"). */
  redirection: "ambient.istio.io/redirection",
} as const;

/** Values of istio.io/dataplane-mode. */
export const DataplaneMode = { ambient: "ambient", none: "none" } as const;

export const DEFAULT_TRUST_DOMAIN = "cluster.local";
export const DEFAULT_CLUSTER_ID = "Kubernetes";
export const DEFAULT_SERVICE_ACCOUNT = "default";
export const DEFAULT_DOMAIN_SUFFIX = "cluster.local";
/** Default ZDS socket path (the CNI agent listens, ztunnel connects). */
export const DEFAULT_ZDS_SOCKET = "/var/run/ztunnel/ztunnel.sock";
/** Token audience the control plane checks on xDS and CA requests. */
export const CA_TOKEN_AUDIENCE = "istio-ca";
/** CA request metadata key naming the identity ztunnel requests a certificate for. */
export const IMPERSONATED_IDENTITY_KEY = "ImpersonatedIdentity";

/** The CA's one gRPC method (IstioCertificateService on istiod's 15012). */
export const CREATE_CERTIFICATE_PATH = "/istio.v1.auth.IstioCertificateService/CreateCertificate";
