// What the agent does when it is told to stop: a restart (rolling upgrade, node drain, eviction) leaves everything
// as it is, so that pods stay enrolled and the next agent takes over; an uninstall (`helm uninstall` deleted the
// agent's DaemonSet) leaves the node clean while the apps keep running. As Istio's node agent does, the agent tells
// the two apart by its DaemonSet: gone (404) or being deleted ⇒ uninstall; present ⇒ restart. Anything it cannot
// find out ⇒ restart: leaving the rules in place keeps the pods' traffic going through ztunnel (or blocked without
// it), which is the secure default.
import { AppsV1Api, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { RedirectError, removeRules } from "./redirect/index.js";

/** AMBIT_CNI_UNINSTALL_ON_EXIT: "auto" asks the API server, "true"/"false" force the answer. */
export type UninstallSetting = "true" | "false" | "auto";
export const UNINSTALL_ENV = "AMBIT_CNI_UNINSTALL_ON_EXIT";

export function parseUninstallSetting(value: string | undefined): UninstallSetting | undefined {
  const v = (value ?? "auto").trim().toLowerCase();
  return v === "true" || v === "false" || v === "auto" ? v : undefined;
}

export interface ExitDecision {
  uninstall: boolean;
  /** One sentence for the log: why. */
  reason: string;
}

interface OwnerReference {
  apiVersion?: string;
  kind?: string;
  name?: string;
  uid?: string;
  controller?: boolean | null;
}

/** The two reads the decision needs; `kubeExitCheckApi` is the real one. Errors carry the HTTP status in `code`. */
export interface ExitCheckApi {
  readPod(namespace: string, name: string): Promise<{ metadata?: { ownerReferences?: OwnerReference[] | null } | null }>;
  readDaemonSet(namespace: string, name: string): Promise<{ metadata?: { uid?: string | null; deletionTimestamp?: unknown } | null }>;
}

/** The HTTP status of an API error (@kubernetes/client-node's ApiException has it in `code`), if any. */
export function httpStatus(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === "number") return e.code;
  if (typeof e.statusCode === "number") return e.statusCode;
  return undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    timer.unref?.();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The real API: GET of a pod and of a DaemonSet, each given `timeoutMs` (a hung API server must not eat the grace period). */
export function kubeExitCheckApi(kc: KubeConfig, timeoutMs = 5000): ExitCheckApi {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  return {
    readPod: (namespace, name) => withTimeout(core.readNamespacedPod({ namespace, name }), timeoutMs, `GET pod ${namespace}/${name}`),
    readDaemonSet: (namespace, name) => withTimeout(apps.readNamespacedDaemonSet({ namespace, name }), timeoutMs, `GET daemonset ${namespace}/${name}`),
  };
}

const message = (err: unknown): string => {
  const status = httpStatus(err);
  const text = err instanceof Error ? err.message.split("\n")[0]! : String(err);
  return status !== undefined ? `HTTP ${status}` : text;
};

/** The DaemonSet that owns a pod: its controller reference, else the first DaemonSet owner. */
export function daemonSetOwner(owners: readonly OwnerReference[]): OwnerReference | undefined {
  const daemonSets = owners.filter((o) => o.kind === "DaemonSet" && (o.apiVersion ?? "apps/v1").startsWith("apps/") && o.name);
  return daemonSets.find((o) => o.controller) ?? daemonSets[0];
}

/**
 * Uninstall or restart? `self` is the agent's own pod (POD_NAME, POD_NAMESPACE); its owner reference names the
 * DaemonSet, which is looked up in the same namespace. Never throws: every failure decides "restart".
 */
export async function decideOnExit(api: ExitCheckApi, self: { podName?: string | undefined; namespace?: string | undefined }, setting: UninstallSetting = "auto"): Promise<ExitDecision> {
  if (setting === "true") return { uninstall: true, reason: `${UNINSTALL_ENV}=true` };
  if (setting === "false") return { uninstall: false, reason: `${UNINSTALL_ENV}=false` };
  const { podName, namespace } = self;
  if (!podName || !namespace) {
    return { uninstall: false, reason: "POD_NAME or POD_NAMESPACE is not set, so the agent's DaemonSet cannot be found; keeping the node as it is" };
  }
  let owners: OwnerReference[];
  try {
    owners = (await api.readPod(namespace, podName)).metadata?.ownerReferences ?? [];
  } catch (err) {
    return { uninstall: false, reason: `reading the agent's own pod ${namespace}/${podName} failed (${message(err)}); keeping the node as it is` };
  }
  const owner = daemonSetOwner(owners);
  if (!owner) return { uninstall: false, reason: `the pod ${namespace}/${podName} is not owned by a DaemonSet; keeping the node as it is` };
  const ds = `${namespace}/${owner.name}`;
  let found: Awaited<ReturnType<ExitCheckApi["readDaemonSet"]>>;
  try {
    found = await api.readDaemonSet(namespace, owner.name!);
  } catch (err) {
    if (httpStatus(err) === 404) return { uninstall: true, reason: `the DaemonSet ${ds} is gone (404): the mesh is being uninstalled` };
    return { uninstall: false, reason: `reading the DaemonSet ${ds} failed (${message(err)}); keeping the node as it is` };
  }
  if (found.metadata?.deletionTimestamp) return { uninstall: true, reason: `the DaemonSet ${ds} is being deleted: the mesh is being uninstalled` };
  if (owner.uid && found.metadata?.uid && owner.uid !== found.metadata.uid) {
    return { uninstall: false, reason: `the DaemonSet ${ds} was replaced by a new one, whose pod takes over: a restart` };
  }
  return { uninstall: false, reason: `the DaemonSet ${ds} is present: a restart or upgrade` };
}

// ---- cleaning the node ----

/** One pod to clean: its rules (when its netns is known), its annotation, its registration with ztunnel. */
export interface CleanupTarget {
  /** namespace/name */
  key: string;
  netns?: string | undefined;
  /** Set when ztunnel was given the pod (DelWorkload is sent). */
  uid?: string | undefined;
  /** Work on this pod still in flight (the cleanup runs after it). */
  after?: Promise<unknown> | undefined;
}

export interface CleanupOptions {
  targets: CleanupTarget[];
  /** Removes the redirection annotation (a JSON merge patch with null); resolves false if the pod is gone. */
  removeAnnotation(namespace: string, name: string): Promise<boolean>;
  /** Tells ztunnel the pod is no longer its to handle (optional; failures are logged). */
  delWorkload?: (uid: string) => Promise<void>;
  /** The whole cleanup's time budget; what is left when it runs out is logged (default 20 s). */
  deadlineMs?: number;
  concurrency?: number;
  log: (msg: string, fields?: object) => void;
}

export interface CleanupReport {
  pods: number;
  rulesRemoved: number;
  annotationsRemoved: number;
  failures: number;
  /** Pods not finished when the deadline came. */
  unfinished: string[];
}

/**
 * Best effort, never throws, resolves by the deadline: per pod, the in-pod rules first (the pod's traffic goes
 * direct again), then the annotation, then ztunnel. A netns or a pod that is gone counts as clean.
 */
export async function cleanupPods(o: CleanupOptions): Promise<CleanupReport> {
  const report: CleanupReport = { pods: o.targets.length, rulesRemoved: 0, annotationsRemoved: 0, failures: 0, unfinished: [] };
  const pending = new Set(o.targets.map((t) => t.key));
  const fail = (t: CleanupTarget, step: string, err: unknown) => {
    report.failures++;
    o.log("uninstall: a cleanup step failed", { pod: t.key, step, err: err instanceof Error ? err.message : String(err) });
  };
  const one = async (t: CleanupTarget): Promise<void> => {
    await t.after?.catch(() => undefined);
    if (t.netns) {
      try {
        if ((await removeRules(t.netns)).changed) report.rulesRemoved++;
      } catch (err) {
        if (!(err instanceof RedirectError && err.code === "NETNS_NOT_FOUND")) fail(t, "rules", err);
      }
    }
    const [namespace, name] = t.key.split("/") as [string, string];
    try {
      if (await o.removeAnnotation(namespace, name)) report.annotationsRemoved++;
    } catch (err) {
      fail(t, "annotation", err);
    }
    if (t.uid && o.delWorkload) await o.delWorkload(t.uid).catch((err: unknown) => o.log("uninstall: ztunnel was not told", { pod: t.key, err: err instanceof Error ? err.message : String(err) }));
    pending.delete(t.key);
  };
  const queue = [...o.targets];
  const workers = Array.from({ length: Math.max(1, Math.min(o.concurrency ?? 8, queue.length)) }, async () => {
    for (let t = queue.shift(); t; t = queue.shift()) await one(t);
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"deadline">((r) => { timer = setTimeout(() => r("deadline"), o.deadlineMs ?? 20_000); });
  const outcome = await Promise.race([Promise.all(workers).then(() => "done" as const), deadline]);
  clearTimeout(timer);
  if (outcome === "deadline") {
    queue.length = 0; // the workers start no more pods
    report.unfinished = [...pending];
    o.log("uninstall: the deadline came before every pod was cleaned", { unfinished: report.unfinished });
  }
  return report;
}
