// Service → istio.workload.Service, as istiod builds it for ztunnel.
import { ipToBytes, istio, serviceHostname } from "@ambit/protocol";
import type { MeshSettings, Service, ServicePort } from "./types.js";
import type { Waypoint } from "./waypoints.js";

type ServiceOut = istio.workload.Service.$Properties;
const AP = istio.workload.AppProtocol;
const LB = istio.workload.LoadBalancing;

/** appProtocol, or the port name's protocol prefix ("http-web"), as ztunnel's AppProtocol. */
export function appProtocol(p: ServicePort): number {
  const raw = (p.appProtocol ?? p.name?.split("-")[0] ?? "").toLowerCase();
  switch (raw) {
    case "http": return AP.HTTP11;
    case "http2": case "kubernetes.io/h2c": return AP.HTTP2;
    case "grpc": case "grpc-web": return AP.GRPC;
    case "tcp": return AP.TCP;
    case "tls": case "https": case "kubernetes.io/wss": return AP.TLS;
    default: return AP.UNKNOWN;
  }
}

/** The Service's VIPs (none for headless Services). */
export function serviceVips(svc: Service): string[] {
  const ips = svc.spec?.clusterIPs?.length ? svc.spec.clusterIPs : svc.spec?.clusterIP ? [svc.spec.clusterIP] : [];
  return ips.filter((ip) => ip && ip !== "None");
}

function loadBalancing(svc: Service): istio.workload.LoadBalancing.$Properties | undefined {
  const lb: istio.workload.LoadBalancing.$Properties = {};
  const spec = svc.spec ?? {};
  const dist = spec.trafficDistribution ?? svc.metadata.annotations?.["networking.istio.io/traffic-distribution"];
  if (spec.internalTrafficPolicy === "Local") {
    lb.routing_preference = [LB.Scope.NODE];
    lb.mode = LB.Mode.STRICT;
  } else if (dist === "PreferClose" || dist === "PreferSameZone") {
    lb.routing_preference = [LB.Scope.NETWORK, LB.Scope.REGION, LB.Scope.ZONE];
    lb.mode = LB.Mode.FAILOVER;
  } else if (dist === "PreferSameNode") {
    lb.routing_preference = [LB.Scope.NETWORK, LB.Scope.REGION, LB.Scope.ZONE, LB.Scope.SUBZONE, LB.Scope.NODE];
    lb.mode = LB.Mode.FAILOVER;
  }
  if (spec.publishNotReadyAddresses) lb.health_policy = LB.HealthPolicy.ALLOW_ALL;
  return Object.keys(lb).length ? lb : undefined;
}

function ipFamilies(svc: Service): number {
  const f = svc.spec?.ipFamilies ?? [];
  if (f.length === 2) return istio.workload.IPFamilies.DUAL;
  if (f[0] === "IPv4") return istio.workload.IPFamilies.IPV4_ONLY;
  if (f[0] === "IPv6") return istio.workload.IPFamilies.IPV6_ONLY;
  return istio.workload.IPFamilies.AUTOMATIC;
}

/** The Service resource; null for ExternalName Services (ztunnel never sees them). */
export function serviceFor(svc: Service, settings: MeshSettings, waypoint: Waypoint | null): ServiceOut | null {
  if (svc.spec?.type === "ExternalName") return null;
  const ns = svc.metadata.namespace!;
  const out: ServiceOut = {
    name: svc.metadata.name,
    namespace: ns,
    hostname: serviceHostname(svc.metadata.name, ns, settings.domainSuffix),
  };
  const vips = serviceVips(svc);
  if (vips.length) out.addresses = vips.map((ip) => ({ ...(settings.network ? { network: settings.network } : {}), address: ipToBytes(ip) }));
  const ports = (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP").map((p) => {
    const port: istio.workload.Port.$Properties = { service_port: p.port };
    const target = typeof p.targetPort === "number" ? p.targetPort : p.targetPort === undefined ? p.port : /^\d+$/.test(p.targetPort) ? Number(p.targetPort) : 0;
    if (target) port.target_port = target;
    const proto = appProtocol(p);
    if (proto) port.app_protocol = proto;
    return port;
  });
  if (ports.length) out.ports = ports;
  if (waypoint) out.waypoint = waypoint.address;
  const lb = loadBalancing(svc);
  if (lb) out.load_balancing = lb;
  const fam = ipFamilies(svc);
  if (fam) out.ip_families = fam;
  out.canonical = true;
  return out;
}
