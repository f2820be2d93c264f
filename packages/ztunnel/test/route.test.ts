// The outbound routing decision over a real ProxyState fed with packed xDS resources (reference §7).
import { describe, expect, it } from "vitest";
import { Ports, ipToBytes, istio, packAddress } from "@ambit/protocol";
import { route, targetPort, type Route } from "../src/proxy/route.js";
import { ProxyState, type Workload } from "../src/state.js";

const W = istio.workload;
const HBONE = W.TunnelProtocol.HBONE;
type WProps = istio.workload.Workload.$Properties;
type SProps = istio.workload.Service.$Properties;

const key = (name: string, ns = "shop") => `${ns}/${name}.${ns}.svc.cluster.local`;
const host = (name: string, ns = "shop") => `${name}.${ns}.svc.cluster.local`;

function wl(uid: string, ips: string | string[], extra: WProps = {}) {
  const name = uid.split("/").pop()!;
  return { name: uid, resource: packAddress({ workload: { uid, name, namespace: "shop", node: "node-1", service_account: name, trust_domain: "cluster.local", addresses: [ips].flat().map(ipToBytes), ...extra } }) };
}
function svc(name: string, vips: string | string[], extra: SProps = {}, ns = "shop") {
  return { name: key(name, ns), resource: packAddress({ service: { name, namespace: ns, hostname: host(name, ns), addresses: [vips].flat().map((v) => ({ address: ipToBytes(v) })), ...extra } }) };
}
function state(...resources: ReturnType<typeof wl>[]): ProxyState {
  const s = new ProxyState();
  expect(s.applyAddresses(resources, [])).toEqual({});
  return s;
}
const id = (sa: string, ns = "shop") => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const go = (s: ProxyState, dstIp: string, dstPort: number, source?: Workload, network = "") => route({ state: s, network, dstIp, dstPort, ...(source ? { source } : {}) });
/** The interesting part of a route. */
function shape(r: Route) {
  if (r.kind === "refuse") return { kind: r.kind, reason: r.reason, service: r.service?.hostname };
  if (r.kind === "tcp") return { kind: r.kind, ip: r.ip, port: r.port, workload: r.workload?.uid, service: r.service?.hostname };
  return { kind: r.kind, ip: r.ip, port: r.port, authority: r.authority, expected: r.expected, workload: r.workload.uid, service: r.service?.hostname, viaWaypoint: r.viaWaypoint };
}
const inSvc = (name: string, ports: [number, number][] = []) => ({ [key(name)]: { ports: ports.map(([service_port, target_port]) => ({ service_port, target_port })) } });

describe("route: not in the mesh's model", () => {
  it("an unknown address goes out as plain TCP to the original destination", () => {
    expect(shape(go(state(), "93.184.216.34", 443))).toEqual({ kind: "tcp", ip: "93.184.216.34", port: 443, workload: undefined, service: undefined });
  });

  it("a workload by IP: HBONE to <pod IP>:15008 with :authority <pod IP>:<port> when in the mesh, plain TCP when not", () => {
    const s = state(wl("c//Pod/shop/db", "10.244.1.7", { tunnel_protocol: HBONE }), wl("c//Pod/shop/legacy", "10.244.1.8"));
    expect(shape(go(s, "10.244.1.7", 5432))).toEqual({ kind: "hbone", ip: "10.244.1.7", port: Ports.hbone, authority: { ip: "10.244.1.7", port: 5432 }, expected: [id("db")], workload: "c//Pod/shop/db", service: undefined, viaWaypoint: false });
    expect(shape(go(s, "10.244.1.8", 80))).toEqual({ kind: "tcp", ip: "10.244.1.8", port: 80, workload: "c//Pod/shop/legacy", service: undefined });
  });

  it("looks addresses up in ztunnel's network", () => {
    const s = state(wl("c//Pod/shop/db", "10.244.1.7", { tunnel_protocol: HBONE, network: "net-a" }));
    expect(go(s, "10.244.1.7", 5432).kind).toBe("tcp");
    expect(go(s, "10.244.1.7", 5432, undefined, "net-a").kind).toBe("hbone");
  });

  it("expected identity uses the workload's trust domain and service account (default sa when empty)", () => {
    const s = state(wl("c//Pod/shop/x", "10.244.1.9", { tunnel_protocol: HBONE, trust_domain: "example.org", service_account: "" }));
    expect((go(s, "10.244.1.9", 80) as Extract<Route, { kind: "hbone" }>).expected).toEqual(["spiffe://example.org/ns/shop/sa/default"]);
  });
});

