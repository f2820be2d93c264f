// Environment and argument parsing for ambit-echo. Every mistake becomes a UsageError (exit code 2) whose message
// names the variable or flag and says how to fix it.
import { isIP } from "node:net";
import { hostname, networkInterfaces } from "node:os";

/** A configuration or command-line mistake; the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Who answered: reported in every HTTP reply and in the TCP greeting. */
export interface EchoIdentity {
  pod: string;
  namespace: string;
  node: string;
  ip: string;
}

type Env = Record<string, string | undefined>;

/** The pod's first non-loopback address (IPv4 first), for when POD_IP is not set. */
function firstInterfaceAddress(): string {
  const all = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  const external = all.filter((a) => !a.internal);
  return (external.find((a) => a.family === "IPv4") ?? external.find((a) => a.family === "IPv6"))?.address ?? "";
}

/** POD_NAME (or the hostname), POD_NAMESPACE, NODE_NAME, POD_IP (or the first non-loopback address). */
export function identityFromEnv(env: Env = process.env): EchoIdentity {
  return {
    pod: env["POD_NAME"] || hostname(),
    namespace: env["POD_NAMESPACE"] ?? "",
    node: env["NODE_NAME"] ?? "",
    ip: env["POD_IP"] || firstInterfaceAddress(),
  };
}

/** A port from the environment: 1–65535 listens there, 0 turns the listener off (null). */
export function portFromEnv(env: Env, name: string, fallback: number, what: string): number | null {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const text = raw.trim();
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(port) || port > 65535) {
    throw new UsageError(
      `${name}=${JSON.stringify(raw)} is not a valid port. Fix: set ${name} to an integer from 1 to 65535 ` +
        `(default ${fallback}), or to 0 to turn the ${what} listener off.`,
    );
  }
  return port === 0 ? null : port;
}

/** A boolean switch from the environment: 1/true/yes/on or 0/false/no/off (or unset/empty = off). */
export function flagFromEnv(env: Env, name: string): boolean {
  const raw = env[name];
  if (raw === undefined) return false;
  const text = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(text)) return true;
  if (["", "0", "false", "no", "off"].includes(text)) return false;
  throw new UsageError(`${name}=${JSON.stringify(raw)} is not a switch. Fix: set ${name}=1 to turn it on, or unset it (or 0) to turn it off.`);
}

export interface ServeConfig {
  httpPort: number | null;
  tcpPort: number | null;
  host: string;
  tcpGreeting: boolean;
  logRequests: boolean;
  identity: EchoIdentity;
}

export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_TCP_PORT = 9000;
export const DEFAULT_BIND_ADDRESS = "::";

/** Everything `ambit-echo serve` reads from the environment, validated. */
export function serveConfigFromEnv(env: Env = process.env): ServeConfig {
  const httpPort = portFromEnv(env, "HTTP_PORT", DEFAULT_HTTP_PORT, "HTTP");
  const tcpPort = portFromEnv(env, "TCP_PORT", DEFAULT_TCP_PORT, "TCP echo");
  if (httpPort === null && tcpPort === null) {
    throw new UsageError("HTTP_PORT=0 and TCP_PORT=0 turn off both listeners, leaving nothing to serve. Fix: give at least one of them a port.");
  }
  const host = (env["BIND_ADDRESS"] ?? "").trim() || DEFAULT_BIND_ADDRESS;
  if (isIP(host) === 0) {
    throw new UsageError(`BIND_ADDRESS=${JSON.stringify(env["BIND_ADDRESS"])} is not an IP address. Fix: use an address such as :: (all, dual stack; the default), 0.0.0.0 or 127.0.0.1.`);
  }
  return {
    httpPort,
    tcpPort,
    host,
    tcpGreeting: flagFromEnv(env, "TCP_GREETING"),
    logRequests: flagFromEnv(env, "ECHO_LOG_REQUESTS"),
    identity: identityFromEnv(env),
  };
}

/** Splits `args` into positionals and `--name value` / `--name=value` / `--switch` options, allowing only `known`. */
export function parseArgs(
  args: readonly string[],
  known: Record<string, "value" | "switch">,
  mode: string,
): { positionals: string[]; options: Map<string, string | true> } {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith("--") || arg === "--") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = known[name];
    if (kind === undefined) throw new UsageError(`${mode}: unknown option --${name}.`);
    if (kind === "switch") {
      if (eq >= 0) throw new UsageError(`${mode}: --${name} takes no value.`);
      options.set(name, true);
    } else if (eq >= 0) {
      options.set(name, arg.slice(eq + 1));
    } else {
      const value = args[i + 1];
      if (value === undefined) throw new UsageError(`${mode}: --${name} needs a value.`);
      options.set(name, value);
      i++;
    }
  }
  return { positionals, options };
}

/** A non-negative integer option (e.g. milliseconds or a count) with an upper bound. */
export function intOption(options: Map<string, string | true>, name: string, fallback: number, min: number, max: number): number {
  const raw = options.get(name);
  if (raw === undefined) return fallback;
  const value = typeof raw === "string" && /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} ${JSON.stringify(raw)} is not valid. Fix: give an integer from ${min} to ${max}.`);
  }
  return value;
}

/** A port given on the command line (1–65535). */
export function portArg(raw: string | undefined, what: string): number {
  const port = raw !== undefined && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`${what} ${JSON.stringify(raw ?? "")} is not a valid port. Fix: give an integer from 1 to 65535.`);
  }
  return port;
}
