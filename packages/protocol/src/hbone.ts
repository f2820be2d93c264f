// HBONE request-header values (the CONNECT's :authority, forwarded, traceparent, baggage).

/** ":authority" of a CONNECT: "ip:port", IPv6 in brackets. */
export function formatAuthority(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses "ip:port", "[v6]:port" or "host:port"; null when malformed or the port is out of range. */
export function parseAuthority(authority: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(authority);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

/** `forwarded: for="<ip:port>"[;host=<service fqdn>]`. */
export function formatForwarded(clientAddress: string, clientPort: number, serviceHost?: string): string {
  const value = `for="${formatAuthority(clientAddress, clientPort)}"`;
  return serviceHost ? `${value};host=${serviceHost}` : value;
}

/** W3C traceparent "00-<32 hex>-<16 hex>-00" from 16 bytes of trace id and 8 of parent id. */
export function formatTraceparent(traceId: Uint8Array, parentId: Uint8Array): string {
  if (traceId.length !== 16 || parentId.length !== 8) throw new RangeError("traceparent needs a 16-byte trace id and an 8-byte parent id");
  return `00-${Buffer.from(traceId).toString("hex")}-${Buffer.from(parentId).toString("hex")}-00`;
}

export interface BaggageFields {
  clusterName?: string;
  namespace?: string;
  /** Lower-cased workload type: deployment, cronjob, pod or job. */
  workloadType?: string;
  workloadName?: string;
  serviceName?: string;
  serviceVersion?: string;
  region?: string;
  zone?: string;
}

/** The baggage header ztunnel sends: empty values are omitted. */
export function formatBaggage(f: BaggageFields): string {
  const entries: [string, string | undefined][] = [
    ["k8s.cluster.name", f.clusterName],
    ["k8s.namespace.name", f.namespace],
    [`k8s.${f.workloadType ?? "deployment"}.name`, f.workloadName],
    ["service.name", f.serviceName],
    ["service.version", f.serviceVersion],
    ["cloud.region", f.region],
    ["cloud.availability_zone", f.zone],
  ];
  return entries.filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(",");
}
