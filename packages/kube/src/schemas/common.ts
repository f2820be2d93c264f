// Building blocks shared by the object schemas.
//
// Policy: objects are validated loosely — unknown fields are kept (z.looseObject), so a newer API server or a field
// Ambit does not know yet never makes an object disappear, and translators can still see (and fail closed on)
// fields they do not understand. Fields Ambit reads are typed strictly. Optional fields accept `null` as absent
// (Go serialises some nil slices as null, e.g. EndpointSlice.endpoints) and parse to `undefined`.

import { z } from "zod";

/** An optional field: absent, undefined or null all parse to undefined. */
export function opt<S extends z.ZodType>(schema: S) {
  return schema.nullish().transform((v) => v ?? undefined);
}

/** An optional list; null parses to undefined. */
export function optList<S extends z.ZodType>(item: S) {
  return opt(z.array(item));
}

export const StringMap = z.record(z.string(), z.string());

export const Port = z.int().min(1).max(65535);

export const OwnerReference = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: opt(z.boolean()),
  blockOwnerDeletion: opt(z.boolean()),
});

/** metadata of a cluster-scoped object. */
export const ObjectMeta = z.looseObject({
  name: z.string().min(1),
  namespace: opt(z.string()),
  uid: opt(z.string()),
  resourceVersion: opt(z.string()),
  generation: opt(z.number()),
  creationTimestamp: opt(z.string()),
  deletionTimestamp: opt(z.string()),
  labels: opt(StringMap),
  annotations: opt(StringMap),
  ownerReferences: optList(OwnerReference),
});

/** metadata of a namespaced object: the namespace is required. */
export const NamespacedMeta = ObjectMeta.extend({ namespace: z.string().min(1) });

export const LabelSelector = z.looseObject({
  matchLabels: opt(StringMap),
  matchExpressions: optList(
    z.looseObject({ key: z.string(), operator: z.string(), values: optList(z.string()) }),
  ),
});

export const Condition = z.looseObject({
  type: z.string(),
  status: z.string(),
  reason: opt(z.string()),
  message: opt(z.string()),
  lastTransitionTime: opt(z.string()),
  observedGeneration: opt(z.number()),
});

export type OwnerReference = z.infer<typeof OwnerReference>;
export type ObjectMeta = z.infer<typeof ObjectMeta>;
export type NamespacedMeta = z.infer<typeof NamespacedMeta>;
export type LabelSelector = z.infer<typeof LabelSelector>;
export type Condition = z.infer<typeof Condition>;