describe("route: service VIPs", () => {
  it("picks an endpoint and translates the service port to the endpoint's own target port, then the Service's", () => {
    const s = state(
      svc("web", "10.96.0.10", { ports: [{ service_port: 80, target_port: 8080 }], subject_alt_names: ["spiffe://cluster.local/ns/shop/sa/web-extra"] }),
      wl("c//Pod/shop/web-a", "10.244.1.5", { tunnel_protocol: HBONE, services: inSvc("web", [[80, 9090]]) }),
    );
    expect(shape(go(s, "10.96.0.10", 80))).toEqual({
      kind: "hbone", ip: "10.244.1.5", port: Ports.hbone, authority: { ip: "10.244.1.5", port: 9090 },
      expected: [id("web-a"), "spiffe://cluster.local/ns/shop/sa/web-extra"], workload: "c//Pod/shop/web-a", service: host("web"), viaWaypoint: false,
    });
    const t = state(svc("web", "10.96.0.10", { ports: [{ service_port: 80, target_port: 8080 }] }), wl("c//Pod/shop/web-b", "10.244.1.6", { services: inSvc("web") }));
    expect(shape(go(t, "10.96.0.10", 80))).toEqual({ kind: "tcp", ip: "10.244.1.6", port: 8080, workload: "c//Pod/shop/web-b", service: host("web") });
  });

  it("targetPort: own mapping, the Service's, the service port itself for a Service without ports, 0 for an unknown port", () => {
    const s = state(svc("web", "10.96.0.10", { ports: [{ service_port: 80, target_port: 8080 }, { service_port: 81 }] }), svc("bare", "10.96.0.11"), wl("u1", "10.0.0.1", { services: { ...inSvc("web", [[80, 7070]]), ...inSvc("bare") } }), wl("u2", "10.0.0.2"));
    const web = s.serviceByIp("", "10.96.0.10")!;
    const bare = s.serviceByIp("", "10.96.0.11")!;
    const u1 = s.workloads.get("u1")!;
    const u2 = s.workloads.get("u2")!;
    expect([targetPort(web, u1, 80), targetPort(web, u2, 80), targetPort(web, u2, 81), targetPort(web, u2, 82), targetPort(bare, u2, 5000)]).toEqual([7070, 8080, 0, 0, 5000]);
  });

  it("refuses a Service without a usable endpoint: none, all unhealthy, no port mapping, or no address", () => {
    const none = state(svc("web", "10.96.0.10"));
    expect(shape(go(none, "10.96.0.10", 80))).toEqual({ kind: "refuse", reason: `no healthy upstream for ${host("web")}:80`, service: host("web") });
    const unhealthy = state(svc("web", "10.96.0.10"), wl("u1", "10.0.0.1", { services: inSvc("web"), status: W.WorkloadStatus.UNHEALTHY }));
    expect(go(unhealthy, "10.96.0.10", 80).kind).toBe("refuse");
    const noPort = state(svc("web", "10.96.0.10", { ports: [{ service_port: 80, target_port: 8080 }] }), wl("u1", "10.0.0.1", { services: inSvc("web") }));
    expect(go(noPort, "10.96.0.10", 443).kind).toBe("refuse");
    const noAddr = state(svc("web", "10.96.0.10"), wl("u1", [], { services: inSvc("web") }));
    expect(go(noAddr, "10.96.0.10", 80).kind).toBe("refuse");
  });

  it("skips endpoints without a port mapping and uses the others", () => {
    const s = state(
      svc("web", "10.96.0.10", { ports: [{ service_port: 80, target_port: 0 }] }),
      wl("u1", "10.0.0.1", { services: inSvc("web") }),
      wl("u2", "10.0.0.2", { services: inSvc("web", [[80, 8080]]) }),
    );
    for (let i = 0; i < 50; i++) expect(shape(go(s, "10.96.0.10", 80))).toMatchObject({ ip: "10.0.0.2", port: 8080 });
  });

  it("weights endpoints by capacity (0 = never while others have capacity)", () => {
    const s = state(
      svc("web", "10.96.0.10"),
      wl("heavy", "10.0.0.1", { services: inSvc("web"), capacity: { value: 3 } }),
      wl("light", "10.0.0.2", { services: inSvc("web") }),
      wl("off", "10.0.0.3", { services: inSvc("web"), capacity: { value: 0 } }),
    );
    const counts: Record<string, number> = { heavy: 0, light: 0, off: 0 };
    const n = 4000;
    for (let i = 0; i < n; i++) counts[(go(s, "10.96.0.10", 80) as Extract<Route, { kind: "tcp" }>).workload!.uid]!++;
    expect(counts["off"]).toBe(0);
    expect(counts["heavy"]! / n).toBeGreaterThan(0.68);
    expect(counts["heavy"]! / n).toBeLessThan(0.82);
  });

  it("all endpoints at capacity 0: still picks one (uniformly)", () => {
    const s = state(svc("web", "10.96.0.10"), wl("a", "10.0.0.1", { services: inSvc("web"), capacity: { value: 0 } }), wl("b", "10.0.0.2", { services: inSvc("web"), capacity: { value: 0 } }));
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add((go(s, "10.96.0.10", 80) as Extract<Route, { kind: "tcp" }>).workload!.uid);
    expect([...seen].sort()).toEqual(["a", "b"]);
  });

  it("dual stack: prefers the endpoint address of the request's IP family", () => {
    const s = state(svc("web", ["10.96.0.10", "fd00:96::10"]), wl("u1", ["10.0.0.1", "fd00::1"], { services: inSvc("web"), tunnel_protocol: HBONE }));
    expect(shape(go(s, "10.96.0.10", 80))).toMatchObject({ ip: "10.0.0.1", authority: { ip: "10.0.0.1", port: 80 } });
    expect(shape(go(s, "fd00:96::10", 80))).toMatchObject({ ip: "fd00::1", authority: { ip: "fd00::1", port: 80 } });
    const v4only = state(svc("web", ["10.96.0.10", "fd00:96::10"]), wl("u1", "10.0.0.1", { services: inSvc("web") }));
    expect(shape(go(v4only, "fd00:96::10", 80))).toMatchObject({ ip: "10.0.0.1" });
  });

  it("PASSTHROUGH services go to the original destination (HBONE when it is a mesh workload)", () => {
    const mode = { mode: W.LoadBalancing.Mode.PASSTHROUGH };
    const s = state(svc("ext", "10.96.0.20", { load_balancing: mode }), wl("u1", "10.0.0.1", { services: inSvc("ext", [[80, 8080]]) }));
    expect(shape(go(s, "10.96.0.20", 80))).toEqual({ kind: "tcp", ip: "10.96.0.20", port: 80, workload: undefined, service: host("ext") });
    const t = state(svc("hl", "10.0.0.5", { load_balancing: mode }), wl("u5", "10.0.0.5", { tunnel_protocol: HBONE }));
    expect(shape(go(t, "10.0.0.5", 80))).toMatchObject({ kind: "hbone", ip: "10.0.0.5", port: 15008, authority: { ip: "10.0.0.5", port: 80 }, workload: "u5", service: host("hl") });
  });
});

