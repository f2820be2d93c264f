// Status written back to the API (by the leader only): the ZtunnelAccepted condition on AuthorizationPolicies,
// and an Event plus a condition for objects that fail validation.
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import type { Collection } from "@ambit/kube";
import type { PolicyTranslation } from "./model/index.js";
import type { ConditionStatus } from "./model/authorization.js";

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export class StatusWriter {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly written = new Map<string, string>();
  leading = false;

  constructor(kc: KubeConfig, private readonly log: Logger, private readonly component = "ambit-controller") {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Keeps the ZtunnelAccepted condition of every AuthorizationPolicy in step with its translation. */
  watchPolicies(translations: Collection<PolicyTranslation>): void {
    translations.subscribe((batch) => {
      for (const e of batch) {
        if (e.type === "delete") this.written.delete(e.key);
        else if (e.new!.condition) void this.writePolicyCondition(e.key, e.new!.condition);
      }
    }, { replay: true });
  }

  /** Writes everything again (after becoming leader). */
  resync(translations: Collection<PolicyTranslation>): void {
    this.written.clear();
    for (const t of translations.list()) if (t.condition) void this.writePolicyCondition(t.key, t.condition);
  }

  async writePolicyCondition(key: string, condition: ConditionStatus): Promise<void> {
    if (!this.leading) return;
    const fingerprint = JSON.stringify(condition);
    if (this.written.get(key) === fingerprint) return;
    this.written.set(key, fingerprint);
    const [namespace, name] = key.split("/") as [string, string];
    await this.patchCondition("security.istio.io", "v1", "authorizationpolicies", namespace, name, condition);
  }

  async patchCondition(group: string, version: string, plural: string, namespace: string, name: string, condition: ConditionStatus): Promise<void> {
    try {
      const obj = await this.custom.getNamespacedCustomObjectStatus({ group, version, plural, namespace, name }) as { metadata?: { generation?: number }; status?: { conditions?: (ConditionStatus & { lastTransitionTime?: string })[] } };
      const others = (obj.status?.conditions ?? []).filter((c) => c.type !== condition.type);
      const prev = obj.status?.conditions?.find((c) => c.type === condition.type);
      const lastTransitionTime = prev && prev.status === condition.status && prev.lastTransitionTime ? prev.lastTransitionTime : new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
      await this.custom.patchNamespacedCustomObjectStatus({
        group, version, plural, namespace, name,
        body: { status: { conditions: [...others, { ...condition, observedGeneration: obj.metadata?.generation, lastTransitionTime }] } },
      }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, object: `${plural}/${namespace}/${name}` }, "could not write status");
    }
  }

  /** An object that failed validation: a Warning Event on it and, for kinds with status, a False condition. */
  async reportInvalid(kind: { group: string; version: string; plural: string; kind: string; hasStatus: boolean }, object: unknown, message: string): Promise<void> {
    const meta = (object as { metadata?: { name?: string; namespace?: string; uid?: string } }).metadata ?? {};
    this.log.warn({ kind: kind.kind, name: meta.name, namespace: meta.namespace, error: message }, "invalid object skipped");
    if (!this.leading || !meta.name) return;
    const namespace = meta.namespace ?? "default";
    try {
      await this.core.createNamespacedEvent({ namespace, body: {
        metadata: { generateName: `${meta.name}.`, namespace },
        involvedObject: { apiVersion: kind.group ? `${kind.group}/${kind.version}` : kind.version, kind: kind.kind, name: meta.name, namespace: meta.namespace, uid: meta.uid },
        type: "Warning", reason: "InvalidObject", message: `ignored by ${this.component}: ${message}`,
        source: { component: this.component }, firstTimestamp: new Date(), lastTimestamp: new Date(), count: 1,
      } });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not record an event");
    }
    if (kind.hasStatus && meta.namespace) {
      await this.patchCondition(kind.group, kind.version, kind.plural, meta.namespace, meta.name, { type: "ZtunnelAccepted", status: "False", reason: "Invalid", message });
    }
  }
}
