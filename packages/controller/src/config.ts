// The controller's configuration: environment variables with Istio's names where Istio has one, validated at
// start. A bad value stops the program with a message naming the variable and the fix.
import { z } from "zod";
import { envVar, parseEnv } from "@ambit/protocol";

export { ConfigError } from "@ambit/protocol";

const { port, bool, duration, list, size, dnsName: dns } = envVar;

const Env = z.object({
  POD_NAMESPACE: dns.default("istio-system"),
  POD_NAME: z.string().default(""),
  CLUSTER_ID: z.string().min(1).default("Kubernetes"),
  TRUST_DOMAIN: dns.default("cluster.local"),
  DOMAIN_SUFFIX: dns.default("cluster.local"),
  NETWORK: z.string().default(""),
  PILOT_DEBOUNCE_AFTER: duration("100ms"),
  PILOT_DEBOUNCE_MAX: duration("10s"),
  TOKEN_AUDIENCES: list("istio-ca"),
  XDS_AUTH: bool(true),
  XDS_PLAINTEXT_PORT: port(0),
  XDS_TLS_PORT: port(15012),
  MONITORING_PORT: port(15014),
  /** Largest gRPC request message read on 15010/15012 (xDS and CA); larger ones are refused unread. Istio's name (sic). */
  ISTIO_GPRC_MAXRECVMSGSIZE: size(4 * 1024 * 1024, 1024, 200 * 1024 * 1024),
  AMBIENT_ENABLE_STATUS: bool(true),
  /** "<ns>/<sa>,…": node proxies allowed to impersonate workloads on their node. Default: <POD_NAMESPACE>/ztunnel. */
  CA_TRUSTED_NODE_ACCOUNTS: z.string().optional().transform((v) => v?.split(",").map((s) => s.trim()).filter(Boolean)),
  DEFAULT_WORKLOAD_CERT_TTL: duration("24h"),
  MAX_WORKLOAD_CERT_TTL: duration("24h"),
  LOG_LEVEL: envVar.logLevel,
});

export type Config = Omit<z.infer<typeof Env>, "CA_TRUSTED_NODE_ACCOUNTS"> & { CA_TRUSTED_NODE_ACCOUNTS: string[] };

const FIX: Partial<Record<keyof Config, string>> = {
  PILOT_DEBOUNCE_AFTER: "a duration such as 100ms",
  PILOT_DEBOUNCE_MAX: "a duration such as 10s",
  XDS_AUTH: "true or false",
  DEFAULT_WORKLOAD_CERT_TTL: "a duration such as 24h",
  MAX_WORKLOAD_CERT_TTL: "a duration such as 24h",
  AMBIENT_ENABLE_STATUS: "true or false",
  XDS_PLAINTEXT_PORT: "a port number (0 turns it off)",
  XDS_TLS_PORT: "a port number",
  MONITORING_PORT: "a port number",
  ISTIO_GPRC_MAXRECVMSGSIZE: "a size in bytes such as 4194304 or 4Mi",
};

/** Reads and validates the configuration; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const c = parseEnv(Env, env, FIX);
  return { ...c, CA_TRUSTED_NODE_ACCOUNTS: c.CA_TRUSTED_NODE_ACCOUNTS ?? [`${c.POD_NAMESPACE}/ztunnel`] };
}
