// The resource types Ambit reads, and list functions for informers.
//
// Every kind, built-in or CRD, is listed with a plain GET returning the API server's JSON. client-node's typed APIs
// (CoreV1Api…) would turn items into model classes (timestamps become Date objects, unknown fields are dropped) while
// the watch delivers plain JSON: the two would never compare equal, and every relist would look like a change.

import http from "node:http";
import https from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import type { z } from "zod";
import type { InformerSource, KubeList, Selectors } from "./informer.js";
import { EndpointSliceSchema, NamespaceSchema, NodeSchema, PodSchema, SecretSchema, ServiceSchema } from "./schemas/core.js";
import { GatewaySchema } from "./schemas/gateway.js";
import { AuthorizationPolicySchema, PeerAuthenticationSchema } from "./schemas/istio.js";

export interface ResourceType<T> {
  readonly kind: string;
  /** "" for the core group. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly namespaced: boolean;
  readonly schema: z.ZodType<T>;
}

function rt<T>(kind: string, group: string, version: string, plural: string, namespaced: boolean, schema: z.ZodType<T>): ResourceType<T> {
  return { kind, group, version, plural, namespaced, schema };
}

export const resourceTypes = {
  namespaces: rt("Namespace", "", "v1", "namespaces", false, NamespaceSchema),
  pods: rt("Pod", "", "v1", "pods", true, PodSchema),
  services: rt("Service", "", "v1", "services", true, ServiceSchema),
  endpointSlices: rt("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", true, EndpointSliceSchema),
  nodes: rt("Node", "", "v1", "nodes", false, NodeSchema),
  secrets: rt("Secret", "", "v1", "secrets", true, SecretSchema),
  authorizationPolicies: rt("AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies", true, AuthorizationPolicySchema),
  peerAuthentications: rt("PeerAuthentication", "security.istio.io", "v1", "peerauthentications", true, PeerAuthenticationSchema),
  gateways: rt("Gateway", "gateway.networking.k8s.io", "v1", "gateways", true, GatewaySchema),
} as const;

export interface SourceOptions {
  /** Only this namespace (namespaced kinds). Default: all namespaces. */
  namespace?: string;
  /** Items per list page (continue tokens); 0 lists in one response. Default 500. */
  pageSize?: number;
}

/** "/api/v1/namespaces/ns/pods", "/apis/security.istio.io/v1/authorizationpolicies", … */
export function resourcePath(type: ResourceType<unknown>, namespace?: string): string {
  const base = type.group === "" ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  if (namespace !== undefined && !type.namespaced) throw new Error(`${type.kind} is not namespaced`);
  return namespace !== undefined ? `${base}/namespaces/${encodeURIComponent(namespace)}/${type.plural}` : `${base}/${type.plural}`;
}

/** Everything an informer needs for one resource type: `informerCollection(kc, { ...source(kc, t), fieldSelector })`. */
export function source<T>(kc: KubeConfig, type: ResourceType<T>, options: SourceOptions = {}): InformerSource<T> {
  const path = resourcePath(type, options.namespace);
  const pageSize = options.pageSize ?? 500;
  return { path, list: (sel) => listJson(kc, path, sel, pageSize), schema: type.schema };
}

/** Convenience: `sources.pods(kc)` = `source(kc, resourceTypes.pods)`. */
export const sources = {
  namespaces: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.namespaces, o),
  pods: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.pods, o),
  services: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.services, o),
  endpointSlices: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.endpointSlices, o),
  nodes: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.nodes, o),
  secrets: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.secrets, o),
  authorizationPolicies: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.authorizationPolicies, o),
  peerAuthentications: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.peerAuthentications, o),
  gateways: (kc: KubeConfig, o?: SourceOptions) => source(kc, resourceTypes.gateways, o),
};

/** Lists `path` as raw JSON, following continue tokens. */
export function listJson(kc: KubeConfig, path: string, selectors: Selectors = {}, pageSize = 500): Promise<KubeList> {
  return paged(pageSize, async (limit, cont) => {
    const query: Record<string, string | undefined> = {
      labelSelector: selectors.labelSelector,
      fieldSelector: selectors.fieldSelector,
      limit: limit === undefined ? undefined : String(limit),
      continue: cont,
    };
    return asKubeList(await getJson(kc, path, query), path);
  });
}

async function paged(pageSize: number, page: (limit: number | undefined, cont: string | undefined) => Promise<KubeList>): Promise<KubeList> {
  const limit = pageSize > 0 ? pageSize : undefined;
  const first = await page(limit, undefined);
  const items = [...first.items];
  let last = first;
  while (limit !== undefined && last.metadata?.continue) {
    last = await page(limit, last.metadata.continue);
    items.push(...last.items);
  }
  // The list's resourceVersion (to watch from) is the one of the consistent snapshot, given on every page.
  return { metadata: { resourceVersion: last.metadata?.resourceVersion ?? first.metadata?.resourceVersion }, items };
}

function asKubeList(res: unknown, what: string): KubeList {
  const r = res as Partial<KubeList> | null | undefined;
  if (!r || typeof r !== "object" || !Array.isArray(r.items)) throw new Error(`list of ${what}: response has no items array`);
  return { metadata: r.metadata ?? undefined, items: r.items };
}

/** An error from the API server, with its HTTP status (410 = resourceVersion too old). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** GET `path` on the current cluster of `kc` and parse the JSON body (authentication and TLS from the kubeconfig). */
export async function getJson(kc: KubeConfig, path: string, query: Record<string, string | undefined> = {}, timeoutMs = 60_000): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const url = new URL(cluster.server.replace(/\/+$/, "") + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const transport = url.protocol === "http:" ? http : https;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      url,
      { ...opts, method: "GET", headers: { ...(opts.headers ?? {}), accept: "application/json" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown;
          try {
            body = text === "" ? undefined : JSON.parse(text);
          } catch {
            body = text;
          }
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            const message = (body as { message?: unknown } | undefined)?.message;
            reject(new ApiError(`GET ${path}: HTTP ${status}${typeof message === "string" ? `: ${message}` : ""}`, status, body));
            return;
          }
          resolve(body);
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${path}: no response within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}
