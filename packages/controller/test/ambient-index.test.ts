// The ambient index over in-memory inputs: outputs follow their inputs with no hand-written wiring.
import { describe, expect, it } from "vitest";
import { StaticCollection, kubeKey } from "@ambit/kube";
import type { AuthorizationPolicy } from "../src/model/authorization.js";
import { buildAmbientIndex, type Inputs } from "../src/model/index.js";
import type { PeerAuthentication } from "../src/model/peerauth.js";
import type { EndpointSlice, Gateway, MeshSettings, Namespace, Node, Pod, Service } from "../src/model/types.js";

const S: MeshSettings = { clusterId: "Kubernetes", trustDomain: "cluster.local", domainSuffix: "cluster.local", network: "", rootNamespace: "istio-system" };
const coll = <T extends { metadata: { name: string; namespace?: string } }>() => new StaticCollection<T>({ key: (o) => kubeKey(o) });

function setup() {
  const inputs = {
    namespaces: coll<Namespace>(), pods: coll<Pod>(), services: coll<Service>(), endpointSlices: coll<EndpointSlice>(), nodes: coll<Node>(),
    authorizationPolicies: coll<AuthorizationPolicy>(), peerAuthentications: coll<PeerAuthentication>(), gateways: coll<Gateway>(),
  };
  const index = buildAmbientIndex(inputs as Inputs, S);
  return { inputs, index };
}

const pod = (name: string, labels: Record<string, string>, ip: string, ns = "shop"): Pod => ({
  metadata: { name, namespace: ns, labels },
  spec: { nodeName: "node-1", containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] },
  status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: "True" }] },
});

