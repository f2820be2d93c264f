// Waypoint binding: which waypoint a pod or a service uses, from the labels istio.io/use-waypoint (and
// istio.io/use-waypoint-namespace) on the object or, failing that, on its namespace. A Gateway is a usable
// waypoint once it has a status address; its traffic type (istio.io/waypoint-for) says what may bind.
import type { istio } from "@ambit/protocol";
import { ipToBytes } from "@ambit/protocol";
import type { Gateway, MeshSettings, ObjectMeta } from "./types.js";

export type TrafficType = "service" | "workload" | "all" | "none";

export interface Waypoint {
  namespace: string;
  name: string;
  address: istio.workload.GatewayAddress.$Properties;
  trafficType: TrafficType;
}

const USE = "istio.io/use-waypoint";
const USE_NS = "istio.io/use-waypoint-namespace";
const FOR = "istio.io/waypoint-for";
const HBONE_PORT = 15008;

/** A Gateway as a waypoint; null until it has an address. Prefers a hostname address. */
export function waypointFromGateway(gw: Gateway, settings: MeshSettings): Waypoint | null {
  const addrs = gw.status?.addresses ?? [];
  const host = addrs.find((a) => a.type === "Hostname");
  const ip = addrs.find((a) => (a.type ?? "IPAddress") === "IPAddress");
  const ns = gw.metadata.namespace!;
  let address: istio.workload.GatewayAddress.$Properties;
  if (host) address = { hostname: { namespace: ns, hostname: host.value }, hbone_mtls_port: HBONE_PORT };
  else if (ip) address = { address: { ...(settings.network ? { network: settings.network } : {}), address: ipToBytes(ip.value) }, hbone_mtls_port: HBONE_PORT };
  else return null;
  const t = gw.metadata.labels?.[FOR];
  const trafficType: TrafficType = t === "workload" || t === "all" || t === "none" ? t : "service";
  return { namespace: ns, name: gw.metadata.name, address, trafficType };
}

export interface WaypointRef {
  namespace: string;
  name: string;
  /** Whether the object carries the label itself (a mismatch is then worth reporting). */
  explicit: boolean;
}

/** The waypoint an object asks for: its own label, else its namespace's; null for none (or "none"). */
export function waypointRef(obj: ObjectMeta, ns: ObjectMeta | undefined): WaypointRef | null {
  const own = obj.labels?.[USE];
  if (own !== undefined) return own === "none" || own === "" ? null : { name: own, namespace: obj.labels?.[USE_NS] || obj.namespace!, explicit: true };
  const inherited = ns?.labels?.[USE];
  if (!inherited || inherited === "none") return null;
  return { name: inherited, namespace: ns?.labels?.[USE_NS] || obj.namespace!, explicit: false };
}

/** Whether a waypoint of that traffic type serves a target of this kind. */
export function accepts(trafficType: TrafficType, kind: "service" | "workload"): boolean {
  return trafficType === "all" || trafficType === kind;
}
