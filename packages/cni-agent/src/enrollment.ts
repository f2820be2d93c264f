// Which pods are in the mesh, decided as Istio's CNI agent decides: the namespace label
// istio.io/dataplane-mode=ambient, overridden per pod by the same label ("ambient" / "none"); never pods in the
// excluded namespaces, host-network pods, or pods that already run an Istio sidecar.
import { DataplaneMode, Labels } from "@ambit/protocol";

export interface PodLike {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> | null; annotations?: Record<string, string> | null; deletionTimestamp?: unknown };
  spec?: { hostNetwork?: boolean | null; containers?: { name: string }[] | null; initContainers?: { name: string }[] | null } | null;
  status?: { phase?: string | null; podIP?: string | null } | null;
}

export interface NamespaceLike {
  metadata: { name: string; labels?: Record<string, string> | null };
}

export interface Decision {
  enroll: boolean;
  reason: string;
}

export function enrollment(pod: PodLike, ns: NamespaceLike | undefined, excluded: ReadonlySet<string>): Decision {
  const namespace = pod.metadata.namespace ?? "";
  if (excluded.has(namespace)) return { enroll: false, reason: `namespace ${namespace} is excluded` };
  if (pod.spec?.hostNetwork) return { enroll: false, reason: "the pod uses host networking" };
  const sidecar = pod.metadata.annotations?.["sidecar.istio.io/status"] !== undefined ||
    [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].some((c) => c.name === "istio-proxy");
  if (sidecar) return { enroll: false, reason: "the pod has an Istio sidecar" };
  const own = pod.metadata.labels?.[Labels.dataplaneMode];
  if (own === DataplaneMode.none) return { enroll: false, reason: `the pod is labelled ${Labels.dataplaneMode}=none` };
  if (own === DataplaneMode.ambient) return { enroll: true, reason: `the pod is labelled ${Labels.dataplaneMode}=ambient` };
  if (ns?.metadata.labels?.[Labels.dataplaneMode] === DataplaneMode.ambient) return { enroll: true, reason: `namespace ${namespace} is labelled ${Labels.dataplaneMode}=ambient` };
  return { enroll: false, reason: "neither the pod nor its namespace asks for ambient mode" };
}
