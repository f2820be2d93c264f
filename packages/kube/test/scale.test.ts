// Cost is proportional to what a change touches: 10,000 pods × 1,000 services, with derived collections in both
// directions (pod → its services, service → its pods' IPs) joined into one "addresses" collection, the shape of the
// controller's Address resources. One pod change must recompute O(1) items.

import { describe, expect, it } from "vitest";
import { StaticCollection, deepEqual, derive, join, type Batch, type Ctx } from "../src/index.js";

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

function pod(n: number, ipSuffix = 0, services = SERVICES): PodLike {
  const s = n % services;
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

/**
 * The graph, with every function the runtime calls (keys, index functions, transformations, equality) counting its
 * calls in `work`: the runtime's work for a change, measured in what it asks of the graph, not in time.
 */
function build(podCount = PODS, serviceCount = SERVICES) {
  const calls = { workload: 0, service: 0, address: 0 };
  /** The input keys each transformation was called for. */
  const recomputed = { workload: [] as string[], service: [] as string[] };
  const work = { calls: 0 };
  const counted = <A extends unknown[], R>(fn: (...args: A) => R) => (...args: A): R => {
    work.calls++;
    return fn(...args);
  };
  const equals = counted(deepEqual);
  const pods = new StaticCollection<PodLike>({
    name: "pods", key: counted(key), equals, items: Array.from({ length: podCount }, (_, n) => pod(n, 0, serviceCount)),
  });
  const services = new StaticCollection<SvcLike>({ name: "services", key: counted(key), equals, items: Array.from({ length: serviceCount }, (_, s) => service(s)) });
  const servicesBySelector = services.index("selector", counted((s: SvcLike) => (s.spec.selector["app"] ? [`${s.metadata.namespace}/${s.spec.selector["app"]}`] : [])));
  const podsByApp = pods.index("app", counted((p: PodLike) => (p.metadata.labels["app"] ? [`${p.metadata.namespace}/${p.metadata.labels["app"]}`] : [])));

  const workloads = derive(
    pods,
    counted((p: PodLike, ctx: Ctx): Address => {
      calls.workload++;
      recomputed.workload.push(ctx.key);
      const svcs = ctx.fetchIndex(servicesBySelector, `${p.metadata.namespace}/${p.metadata.labels["app"]}`);
      return { uid: `Kubernetes//Pod/${key(p)}`, kind: "workload", ips: [p.status.podIP], refs: svcs.map(key).sort() };
    }),
    { name: "workloads", key: counted((a: Address) => a.uid), equals },
  );
  const serviceAddresses = derive(
    services,
    counted((s: SvcLike, ctx: Ctx): Address => {
      calls.service++;
      recomputed.service.push(ctx.key);
      const backends = ctx.fetchIndex(podsByApp, `${s.metadata.namespace}/${s.spec.selector["app"]}`);
      return { uid: key(s), kind: "service", ips: [s.spec.clusterIP], refs: backends.map((p) => p.status.podIP).sort() };
    }),
    { name: "service-addresses", key: counted((a: Address) => a.uid), equals },
  );
  const addresses = join([workloads, serviceAddresses], { name: "addresses", key: counted((a: Address) => a.uid), equals });
  const pushed: Batch<Address>[] = [];
  addresses.subscribe((b) => {
    calls.address++;
    pushed.push(b);
  });
  const reset = () => {
    calls.workload = calls.service = calls.address = work.calls = 0;
    recomputed.workload.length = recomputed.service.length = pushed.length = 0;
  };
  return { pods, services, workloads, serviceAddresses, addresses, calls, recomputed, work, pushed, reset };
}

describe("scale: 10,000 pods × 1,000 services", () => {
  it("builds, and one pod change recomputes only that pod's workload and its service", () => {
    const g = build();
    expect(g.addresses.size).toBe(PODS + SERVICES);
    expect(g.calls.workload).toBe(PODS);
    expect(g.calls.service).toBe(SERVICES);
    expect(g.serviceAddresses.get("ns-7/svc-7")!.refs).toHaveLength(PODS / SERVICES);

    for (let round = 1; round <= 21; round++) {
      g.reset();
      const n = (round * 7919) % PODS;
      g.pods.set(pod(n, round)); // new IP
      expect(g.recomputed.workload).toEqual([key(pod(n))]);
      expect(g.recomputed.service).toEqual([key(service(n % SERVICES))]);
      // one batch per upstream batch, each with the one changed address
      expect(g.pushed.flat().map((e) => e.key).sort()).toEqual([`Kubernetes//Pod/${key(pod(n))}`, key(service(n % SERVICES))].sort());
    }
  });

  it("the work of one pod change does not grow with the cluster: the same at 100 × 10 as at 10,000 × 1,000", () => {
    const workOfOneChange = (podCount: number, serviceCount: number): number => {
      const g = build(podCount, serviceCount);
      g.reset();
      const n = 17; // 10 pods per service in both graphs: the same bucket sizes
      g.pods.set(pod(n, 1, serviceCount));
      expect(g.pushed.flat()).toHaveLength(2);
      return g.work.calls;
    };
    const small = workOfOneChange(PODS / 100, SERVICES / 100);
    expect(small).toBeGreaterThan(0);
    expect(workOfOneChange(PODS, SERVICES)).toBe(small);
  });

  it("a pod change that does not change any output recomputes one item and emits nothing", () => {
    const g = build();
    g.reset();
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
    g.reset();
    g.services.set(service(3, "app-13")); // ns-3/app-3 → ns-3/app-13
    expect(g.calls.service).toBe(1);
    expect(g.calls.workload).toBe(2 * (PODS / SERVICES));
    expect(g.workloads.get(`Kubernetes//Pod/ns-3/pod-13`)!.refs).toEqual(["ns-3/svc-13", "ns-3/svc-3"]);
    expect(g.workloads.get(`Kubernetes//Pod/ns-3/pod-3`)!.refs).toEqual([]);
  });

  it("deleting a pod removes its workload and updates only its service", () => {
    const g = build();
    g.reset();
    g.pods.delete(key(pod(5)));
    expect(g.calls.workload).toBe(0);
    expect(g.calls.service).toBe(1);
    expect(g.pushed.flat().map((e) => e.type).sort()).toEqual(["delete", "update"]);
    expect(g.serviceAddresses.get("ns-5/svc-5")!.refs).toHaveLength(PODS / SERVICES - 1);
  });
});