describe("ambient index", () => {
  it("joins pods with the services that select them, and follows label changes", () => {
    const { inputs, index } = setup();
    inputs.namespaces.set({ metadata: { name: "shop" } });
    inputs.services.set({ metadata: { name: "web", namespace: "shop" }, spec: { selector: { app: "web" }, clusterIP: "10.96.0.5", ports: [{ port: 80, targetPort: "http" }] } });
    inputs.pods.set(pod("a", { app: "web" }, "10.244.1.5"));
    inputs.pods.set(pod("b", { app: "db" }, "10.244.1.6"));
    expect(index.workloads.get("Kubernetes//Pod/shop/a")!.services).toEqual({ "shop/web.shop.svc.cluster.local": { ports: [{ service_port: 80, target_port: 8080 }] } });
    expect(index.workloads.get("Kubernetes//Pod/shop/b")!.services).toBeUndefined();
    const events: string[] = [];
    index.workloads.subscribe((batch) => events.push(...batch.map((e) => `${e.type} ${e.key}`)));
    inputs.pods.set(pod("b", { app: "web" }, "10.244.1.6"));
    expect(events).toEqual(["update Kubernetes//Pod/shop/b"]);
    expect(index.services.get("shop/web.shop.svc.cluster.local")!.addresses).toEqual([{ address: Uint8Array.from([10, 96, 0, 5]) }]);
    // Deleting the Service updates both pods and removes the Service resource.
    events.length = 0;
    inputs.services.delete("shop/web");
    expect(events.sort()).toEqual(["update Kubernetes//Pod/shop/a", "update Kubernetes//Pod/shop/b"]);
    expect(index.services.size).toBe(0);
  });

  it("binds workloads and services to waypoints from namespace labels", () => {
    const { inputs, index } = setup();
    inputs.pods.set(pod("a", {}, "10.244.1.5"));
    inputs.services.set({ metadata: { name: "web", namespace: "shop" }, spec: { clusterIP: "10.96.0.5" } });
    inputs.gateways.set({ metadata: { name: "wp", namespace: "shop", labels: { "istio.io/waypoint-for": "all" } }, status: { addresses: [{ type: "IPAddress", value: "10.96.0.99" }] } });
    expect(index.workloads.get("Kubernetes//Pod/shop/a")!.waypoint).toBeUndefined();
    inputs.namespaces.set({ metadata: { name: "shop", labels: { "istio.io/use-waypoint": "wp" } } });
    const addr = { address: { address: Uint8Array.from([10, 96, 0, 99]) }, hbone_mtls_port: 15008 };
    expect(index.workloads.get("Kubernetes//Pod/shop/a")!.waypoint).toEqual(addr);
    expect(index.services.get("shop/web.shop.svc.cluster.local")!.waypoint).toEqual(addr);
    // A service-only waypoint does not take workloads.
    inputs.gateways.set({ metadata: { name: "wp", namespace: "shop" }, status: { addresses: [{ type: "IPAddress", value: "10.96.0.99" }] } });
    expect(index.workloads.get("Kubernetes//Pod/shop/a")!.waypoint).toBeUndefined();
    expect(index.services.get("shop/web.shop.svc.cluster.local")!.waypoint).toEqual(addr);
  });

  it("lists selector policies (own namespace and root) and PeerAuthentication conversions on matching workloads", () => {
    const { inputs, index } = setup();
    inputs.pods.set(pod("a", { app: "web" }, "10.244.1.5"));
    inputs.pods.set(pod("b", { app: "db" }, "10.244.1.6"));
    inputs.authorizationPolicies.set({ metadata: { name: "allow-web", namespace: "shop" }, spec: { selector: { matchLabels: { app: "web" } }, rules: [{}] } });
    inputs.authorizationPolicies.set({ metadata: { name: "mesh-web", namespace: "istio-system" }, spec: { selector: { matchLabels: { app: "web" } }, action: "DENY", rules: [{}] } });
    inputs.authorizationPolicies.set({ metadata: { name: "ns-wide", namespace: "shop" }, spec: { rules: [{}] } });
    inputs.authorizationPolicies.set({ metadata: { name: "waypoint-only", namespace: "shop" }, spec: { targetRefs: [{ kind: "Gateway", name: "wp" }] } });
    expect(index.workloads.get("Kubernetes//Pod/shop/a")!.authorization_policies).toEqual(["istio-system/mesh-web", "shop/allow-web"]);
    expect(index.workloads.get("Kubernetes//Pod/shop/b")!.authorization_policies).toBeUndefined();
    expect(index.authorizations.keys().sort()).toEqual(["istio-system/mesh-web", "shop/allow-web", "shop/ns-wide"]);

    inputs.peerAuthentications.set({ metadata: { name: "default", namespace: "istio-system" }, spec: { mtls: { mode: "STRICT" } } });
    expect(index.authorizations.has("istio-system/istio_converted_static_strict")).toBe(true);
    expect(index.workloads.get("Kubernetes//Pod/shop/b")!.authorization_policies).toEqual(["istio-system/istio_converted_static_strict"]);
    inputs.peerAuthentications.set({ metadata: { name: "db", namespace: "shop" }, spec: { selector: { matchLabels: { app: "db" } }, portLevelMtls: { "9090": { mode: "PERMISSIVE" } } } });
    expect(index.workloads.get("Kubernetes//Pod/shop/b")!.authorization_policies).toEqual(["shop/converted_peer_authentication_db"]);
    expect(index.authorizations.get("shop/converted_peer_authentication_db")).toBeDefined();
    inputs.peerAuthentications.delete("istio-system/default");
    inputs.peerAuthentications.delete("shop/db");
    expect(index.authorizations.has("istio-system/istio_converted_static_strict")).toBe(false);
    expect(index.workloads.get("Kubernetes//Pod/shop/b")!.authorization_policies).toBeUndefined();
  });

  it("recomputes only what a change touches at scale", () => {
    const { inputs, index } = setup();
    for (let n = 0; n < 100; n++) {
      inputs.namespaces.set({ metadata: { name: `ns${n}` } });
      for (let sv = 0; sv < 10; sv++) inputs.services.set({ metadata: { name: `s${sv}`, namespace: `ns${n}` }, spec: { selector: { app: `s${sv}` }, clusterIP: `10.96.${n}.${sv}` } });
      for (let p = 0; p < 100; p++) inputs.pods.set(pod(`p${p}`, { app: `s${p % 10}` }, `10.${n}.${p}.1`, `ns${n}`));
    }
    expect(index.workloads.size).toBe(10_000);
    expect(index.services.size).toBe(1_000);
    // A derived collection reads its input item first thing in each evaluation, and every workload and every
    // service reads its namespace: counting these reads counts the evaluations.
    const reads = { pods: 0, namespaces: 0 };
    for (const name of ["pods", "namespaces"] as const) {
      const c = inputs[name] as StaticCollection<Pod | Namespace>;
      const get = c.get.bind(c);
      c.get = (key: string) => (reads[name]++, get(key));
    }
    let events = 0;
    index.workloads.subscribe((b) => (events += b.length));
    let serviceEvents = 0;
    index.services.subscribe((b) => (serviceEvents += b.length));
    inputs.pods.set(pod("p1", { app: "s2" }, "10.1.1.1", "ns1"));
    expect(reads).toEqual({ pods: 1, namespaces: 1 }); // one workload evaluated, no service
    expect(events).toBe(1);
    expect(serviceEvents).toBe(0);
    expect(index.workloads.get("Kubernetes//Pod/ns1/p1")!.services).toHaveProperty(["ns1/s2.ns1.svc.cluster.local"]);
  });
});
