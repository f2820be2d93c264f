// Pod → Workload and Service → Service, field by field, as istiod builds them; waypoint binding.
import { describe, expect, it } from "vitest";
import { istio } from "@ambit/protocol";
import { appProtocol, serviceFor } from "../src/model/services.js";
import type { MeshSettings, Pod, Service } from "../src/model/types.js";
import { accepts, waypointFromGateway, waypointRef } from "../src/model/waypoints.js";
import { workloadFor, workloadName } from "../src/model/workloads.js";

const S: MeshSettings = { clusterId: "Kubernetes", trustDomain: "cluster.local", domainSuffix: "cluster.local", network: "", rootNamespace: "istio-system" };
const W = istio.workload;
const wire = <T>(type: { encode(m: T): { finish(): Uint8Array }; decode(b: Uint8Array): unknown; toObject(m: never, o: object): object }, m: T) =>
  type.toObject(type.decode(type.encode(m).finish()) as never, { defaults: false, bytes: Array });

const pod = (over: Partial<Pod> = {}): Pod => ({
  metadata: {
    name: "web-7d4b9-abcde", namespace: "shop", uid: "u1",
    labels: { app: "web", version: "v2", "pod-template-hash": "7d4b9" },
    annotations: { "ambient.istio.io/redirection": "enabled" },
    ownerReferences: [{ kind: "ReplicaSet", name: "web-7d4b9", controller: true }],
  },
  spec: { nodeName: "node-1", serviceAccountName: "web", containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] },
  status: { phase: "Running", podIP: "10.244.1.5", podIPs: [{ ip: "10.244.1.5" }], conditions: [{ type: "Ready", status: "True" }] },
  ...over,
});

const svc: Service = {
  metadata: { name: "web", namespace: "shop" },
  spec: { selector: { app: "web" }, clusterIP: "10.96.0.20", clusterIPs: ["10.96.0.20"], ipFamilies: ["IPv4"], ports: [
    { name: "http", port: 80, targetPort: "http" }, { name: "grpc-api", port: 9090, targetPort: 9091 }, { name: "dns", port: 53, protocol: "UDP" },
  ] },
};

describe("Pod → Workload", () => {
  it("builds every field istiod sets", () => {
    const w = workloadFor(pod(), S, { services: [svc], waypoint: null, policies: ["shop/b", "istio-system/a"], node: { metadata: { name: "node-1", labels: { "topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": "z1" } } } });
    expect(wire(W.Workload, w!)).toEqual({
      uid: "Kubernetes//Pod/shop/web-7d4b9-abcde", name: "web-7d4b9-abcde", namespace: "shop",
      addresses: [[10, 244, 1, 5]], tunnel_protocol: W.TunnelProtocol.HBONE, service_account: "web", node: "node-1",
      canonical_name: "web", canonical_revision: "v2", workload_type: W.WorkloadType.POD, workload_name: "web",
      services: { "shop/web.shop.svc.cluster.local": { ports: [{ service_port: 80, target_port: 8080 }, { service_port: 9090, target_port: 9091 }] } },
      authorization_policies: ["istio-system/a", "shop/b"], cluster_id: "Kubernetes", locality: { region: "r1", zone: "z1" },
    });
  });

  it("has no workload without an IP or once terminal, and marks not-ready or deleting pods UNHEALTHY", () => {
    const none = { services: [], waypoint: null, policies: [], node: undefined };
    expect(workloadFor(pod({ status: { phase: "Pending" } }), S, none)).toBeNull();
    expect(workloadFor(pod({ status: { phase: "Succeeded", podIP: "10.0.0.1" } }), S, none)).toBeNull();
    const pending = workloadFor(pod({ status: { phase: "Pending", podIP: "10.244.1.9" } }), S, none)!;
    expect(pending.status).toBe(W.WorkloadStatus.UNHEALTHY);
    const deleting = pod();
    deleting.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    expect(workloadFor(deleting, S, none)!.status).toBe(W.WorkloadStatus.UNHEALTHY);
    expect(workloadFor(pod(), S, none)!.status).toBeUndefined(); // HEALTHY is the zero value
  });

  it("sends NONE for pods the CNI agent has not enrolled, HBONE + native tunnel for sidecars, and host networking", () => {
    const none = { services: [], waypoint: null, policies: [], node: undefined };
    const plain = pod();
    plain.metadata.annotations = {};
    expect(workloadFor(plain, S, none)!.tunnel_protocol).toBeUndefined();
    const sidecar = pod();
    sidecar.metadata.annotations = {};
    sidecar.metadata.labels = { ...sidecar.metadata.labels, "networking.istio.io/tunnel": "http" };
    expect(workloadFor(sidecar, S, none)).toMatchObject({ tunnel_protocol: W.TunnelProtocol.HBONE, native_tunnel: true });
    expect(workloadFor(pod({ spec: { hostNetwork: true, nodeName: "node-1" } }), S, none)).toMatchObject({ network_mode: W.NetworkMode.HOST_NETWORK, service_account: "default" });
    expect(workloadFor(pod(), { ...S, trustDomain: "example.org", network: "n1" }, none)).toMatchObject({ trust_domain: "example.org", network: "n1" });
  });

  it("drops a service port whose named target port the pod lacks", () => {
    const other = pod({ spec: { containers: [{ name: "c", ports: [{ name: "metrics", containerPort: 9100 }] }] } });
    const w = workloadFor(other, S, { services: [svc], waypoint: null, policies: [], node: undefined })!;
    expect(w.services!["shop/web.shop.svc.cluster.local"]!.ports).toEqual([{ service_port: 9090, target_port: 9091 }]);
  });

  it("names the owning workload", () => {
    expect(workloadName(pod())).toBe("web");
    expect(workloadName({ metadata: { name: "job-28-x", ownerReferences: [{ kind: "Job", name: "backup-28933440" }] } })).toBe("backup");
    expect(workloadName({ metadata: { name: "ds-x", ownerReferences: [{ kind: "DaemonSet", name: "ztunnel" }] } })).toBe("ztunnel");
    expect(workloadName({ metadata: { name: "solo" } })).toBe("solo");
    expect(workloadName({ metadata: { name: "x", labels: { "service.istio.io/workload-name": "named" } } })).toBe("named");
  });
});

