// Leader election on a coordination.k8s.io Lease: only the leader writes to the API (status, events); every
// replica serves xDS. The holder renews every `renewMs`; another replica takes over once the lease has not been
// renewed for its duration.
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";

/** A Date that serialises as Kubernetes MicroTime (six fractional digits), which the API server requires. */
class MicroTime extends Date {
  override toISOString(): string {
    return super.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
  }
}

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseSeconds?: number;
  renewMs?: number;
  onChange?: (leading: boolean) => void;
}

export class LeaderElection {
  leading = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly api: CoordinationV1Api;

  constructor(kc: KubeConfig, private readonly o: LeaderOptions) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  start(): void {
    const tick = async () => {
      try {
        await this.tryAcquireOrRenew();
      } catch {
        this.set(false);
      }
      this.timer = setTimeout(() => void tick(), this.o.renewMs ?? 2000);
    };
    void tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.set(false);
  }

  private set(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.o.onChange?.(leading);
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity } = this.o;
    const duration = this.o.leaseSeconds ?? 15;
    const now = new MicroTime();
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await this.api.createNamespacedLease({ namespace, body: {
        metadata: { name, namespace },
        spec: { holderIdentity: identity, leaseDurationSeconds: duration, acquireTime: now, renewTime: now, leaseTransitions: 0 },
      } });
      this.set(true);
      return;
    }
    const spec = lease.spec ?? {};
    const renewed = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? duration) * 1000 < Date.now();
    if (spec.holderIdentity !== identity && !expired) {
      this.set(false);
      return;
    }
    const takeover = spec.holderIdentity !== identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity, leaseDurationSeconds: duration, renewTime: now,
      ...(takeover ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
      ...(spec.acquireTime ? { acquireTime: takeover ? now : new MicroTime(spec.acquireTime) } : {}),
    };
    // A replace with the read resourceVersion: a concurrent writer makes this fail (409) and we retry later.
    await this.api.replaceNamespacedLease({ name, namespace, body: lease });
    this.set(true);
  }
}
