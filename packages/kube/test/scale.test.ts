// Cost is proportional to what a change touches: 10,000 pods × 1,000 services, with derived collections in both
// directions (pod → its services, service → its pods' IPs) joined into one "addresses" collection, the shape of the
// controller's Address resources. One pod change must recompute O(1) items.

import { describe, expect, it } from "vitest";
import { StaticCollection, derive, join, type Batch } from "../src/index.js";

interface PodLike {
  metadata: { namespace: string; name: string; labels: Record<string, string> };
  status: { podIP: string };
}
interface SvcLike {
  metadata: { namespace: string; name: string };
  spec: { selector: Record<string, string>; clusterIP: string };
}
interface Address {
  uid: string;
  kind: "workload" | "service";
  ips: string[];
  refs: string[];
}

const PODS = 10_000;
const SERVICES = 1_000;
const NAMESPACES = 10;

function pod(n: number, ipSuffix = 0): PodLike {
  const s = n % SERVICES;
  return {
    metadata: { namespace: `ns-${s % NAMESPACES}`, name: `pod-${n}`, labels: { app: `app-${s}` } },
    status: { podIP: `10.${(n >> 8) & 255}.${n & 255}.${1 + ipSuffix}` },
  };
}

function service(s: number, app = `app-${s}`): SvcLike {
  return {
    metadata: { namespace: `ns-${s % NAMESPACES}`, name: `svc-${s}` },
    spec: { selector: { app }, clusterIP: `172.16.${s >> 8}.${s & 255}` },
  };
}

const key = (o: { metadata: { namespace: string; name: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;

function build() {
  const calls = { workload: 0, service: 0, address: 0 };
  const pods = new StaticCollection<PodLike>({ name: "pods", key, items: Array.from({ length: PODS }, (_, n) => pod(n)) });
  const services = new StaticCollection<SvcLike>({ name: "services", key, items: Array.from({ length: SERVICES }, (_, s) => service(s)) });
  const servicesBySelector = services.index("selector", (s) => (s.spec.selector["app"] ? [`${s.metadata.namespace}/${s.spec.selector["app"]}`] : []));
  const podsByApp = pods.index("app", (p) => (p.metadata.labels["app"] ? [`${p.metadata.namespace}/${p.metadata.labels["app"]}`] : []));

  const workloads = derive(
    pods,
    (p, ctx): Address => {
      calls.workload++;
      const svcs = ctx.fetchIndex(servicesBySelector, `${p.metadata.namespace}/${p.metadata.labels["app"]}`);
      return { uid: `Kubernetes//Pod/${key(p)}`, kind: "workload", ips: [p.status.podIP], refs: svcs.map(key).sort() };
    },
    { name: "workloads", key: (a) => a.uid },
  );
  const serviceAddresses = derive(
    services,
    (s, ctx): Address => {
      calls.service++;
      const backends = ctx.fetchIndex(podsByApp, `${s.metadata.namespace}/${s.spec.selector["app"]}`);
      return { uid: key(s), kind: "service", ips: [s.spec.clusterIP], refs: backends.map((p) => p.status.podIP).sort() };
    },
    { name: "service-addresses", key: (a) => a.uid },
  );
  const addresses = join([workloads, serviceAddresses], { name: "addresses", key: (a) => a.uid });
  const pushed: Batch<Address>[] = [];
  addresses.subscribe((b) => {
    calls.address++;
    pushed.push(b);
  });
  return { pods, services, workloads, serviceAddresses, addresses, calls, pushed };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe("scale: 10,000 pods × 1,000 services", () => {
  it("builds, and one pod change recomputes only that pod's workload and its service", () => {
    const t0 = performance.now();
    const g = build();
    const buildMs = performance.now() - t0;
    expect(g.addresses.size).toBe(PODS + SERVICES);
    expect(g.calls.workload).toBe(PODS);
    expect(g.calls.service).toBe(SERVICES);
    expect(g.serviceAddresses.get("ns-7/svc-7")!.refs).toHaveLength(PODS / SERVICES);

    const times: number[] = [];
    for (let round = 1; round <= 21; round++) {
      g.calls.workload = 0;
      g.calls.service = 0;
      g.pushed.length = 0;
      const n = (round * 7919) % PODS;
      const t = performance.now();
      g.pods.set(pod(n, round)); // new IP
      times.push(performance.now() - t);
      expect(g.calls.workload).toBe(1);
      expect(g.calls.service).toBe(1);
      // one batch per upstream batch, each with the one changed address
      expect(g.pushed.flat().map((e) => e.key).sort()).toEqual([`Kubernetes//Pod/${key(pod(n))}`, key(service(n % SERVICES))].sort());
    }
    const ms = median(times);
    console.log(`scale: build ${buildMs.toFixed(0)} ms; one pod change: median ${ms.toFixed(3)} ms, max ${Math.max(...times).toFixed(3)} ms`);
    expect(ms).toBeLessThan(25); // typically well under 1 ms; generous for loaded machines
  });

  it("a pod change that does not change any output recomputes one item and emits nothing", () => {
    const g = build();
    g.calls.workload = 0;
    g.calls.service = 0;
    g.pushed.length = 0;
    const p = pod(42);
    g.pods.set({ ...p, metadata: { ...p.metadata, labels: { ...p.metadata.labels } } }); // equal copy
    expect(g.calls.workload).toBe(0); // the static collection itself suppressed the equal update
    const changed = { ...p, metadata: { ...p.metadata, labels: { ...p.metadata.labels, unrelated: "x" } } };
    g.pods.set(changed);
    expect(g.calls.workload).toBe(1);
    expect(g.calls.service).toBe(1); // it is in the service's bucket, which changed
    expect(g.pushed).toEqual([]); // but no output changed
  });

  it("a service selector change recomputes the pods of the old and the new bucket and the service", () => {
    const g = build();
    g.calls.workload = 0;
    g.calls.service = 0;
    g.services.set(service(3, "app-13")); // ns-3/app-3 → ns-3/app-13
    expect(g.calls.service).toBe(1);
    expect(g.calls.workload).toBe(2 * (PODS / SERVICES));
    expect(g.workloads.get(`Kubernetes//Pod/ns-3/pod-13`)!.refs).toEqual(["ns-3/svc-13", "ns-3/svc-3"]);
    expect(g.workloads.get(`Kubernetes//Pod/ns-3/pod-3`)!.refs).toEqual([]);
  });

  it("deleting a pod removes its workload and updates only its service", () => {
    const g = build();
    g.calls.workload = 0;
    g.calls.service = 0;
    g.pushed.length = 0;
    g.pods.delete(key(pod(5)));
    expect(g.calls.workload).toBe(0);
    expect(g.calls.service).toBe(1);
    expect(g.pushed.flat().map((e) => e.type).sort()).toEqual(["delete", "update"]);
    expect(g.serviceAddresses.get("ns-5/svc-5")!.refs).toHaveLength(PODS / SERVICES - 1);
  });
});
