// Configuration by environment variables, as every Ambit program reads it: Istio's variable names, one zod schema per
// program, and one error that names every bad variable and what to set it to. An empty variable counts as unset.
import { z } from "zod";

export class ConfigError extends Error {
  override name = "ConfigError";
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "100ms", "5s", "1m30s", "24h" → milliseconds; null when it is not a duration. */
export function parseDuration(v: string): number | null {
  const parts = v.match(/(\d+(?:\.\d+)?)(ms|s|m|h)/g);
  if (!parts || parts.join("") !== v) return null;
  return parts.reduce((sum, p) => { const m = /^([\d.]+)(ms|s|m|h)$/.exec(p)!; return sum + Number(m[1]) * UNITS[m[2]!]!; }, 0);
}

/** "4Mi", "16777216", "1Ki" → bytes; null when it is not a size. */
export function parseSize(v: string): number | null {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(v);
  if (!m) return null;
  return Number(m[1]) * ({ Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] ?? ""] ?? 1);
}

/** Schemas of the usual kinds of variable, each with its default. */
export const envVar = {
  int: (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def),
  port: (def: number) => envVar.int(def, 0, 65535),
  bool: (def: boolean) => z.enum(["true", "false", "1", "0"]).default(def ? "true" : "false").transform((v) => v === "true" || v === "1"),
  duration: (def: string) => z.string().default(def).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === null) { ctx.addIssue({ code: "custom", message: "is not a duration" }); return z.NEVER; }
    return ms;
  }),
  size: (def: number, min: number, max: number) => z.string().default(String(def)).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === null || n < min || n > max) { ctx.addIssue({ code: "custom", message: `is not a size between ${min} and ${max} bytes` }); return z.NEVER; }
    return n;
  }),
  /** A comma-separated list, blanks dropped. */
  list: (def: string) => z.string().default(def).transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean)),
  dnsName: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a DNS name (lower-case letters, digits, '-' and '.')"),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
};

/**
 * Reads the schema's variables from `env`. Throws a ConfigError with one line per bad variable:
 * `NAME="value": what is wrong (set it to <fix[NAME]>)`, or `NAME is not set: …` for a missing required one.
 */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv, fix: Partial<Record<string, string>> = {}): z.infer<S> {
  const vars = Object.fromEntries(Object.keys(schema.shape).filter((k) => env[k] !== undefined && env[k] !== "").map((k) => [k, env[k]]));
  const r = schema.safeParse(vars);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const key = String(i.path[0]);
    const shown = env[key] === undefined || env[key] === "" ? " is not set" : `=${JSON.stringify(env[key])}`;
    return `${key}${shown}: ${i.message}${fix[key] ? ` (set it to ${fix[key]})` : ""}`;
  });
  throw new ConfigError(`bad configuration:\n  ${lines.join("\n  ")}`);
}
