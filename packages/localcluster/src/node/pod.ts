// One pod on one node, driven to what the API says it should be: a sandbox (network namespace + the CNI
// chain, or the node's netns for hostNetwork pods), volumes, init containers in order, then the containers,
// restarted per restartPolicy with back-off, probed, and the pod status written as the kubelet writes it.
// On deletion: SIGTERM, the grace period, SIGKILL, CNI DEL, the netns removed, the object finally deleted.
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { Api, ApiError } from "../api.js";
import { cniAdd, cniDel, type CniPaths, type CniRuntime } from "../cni/chain.js";
import { createNetns, deleteNetns } from "../network.js";
import { CLUSTER_DOMAIN, DNS_SERVICE_IP, OWNER_ENV, netnsPath, nodeIp, nodeName, nodeNetns, podNetns } from "../layout.js";
import { Container, effectiveCapabilities, type ContainerState, type Mount } from "./container.js";
import { containerEnv } from "./env.js";
import { containerArgv, imageKey } from "./images.js";
import { Prober } from "./probes.js";
import { PodVolumes } from "./volumes.js";

export interface NodeContext {
  api: Api;
  node: number;
  nodeRoot: string;
  cni: CniPaths;
  owner: string;
  corednsBin?: string;
  restartBackoffMs: number;
  /** Records a host directory this node created as a mount point (removed again by `down`). */
  mountPoint: (dir: string) => void;
}

const MAX_BACKOFF_MS = 300_000;
const HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export function podDir(nodeRoot: string, pod: V1Pod): string {
  const m = pod.metadata!;
  return join(nodeRoot, "pods", `${m.namespace}_${m.name}_${m.uid}`);
}

export class PodWorker {
  private readonly containers = new Map<string, Container>();
  private readonly initContainers = new Map<string, Container>();
  private probers: Prober[] = [];
  private volumes: PodVolumes | undefined;
  private podIp: string | undefined;
  private sandboxReady = false;
  private initialized = false;
  private terminating = false;
  private done = false;
  private startTime: string | undefined;
  private queue: Promise<void> = Promise.resolve();
  private refreshTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private setupFailures = 0;
  private readonly transitions = new Map<string, { status: string; at: string }>();

  constructor(private readonly ctx: NodeContext, private pod: V1Pod) {}

  get uid(): string {
    return this.pod.metadata!.uid!;
  }
  get finished(): boolean {
    return this.done;
  }
  private get hostNetwork(): boolean {
    return this.pod.spec?.hostNetwork === true;
  }
  private get netns(): string {
    return this.hostNetwork ? nodeNetns(this.ctx.node) : podNetns(this.uid);
  }
  private get dir(): string {
    return podDir(this.ctx.nodeRoot, this.pod);
  }
  private cniRuntime(): CniRuntime {
    const m = this.pod.metadata!;
    return { containerId: this.uid, netns: netnsPath(this.netns), ifName: "eth0", podNamespace: m.namespace!, podName: m.name!, podUid: this.uid };
  }

  private enqueue(step: () => Promise<void>): void {
    this.queue = this.queue.then(step).catch((err: Error) => this.log(`error: ${err.stack ?? err.message}`));
  }

  private log(msg: string): void {
    console.log(`${nodeName(this.ctx.node)} ${this.pod.metadata!.namespace}/${this.pod.metadata!.name}: ${msg}`);
  }

  /** A new version of the pod object. */
  update(pod: V1Pod): void {
    this.pod = pod;
    if (pod.metadata?.deletionTimestamp && !this.terminating) {
      this.terminating = true;
      this.enqueue(() => this.terminate(true));
    }
  }

  /** The pod object is gone from the API: stop everything (nothing left to delete). */
  removed(): void {
    if (this.terminating && this.done) return;
    this.terminating = true;
    this.enqueue(() => this.terminate(false));
  }

  start(): void {
    this.enqueue(() => this.setup());
  }

  // ---- set-up ------------------------------------------------------------------------------------------

  private async setup(): Promise<void> {
    if (this.terminating) return;
    this.startTime ??= now();
    try {
      if (!this.sandboxReady) await this.createSandbox();
      this.volumes ??= new PodVolumes(this.ctx.api, this.pod, join(this.dir, "volumes"), this.ctx.nodeRoot);
      await this.volumes.refresh();
    } catch (err) {
      const reason = this.sandboxReady ? "FailedMount" : "FailedCreatePodSandBox";
      await this.event("Warning", reason, (err as Error).message);
      this.scheduleStatus();
      const delay = Math.min(this.ctx.restartBackoffMs * 2 ** this.setupFailures++, MAX_BACKOFF_MS);
      this.retryTimer = setTimeout(() => this.enqueue(() => this.setup()), delay);
      return;
    }
    this.refreshTimer = setInterval(() => {
      this.volumes?.refresh().catch((err: Error) => this.log(`volume refresh: ${err.message}`));
    }, 2000);
    for (const spec of this.pod.spec?.initContainers ?? []) {
      const ok = await this.runInit(spec);
      if (!ok || this.terminating) return;
    }
    this.initialized = true;
    for (const spec of this.pod.spec?.containers ?? []) await this.startContainer(spec, this.containers);
    this.scheduleStatus();
  }

