// Pod volumes materialised as files under the pod's directory: configMap, secret, projected (service-account
// tokens bound to the pod, configMaps, secrets, downward API), downwardAPI, emptyDir and hostPath (mapped into
// the node's own root, so two nodes on one machine never share a "host"). refresh() brings configMaps,
// secrets and downward-API files up to date and renews tokens at 80 % of their lifetime, as the kubelet does.
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { V1ConfigMap, V1DownwardAPIVolumeFile, V1KeyToPath, V1Pod, V1Secret, V1Volume } from "@kubernetes/client-node";
import { Api, ApiError } from "../api.js";
import { writeAtomically, type Payload } from "./atomic-writer.js";
import { fieldRefValue } from "./env.js";

export class VolumeError extends Error {
  override name = "VolumeError";
}

interface Token {
  token: string;
  refreshAt: number;
}

export class PodVolumes {
  private readonly tokens = new Map<string, Token>();

  constructor(private readonly api: Api, private readonly pod: V1Pod, readonly dir: string, private readonly nodeRoot: string) {}

  /** Host path backing a volume (the source of its bind mount). */
  hostPath(volume: V1Volume): string {
    if (volume.hostPath) return join(this.nodeRoot, volume.hostPath.path);
    return join(this.dir, volume.name);
  }

  /** Creates or updates every volume; throws VolumeError naming the volume that cannot be made. */
  async refresh(): Promise<void> {
    for (const v of this.pod.spec?.volumes ?? []) {
      try {
        await this.materialise(v);
      } catch (err) {
        throw err instanceof VolumeError ? err : new VolumeError(`volume "${v.name}": ${(err as Error).message}`);
      }
    }
  }

  private async materialise(v: V1Volume): Promise<void> {
    const dir = join(this.dir, v.name);
    if (v.emptyDir) {
      mkdirSync(dir, { recursive: true });
    } else if (v.hostPath) {
      const path = this.hostPath(v);
      const type = v.hostPath.type ?? "";
      if (type === "Directory" || type === "Socket" || type === "File" || type === "CharDevice" || type === "BlockDevice") {
        if (!existsSync(path)) throw new VolumeError(`volume "${v.name}": hostPath ${v.hostPath.path} (${path} on this node) does not exist`);
      } else if (type === "FileOrCreate") {
        mkdirSync(dirname(path), { recursive: true });
      } else {
        mkdirSync(path, { recursive: true }); // "" and DirectoryOrCreate
      }
    } else if (v.configMap) {
      const cm = await this.configMap(v.configMap.name!, v.configMap.optional);
      writeAtomically(dir, cm ? configMapFiles(cm, v.configMap.items, v.configMap.defaultMode) : new Map());
    } else if (v.secret) {
      const s = await this.secret(v.secret.secretName!, v.secret.optional);
      writeAtomically(dir, s ? secretFiles(s, v.secret.items, v.secret.defaultMode) : new Map());
    } else if (v.downwardAPI) {
      writeAtomically(dir, this.downward(v.downwardAPI.items ?? [], v.downwardAPI.defaultMode));
    } else if (v.projected) {
      const payload: Payload = new Map();
      for (const src of v.projected.sources ?? []) {
        if (src.serviceAccountToken) {
          const t = src.serviceAccountToken;
          payload.set(t.path, { data: Buffer.from(await this.token(t.audience, t.expirationSeconds ?? 3600)), mode: v.projected.defaultMode ?? 0o600 });
        } else if (src.configMap) {
          const cm = await this.configMap(src.configMap.name!, src.configMap.optional);
          if (cm) for (const [k, f] of configMapFiles(cm, src.configMap.items, v.projected.defaultMode)) payload.set(k, f);
        } else if (src.secret) {
          const s = await this.secret(src.secret.name!, src.secret.optional);
          if (s) for (const [k, f] of secretFiles(s, src.secret.items, v.projected.defaultMode)) payload.set(k, f);
        } else if (src.downwardAPI) {
          for (const [k, f] of this.downward(src.downwardAPI.items ?? [], v.projected.defaultMode)) payload.set(k, f);
        }
      }
      writeAtomically(dir, payload);
    } else {
      throw new VolumeError(`volume "${v.name}": this kind of volume is not supported by ambit-local (supported: emptyDir, hostPath, configMap, secret, projected, downwardAPI)`);
    }
  }

