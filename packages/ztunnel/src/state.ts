// ztunnel's view of the mesh, fed by the delta xDS client: workloads by UID and by "<network>/<ip>", services by
// "<namespace>/<hostname>" and by VIP, and authorization policies. A workload's `services` map makes it an
// endpoint of those services even when the Service resource arrives later. Bad resources are refused one by one
// (the client NACKs them with the reason) while the good ones of the same response are applied.
import { EventEmitter } from "node:events";
import { TypeUrl, bytesToIp, istio, networkAddressKey, unpackAddress, unpackAuthorization, type google } from "@ambit/protocol";
import { PolicyStore } from "./rbac.js";

export type Workload = istio.workload.Workload.$Properties & { uid: string };
export type Service = istio.workload.Service.$Properties;

export class ResourceRejected extends Error {
  override name = "ResourceRejected";
}

function validateWorkload(w: Workload): void {
  if (!w.uid) throw new ResourceRejected("workload without uid");
  for (const a of w.addresses ?? []) if (a.length !== 4 && a.length !== 16) throw new ResourceRejected(`workload ${w.uid}: an address has ${a.length} bytes (want 4 or 16)`);
  if (w.tunnel_protocol === istio.workload.TunnelProtocol.LEGACY_ISTIO_MTLS) throw new ResourceRejected(`workload ${w.uid}: tunnel protocol LEGACY_ISTIO_MTLS is not supported`);
}

function validateService(s: Service): void {
  if (!s.hostname || !s.namespace) throw new ResourceRejected("service without namespace or hostname");
  for (const a of s.addresses ?? []) {
    const len = a.address?.length ?? 0;
    if (len !== 4 && len !== 16) throw new ResourceRejected(`service ${s.namespace}/${s.hostname}: a VIP has ${len} bytes (want 4 or 16)`);
  }
}

/** Emits "change" after every applied xDS response (proxies re-resolve their workload and re-check open connections). */
export class ProxyState extends EventEmitter {
  readonly workloads = new Map<string, Workload>();
  readonly services = new Map<string, Service>();
  readonly policies = new PolicyStore();
  private readonly workloadByAddress = new Map<string, string>();
  private readonly serviceByVip = new Map<string, string>();
  /** Service key → UIDs of the workloads listing it (kept even before the Service arrives). */
  private readonly endpointsBySvc = new Map<string, Set<string>>();
  /** "<node>/<namespace>/<name>" → UID, for the ZDS ↔ xDS join. */
  private readonly byNodeName = new Map<string, string>();
  /** Bumped on every change, so callers can cache lookups. */
  generation = 0;

  private changed(): void {
    this.generation++;
    this.emit("change");
  }

  /** Handler for the Address type of the delta xDS client. */
  applyAddresses(added: { name: string; resource: google.protobuf.Any.$Properties }[], removed: string[]): { errors?: Record<string, string> } {
    const errors: Record<string, string> = {};
    for (const r of added) {
      try {
        const a = unpackAddress(r.resource);
        if (a.workload) this.setWorkload(a.workload as Workload);
        else if (a.service) this.setService(a.service);
        else throw new ResourceRejected("address with neither workload nor service");
      } catch (err) {
        errors[r.name] = (err as Error).message;
      }
    }
    for (const name of removed) this.removeAddress(name);
    this.changed();
    return Object.keys(errors).length ? { errors } : {};
  }

  /** Handler for the Authorization type. */
  applyAuthorizations(added: { name: string; resource: google.protobuf.Any.$Properties }[], removed: string[]): { errors?: Record<string, string> } {
    const errors: Record<string, string> = {};
    for (const r of added) {
      try {
        this.policies.set(unpackAuthorization(r.resource));
      } catch (err) {
        errors[r.name] = (err as Error).message;
      }
    }
    for (const name of removed) this.policies.delete(name);
    this.changed();
    return Object.keys(errors).length ? { errors } : {};
  }

  handlerFor(typeUrl: string) {
    return typeUrl === TypeUrl.authorization ? this.applyAuthorizations.bind(this) : this.applyAddresses.bind(this);
  }