  private async createSandbox(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    if (this.hostNetwork) {
      this.podIp = nodeIp(this.ctx.node);
    } else {
      await createNetns(this.netns);
      const result = await cniAdd(this.ctx.cni, this.cniRuntime());
      this.podIp = result.ips![0]!.address.split("/")[0];
    }
    const m = this.pod.metadata!;
    const policy = this.pod.spec?.dnsPolicy ?? "ClusterFirst";
    const clusterDns = policy === "ClusterFirstWithHostNet" || (policy === "ClusterFirst" && !this.hostNetwork);
    if (clusterDns) {
      writeFileSync(join(this.dir, "resolv.conf"),
        `nameserver ${DNS_SERVICE_IP}\nsearch ${m.namespace}.svc.${CLUSTER_DOMAIN} svc.${CLUSTER_DOMAIN} ${CLUSTER_DOMAIN}\noptions ndots:5\n`);
    }
    writeFileSync(join(this.dir, "hosts"), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${this.podIp}\t${m.name}\n`);
    this.sandboxReady = true;
    this.log(`sandbox ready, IP ${this.podIp}`);
  }

  private async runInit(spec: V1Container): Promise<boolean> {
    for (;;) {
      const c = await this.startContainer(spec, this.initContainers, false);
      if (!c) return false;
      const code = await new Promise<number>((r) => c.once("exit", r));
      if (this.terminating) return false;
      if (code === 0) return true;
      if ((this.pod.spec?.restartPolicy ?? "Always") === "Never") {
        this.scheduleStatus();
        return false;
      }
      await this.backoff(c);
      if (this.terminating) return false;
    }
  }

  /** Builds and starts a container; returns null (and records why) when it cannot be started. */
  private async startContainer(spec: V1Container, into: Map<string, Container>, supervise = true): Promise<Container | null> {
    let c = into.get(spec.name);
    try {
      const env = {
        ...(await containerEnv(this.ctx.api, this.podWithIp(), spec)),
        PATH: HOST_PATH, HOME: "/root", [OWNER_ENV]: this.ctx.owner,
      };
      const argv = containerArgv(spec.image ?? "", spec.command, spec.args, this.ctx.corednsBin);
      const logDir = join(this.ctx.nodeRoot, "pods", `${this.pod.metadata!.namespace}_${this.pod.metadata!.name}_${this.uid}`);
      mkdirSync(logDir, { recursive: true });
      const containerSpec = {
        name: spec.name, netns: this.netns, argv, env, mounts: this.mounts(spec), workingDir: spec.workingDir,
        hostname: this.hostNetwork ? nodeName(this.ctx.node) : this.pod.metadata!.name!,
        capabilities: effectiveCapabilities(spec.securityContext), logFile: join(logDir, `${spec.name}.log`),
      };
      if (!c) {
        c = new Container(containerSpec);
        c.on("change", () => this.scheduleStatus());
        if (supervise) c.on("exit", (code) => this.onExit(spec, c!, code));
        into.set(spec.name, c);
      } else {
        Object.assign(c.spec, containerSpec);
      }
      c.start();
      if (supervise) this.startProbes(spec, c);
      return c;
    } catch (err) {
      const reason = /image table/.test((err as Error).message) ? "ErrImagePull" : "CreateContainerConfigError";
      if (!c) {
        c = new Container({ name: spec.name, netns: this.netns, argv: [], env: {}, mounts: [], capabilities: [], hostname: "", logFile: "/dev/null" });
        c.on("change", () => this.scheduleStatus());
        into.set(spec.name, c);
      }
      c.wait(reason, (err as Error).message);
      await this.event("Warning", "Failed", `container ${spec.name}: ${(err as Error).message}`);
      this.retryTimer = setTimeout(() => this.enqueue(async () => { await this.startContainer(spec, into, supervise); }), Math.max(this.ctx.restartBackoffMs, 2000));
      return null;
    }
  }

  private podWithIp(): V1Pod {
    const ip = this.podIp!;
    return { ...this.pod, status: { ...this.pod.status, podIP: ip, podIPs: [{ ip }], hostIP: nodeIp(this.ctx.node), hostIPs: [{ ip: nodeIp(this.ctx.node) }] } };
  }

  private mounts(spec: V1Container): Mount[] {
    const out: Mount[] = [];
    const volumes = new Map((this.pod.spec?.volumes ?? []).map((v) => [v.name, v]));
    for (const vm of spec.volumeMounts ?? []) {
      const v = volumes.get(vm.name);
      if (!v) throw new Error(`volumeMount "${vm.name}" names no volume of the pod`);
      const source = join(this.volumes!.hostPath(v), vm.subPath ?? "");
      this.ensureMountPoint(vm.mountPath, source);
      out.push({ source, target: vm.mountPath, readOnly: vm.readOnly === true });
    }
    const resolv = join(this.dir, "resolv.conf");
    if (existsSync(resolv)) out.push({ source: resolv, target: "/etc/resolv.conf", readOnly: true });
    if (!this.hostNetwork) out.push({ source: join(this.dir, "hosts"), target: "/etc/hosts", readOnly: false });
    return out;
  }

  /** Bind mounts need their target to exist on the host: create missing ones (recorded for `down`). */
  private ensureMountPoint(target: string, source: string): void {
    if (existsSync(target)) return;
    const missing: string[] = [];
    for (let d = dirname(target); !existsSync(d); d = dirname(d)) missing.unshift(d);
    for (const d of missing) {
      mkdirSync(d);
      this.ctx.mountPoint(d);
    }
    // A volume (or a missing source) mounts on a directory; a subPath file on a file.
    const isDir = !existsSync(source) || statSync(source).isDirectory();
    if (isDir) mkdirSync(target);
    else writeFileSync(target, "");
    this.ctx.mountPoint(target);
  }

  private startProbes(spec: V1Container, c: Container): void {
    const target = () => ({
      podIp: this.podIp!, nodeNetns: netnsPath(nodeNetns(this.ctx.node)), pid: c.pid, ports: spec.ports ?? [], env: c.spec.env,
    });
    if (spec.readinessProbe) {
      const p = new Prober(spec.readinessProbe, target, (ok) => c.setReady(ok));
      this.probers.push(p);
      p.start();
    } else {
      c.setReady(true);
    }
    if (spec.livenessProbe) {
      const p = new Prober(spec.livenessProbe, target, (ok) => {
        if (ok || !c.running || this.terminating) return;
        void this.event("Warning", "Unhealthy", `Liveness probe failed: container ${spec.name} will be restarted`);
        void c.stop((this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000).then(() => this.onExit(spec, c, 137, true));
      });
      this.probers.push(p);
      p.start();
    }
  }

  // ---- running -----------------------------------------------------------------------------------------

  private onExit(spec: V1Container, c: Container, code: number, liveness = false): void {
    if (this.terminating || (c.stopping && !liveness)) return;
    const policy = this.pod.spec?.restartPolicy ?? "Always";
    const restart = policy === "Always" || (policy === "OnFailure" && code !== 0);
    this.log(`container ${spec.name} exited with ${code}${restart ? ", restarting" : ""}`);
    this.scheduleStatus();
    if (!restart) return;
    this.enqueue(async () => {
      await this.backoff(c);
      if (!this.terminating) await this.startContainer(spec, this.containers);
    });
  }

  /** Waits the container's restart back-off (doubling, capped at 5 minutes) in CrashLoopBackOff. */
  private async backoff(c: Container): Promise<void> {
    const delay = Math.min(this.ctx.restartBackoffMs * 2 ** c.restartCount, MAX_BACKOFF_MS);
    c.restartCount++;
    c.wait("CrashLoopBackOff", `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.spec.name} pod=${this.pod.metadata!.name}`);
    await new Promise<void>((r) => { this.retryTimer = setTimeout(r, delay); });
  }

  // ---- termination -------------------------------------------------------------------------------------

  private async terminate(deleteObject: boolean): Promise<void> {
    if (this.done) return;
    for (const t of [this.refreshTimer, this.retryTimer]) if (t) clearTimeout(t);
    for (const p of this.probers) p.stop();
    const grace = (Number(this.pod.metadata?.deletionGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30)) * 1000;
    await Promise.all([...this.containers.values(), ...this.initContainers.values()].map((c) => c.stop(grace)));
    await this.teardownSandbox();
    this.done = true;
    if (this.statusTimer) clearTimeout(this.statusTimer);
    if (deleteObject) {
      const m = this.pod.metadata!;
      try {
        await this.ctx.api.request("DELETE", `/api/v1/namespaces/${m.namespace}/pods/${m.name}`, { gracePeriodSeconds: 0, preconditions: { uid: m.uid } });
      } catch (err) {
        if (!(err instanceof ApiError && (err.status === 404 || err.status === 409))) throw err;
      }
    }
    this.log("terminated");
  }

  /** CNI DEL, netns removal and the pod's files. Idempotent, also for a pod this agent never ran. */
  async teardownSandbox(): Promise<void> {
    if (!this.hostNetwork) {
      await cniDel(this.ctx.cni, this.cniRuntime()).catch((err: Error) => this.log(`CNI DEL: ${err.message}`));
      await deleteNetns(this.netns);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- status ------------------------------------------------------------------------------------------

  private scheduleStatus(): void {
    if (this.statusTimer || this.done) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      if (this.done) return;
      this.ctx.api.patch(`/api/v1/namespaces/${this.pod.metadata!.namespace}/pods/${this.pod.metadata!.name}/status`, { status: this.status() })
        .catch((err: Error) => this.log(`status update: ${err.message}`));
    }, 50);
  }

  private condition(type: string, ok: boolean, reason?: string): object {
    const status = ok ? "True" : "False";
    const prev = this.transitions.get(type);
    if (!prev || prev.status !== status) this.transitions.set(type, { status, at: now() });
    return { type, status, lastProbeTime: null, lastTransitionTime: this.transitions.get(type)!.at, ...(reason && !ok ? { reason } : {}) };
  }

  private containerStatus(spec: V1Container, c: Container | undefined): object {
    const state: ContainerState = c?.state ?? { waiting: { reason: "PodInitializing" } };
    return {
      name: spec.name, image: spec.image, imageID: `ambit-local://${imageKey(spec.image ?? "")}`,
      ...(c?.pid ? { containerID: `ambit-local://${this.uid}/${spec.name}` } : {}),
      state, lastState: c?.lastState ?? {}, ready: c?.ready ?? false, restartCount: c?.restartCount ?? 0, started: c?.running ?? false,
    };
  }

  status(): object {
    const specs = this.pod.spec?.containers ?? [];
    const inits = this.pod.spec?.initContainers ?? [];
    const cs = specs.map((s) => this.containers.get(s.name));
    const policy = this.pod.spec?.restartPolicy ?? "Always";
    const terminated = cs.map((c) => (c && "terminated" in c.state ? c.state.terminated.exitCode : null));
    const initFailed = policy === "Never" && [...this.initContainers.values()].some((c) => "terminated" in c.state && c.state.terminated.exitCode !== 0);
    let phase = "Pending";
    if (initFailed) phase = "Failed";
    else if (this.initialized && cs.every((c) => c) && terminated.every((t) => t !== null) && policy !== "Always") {
      const allOk = terminated.every((t) => t === 0);
      if (allOk) phase = "Succeeded";
      else if (policy === "Never") phase = "Failed";
      else phase = "Running";
    } else if (this.initialized && cs.some((c) => c && (c.running || "terminated" in c.state || c.restartCount > 0))) phase = "Running";
    const ready = this.initialized && cs.every((c) => c?.ready);
    const ip = this.podIp;
    return {
      phase,
      conditions: [
        this.condition("PodReadyToStartContainers", this.sandboxReady),
        this.condition("Initialized", this.initialized, "ContainersNotInitialized"),
        this.condition("ContainersReady", ready, "ContainersNotReady"),
        this.condition("Ready", ready, "ContainersNotReady"),
      ],
      hostIP: nodeIp(this.ctx.node),
      hostIPs: [{ ip: nodeIp(this.ctx.node) }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      startTime: this.startTime,
      containerStatuses: specs.map((s) => this.containerStatus(s, this.containers.get(s.name))),
      ...(inits.length ? { initContainerStatuses: inits.map((s) => this.containerStatus(s, this.initContainers.get(s.name))) } : {}),
    };
  }

  private async event(type: string, reason: string, message: string): Promise<void> {
    this.log(`${reason}: ${message}`);
    const m = this.pod.metadata!;
    const at = now();
    await this.ctx.api.post(`/api/v1/namespaces/${m.namespace}/events`, {
      apiVersion: "v1", kind: "Event",
      metadata: { generateName: `${m.name}.`, namespace: m.namespace },
      involvedObject: { apiVersion: "v1", kind: "Pod", name: m.name, namespace: m.namespace, uid: m.uid },
      type, reason, message, count: 1, firstTimestamp: at, lastTimestamp: at,
      source: { component: "kubelet", host: nodeName(this.ctx.node) },
    }).catch(() => undefined);
  }
}

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}
