// The node agent: level-triggered enrollment of the pods on this node. For every pod it compares what should be
// (enrollment decision) with what is (rules in the pod netns, the pod known to ztunnel, the redirection
// annotation) and closes the gap: rules first, then the hand-off to ztunnel, and the annotation "enabled" only
// once ztunnel has acked ("pending" until then — the rules already send the pod's traffic to ztunnel's ports, so
// nothing bypasses it). Un-enrollment removes the rules, tells ztunnel and drops the annotation.
// Stopping is either a restart (everything stays: pods enrolled, plugin chained; the next agent takes over) or an
// uninstall of the mesh (`stop({ uninstall: true })`: the node is left clean; see uninstall.ts for the decision).
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import { informerCollection, kubeKey, sources, type Collection } from "@ambit/kube";
import { Annotations } from "@ambit/protocol";
import { closeFd, openNetns } from "@ambit/sys";
import { enrollment, type NamespaceLike, type PodLike } from "./enrollment.js";
import type { Server } from "node:http";
import { installPlugin, uninstallPlugin, type InstalledPlugin } from "./cni-install.js";
import { AgentMetrics, startMonitoring } from "./monitoring.js";
import { netnsByIp } from "./podnetns.js";
import { applyRules, removeRules, RedirectError } from "./redirect/index.js";
import { removeProbeSnat, syncProbeSnat } from "./redirect/probe-snat.js";
import { cleanupPods, httpStatus, type CleanupTarget } from "./uninstall.js";
import { ZdsNotConnectedError, ZdsServer } from "./zds/index.js";

export interface AgentOptions {
  kc: KubeConfig;
  /** Port of /healthz, /readyz and /metrics (0: any free port; undefined: not served). */
  monitoringPort?: number;
  /** Where the node's CNI configuration and plugins live; when set, the chained plugin is installed there. */
  cni?: { confDir: string; binDir: string; socket: string };
  nodeName: string;
  excludedNamespaces: string[];
  zdsSocket: string;
  /** How long ztunnel has to ack each ZDS message before its connection is closed as broken (default 5 s). */
  zdsAckTimeoutMs?: number;
  dnsCapture: boolean;
  /**
   * SNAT the node's probes of enrolled pods to 169.254.7.127 (see redirect/probe-snat.ts), in this netns ("" = the
   * agent's own, as a hostNetwork pod). Off when undefined.
   */
  probeSnat?: { netns: string };
  log?: (msg: string, fields?: object) => void;
}

export interface StopOptions {
  /**
   * Leave the node clean (the mesh is being uninstalled): the plugin out of the CNI configuration with its
   * kubeconfig and executable, and for every pod of this node the agent enrolled (or finds annotated) the in-pod
   * rules and the redirection annotation removed and ztunnel told. Default false: a restart, nothing is undone.
   */
  uninstall?: boolean;
  /** Time budget of the uninstall cleanup (default 20 s, inside Kubernetes' default 30 s grace period). */
  deadlineMs?: number;
}

type Pod = PodLike & { metadata: { uid?: string }; spec?: { serviceAccountName?: string | null; nodeName?: string | null } };

interface Enrolled {
  uid: string;
  netns: string;
  acked: boolean;
}

export class CniAgent {
  readonly zds: ZdsServer;
  private readonly core: CoreV1Api;
  private pods!: Collection<Pod>;
  private namespaces!: Collection<NamespaceLike>;
  private readonly enrolled = new Map<string, Enrolled>(); // by pod key ns/name
  private probeSnatTimer?: NodeJS.Timeout;
  private probeSnatRun: Promise<void> = Promise.resolve();
  private probeSnatIps: string | undefined;
  private readonly queue = new Map<string, Promise<void>>();
  private readonly excluded: Set<string>;
  private readonly log: (msg: string, fields?: object) => void;
  private plugin: InstalledPlugin | undefined;
  private netnsScan: { at: number; byIp: Map<string, string> } | undefined;
  readonly metrics = new AgentMetrics();
  private monitoring: Server | undefined;
  private ready = false;
  /** Set once an uninstall begins: no new work is queued (nothing may re-enroll a pod behind the cleanup). */
  private closing = false;
  private stopped: Promise<void> | undefined;

