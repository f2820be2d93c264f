// A container's environment, resolved as the kubelet does: env (values, downward API fieldRef and
// resourceFieldRef, configMapKeyRef, secretKeyRef), envFrom, and the kubernetes Service variables.
import type { V1Container, V1ObjectFieldSelector, V1Pod, V1ResourceFieldSelector } from "@kubernetes/client-node";
import { Api, ApiError } from "../api.js";
import { KUBERNETES_SERVICE_IP } from "../layout.js";

export class EnvError extends Error {
  override name = "EnvError";
}

/** Value of a downward-API field path of the pod (metadata.name, status.podIP, metadata.labels['k'] …). */
export function fieldRefValue(pod: V1Pod, fieldPath: string): string {
  const m = pod.metadata ?? {};
  const labelOrAnnotation = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(fieldPath);
  if (labelOrAnnotation) return (labelOrAnnotation[1] === "labels" ? m.labels : m.annotations)?.[labelOrAnnotation[2]!] ?? "";
  const values: Record<string, string | undefined> = {
    "metadata.name": m.name,
    "metadata.namespace": m.namespace,
    "metadata.uid": m.uid,
    "metadata.labels": Object.entries(m.labels ?? {}).map(([k, v]) => `${k}="${v}"`).join("\n"),
    "metadata.annotations": Object.entries(m.annotations ?? {}).map(([k, v]) => `${k}="${v}"`).join("\n"),
    "spec.nodeName": pod.spec?.nodeName,
    "spec.serviceAccountName": pod.spec?.serviceAccountName,
    "status.hostIP": pod.status?.hostIP,
    "status.hostIPs": (pod.status?.hostIPs ?? []).map((x) => x.ip).join(","),
    "status.podIP": pod.status?.podIP,
    "status.podIPs": (pod.status?.podIPs ?? []).map((x) => x.ip).join(","),
  };
  if (!(fieldPath in values)) throw new EnvError(`unsupported downward-API field "${fieldPath}"`);
  return values[fieldPath] ?? "";
}

// What the node offers a container without limits (the node's allocatable).
const NODE_ALLOCATABLE: Record<string, string> = { cpu: "2", memory: "8Gi", "ephemeral-storage": "20Gi" };

function quantity(q: string): number {
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q);
  if (!m) throw new EnvError(`cannot read the quantity "${q}"`);
  const unit: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return Number(m[1]) * (m[2] ? unit[m[2]]! : 1);
}

function resourceValue(c: V1Container, ref: V1ResourceFieldSelector): string {
  const [kind, name] = ref.resource.split(".") as [string, string];
  const set = kind === "limits" ? c.resources?.limits : kind === "requests" ? c.resources?.requests : undefined;
  const raw = set?.[name] ?? (kind === "limits" || kind === "requests" ? NODE_ALLOCATABLE[name] ?? (kind === "requests" ? "0" : undefined) : undefined);
  if (raw === undefined) throw new EnvError(`unsupported resourceFieldRef "${ref.resource}"`);
  const divisor = ref.divisor ? quantity(String(ref.divisor)) : 1;
  return String(Math.ceil(quantity(String(raw)) / divisor));
}

export async function containerEnv(api: Api, pod: V1Pod, c: V1Container): Promise<Record<string, string>> {
  const ns = pod.metadata!.namespace!;
  const env: Record<string, string> = {
    KUBERNETES_SERVICE_HOST: KUBERNETES_SERVICE_IP,
    KUBERNETES_SERVICE_PORT: "443",
    KUBERNETES_SERVICE_PORT_HTTPS: "443",
    KUBERNETES_PORT: `tcp://${KUBERNETES_SERVICE_IP}:443`,
    HOSTNAME: pod.metadata!.name!,
  };
  const get = async <T>(path: string, what: string, optional?: boolean): Promise<T | null> => {
    try {
      return await api.get<T>(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && optional) return null;
      throw new EnvError(`${what}: ${(err as Error).message}`);
    }
  };
  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? "";
    if (from.configMapRef) {
      const cm = await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${ns}/configmaps/${from.configMapRef.name}`, `envFrom configmap "${from.configMapRef.name}"`, from.configMapRef.optional);
      for (const [k, v] of Object.entries(cm?.data ?? {})) env[prefix + k] = v;
    } else if (from.secretRef) {
      const s = await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${ns}/secrets/${from.secretRef.name}`, `envFrom secret "${from.secretRef.name}"`, from.secretRef.optional);
      for (const [k, v] of Object.entries(s?.data ?? {})) env[prefix + k] = Buffer.from(v, "base64").toString();
    }
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = expand(e.value ?? "", env);
      continue;
    }
    const f = e.valueFrom;
    if (f.fieldRef) env[e.name] = fieldRefValue(pod, (f.fieldRef as V1ObjectFieldSelector).fieldPath);
    else if (f.resourceFieldRef) env[e.name] = resourceValue(c, f.resourceFieldRef);
    else if (f.configMapKeyRef) {
      const r = f.configMapKeyRef;
      const cm = await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${ns}/configmaps/${r.name}`, `env ${e.name}: configmap "${r.name}"`, r.optional);
      const v = cm?.data?.[r.key];
      if (v === undefined && !r.optional) throw new EnvError(`env ${e.name}: configmap "${r.name}" has no key "${r.key}"`);
      if (v !== undefined) env[e.name] = v;
    } else if (f.secretKeyRef) {
      const r = f.secretKeyRef;
      const s = await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${ns}/secrets/${r.name}`, `env ${e.name}: secret "${r.name}"`, r.optional);
      const v = s?.data?.[r.key];
      if (v === undefined && !r.optional) throw new EnvError(`env ${e.name}: secret "${r.name}" has no key "${r.key}"`);
      if (v !== undefined) env[e.name] = Buffer.from(v, "base64").toString();
    }
  }
  return env;
}

/** $(VAR) references to earlier variables are expanded; $$ escapes. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name?: string) => (m === "$$" ? "$" : env[name!] ?? m));
}