describe("Service → Service", () => {
  it("builds hostname, VIPs, TCP ports with target ports and protocols", () => {
    expect(wire(W.Service, serviceFor(svc, S, null)!)).toEqual({
      name: "web", namespace: "shop", hostname: "web.shop.svc.cluster.local",
      addresses: [{ address: [10, 96, 0, 20] }],
      ports: [{ service_port: 80, app_protocol: W.AppProtocol.HTTP11 }, { service_port: 9090, target_port: 9091, app_protocol: W.AppProtocol.GRPC }],
      ip_families: W.IPFamilies.IPV4_ONLY, canonical: true,
    });
  });

  it("has no VIP when headless, skips ExternalName, and maps traffic policies", () => {
    expect(serviceFor({ metadata: { name: "h", namespace: "a" }, spec: { clusterIP: "None" } }, S, null)!.addresses).toBeUndefined();
    expect(serviceFor({ metadata: { name: "x", namespace: "a" }, spec: { type: "ExternalName" } }, S, null)).toBeNull();
    expect(serviceFor({ metadata: { name: "l", namespace: "a" }, spec: { internalTrafficPolicy: "Local", publishNotReadyAddresses: true } }, S, null)!.load_balancing)
      .toEqual({ routing_preference: [W.LoadBalancing.Scope.NODE], mode: W.LoadBalancing.Mode.STRICT, health_policy: W.LoadBalancing.HealthPolicy.ALLOW_ALL });
    expect(serviceFor({ metadata: { name: "c", namespace: "a" }, spec: { trafficDistribution: "PreferClose" } }, S, null)!.load_balancing!.mode).toBe(W.LoadBalancing.Mode.FAILOVER);
    expect(appProtocol({ port: 1, appProtocol: "kubernetes.io/h2c" })).toBe(W.AppProtocol.HTTP2);
    expect(appProtocol({ port: 1, name: "tls-x" })).toBe(W.AppProtocol.TLS);
    expect(appProtocol({ port: 1, name: "mongo" })).toBe(W.AppProtocol.UNKNOWN);
  });
});

describe("waypoints", () => {
  const gw = { metadata: { name: "wp", namespace: "shop", labels: {} as Record<string, string> }, status: { addresses: [{ type: "IPAddress", value: "10.96.0.99" }, { type: "Hostname", value: "wp.shop.svc.cluster.local" }] } };

  it("turns an addressed Gateway into a waypoint, preferring its hostname", () => {
    expect(waypointFromGateway(gw, S)).toEqual({ namespace: "shop", name: "wp", trafficType: "service", address: { hostname: { namespace: "shop", hostname: "wp.shop.svc.cluster.local" }, hbone_mtls_port: 15008 } });
    expect(waypointFromGateway({ ...gw, status: { addresses: [{ value: "10.96.0.99" }] } }, S)!.address).toEqual({ address: { address: Uint8Array.from([10, 96, 0, 99]) }, hbone_mtls_port: 15008 });
    expect(waypointFromGateway({ ...gw, status: {} }, S)).toBeNull();
    expect(waypointFromGateway({ ...gw, metadata: { ...gw.metadata, labels: { "istio.io/waypoint-for": "workload" } } }, S)!.trafficType).toBe("workload");
  });

  it("resolves the use-waypoint labels on the object, then its namespace; 'none' stops inheritance", () => {
    const ns = { name: "shop", labels: { "istio.io/use-waypoint": "ns-wp" } };
    expect(waypointRef({ name: "a", namespace: "shop" }, ns)).toEqual({ name: "ns-wp", namespace: "shop", explicit: false });
    expect(waypointRef({ name: "a", namespace: "shop", labels: { "istio.io/use-waypoint": "own", "istio.io/use-waypoint-namespace": "infra" } }, ns)).toEqual({ name: "own", namespace: "infra", explicit: true });
    expect(waypointRef({ name: "a", namespace: "shop", labels: { "istio.io/use-waypoint": "none" } }, ns)).toBeNull();
    expect(waypointRef({ name: "a", namespace: "shop" }, { name: "shop" })).toBeNull();
    expect([accepts("service", "service"), accepts("service", "workload"), accepts("all", "workload"), accepts("none", "service")]).toEqual([true, false, true, false]);
  });
});
