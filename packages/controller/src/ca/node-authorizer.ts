// Istio's node authorizer for impersonation: a node proxy (ztunnel) may ask for a certificate of another
// identity only if (1) its own service account is one of the trusted node accounts, (2) the pod its token is
// bound to exists with that UID and service account, and (3) a pod with the requested service account runs on
// that pod's node. Each failure says which check failed (PERMISSION_DENIED).
import type { Collection, Index } from "@ambit/kube";
import { parseSpiffeId } from "@ambit/protocol";
import type { Caller } from "../auth.js";
import type { Pod } from "../model/types.js";

export class ImpersonationDenied extends Error {
  override name = "ImpersonationDenied";
}

export class NodeAuthorizer {
  private readonly byNodeIdentity: Index<Pod>;

  constructor(private readonly pods: Collection<Pod>, private readonly trustedAccounts: Set<string>, private readonly trustDomain: string) {
    this.byNodeIdentity = pods.index("node-identity", (p) => {
      const phase = p.status?.phase;
      if (!p.spec?.nodeName || phase === "Failed" || phase === "Succeeded") return [];
      return [`${p.spec.nodeName}/${p.metadata.namespace}/${p.spec.serviceAccountName || "default"}`];
    });
  }

  /** Returns the identity to put in the certificate, or throws ImpersonationDenied naming the failed check. */
  authorize(caller: Caller, requested: string): string {
    const account = `${caller.namespace}/${caller.serviceAccount}`;
    if (!this.trustedAccounts.has(account)) {
      throw new ImpersonationDenied(`${account} may not impersonate: it is not one of the trusted node accounts (${[...this.trustedAccounts].join(", ") || "none"})`);
    }
    let id;
    try {
      id = parseSpiffeId(requested);
    } catch (err) {
      throw new ImpersonationDenied(`the requested identity is not a SPIFFE id: ${(err as Error).message}`);
    }
    if (id.trustDomain !== this.trustDomain) throw new ImpersonationDenied(`the requested identity's trust domain "${id.trustDomain}" is not "${this.trustDomain}"`);
    if (!caller.podName || !caller.podUid) throw new ImpersonationDenied("the caller's token is not bound to a pod, so its node is unknown");
    const pod = this.pods.get(`${caller.namespace}/${caller.podName}`);
    if (!pod || pod.metadata.uid !== caller.podUid) throw new ImpersonationDenied(`the caller's pod ${caller.namespace}/${caller.podName} (uid ${caller.podUid}) does not exist`);
    if ((pod.spec?.serviceAccountName || "default") !== caller.serviceAccount) throw new ImpersonationDenied(`the caller's pod does not run as ${account}`);
    const node = pod.spec?.nodeName;
    if (!node) throw new ImpersonationDenied(`the caller's pod ${caller.namespace}/${caller.podName} is not on a node`);
    if (!this.byNodeIdentity.lookup(`${node}/${id.namespace}/${id.serviceAccount}`).length) {
      throw new ImpersonationDenied(`no pod with service account ${id.namespace}/${id.serviceAccount} runs on ${node}, the caller's node`);
    }
    return requested;
  }
}