  private async configMap(name: string, optional?: boolean): Promise<V1ConfigMap | null> {
    return this.getOptional<V1ConfigMap>(`/api/v1/namespaces/${this.pod.metadata!.namespace}/configmaps/${name}`, `configmap "${name}"`, optional);
  }

  private async secret(name: string, optional?: boolean): Promise<V1Secret | null> {
    return this.getOptional<V1Secret>(`/api/v1/namespaces/${this.pod.metadata!.namespace}/secrets/${name}`, `secret "${name}"`, optional);
  }

  private async getOptional<T>(path: string, what: string, optional?: boolean): Promise<T | null> {
    try {
      return await this.api.get<T>(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        if (optional) return null;
        throw new VolumeError(`${what} not found`);
      }
      throw err;
    }
  }

  /** A service-account token bound to this pod, from TokenRequest; cached until 80 % of its lifetime. */
  private async token(audience: string | undefined, expirationSeconds: number): Promise<string> {
    const key = `${audience ?? ""}/${expirationSeconds}`;
    const cached = this.tokens.get(key);
    if (cached && Date.now() < cached.refreshAt) return cached.token;
    const m = this.pod.metadata!;
    const res = await this.api.post<{ status: { token: string; expirationTimestamp: string } }>(
      `/api/v1/namespaces/${m.namespace}/serviceaccounts/${this.pod.spec!.serviceAccountName ?? "default"}/token`,
      {
        apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest",
        spec: {
          ...(audience ? { audiences: [audience] } : {}),
          expirationSeconds,
          boundObjectRef: { apiVersion: "v1", kind: "Pod", name: m.name, uid: m.uid },
        },
      },
    );
    const lifetime = new Date(res.status.expirationTimestamp).getTime() - Date.now();
    this.tokens.set(key, { token: res.status.token, refreshAt: Date.now() + lifetime * 0.8 });
    return res.status.token;
  }

  private downward(items: V1DownwardAPIVolumeFile[], mode?: number): Payload {
    const out: Payload = new Map();
    for (const item of items) {
      const value = item.fieldRef ? fieldRefValue(this.pod, item.fieldRef.fieldPath) : "";
      out.set(item.path, { data: Buffer.from(value), mode: item.mode ?? mode });
    }
    return out;
  }
}

function pick<T>(all: Record<string, T>, items: V1KeyToPath[] | undefined, what: string): [string, T, number | undefined][] {
  if (!items?.length) return Object.entries(all).map(([k, v]) => [k, v, undefined]);
  return items.map((i) => {
    if (!(i.key in all)) throw new VolumeError(`${what} has no key "${i.key}"`);
    return [i.path, all[i.key]!, i.mode];
  });
}

function configMapFiles(cm: V1ConfigMap, items: V1KeyToPath[] | undefined, mode?: number): Payload {
  const all: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm.data ?? {})) all[k] = Buffer.from(v);
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) all[k] = Buffer.from(v, "base64");
  return new Map(pick(all, items, `configmap "${cm.metadata?.name}"`).map(([p, d, m]) => [p, { data: d, mode: m ?? mode }]));
}

function secretFiles(s: V1Secret, items: V1KeyToPath[] | undefined, mode?: number): Payload {
  const all: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(s.data ?? {})) all[k] = Buffer.from(v, "base64");
  for (const [k, v] of Object.entries(s.stringData ?? {})) all[k] = Buffer.from(v);
  return new Map(pick(all, items, `secret "${s.metadata?.name}"`).map(([p, d, m]) => [p, { data: d, mode: m ?? mode ?? 0o644 }]));
}