  constructor(private readonly o: AgentOptions) {
    this.core = o.kc.makeApiClient(CoreV1Api);
    this.excluded = new Set(o.excludedNamespaces);
    this.log = o.log ?? ((msg, fields) => console.log(JSON.stringify({ level: "info", msg, ...fields })));
    const zdsLog = (obj: object, msg?: string) => this.log(msg ?? "ZDS", obj);
    this.zds = new ZdsServer({
      socketPath: o.zdsSocket,
      ...(o.zdsAckTimeoutMs !== undefined ? { ackTimeoutMs: o.zdsAckTimeoutMs } : {}),
      logger: { debug: () => undefined, info: zdsLog, warn: zdsLog, error: zdsLog },
      onPodStatus: (s) => {
        if (s.kind !== "add") return;
        const key = [...this.enrolled].find(([, e]) => e.uid === s.uid)?.[0];
        if (key) this.enqueue(key, async () => this.ztunnelAnswered(key, s.ok, s.error));
      },
    });
  }

  /** The monitoring server's port, once listening. */
  get monitoringPort(): number | undefined {
    return (this.monitoring?.address() as { port?: number } | null)?.port;
  }

  async start(): Promise<void> {
    if (this.o.monitoringPort !== undefined) this.monitoring = await startMonitoring(this.o.monitoringPort, "0.0.0.0", this.metrics, () => this.ready);
    this.zds.on("connected", () => this.metrics.ztunnels.set(this.zds.connected));
    this.zds.on("disconnected", () => this.metrics.ztunnels.set(this.zds.connected));
    if (this.o.cni) this.plugin = await installPlugin(this.o.kc, this.o.cni, (req) => this.cniAdd(req), { excludedNamespaces: [...this.excluded], log: this.log });
    this.pods = informerCollection(this.o.kc, { ...sources.pods(this.o.kc), fieldSelector: `spec.nodeName=${this.o.nodeName}` }) as unknown as Collection<Pod>;
    this.namespaces = informerCollection(this.o.kc, sources.namespaces(this.o.kc)) as unknown as Collection<NamespaceLike>;
    await Promise.all([this.pods.synced, this.namespaces.synced]);
    this.pods.subscribe((b) => b.forEach((e) => this.enqueue(e.key, () => this.reconcile(e.key))), { replay: true });
    this.namespaces.subscribe((b) => {
      for (const e of b) for (const p of this.pods.list()) if (p.metadata.namespace === e.key) this.enqueue(kubeKey(p), () => this.reconcile(kubeKey(p)));
    });
    // Only once every existing pod is reconciled (rules checked and repaired, netns found) does ztunnel get to
    // connect, so its snapshot is complete.
    await Promise.all([...this.queue.values()]);
    this.scheduleProbeSnat();
    await this.zds.listen();
    this.ready = true;
  }

  /** Serializes the work on one pod; the latest state is always what reconcile reads. */
  private enqueue(key: string, work: () => Promise<void>): void {
    if (this.closing) return;
    const prev = this.queue.get(key) ?? Promise.resolve();
    const next = prev.then(work).catch((err: Error) => {
      this.metrics.failures.inc({ op: "reconcile" });
      this.log("reconcile failed", { pod: key, err: err.message });
    }).finally(() => this.metrics.enrolled.set(this.enrolled.size));
    this.queue.set(key, next);
    void next.then(() => { if (this.queue.get(key) === next) this.queue.delete(key); });
  }