  private workloadAddressKeys(w: Workload): string[] {
    // Host-network workloads share their node's IP: they are not indexed by address.
    if (w.network_mode === istio.workload.NetworkMode.HOST_NETWORK) return [];
    return (w.addresses ?? []).map((a) => networkAddressKey(w.network ?? "", bytesToIp(a)));
  }

  private serviceVipKeys(s: Service): string[] {
    return (s.addresses ?? []).map((a) => networkAddressKey(a.network ?? "", bytesToIp(a.address!)));
  }

  private setWorkload(w: Workload): void {
    validateWorkload(w);
    this.removeWorkload(w.uid);
    this.workloads.set(w.uid, w);
    for (const k of this.workloadAddressKeys(w)) this.workloadByAddress.set(k, w.uid);
    for (const svc of Object.keys(w.services ?? {})) this.endpointsOf(svc).add(w.uid);
    if (w.node) this.byNodeName.set(`${w.node}/${w.namespace}/${w.name}`, w.uid);
  }

  private setService(s: Service): void {
    validateService(s);
    const key = `${s.namespace}/${s.hostname}`;
    this.removeService(key);
    this.services.set(key, s);
    for (const k of this.serviceVipKeys(s)) this.serviceByVip.set(k, key);
  }

  /** A removal names a workload UID, else a "<namespace>/<hostname>" service. */
  private removeAddress(name: string): void {
    if (!this.removeWorkload(name)) this.removeService(name);
  }

  private removeWorkload(uid: string): boolean {
    const w = this.workloads.get(uid);
    if (!w) return false;
    this.workloads.delete(uid);
    for (const k of this.workloadAddressKeys(w)) if (this.workloadByAddress.get(k) === uid) this.workloadByAddress.delete(k);
    for (const svc of Object.keys(w.services ?? {})) this.endpointsBySvc.get(svc)?.delete(uid);
    const nodeKey = `${w.node}/${w.namespace}/${w.name}`;
    if (this.byNodeName.get(nodeKey) === uid) this.byNodeName.delete(nodeKey);
    return true;
  }

  private removeService(key: string): boolean {
    const s = this.services.get(key);
    if (!s) return false;
    this.services.delete(key);
    for (const k of this.serviceVipKeys(s)) if (this.serviceByVip.get(k) === key) this.serviceByVip.delete(k);
    return true;
  }

  private endpointsOf(serviceKey: string): Set<string> {
    let set = this.endpointsBySvc.get(serviceKey);
    if (!set) this.endpointsBySvc.set(serviceKey, (set = new Set()));
    return set;
  }

  workloadByIp(network: string, ip: string): Workload | undefined {
    const uid = this.workloadByAddress.get(networkAddressKey(network, ip));
    return uid ? this.workloads.get(uid) : undefined;
  }

  /** A service by hostname, preferring the given namespace. */
  serviceByHostname(hostname: string, preferNamespace: string): Service | undefined {
    const own = this.services.get(`${preferNamespace}/${hostname}`);
    if (own) return own;
    for (const s of this.services.values()) if (s.hostname === hostname) return s;
    return undefined;
  }

  serviceByIp(network: string, ip: string): Service | undefined {
    const key = this.serviceByVip.get(networkAddressKey(network, ip));
    return key ? this.services.get(key) : undefined;
  }

  /** Endpoints of a service: workloads listing it, healthy ones only unless its health policy is ALLOW_ALL. */
  endpoints(serviceKey: string): Workload[] {
    const allowAll = this.services.get(serviceKey)?.load_balancing?.health_policy === istio.workload.LoadBalancing.HealthPolicy.ALLOW_ALL;
    return [...(this.endpointsBySvc.get(serviceKey) ?? [])].map((uid) => this.workloads.get(uid)!)
      .filter((w) => allowAll || w.status !== istio.workload.WorkloadStatus.UNHEALTHY);
  }

  /** The workload of a pod this ztunnel serves: by name, namespace and service account, on this node (ZDS ↔ xDS join). */
  localWorkload(node: string, name: string, namespace: string, serviceAccount: string): Workload | undefined {
    const uid = this.byNodeName.get(`${node}/${namespace}/${name}`);
    const w = uid ? this.workloads.get(uid) : undefined;
    return w && (w.service_account || "default") === serviceAccount ? w : undefined;
  }
}