describe("route: waypoints", () => {
  const wpAddr = (ip: string, port = 0) => ({ address: { network: "", address: ipToBytes(ip) }, hbone_mtls_port: port });
  const wpHost = (name: string, port = 15008) => ({ hostname: { namespace: "shop", hostname: host(name) }, hbone_mtls_port: port });

  it("a Service with a waypoint by address: HBONE to the waypoint with the original VIP:port as :authority", () => {
    const s = state(
      svc("web", "10.96.0.10", { waypoint: wpAddr("10.244.9.1", 15009), ports: [{ service_port: 80, target_port: 8080 }] }),
      wl("c//Pod/shop/waypoint", "10.244.9.1", { tunnel_protocol: HBONE }),
      wl("c//Pod/shop/web-a", "10.244.1.5", { tunnel_protocol: HBONE, services: inSvc("web") }),
    );
    expect(shape(go(s, "10.96.0.10", 80))).toEqual({ kind: "hbone", ip: "10.244.9.1", port: 15009, authority: { ip: "10.96.0.10", port: 80 }, expected: [id("waypoint")], workload: "c//Pod/shop/waypoint", service: host("web"), viaWaypoint: true });
  });

  it("hbone_mtls_port defaults to 15008", () => {
    const s = state(svc("web", "10.96.0.10", { waypoint: wpAddr("10.244.9.1") }), wl("wp", "10.244.9.1", { tunnel_protocol: HBONE }));
    expect(shape(go(s, "10.96.0.10", 80))).toMatchObject({ ip: "10.244.9.1", port: 15008, viaWaypoint: true });
  });

  it("a waypoint by hostname: an endpoint of the waypoint Service, port mapped through its port table, its SANs expected", () => {
    const s = state(
      svc("web", "10.96.0.10", { waypoint: wpHost("waypoint") }),
      svc("waypoint", "10.96.0.99", { ports: [{ service_port: 15008, target_port: 15018 }], subject_alt_names: ["spiffe://cluster.local/ns/shop/sa/waypoint-alt"] }),
      wl("c//Pod/shop/wp-1", "10.244.9.1", { tunnel_protocol: HBONE, services: inSvc("waypoint") }),
    );
    expect(shape(go(s, "10.96.0.10", 80))).toEqual({
      kind: "hbone", ip: "10.244.9.1", port: 15018, authority: { ip: "10.96.0.10", port: 80 },
      expected: [id("wp-1"), "spiffe://cluster.local/ns/shop/sa/waypoint-alt"], workload: "c//Pod/shop/wp-1", service: host("web"), viaWaypoint: true,
    });
  });

  it("a waypoint address that is a Service VIP resolves to one of its endpoints", () => {
    const s = state(svc("web", "10.96.0.10", { waypoint: wpAddr("10.96.0.99") }), svc("waypoint", "10.96.0.99"), wl("wp-1", "10.244.9.1", { services: inSvc("waypoint") }));
    expect(shape(go(s, "10.96.0.10", 80))).toMatchObject({ kind: "hbone", ip: "10.244.9.1", port: 15008, workload: "wp-1", viaWaypoint: true });
  });

  it("refuses when the waypoint is unknown or has no endpoint", () => {
    const unknown = state(svc("web", "10.96.0.10", { waypoint: wpAddr("10.244.9.1") }), wl("u1", "10.0.0.1", { services: inSvc("web") }));
    expect(shape(go(unknown, "10.96.0.10", 80))).toEqual({ kind: "refuse", reason: `waypoint of ${host("web")} is unknown or has no endpoint`, service: host("web") });
    const empty = state(svc("web", "10.96.0.10", { waypoint: wpHost("waypoint") }), svc("waypoint", "10.96.0.99"));
    expect(go(empty, "10.96.0.10", 80).kind).toBe("refuse");
    const none = state(svc("web", "10.96.0.10", { waypoint: {} }), wl("u1", "10.0.0.1", { services: inSvc("web") }));
    expect(go(none, "10.96.0.10", 80).kind).toBe("refuse");
  });

  it("weighted waypoints: a weighted pick; weight 0 never", () => {
    const s = state(
      svc("web", "10.96.0.10", { weighted_waypoints: [{ destination: wpAddr("10.244.9.1"), weight: 1 }, { destination: wpAddr("10.244.9.2"), weight: 0 }, { destination: wpAddr("10.244.9.3"), weight: 3 }], waypoint: wpAddr("10.244.9.2") }),
      wl("wp-1", "10.244.9.1"), wl("wp-2", "10.244.9.2"), wl("wp-3", "10.244.9.3"),
    );
    const counts: Record<string, number> = { "wp-1": 0, "wp-2": 0, "wp-3": 0 };
    for (let i = 0; i < 2000; i++) counts[(go(s, "10.96.0.10", 80) as Extract<Route, { kind: "hbone" }>).workload.uid]!++;
    expect(counts["wp-2"]).toBe(0);
    expect(counts["wp-3"]! / 2000).toBeGreaterThan(0.65);
    expect(counts["wp-3"]! / 2000).toBeLessThan(0.85);
    // Only zero weights: the plain waypoint field.
    const t = state(svc("web", "10.96.0.10", { weighted_waypoints: [{ destination: wpAddr("10.244.9.1"), weight: 0 }], waypoint: wpAddr("10.244.9.2") }), wl("wp-1", "10.244.9.1"), wl("wp-2", "10.244.9.2"));
    expect(shape(go(t, "10.96.0.10", 80))).toMatchObject({ workload: "wp-2" });
  });

  it("traffic from the waypoint itself goes to the endpoints, even when the waypoint has several replicas", () => {
    const s = state(
      svc("web", "10.96.0.10", { waypoint: wpHost("waypoint"), ports: [{ service_port: 80, target_port: 8080 }] }),
      svc("waypoint", "10.96.0.99"),
      wl("wp-1", "10.244.9.1", { tunnel_protocol: HBONE, services: inSvc("waypoint") }),
      wl("wp-2", "10.244.9.2", { tunnel_protocol: HBONE, services: inSvc("waypoint") }),
      wl("web-a", "10.244.1.5", { tunnel_protocol: HBONE, services: inSvc("web") }),
      wl("client", "10.244.1.1", { tunnel_protocol: HBONE }),
    );
    for (let i = 0; i < 100; i++) {
      expect(shape(go(s, "10.96.0.10", 80, s.workloads.get("wp-1")))).toMatchObject({ kind: "hbone", ip: "10.244.1.5", authority: { ip: "10.244.1.5", port: 8080 }, viaWaypoint: false });
      expect(shape(go(s, "10.96.0.10", 80, s.workloads.get("client")))).toMatchObject({ viaWaypoint: true });
    }
  });

  it("a workload-addressed waypoint: HBONE to it with the pod's IP:port as :authority, unless the source is that waypoint", () => {
    const s = state(
      wl("db", "10.244.1.7", { tunnel_protocol: HBONE, waypoint: wpAddr("10.244.9.1") }),
      wl("wp", "10.244.9.1", { tunnel_protocol: HBONE }),
      wl("client", "10.244.1.1", { tunnel_protocol: HBONE }),
    );
    expect(shape(go(s, "10.244.1.7", 5432, s.workloads.get("client")))).toEqual({ kind: "hbone", ip: "10.244.9.1", port: 15008, authority: { ip: "10.244.1.7", port: 5432 }, expected: [id("wp")], workload: "wp", service: undefined, viaWaypoint: true });
    expect(shape(go(s, "10.244.1.7", 5432, s.workloads.get("wp")))).toMatchObject({ kind: "hbone", ip: "10.244.1.7", port: 15008, authority: { ip: "10.244.1.7", port: 5432 }, workload: "db", viaWaypoint: false });
    expect(shape(go(s, "10.244.1.7", 5432))).toMatchObject({ viaWaypoint: true });
  });

  it("a workload's waypoint is ignored for service-addressed traffic", () => {
    const s = state(svc("db", "10.96.0.30"), wl("db", "10.244.1.7", { tunnel_protocol: HBONE, waypoint: wpAddr("10.244.9.1"), services: inSvc("db") }), wl("wp", "10.244.9.1"));
    expect(shape(go(s, "10.96.0.30", 5432))).toMatchObject({ kind: "hbone", ip: "10.244.1.7", workload: "db", viaWaypoint: false });
  });

  it("refuses when a workload's waypoint is unknown", () => {
    const s = state(wl("db", "10.244.1.7", { tunnel_protocol: HBONE, waypoint: wpHost("gone") }));
    expect(shape(go(s, "10.244.1.7", 5432))).toEqual({ kind: "refuse", reason: "waypoint of workload db is unknown or has no endpoint", service: undefined });
  });
});