  private async reconcile(key: string): Promise<void> {
    const pod = this.pods.get(key);
    const current = this.enrolled.get(key);
    const phase = pod?.status?.phase;
    const alive = pod && !pod.metadata.deletionTimestamp && phase !== "Succeeded" && phase !== "Failed";
    const want = pod && alive ? enrollment(pod, this.namespaces.get(pod.metadata.namespace ?? ""), this.excluded) : { enroll: false, reason: "the pod is gone or finished" };
    if (want.enroll && pod) {
      if (current) this.scheduleProbeSnat(); // its IP may have just appeared
      // Without the CNI plugin's netns, the pod is found by its IP once it has one.
      if (current || pod.status?.podIP) {
        await this.enroll(key, pod, current).catch((err: Error) => {
          // Without ztunnel the pod stays pending (and is in the next snapshot); its traffic is blocked meanwhile.
          if (!(err instanceof ZdsNotConnectedError)) throw err;
        });
      }
      return;
    }
    if (current || pod?.metadata.annotations?.[Annotations.redirection]) await this.unenroll(key, pod, current, want.reason);
  }

  /** The CNI plugin's ADD: enroll now (before any container runs) if the pod belongs in the mesh. */
  async cniAdd(req: { namespace: string; name: string; netns: string }): Promise<{ enrolled: boolean; reason: string }> {
    const pod = (await this.core.readNamespacedPod({ name: req.name, namespace: req.namespace })) as unknown as Pod;
    const d = enrollment(pod, this.namespaces.get(req.namespace), this.excluded);
    if (!d.enroll) return { enrolled: false, reason: d.reason };
    const key = `${req.namespace}/${req.name}`;
    if (this.closing) throw new Error("the agent is being uninstalled");
    // As Istio's agent does, the pod starts only once ztunnel has it: otherwise the ADD fails and is retried.
    await new Promise<void>((resolve, reject) =>
      this.enqueue(key, () => this.enroll(key, pod, this.enrolled.get(key), req.netns).then(resolve, (err: Error) => { reject(err); throw err; })));
    if (!this.enrolled.get(key)?.acked) throw new Error(`ztunnel has not acknowledged ${key} yet`);
    return { enrolled: true, reason: d.reason };
  }

  /**
   * Rules in place, then the hand-off to ztunnel; resolves on its ack (rejects without ztunnel, on a NACK, or when no
   * connected ztunnel acked in time). A pod handed off before but never acked is sent again.
   */
  private async enroll(key: string, pod: Pod, current: Enrolled | undefined, netnsFromCni?: string): Promise<void> {
    let netns = current?.netns ?? netnsFromCni;
    if (!netns) {
      netns = await this.netnsOf(pod.status!.podIP!);
      if (!netns) throw new Error(`no network namespace on this node has the pod's IP ${pod.status!.podIP}`);
    }
    await applyRules(netns, { dnsCapture: this.o.dnsCapture, ipv6: true });
    if (!current) {
      this.enrolled.set(key, { uid: pod.metadata.uid!, netns, acked: false });
      this.scheduleProbeSnat();
      // A pod already marked (by an earlier run of the agent) keeps its mark: its rules never went away.
      if (!pod.metadata.annotations?.[Annotations.redirection]) await this.annotate(pod, "pending");
      const fd = openNetns(netns);
      const info = { name: pod.metadata.name, namespace: pod.metadata.namespace ?? "", serviceAccount: pod.spec?.serviceAccountName ?? "default" };
      let sent: Promise<void>;
      try {
        // The server owns the fd from here. It sends the pod to the newest ztunnel; without one the pod stays
        // pending and goes out in the next snapshot.
        sent = this.zds.addWorkload({ uid: pod.metadata.uid!, info, netnsFd: fd });
      } catch (err) {
        closeFd(fd);
        throw err;
      }
      this.log("enrolled", { pod: key, netns });
      await sent;
      this.enrolled.get(key)!.acked = true;
    } else if (!current.acked) {
      // The earlier AddWorkload was NACKed or lost (its ztunnel hung up, or did not ack in time and was closed).
      await this.zds.sendWorkload(current.uid);
      current.acked = true;
    }
  }

