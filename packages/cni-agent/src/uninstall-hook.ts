// The uninstall handshake with Helm. `helm uninstall` deletes the DaemonSet, the RBAC and the ServiceAccount of the
// agents within milliseconds, so an agent that only starts cleaning on SIGTERM may no longer be allowed to patch pods.
// The chart therefore runs a pre-delete hook (`ambit-cni-agent uninstall-hook`) while everything still exists: it
// annotates the agents' DaemonSet `ambit.io/uninstall=requested` and waits until every agent pod has answered
// `ambit.io/uninstall=done`. Each agent watches its DaemonSet; on the request it runs the uninstall cleanup (rules,
// annotations, plugin) and then marks its own pod. The SIGTERM path (uninstall.ts) stays as the fallback.
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import { informerCollection, listJson, ObjectMeta, type Collection } from "@ambit/kube";
import { z } from "zod";
import { daemonSetOwner, httpStatus } from "./uninstall.js";

export const UNINSTALL_ANNOTATION = "ambit.io/uninstall";
export const REQUESTED = "requested";
export const DONE = "done";

const DaemonSetMeta = z.looseObject({ metadata: ObjectMeta });
type DaemonSetMeta = z.infer<typeof DaemonSetMeta>;

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/** The name of the DaemonSet that owns pod `namespace/name`, or undefined. */
export async function ownDaemonSet(kc: KubeConfig, namespace: string, name: string): Promise<string | undefined> {
  const pod = await kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace, name });
  return daemonSetOwner(pod.metadata?.ownerReferences ?? [])?.name;
}

/**
 * Calls `onRequested` once when the DaemonSet carries `ambit.io/uninstall=requested`. Returns a stop function.
 */
export function watchUninstallRequest(kc: KubeConfig, namespace: string, daemonSet: string, onRequested: () => void): () => Promise<void> {
  const path = `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/daemonsets`;
  const fieldSelector = `metadata.name=${daemonSet}`;
  const ds = informerCollection<DaemonSetMeta>(kc, { path, list: (sel) => listJson(kc, path, sel), schema: DaemonSetMeta, fieldSelector }) as unknown as Collection<DaemonSetMeta> & { stop(): Promise<void> };
  let fired = false;
  ds.subscribe(() => {
    if (fired) return;
    if (ds.list().some((d) => d.metadata.annotations?.[UNINSTALL_ANNOTATION] === REQUESTED)) {
      fired = true;
      onRequested();
    }
  }, { replay: true });
  return () => ds.stop();
}

/** Marks the agent's own pod as cleaned up. */
export async function markDone(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).patchNamespacedPod({ namespace, name, body: { metadata: { annotations: { [UNINSTALL_ANNOTATION]: DONE } } } }, mergePatch);
}

export interface HookResult {
  /** Agent pods that answered. */
  done: string[];
  /** Agent pods that did not answer in time. */
  missing: string[];
}

/** The pre-delete hook: request the cleanup from every agent of `daemonSet` and wait for their answers. */
export async function requestUninstall(kc: KubeConfig, namespace: string, daemonSet: string, timeoutMs: number, log: (msg: string, fields?: object) => void): Promise<HookResult> {
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  let ds;
  try {
    ds = await apps.patchNamespacedDaemonSet({ namespace, name: daemonSet, body: { metadata: { annotations: { [UNINSTALL_ANNOTATION]: REQUESTED } } } }, mergePatch);
  } catch (err) {
    if (httpStatus(err) === 404) return { done: [], missing: [] }; // no agents: nothing to clean
    throw err;
  }
  const selector = Object.entries(ds.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
  log("uninstall: cleanup requested from the node agents", { daemonSet: `${namespace}/${daemonSet}`, selector });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pods = (await core.listNamespacedPod({ namespace, labelSelector: selector })).items.filter((p) => !p.metadata?.deletionTimestamp);
    const done = pods.filter((p) => p.metadata?.annotations?.[UNINSTALL_ANNOTATION] === DONE).map((p) => p.metadata!.name!);
    const missing = pods.filter((p) => p.metadata?.annotations?.[UNINSTALL_ANNOTATION] !== DONE).map((p) => p.metadata!.name!);
    if (!missing.length || Date.now() > deadline) return { done, missing };
    await new Promise((r) => setTimeout(r, 500));
  }
}
