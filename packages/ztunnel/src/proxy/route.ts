// The outbound routing decision for a captured connection to dstIp:dstPort, in ztunnel's order:
//   1. a Service VIP whose Service has a waypoint → HBONE to the waypoint, :authority = the original VIP:port;
//   2. a Service VIP → a random healthy endpoint, service port translated to its target port;
//      otherwise a workload by IP; otherwise plain TCP to the original destination;
//   3. a workload-addressed waypoint (not for service-addressed traffic, not when the source is that waypoint);
//   4. HBONE to <pod IP>:15008 with :authority <pod IP>:<target port> when the destination is in the mesh,
//      plain TCP to <pod IP>:<target port> when it is not.
import { Ports, bytesToIp, formatSpiffeId, istio, serviceResourceName, workloadIdentity } from "@ambit/protocol";
import type { ProxyState, Service, Workload } from "../state.js";

export type Route =
  | {
      kind: "hbone";
      /** Where to dial: the pod's or the waypoint's HBONE address. */
      ip: string;
      port: number;
      /** The CONNECT :authority. */
      authority: { ip: string; port: number };
      /** Acceptable server identities. */
      expected: string[];
      workload: Workload;
      service?: Service;
      viaWaypoint: boolean;
    }
  | { kind: "tcp"; ip: string; port: number; workload?: Workload; service?: Service }
  | { kind: "refuse"; reason: string; service?: Service };

const identityUri = (w: Workload) => formatSpiffeId(workloadIdentity(w));

function ipOf(w: Workload, preferV6: boolean): string | undefined {
  const ips = (w.addresses ?? []).map((a) => bytesToIp(a));
  return ips.find((ip) => ip.includes(":") === preferV6) ?? ips[0];
}

const serviceKey = (svc: Service) => serviceResourceName(svc.namespace ?? "", svc.hostname ?? "");

/** The target port of an endpoint for a service port: its own port list first, then the Service's; 0 = none. */
export function targetPort(svc: Service, w: Workload, servicePort: number, key = serviceKey(svc)): number {
  const own = w.services?.[key]?.ports?.find((p) => p.service_port === servicePort);
  if (own?.target_port) return own.target_port;
  const port = svc.ports?.find((p) => p.service_port === servicePort);
  if (!port) return (svc.ports?.length ?? 0) === 0 ? servicePort : 0;
  return port.target_port ?? 0;
}

/** Random pick, weighted (uniform when every weight is 0). */
function weightedPick<T>(list: T[], weight: (x: T) => number): T | undefined {
  const total = list.reduce((n, x) => n + weight(x), 0);
  if (total <= 0) return list[Math.floor(Math.random() * list.length)];
  let r = Math.random() * total;
  for (const x of list) if ((r -= weight(x)) < 0) return x;
  return list[list.length - 1];
}

/** Resolves a GatewayAddress (waypoint) to a workload and its HBONE address. */
function resolveWaypoint(state: ProxyState, network: string, gw: istio.workload.GatewayAddress.$Properties, preferV6: boolean): { w: Workload; ip: string; port: number; service?: Service } | null {
  const mtlsPort = gw.hbone_mtls_port || Ports.hbone;
  if (gw.address?.address) {
    const ip = bytesToIp(gw.address.address);
    const w = state.workloadByIp(gw.address.network ?? network, ip);
    if (w) return { w, ip, port: mtlsPort };
    const svc = state.serviceByIp(gw.address.network ?? network, ip);
    return svc ? endpointOf(state, svc, mtlsPort, preferV6) : null;
  }
  if (gw.hostname?.hostname) {
    const svc = state.serviceByHostname(gw.hostname.hostname, gw.hostname.namespace ?? "");
    return svc ? endpointOf(state, svc, mtlsPort, preferV6) : null;
  }
  return null;
}

