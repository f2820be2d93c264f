// ztunnel's xDS state: indexes, staged service endpoints, health, removals by UID or service key, and partial apply.
import { describe, expect, it } from "vitest";
import { ipToBytes, istio, packAddress, packAuthorization } from "@ambit/protocol";
import { ProxyState } from "../src/state.js";

const W = istio.workload;
const wl = (uid: string, ip: string, extra: istio.workload.Workload.$Properties = {}) =>
  ({ name: uid, resource: packAddress({ workload: { uid, name: uid.split("/").pop(), namespace: "shop", node: "node-1", addresses: [ipToBytes(ip)], ...extra } }) });
const svc = (name: string, vip: string, extra: istio.workload.Service.$Properties = {}) =>
  ({ name: `shop/${name}.shop.svc.cluster.local`, resource: packAddress({ service: { name, namespace: "shop", hostname: `${name}.shop.svc.cluster.local`, addresses: [{ address: ipToBytes(vip) }], ...extra } }) });
const KEY = "shop/web.shop.svc.cluster.local";

describe("ProxyState", () => {
  it("indexes workloads and services by address and joins endpoints even when the service comes later", () => {
    const s = new ProxyState();
    expect(s.applyAddresses([wl("c//Pod/shop/a", "10.244.1.5", { services: { [KEY]: { ports: [{ service_port: 80, target_port: 8080 }] } } })], [])).toEqual({});
    expect(s.endpoints(KEY).map((w) => w.uid)).toEqual(["c//Pod/shop/a"]);
    s.applyAddresses([svc("web", "10.96.0.5")], []);
    expect(s.serviceByIp("", "10.96.0.5")?.hostname).toBe("web.shop.svc.cluster.local");
    expect(s.workloadByIp("", "10.244.1.5")?.uid).toBe("c//Pod/shop/a");
    expect(s.localWorkload("node-1", "a", "shop", "default")?.uid).toBe("c//Pod/shop/a");
    expect(s.localWorkload("node-2", "a", "shop", "default")).toBeUndefined();
  });

  it("leaves unhealthy workloads out of endpoints unless the service allows all", () => {
    const s = new ProxyState();
    s.applyAddresses([wl("u1", "10.0.0.1", { services: { [KEY]: {} }, status: W.WorkloadStatus.UNHEALTHY }), wl("u2", "10.0.0.2", { services: { [KEY]: {} } })], []);
    expect(s.endpoints(KEY).map((w) => w.uid)).toEqual(["u2"]);
    s.applyAddresses([svc("web", "10.96.0.5", { load_balancing: { health_policy: W.LoadBalancing.HealthPolicy.ALLOW_ALL } })], []);
    expect(s.endpoints(KEY).map((w) => w.uid).sort()).toEqual(["u1", "u2"]);
  });

  it("removes by workload UID first, else by service key, and updates the indexes", () => {
    const s = new ProxyState();
    s.applyAddresses([wl("u1", "10.0.0.1"), svc("web", "10.96.0.5")], []);
    s.applyAddresses([wl("u1", "10.0.0.9")], []); // a new address replaces the old one
    expect(s.workloadByIp("", "10.0.0.1")).toBeUndefined();
    s.applyAddresses([], ["u1", KEY]);
    expect([s.workloads.size, s.services.size, s.workloadByIp("", "10.0.0.9"), s.serviceByIp("", "10.96.0.5")]).toEqual([0, 0, undefined, undefined]);
  });

  it("does not index host-network workloads by address", () => {
    const s = new ProxyState();
    s.applyAddresses([wl("h", "172.31.255.11", { network_mode: W.NetworkMode.HOST_NETWORK })], []);
    expect(s.workloadByIp("", "172.31.255.11")).toBeUndefined();
    expect(s.workloads.has("h")).toBe(true);
  });

  it("refuses bad resources one by one and applies the rest (partial apply)", () => {
    const s = new ProxyState();
    const bad = { name: "bad", resource: packAddress({ workload: { uid: "bad", addresses: [Uint8Array.from([1, 2, 3])] } }) };
    const legacy = wl("legacy", "10.0.0.3", { tunnel_protocol: W.TunnelProtocol.LEGACY_ISTIO_MTLS });
    const garbage = { name: "garbage", resource: { type_url: "type.googleapis.com/istio.workload.Address", value: Uint8Array.from([0x0a, 0x09, 0x01]) } };
    const res = s.applyAddresses([bad, legacy, garbage, wl("good", "10.0.0.4")], []);
    expect(Object.keys(res.errors!)).toEqual(["bad", "legacy", "garbage"]);
    expect(res.errors!["bad"]).toMatch(/3 bytes \(want 4 or 16\)/);
    expect(res.errors!["legacy"]).toMatch(/LEGACY_ISTIO_MTLS is not supported/);
    expect([...s.workloads.keys()]).toEqual(["good"]);
  });

  it("keeps authorization policies for the evaluator", () => {
    const s = new ProxyState();
    s.applyAuthorizations([{ name: "shop/p", resource: packAuthorization({ name: "p", namespace: "shop", scope: istio.security.Scope.NAMESPACE, rules: [{}] }) }], []);
    expect(s.policies.applicable({ namespace: "shop", authorizationPolicies: [] }).map(([k]) => k)).toEqual(["shop/p"]);
    s.applyAuthorizations([], ["shop/p"]);
    expect(s.policies.get("shop/p")).toBeUndefined();
  });
});