  /**
   * A pod's netns by its IP. One scan of the node's namespaces serves the pods reconciled right after it (a restart
   * reconciles them all at once); an older scan, or one without the IP, is redone (IPs and pids get reused).
   */
  private async netnsOf(ip: string): Promise<string | undefined> {
    if (!this.netnsScan || !this.netnsScan.byIp.has(ip) || Date.now() - this.netnsScan.at > 2000) {
      this.netnsScan = { at: Date.now(), byIp: await netnsByIp() };
    }
    return this.netnsScan.byIp.get(ip);
  }

  private async ztunnelAnswered(key: string, ok: boolean, error: string): Promise<void> {
    const e = this.enrolled.get(key);
    const pod = this.pods.get(key);
    if (!e || !pod) return;
    if (!ok) {
      this.log("ztunnel refused the pod", { pod: key, error });
      return;
    }
    e.acked = true;
    await this.annotate(pod, "enabled");
  }

  private async unenroll(key: string, pod: Pod | undefined, current: Enrolled | undefined, reason: string): Promise<void> {
    if (current) {
      await removeRules(current.netns).catch((err: Error) => {
        if (!(err instanceof RedirectError && err.code === "NETNS_NOT_FOUND")) throw err;
      });
      await this.zds.delWorkload(current.uid).catch(() => undefined); // also forgets the pod
      this.enrolled.delete(key);
      this.scheduleProbeSnat();
      this.log("unenrolled", { pod: key, reason });
    }
    if (pod?.metadata.annotations?.[Annotations.redirection] && !pod.metadata.deletionTimestamp) await this.annotate(pod, null);
  }

  /** Rewrites the node's probe SNAT for the enrolled pods' IPs, once per burst of changes (serialized). */
  private scheduleProbeSnat(): void {
    const o = this.o.probeSnat;
    if (!o || this.closing || this.probeSnatTimer) return;
    this.probeSnatTimer = setTimeout(() => {
      this.probeSnatTimer = undefined;
      const ips = [...this.enrolled.keys()].flatMap((key) => {
        const st = this.pods.get(key)?.status as { podIP?: string; podIPs?: { ip: string }[] } | undefined;
        return st?.podIPs?.length ? st.podIPs.map((p) => p.ip) : st?.podIP ? [st.podIP] : [];
      }).sort();
      if (ips.join(",") === this.probeSnatIps) return;
      this.probeSnatIps = ips.join(",");
      this.probeSnatRun = this.probeSnatRun.then(() => syncProbeSnat(ips, o.netns)).catch((err: Error) => {
        this.probeSnatIps = undefined; // retried on the next change
        this.metrics.failures.inc({ op: "probe-snat" });
        this.log("probe SNAT rules could not be written", { err: err.message });
      });
    }, 50);
  }

