// The pods bound to this node: a list-watch (field selector spec.nodeName) feeding one PodWorker per pod UID.
// Level-triggered: every event hands the worker the pod as it is now; leftovers of an earlier agent (pod
// directories and netns of pods it does not run) are torn down at start.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, ListWatch, Watch, type V1Pod } from "@kubernetes/client-node";
import { ApiError } from "../api.js";
import { nodeName } from "../layout.js";
import { PodWorker, type NodeContext } from "./pod.js";

export class PodManager {
  private readonly workers = new Map<string, PodWorker>();

  constructor(private readonly ctx: NodeContext, private readonly kubeconfig: string) {}

  async start(): Promise<void> {
    await this.cleanLeftovers();
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const selector = `spec.nodeName=${nodeName(this.ctx.node)}`;
    // The list-watch cache takes the field selector directly (makeInformer has no parameter for it).
    const informer = new ListWatch<V1Pod>("/api/v1/pods", new Watch(kc), () => core.listPodForAllNamespaces({ fieldSelector: selector }), false, undefined, selector);
    informer.on("add", (p) => this.observe(p));
    informer.on("update", (p) => this.observe(p));
    informer.on("delete", (p) => this.workers.get(p.metadata!.uid!)?.removed());
    informer.on("error", (err: unknown) => {
      console.error(`${nodeName(this.ctx.node)}: pod watch failed, restarting: ${(err as Error)?.message ?? err}`);
      setTimeout(() => void informer.start(), 1000);
    });
    await informer.start();
  }

  private observe(pod: V1Pod): void {
    const uid = pod.metadata!.uid!;
    let w = this.workers.get(uid);
    if (w) {
      w.update(pod);
      return;
    }
    const phase = pod.status?.phase;
    if (pod.metadata?.deletionTimestamp && (phase === "Succeeded" || phase === "Failed" || !phase || phase === "Pending")) {
      // Never ran here (or finished before this agent started): just complete the deletion.
      void this.ctx.api.request("DELETE", `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, { gracePeriodSeconds: 0, preconditions: { uid } })
        .catch((err) => { if (!(err instanceof ApiError && err.status === 404)) console.error(err.message); });
      return;
    }
    if (phase === "Succeeded" || phase === "Failed") return;
    w = new PodWorker(this.ctx, pod);
    this.workers.set(uid, w);
    w.start();
    w.update(pod);
  }

  /** Pod directories without a running agent behind them: tear their sandboxes down. */
  private async cleanLeftovers(): Promise<void> {
    const dir = join(this.ctx.nodeRoot, "pods");
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir)) {
      const [namespace, name, uid] = entry.split("_");
      if (!namespace || !name || !uid) continue;
      const stale = new PodWorker(this.ctx, { metadata: { namespace, name, uid }, spec: { containers: [] } });
      await stale.teardownSandbox();
    }
  }
}
