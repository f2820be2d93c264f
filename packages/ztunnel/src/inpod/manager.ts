// The pods this ztunnel proxies, driven by ZDS: add starts a pod's proxy (idempotent per uid; a different netns
// replaces it), del drains it, and after a (re)connect the CNI agent's snapshot tells which proxies to keep — the
// others are drained. A proxy that fails to start is NACKed and retried every 5 s until it starts or is deleted.
// Ready once a snapshot arrived and nothing is pending.
import { fstatSync } from "node:fs";
import type { ZdsWorkloadInfo } from "@ambit/protocol";
import { closeFd, closeQuietly } from "@ambit/sys";
import type { ProxyContext } from "../proxy/context.js";
import { PodProxy } from "../proxy/pod-proxy.js";

const RETRY_MS = 5000;

interface Pending {
  info: ZdsWorkloadInfo;
  netns: number;
  timer?: NodeJS.Timeout;
}

function netnsId(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

export class WorkloadManager {
  readonly proxies = new Map<string, { proxy: PodProxy; netnsId: string }>();
  private readonly pending = new Map<string, Pending>();
  /** UIDs named since the current connection started; null once its snapshot was processed. */
  private seen: Set<string> | null = new Set();
  private snapshotReceived = false;
  private stopped = false;

  constructor(private readonly ctx: ProxyContext) {}

  get ready(): boolean {
    return this.snapshotReceived && this.pending.size === 0;
  }

  /** Unready reasons, for /healthz/ready. */
  pendingReasons(): string[] {
    const r: string[] = [];
    if (!this.snapshotReceived) r.push("workload proxy manager: no snapshot from the CNI agent yet");
    for (const [uid, p] of this.pending) r.push(`workload proxy manager: pod ${p.info.namespace}/${p.info.name} (${uid}) not started`);
    return r;
  }

  /** A new ZDS connection: the snapshot is awaited again. */
  connected(): void {
    this.seen = new Set();
  }

  disconnected(): void {
    this.snapshotReceived = false;
  }

  /** AddWorkload; resolves with "" (ACK) or the NACK reason. Takes ownership of `netns`. */
  async add(uid: string, info: ZdsWorkloadInfo, netns: number): Promise<string> {
    this.seen?.add(uid);
    let id: string;
    try {
      id = netnsId(netns);
    } catch (err) {
      closeQuietly(netns);
      return `cannot stat the netns fd: ${(err as Error).message}`;
    }
    const existing = this.proxies.get(uid);
    if (existing && existing.netnsId === id) {
      closeFd(netns);
      return "";
    }
    if (existing) {
      this.ctx.log.info({ uid, pod: existing.proxy.name }, "pod netns changed: replacing its proxy");
      this.proxies.delete(uid);
      void existing.proxy.drain(this.ctx.config.drainDeadlineMs);
      this.ctx.telemetry.proxyStopped();
    }
    this.clearPending(uid, true);
    return this.startProxy(uid, info, netns, id);
  }

  keep(uid: string): void {
    this.seen?.add(uid);
  }

  del(uid: string): void {
    this.seen?.delete(uid);
    this.clearPending(uid, true);
    const entry = this.proxies.get(uid);
    if (!entry) return;
    this.proxies.delete(uid);
    this.ctx.telemetry.proxyStopped();
    this.ctx.log.info({ uid, pod: entry.proxy.name }, "pod removed: draining its proxy");
    void entry.proxy.drain(this.ctx.config.drainDeadlineMs);
    this.releaseIdentity(entry.proxy.identityUri);
    this.updateGauges();
  }

  /** SnapshotSent: drain every proxy the snapshot did not name. Returns an error for a second snapshot. */
  snapshot(): string {
    if (!this.seen) return "a second SnapshotSent on one connection";
    for (const uid of [...this.proxies.keys(), ...this.pending.keys()]) if (!this.seen.has(uid)) this.del(uid);
    this.seen = null;
    this.snapshotReceived = true;
    return "";
  }

  /** Whether KeepWorkload is still allowed (only before the snapshot). */
  get beforeSnapshot(): boolean {
    return this.seen !== null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const uid of [...this.pending.keys()]) this.clearPending(uid, true);
    const all = [...this.proxies.values()].map((e) => e.proxy.drain(this.ctx.config.drainDeadlineMs));
    this.proxies.clear();
    await Promise.all(all);
  }

  /** Every pod proxy (re-checks inbound connections after a policy or workload change). */
  recheckPolicies(): void {
    for (const { proxy } of this.proxies.values()) proxy.recheckPolicies();
  }

  dump(): object[] {
    return [
      ...[...this.proxies.values()].map(({ proxy }) => proxy.dump()),
      ...[...this.pending].map(([uid, p]) => ({ uid, name: p.info.name, namespace: p.info.namespace, serviceAccount: p.info.serviceAccount, state: "pending" })),
    ];
  }

  private async startProxy(uid: string, info: ZdsWorkloadInfo, netns: number, id: string): Promise<string> {
    const proxy = new PodProxy(this.ctx, uid, info, netns);
    try {
      await proxy.start();
    } catch (err) {
      const reason = `failure to start proxy for ${info.namespace}/${info.name}: ${(err as Error).message}`;
      this.ctx.log.warn({ uid }, reason);
      this.schedule(uid, info, netns, id);
      return reason;
    }
    this.proxies.set(uid, { proxy, netnsId: id });
    this.ctx.telemetry.proxyStarted();
    this.ctx.log.info({ uid, pod: proxy.name, identity: proxy.identityUri }, "pod proxy started");
    this.updateGauges();
    return "";
  }

  private schedule(uid: string, info: ZdsWorkloadInfo, netns: number, id: string): void {
    const p: Pending = { info, netns };
    this.pending.set(uid, p);
    this.updateGauges();
    if (this.stopped) return;
    p.timer = setTimeout(() => {
      if (this.pending.get(uid) !== p) return;
      this.pending.delete(uid);
      void this.startProxy(uid, info, netns, id);
    }, RETRY_MS);
    p.timer.unref();
  }

  private clearPending(uid: string, closeNetns: boolean): void {
    const p = this.pending.get(uid);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(uid);
    if (closeNetns) closeQuietly(p.netns);
    this.updateGauges();
  }

  /** Stops refreshing a certificate once no pod on this node uses its identity. */
  private releaseIdentity(identity: string): void {
    for (const { proxy } of this.proxies.values()) if (proxy.identityUri === identity) return;
    this.ctx.certs.forget(identity);
  }

  private updateGauges(): void {
    this.ctx.telemetry.setActiveProxies(this.proxies.size);
    this.ctx.telemetry.setPendingProxies(this.pending.size);
  }
}