function endpointOf(state: ProxyState, svc: Service, servicePort: number, preferV6: boolean): { w: Workload; ip: string; port: number; service: Service } | null {
  const key = serviceKey(svc);
  // Addresses are turned into text for the chosen endpoint only (this runs per outbound connection).
  const candidates = state.endpoints(key).flatMap((w) => {
    const port = (w.addresses?.length ?? 0) > 0 ? targetPort(svc, w, servicePort, key) : 0;
    return port ? [{ w, port }] : [];
  });
  // Weighted by capacity (default 1).
  const chosen = weightedPick(candidates, (x) => x.w.capacity?.value ?? 1);
  return chosen ? { ...chosen, ip: ipOf(chosen.w, preferV6)!, service: svc } : null;
}

export interface RouteInput {
  state: ProxyState;
  network: string;
  /** The source pod's workload, when xDS knows it. */
  source?: Workload;
  dstIp: string;
  dstPort: number;
}

export function route({ state, network, source, dstIp, dstPort }: RouteInput): Route {
  const preferV6 = dstIp.includes(":");
  const svc = state.serviceByIp(network, dstIp);
  // The source is the waypoint when it is the resolved waypoint workload or any replica of the waypoint Service
  // (the resolved one is a random pick among them).
  const sourceIsWaypointOf = (gw: istio.workload.GatewayAddress.$Properties | null | undefined, waypoint?: { w: Workload; service?: Service }) =>
    !!gw && !!source && !!waypoint && (source.uid === waypoint.w.uid ||
      (!!waypoint.service && !!source.services?.[serviceKey(waypoint.service)]));

  if (svc) {
    const gw = pickWaypoint(svc);
    if (gw) {
      const wp = resolveWaypoint(state, network, gw, preferV6);
      if (!wp) return { kind: "refuse", reason: `waypoint of ${svc.hostname} is unknown or has no endpoint`, service: svc };
      if (!sourceIsWaypointOf(gw, wp)) return viaWaypoint(wp, dstIp, dstPort, svc);
    }
    if (svc.load_balancing?.mode === istio.workload.LoadBalancing.Mode.PASSTHROUGH) {
      const w = state.workloadByIp(network, dstIp);
      return direct(w, dstIp, dstPort, svc);
    }
    const ep = endpointOf(state, svc, dstPort, preferV6);
    if (!ep) return { kind: "refuse", reason: `no healthy upstream for ${svc.hostname}:${dstPort}`, service: svc };
    return direct(ep.w, ep.ip, ep.port, svc);
  }

  const w = state.workloadByIp(network, dstIp);
  if (!w) return { kind: "tcp", ip: dstIp, port: dstPort };
  if (w.waypoint) {
    const wp = resolveWaypoint(state, network, w.waypoint, preferV6);
    if (!wp) return { kind: "refuse", reason: `waypoint of workload ${w.name} is unknown or has no endpoint` };
    if (!sourceIsWaypointOf(w.waypoint, wp)) return viaWaypoint(wp, dstIp, dstPort);
  }
  return direct(w, dstIp, dstPort);
}

function pickWaypoint(svc: Service): istio.workload.GatewayAddress.$Properties | undefined {
  const weighted = (svc.weighted_waypoints ?? []).filter((x) => (x.weight ?? 0) > 0 && x.destination);
  return weightedPick(weighted, (x) => x.weight!)?.destination ?? svc.waypoint ?? undefined;
}

/** HBONE to a waypoint; the :authority stays the original destination. */
function viaWaypoint(wp: { w: Workload; ip: string; port: number; service?: Service }, dstIp: string, dstPort: number, svc?: Service): Route {
  return {
    kind: "hbone", ip: wp.ip, port: wp.port, authority: { ip: dstIp, port: dstPort }, expected: [identityUri(wp.w), ...(wp.service?.subject_alt_names ?? [])],
    workload: wp.w, ...(svc ? { service: svc } : {}), viaWaypoint: true,
  };
}

function direct(w: Workload | undefined, ip: string, port: number, svc?: Service): Route {
  if (w && w.tunnel_protocol === istio.workload.TunnelProtocol.HBONE) {
    return {
      kind: "hbone", ip, port: Ports.hbone, authority: { ip, port },
      expected: [identityUri(w), ...(svc?.subject_alt_names ?? [])], workload: w, viaWaypoint: false, ...(svc ? { service: svc } : {}),
    };
  }
  return { kind: "tcp", ip, port, ...(w ? { workload: w } : {}), ...(svc ? { service: svc } : {}) };
}
