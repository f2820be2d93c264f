// Informer collections against a real kube-apiserver (packages/localcluster), with real TLS and bearer tokens.
//
// Coordination with other packages' tests, which share the single local cluster:
// - this is the only file of @ambit/kube that touches the cluster;
// - when a cluster is already up (or starting), it is used as is (everything this file creates lives in its own namespace, removed
//   afterwards) and left up; otherwise this file brings one up (1 node) in beforeAll and takes it down in afterAll.
// Skipped when not root on Linux, when packages/localcluster is not built, or with AMBIT_KUBE_CLUSTER_TEST=0.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  derive,
  informerCollection,
  loadKubeConfig,
  sources,
  type Batch,
  type InformerCollection,
  type Namespace,
  type NamedObject,
} from "../src/index.js";
import { until } from "./fake-apiserver.js";

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "../../localcluster/bin/ambit-local.js");
const stateDir = process.env["AMBIT_LOCAL_DIR"] ?? "/var/lib/ambit-local";
const enabled =
  process.platform === "linux" &&
  process.getuid?.() === 0 &&
  process.env["AMBIT_KUBE_CLUSTER_TEST"] !== "0" &&
  existsSync(join(here, "../../localcluster/dist/cli.js"));

function ambitLocal(...args: string[]): { code: number; output: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 180_000 });
  return { code: r.status ?? -1, output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

describe.skipIf(!enabled)("informers against the local cluster", () => {
  let broughtUp = false;
  let kc: KubeConfig;
  let core: CoreV1Api;
  const ns = `ambit-kube-test-${process.pid}-${Date.now() % 100000}`;
  const informers: InformerCollection<NamedObject>[] = [];
  const track = <T extends NamedObject>(i: InformerCollection<T>) => {
    informers.push(i as unknown as InformerCollection<NamedObject>);
    return i;
  };

  beforeAll(async () => {
    const status = ambitLocal("status");
    if (status.code !== 0 && /no cluster/.test(status.output)) {
      const r = ambitLocal("up", "--nodes", "1");
      if (r.code !== 0) throw new Error(`ambit-local up failed:\n${r.output}`);
      broughtUp = true;
    } else if (status.code !== 0) {
      // Someone else's cluster is starting: never replace it, wait for it.
      const deadline = Date.now() + 150_000;
      while (ambitLocal("status").code !== 0) {
        if (Date.now() > deadline) throw new Error("the local cluster (started by another test) did not come up");
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    kc = loadKubeConfig({ env: { KUBECONFIG: join(stateDir, "admin.kubeconfig") } });
    core = kc.makeApiClient(CoreV1Api);
  }, 180_000);

  afterAll(async () => {
    for (const i of informers) await i.stop();
    if (core) await core.deleteNamespace({ name: ns }).catch(() => undefined);
    if (broughtUp) ambitLocal("down");
  }, 120_000);

  it("lists and watches namespaces and services; derived collections follow them", async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    const namespaces = track(informerCollection(kc, { ...sources.namespaces(kc), onError }));
    const services = track(informerCollection(kc, { ...sources.services(kc, { namespace: ns }), onError }));
    const slices = track(informerCollection(kc, { ...sources.endpointSlices(kc, { namespace: ns }), onError }));
    const onlyOurs = track(informerCollection(kc, { ...sources.namespaces(kc), fieldSelector: `metadata.name=${ns}`, onError }));
    await Promise.all([namespaces.synced, services.synced, slices.synced, onlyOurs.synced]);
    expect(namespaces.has("default")).toBe(true);
    expect(namespaces.has("kube-system")).toBe(true);
    expect(onlyOurs.size).toBe(0);

    // A derived view: services of ambient namespaces, recomputed when a namespace's label changes.
    const ambientServices = derive(services, (svc, ctx) => {
      const n: Namespace | undefined = ctx.fetch(namespaces, svc.metadata.namespace);
      return n?.metadata.labels?.["istio.io/dataplane-mode"] === "ambient" ? { name: svc.metadata.name, vip: svc.spec.clusterIP } : null;
    });
    const batches: Batch<unknown>[] = [];
    services.subscribe((b) => batches.push(b));

    await core.createNamespace({ body: { metadata: { name: ns } } });
    await until(() => namespaces.has(ns) && onlyOurs.has(ns), 10_000, "namespace add");
    expect(onlyOurs.keys()).toEqual([ns]);

    await core.createNamespacedService({
      namespace: ns,
      body: {
        metadata: { name: "web", labels: { app: "web" } },
        spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "http" }] },
      },
    });
    await until(() => services.has(`${ns}/web`), 10_000, "service add");
    const svc = services.get(`${ns}/web`)!;
    expect(svc.spec.ports?.[0]?.targetPort).toBe("http");
    expect(svc.spec.clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(ambientServices.size).toBe(0);

    // The EndpointSlice controller makes a slice with no endpoints (serialised as null).
    await until(() => slices.list().some((s) => s.metadata.labels?.["kubernetes.io/service-name"] === "web"), 20_000, "endpointslice");

    const current = await core.readNamespace({ name: ns });
    current.metadata!.labels = { ...current.metadata!.labels, "istio.io/dataplane-mode": "ambient" };
    await core.replaceNamespace({ name: ns, body: current });
    await until(() => ambientServices.has(`${ns}/web`), 10_000, "derived add after the namespace label");
    expect(ambientServices.get(`${ns}/web`)).toEqual({ name: "web", vip: svc.spec.clusterIP });

    // An update that changes nothing (same content, new write) emits no event.
    const before = batches.length;
    const same = await core.readNamespacedService({ name: "web", namespace: ns });
    await core.replaceNamespacedService({ name: "web", namespace: ns, body: same });
    const changed = await core.readNamespacedService({ name: "web", namespace: ns });
    changed.metadata!.annotations = { note: "x" };
    await core.replaceNamespacedService({ name: "web", namespace: ns, body: changed });
    await until(() => services.get(`${ns}/web`)?.metadata.annotations?.["note"] === "x", 10_000, "service update");
    expect(batches.slice(before).flat().map((e) => e.type)).toEqual(["update"]);

    await core.deleteNamespacedService({ name: "web", namespace: ns });
    await until(() => !services.has(`${ns}/web`) && !ambientServices.has(`${ns}/web`), 10_000, "service delete");
    expect(errors).toEqual([]);
  }, 60_000);
});