  private async annotate(pod: Pod, value: "pending" | "enabled" | null): Promise<void> {
    if ((pod.metadata.annotations?.[Annotations.redirection] ?? null) === value) return;
    await this.core.patchNamespacedPod({
      name: pod.metadata.name, namespace: pod.metadata.namespace!,
      body: { metadata: { annotations: { [Annotations.redirection]: value } } },
    }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
  }

  /** Stops the agent: a restart by default, an uninstall with `{ uninstall: true }`. Idempotent: later calls share the first. */
  stop(opts: StopOptions = {}): Promise<void> {
    this.stopped ??= opts.uninstall ? this.uninstall(opts.deadlineMs ?? 20_000) : this.restartStop();
    return this.stopped;
  }

  private async stopWatching(): Promise<void> {
    for (const c of [this.pods, this.namespaces]) await (c as unknown as { stop(): Promise<void> } | undefined)?.stop();
  }

  private async restartStop(): Promise<void> {
    this.ready = false;
    await new Promise<void>((r) => (this.monitoring ? this.monitoring.close(() => r()) : r()));
    await this.plugin?.close();
    await Promise.all([...this.queue.values()]);
    await this.stopWatching();
    await this.zds.close();
  }

  /** The uninstall: each step best effort (failures logged, never thrown), the whole bounded by `deadlineMs`. */
  private async uninstall(deadlineMs: number): Promise<void> {
    const t0 = Date.now();
    const left = () => Math.max(0, deadlineMs - (Date.now() - t0));
    const step = async <T>(what: string, work: () => Promise<T>, budget = left()): Promise<T | undefined> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<undefined>((r) => { timer = setTimeout(() => { this.log("uninstall: a step ran out of time", { step: what }); r(undefined); }, budget); });
      try {
        return await Promise.race([work(), late]);
      } catch (err) {
        this.log("uninstall: a cleanup step failed", { step: what, err: (err as Error).message });
        return undefined;
      } finally {
        clearTimeout(timer);
      }
    };
    this.ready = false;
    this.closing = true;
    this.log("uninstall: cleaning up the node", { node: this.o.nodeName, deadlineMs });
    // 1. No new pod goes through our plugin (it fails closed without the agent): out of the conflist first, then
    //    the socket (its in-flight ADDs finish or are cut), then the plugin's kubeconfig and executable.
    this.plugin?.kubeconfig.close(); // nothing may write the plugin's kubeconfig again once it is removed
    if (this.o.cni) uninstallPlugin(this.o.cni, this.log);
    await step("plugin socket", async () => this.plugin?.close(), Math.min(left(), 5000));
    // 2. Stop watching; work already queued finishes (nothing new is queued).
    await step("watches", () => this.stopWatching(), Math.min(left(), 2000));
    await step("in-flight work", () => Promise.all([...this.queue.values()]), Math.min(left(), 5000));
    // 3. Every pod this agent enrolled, and any other pod of the node still annotated (e.g. a previous run's whose
    //    netns this run never found): rules, annotation, ztunnel.
    const targets = new Map<string, CleanupTarget>();
    for (const [key, e] of this.enrolled) targets.set(key, { key, netns: e.netns, uid: e.uid, after: this.queue.get(key) });
    const strays = (this.pods?.list() ?? []).filter((p) => p.metadata.annotations?.[Annotations.redirection] && !targets.has(kubeKey(p)));
    const byIp = strays.some((p) => p.status?.podIP && !p.spec?.hostNetwork)
      ? (await step("finding netns", () => netnsByIp(), Math.min(left(), 5000))) ?? new Map<string, string>()
      : new Map<string, string>();
    for (const p of strays) {
      const ip = p.spec?.hostNetwork ? undefined : p.status?.podIP;
      targets.set(kubeKey(p), { key: kubeKey(p), netns: ip ? byIp.get(ip) : undefined });
    }
    const report = await cleanupPods({
      targets: [...targets.values()],
      removeAnnotation: (namespace, name) => this.core.patchNamespacedPod({
        name, namespace, body: { metadata: { annotations: { [Annotations.redirection]: null } } },
      }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)).then(() => true, (err: unknown) => {
        if (httpStatus(err) === 404) return false; // the pod is gone: nothing to clean
        throw err;
      }),
      delWorkload: (uid) => this.zds.delWorkload(uid).catch((err: Error) => { if (!(err instanceof ZdsNotConnectedError)) throw err; }),
      deadlineMs: Math.max(left() - 500, 0),
      log: this.log,
    });
    this.enrolled.clear();
    this.metrics.enrolled.set(0);
    clearTimeout(this.probeSnatTimer);
    if (this.o.probeSnat) await step("probe SNAT", () => this.probeSnatRun.then(() => removeProbeSnat(this.o.probeSnat!.netns)), Math.max(left(), 2000));
    // 4. ZDS and monitoring.
    await step("ZDS server", () => this.zds.close(), Math.max(left(), 500));
    await step("monitoring", () => new Promise<void>((r) => (this.monitoring ? this.monitoring.close(() => r()) : r())), Math.max(left(), 500));
    this.log("uninstall: done", { ...report, ms: Date.now() - t0 });
  }
}
