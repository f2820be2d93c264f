// ztunnel's access log (reference §8.2): JSON lines on the `access` scope. "connection opened" at debug,
// "connection complete" at info (error, with `error`, when the connection failed), "connection failed" at warn for a
// connection refused before it was ever counted as opened. Keys are flat and dotted, as ztunnel's JSON logs are.
import type { Logger } from "pino";
import { renderPrincipal, workloadPrincipal, type ConnectionInfo, type WorkloadInfo } from "./metrics.js";

/** The logger scope (pino child binding `scope`) that access logs are written under. */
export const ACCESS_SCOPE = "access";

export type AccessFields = Record<string, string | number | undefined>;

const direction = (info: ConnectionInfo) => (info.reporter === "source" ? "outbound" : "inbound");
// The pod name, else the canonical service: what ztunnel shows as `*.workload`.
const workloadName = (w: WorkloadInfo | undefined) => w?.name || w?.canonical_name || undefined;
const clusterOf = (w: WorkloadInfo | undefined, clusterId: string | undefined) => (w ? w.cluster_id || clusterId || undefined : undefined);

/**
 * The fields shared by "connection opened" and "connection complete". Unknown values are left out (pino drops
 * undefined). Identities are logged only for mTLS connections, and the source identity only from the verified peer.
 */
export function accessFields(info: ConnectionInfo, clusterId?: string): AccessFields {
  const { src, dst } = info;
  return {
    "src.addr": src.addr,
    "src.workload": workloadName(src.workload),
    "src.namespace": src.workload?.namespace || undefined,
    "src.identity": info.mtls ? renderPrincipal(src.identity) : undefined,
    "src.cluster": clusterOf(src.workload, clusterId),
    "dst.addr": dst.addr,
    "dst.hbone_addr": dst.hboneAddr || undefined,
    "dst.service": dst.service?.hostname || undefined,
    "dst.workload": workloadName(dst.workload),
    "dst.namespace": dst.workload?.namespace || undefined,
    "dst.identity": info.mtls ? (renderPrincipal(dst.identity) ?? workloadPrincipal(dst.workload)) : undefined,
    "dst.cluster": clusterOf(dst.workload, clusterId),
    direction: direction(info),
  };
}

export function logOpened(log: Logger, fields: AccessFields): void {
  if (log.isLevelEnabled("debug")) log.debug(fields, "connection opened");
}

export interface Completion {
  /** Bytes as seen by the reporting workload: what it sent and what it received (already un-flipped). */
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  error?: string;
}

export function logComplete(log: Logger, fields: AccessFields, c: Completion): void {
  const level = c.error === undefined ? "info" : "error";
  if (!log.isLevelEnabled(level)) return;
  const line = { ...fields, bytes_sent: c.bytesSent, bytes_recv: c.bytesRecv, duration: `${Math.floor(c.durationMs)}ms`, error: c.error };
  log[level](line, "connection complete");
}

/** An early deny: only the addresses, the direction and why (ztunnel logs no more for these). */
/** The fields of the warn "connection failed" line. */
export function failedFields(info: ConnectionInfo, error: string): object {
  return { "src.addr": info.src.addr, "dst.addr": info.dst.addr, direction: direction(info), error };
}

export function errorText(e: Error | string | undefined): string | undefined {
  if (e === undefined) return undefined;
  if (typeof e === "string") return e;
  return e.message || e.name || String(e);
}
