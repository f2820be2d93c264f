// The controller's configuration: environment variables with Istio's names where Istio has one, validated at
// start. A bad value stops the program with a message naming the variable and the fix.
import { z } from "zod";

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** "100ms", "10s", "1m", "1h" → milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a duration (use e.g. 100ms, 10s, 1m)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
}

const port = (def: number) => z.coerce.number().int().min(0).max(65535).default(def);
const bool = (def: boolean) => z.enum(["true", "false", "1", "0"]).default(def ? "true" : "false").transform((v) => v === "true" || v === "1");
const duration = (def: string) => z.string().default(def).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
    return z.NEVER;
  }
});
const dns = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a DNS name (lower-case letters, digits, '-' and '.')");

const Env = z.object({
  POD_NAMESPACE: dns.default("istio-system"),
  POD_NAME: z.string().default(""),
  CLUSTER_ID: z.string().min(1).default("Kubernetes"),
  TRUST_DOMAIN: dns.default("cluster.local"),
  DOMAIN_SUFFIX: dns.default("cluster.local"),
  NETWORK: z.string().default(""),
  PILOT_DEBOUNCE_AFTER: duration("100ms"),
  PILOT_DEBOUNCE_MAX: duration("10s"),
  TOKEN_AUDIENCES: z.string().default("istio-ca").transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean)),
  XDS_AUTH: bool(true),
  XDS_PLAINTEXT_PORT: port(0),
  XDS_TLS_PORT: port(15012),
  MONITORING_PORT: port(15014),
  AMBIENT_ENABLE_STATUS: bool(true),
  /** "<ns>/<sa>,…": node proxies allowed to impersonate workloads on their node. Default: <POD_NAMESPACE>/ztunnel. */
  CA_TRUSTED_NODE_ACCOUNTS: z.string().optional().transform((v) => v?.split(",").map((s) => s.trim()).filter(Boolean)),
  DEFAULT_WORKLOAD_CERT_TTL: duration("24h"),
  MAX_WORKLOAD_CERT_TTL: duration("24h"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
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
};

/** Reads and validates the configuration; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return parse(env) as Config;
}

function parse(env: NodeJS.ProcessEnv): z.infer<typeof Env> {
  const vars = Object.fromEntries(Object.keys(Env.shape).filter((k) => env[k] !== undefined && env[k] !== "").map((k) => [k, env[k]]));
  const r = Env.safeParse(vars);
  if (r.success) {
    r.data.CA_TRUSTED_NODE_ACCOUNTS ??= [`${r.data.POD_NAMESPACE}/ztunnel`];
    return r.data;
  }
  const lines = r.error.issues.map((i) => {
    const key = String(i.path[0]) as keyof Config;
    return `${key}=${JSON.stringify(env[key])}: ${i.message}${FIX[key] ? ` (set it to ${FIX[key]})` : ""}`;
  });
  throw new ConfigError(`invalid configuration:\n  ${lines.join("\n  ")}`);
}
