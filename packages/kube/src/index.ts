// @ambit/kube: Kubernetes client set-up, zod schemas of the objects Ambit reads, informer collections, and a
// declarative collections runtime (derived views with dependency tracking, in the spirit of Istio's krt).

export * from "./collections/index.js";
export { kubeKey, splitKubeKey, type NamedObject } from "./keys.js";
export {
  InformerCollection,
  informerCollection,
  kubeContentEqual,
  type BackoffOptions,
  type InformerOptions,
  type InformerSource,
  type KubeList,
  type ListFn,
  type Selectors,
} from "./informer.js";
export {
  ApiError,
  getJson,
  listJson,
  resourcePath,
  resourceTypes,
  source,
  sources,
  type ResourceType,
  type SourceOptions,
} from "./resources.js";
export { KubeConfigError, SERVICE_ACCOUNT_DIR, loadKubeConfig, resolveKubeConfig, type LoadKubeConfigOptions, type LoadedKubeConfig } from "./client.js";
export * from "./schemas/index.js";
