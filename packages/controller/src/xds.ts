// Feeds the ambient index's outputs into the delta xDS server: Address resources (Workloads by UID, Services by
// "<ns>/<hostname>", each with "<network>/<ip>" aliases) and Authorization resources by "<ns>/<name>".
import type { Collection } from "@ambit/kube";
import { TypeUrl, istio, parseNodeId } from "@ambit/protocol";
import type { DeltaXdsServer } from "@ambit/xds";
import { addressAliases, type AmbientIndex } from "./model/index.js";

/** Mirrors one collection into one xDS type, batch by batch (one debounced push per batch at most). */
function mirror<T>(server: DeltaXdsServer, typeUrl: string, c: Collection<T>, encode: (item: T) => { resource: Uint8Array; aliases?: string[] }): () => void {
  return c.subscribe((batch) => {
    const upserts = [];
    const removals = [];
    for (const e of batch) {
      if (e.type === "delete") removals.push(e.key);
      else upserts.push({ name: e.key, ...encode(e.new!) });
    }
    server.update(typeUrl, upserts, removals);
  }, { replay: true });
}

export function feedXds(server: DeltaXdsServer, index: AmbientIndex, network: string): () => void {
  const stops = [
    mirror(server, TypeUrl.address, index.workloads, (w) => ({
      resource: istio.workload.Address.encode({ workload: w }).finish(),
      aliases: addressAliases(network, (w.addresses ?? []) as Uint8Array[]),
    })),
    mirror(server, TypeUrl.address, index.services, (s) => ({
      resource: istio.workload.Address.encode({ service: s }).finish(),
      aliases: addressAliases(network, (s.addresses ?? []).map((a) => a.address as Uint8Array)),
    })),
    mirror(server, TypeUrl.authorization, index.authorizations, (a) => ({ resource: istio.security.Authorization.encode(a).finish() })),
  ];
  return () => stops.forEach((s) => s());
}

/** Istio's identity check: a proxy may only claim a node ID in its own namespace. */
export function nodeMatchesIdentity(nodeId: string | undefined, callerNamespace: string): string | null {
  const node = parseNodeId(nodeId ?? "");
  if (!node) return `node id "${nodeId}" is not <type>~<ip>~<pod>.<namespace>~<domain>`;
  const ns = node.id.split(".")[1];
  if (ns !== callerNamespace) return `node id namespace "${ns}" does not match the caller's namespace "${callerNamespace}"`;
  return null;
}
