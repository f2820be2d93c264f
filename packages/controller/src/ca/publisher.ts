// Publishes the mesh's root certificate to every namespace as the ConfigMap "istio-ca-root-cert" (key
// root-cert.pem, label istio.io/config=true), level-triggered: a namespace appearing, the ConfigMap being deleted
// or edited, or the root changing all lead to the same reconcile of that namespace. Only the leader writes.
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import { informerCollection, listJson, type Collection } from "@ambit/kube";
import type { Logger } from "pino";
import { z } from "zod";
import type { Namespace } from "../model/types.js";

export const ROOT_CONFIGMAP = "istio-ca-root-cert";
export const ROOT_KEY = "root-cert.pem";

const ConfigMapSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string(), namespace: z.string(), labels: z.record(z.string(), z.string()).optional().nullable() }),
  data: z.record(z.string(), z.string()).optional().nullable(),
});
type ConfigMap = z.infer<typeof ConfigMapSchema>;

export class RootCertPublisher {
  private readonly core: CoreV1Api;
  private readonly configMaps: Collection<ConfigMap> & { stop(): Promise<void> };
  private readonly queue = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  leading = false;

  constructor(kc: KubeConfig, private readonly namespaces: Collection<Namespace>, private readonly roots: () => string, private readonly log: Logger) {
    this.core = kc.makeApiClient(CoreV1Api);
    const fieldSelector = `metadata.name=${ROOT_CONFIGMAP}`;
    this.configMaps = informerCollection(kc, {
      name: "root-cert-configmaps", path: "/api/v1/configmaps", fieldSelector, schema: ConfigMapSchema,
      list: (sel) => listJson(kc, "/api/v1/configmaps", sel),
    }) as unknown as Collection<ConfigMap> & { stop(): Promise<void> };
    namespaces.subscribe((b) => b.forEach((e) => e.type !== "delete" && this.enqueue(e.key)), { replay: true });
    this.configMaps.subscribe((b) => b.forEach((e) => this.enqueue(e.key.split("/")[0]!)));
  }

  /** Reconcile every namespace (after the root changed, or on becoming leader). */
  resyncAll(): void {
    for (const k of this.namespaces.keys()) this.enqueue(k);
  }

  private enqueue(namespace: string): void {
    this.queue.add(namespace);
    this.timer ??= setTimeout(() => void this.drain(), 50);
  }

  private async drain(): Promise<void> {
    this.timer = undefined;
    const batch = [...this.queue];
    this.queue.clear();
    for (const ns of batch) await this.reconcile(ns);
  }

  private async reconcile(namespace: string): Promise<void> {
    if (!this.leading) return;
    const ns = this.namespaces.get(namespace) as (Namespace & { status?: { phase?: string } }) | undefined;
    if (!ns || ns.status?.phase === "Terminating") return;
    const root = this.roots();
    const current = this.configMaps.get(`${namespace}/${ROOT_CONFIGMAP}`);
    const body: V1ConfigMap = { metadata: { name: ROOT_CONFIGMAP, namespace, labels: { "istio.io/config": "true" } }, data: { [ROOT_KEY]: root } };
    try {
      if (!current) {
        await this.core.createNamespacedConfigMap({ namespace, body });
      } else if (current.data?.[ROOT_KEY] !== root || current.metadata.labels?.["istio.io/config"] !== "true") {
        await this.core.replaceNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace, body });
      }
    } catch (err) {
      const c = (err as { code?: number }).code;
      if (c === 409 || c === 404) this.enqueue(namespace); // raced with another writer or a deletion: look again
      else this.log.warn({ namespace, err: (err as Error).message }, "could not publish the root certificate");
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.configMaps.stop();
  }
}
