// Built-in Kubernetes kinds Ambit reads: Namespace, Pod, Service, EndpointSlice, Node, Secret.

import { z } from "zod";
import { Condition, NamespacedMeta, ObjectMeta, Port, StringMap, opt, optList } from "./common.js";

const typeMeta = {
  apiVersion: opt(z.string()),
  kind: opt(z.string()),
};

export const NamespaceSchema = z.looseObject({
  ...typeMeta,
  metadata: ObjectMeta,
  status: opt(z.looseObject({ phase: opt(z.string()) })),
});

export const ContainerPort = z.looseObject({
  name: opt(z.string()),
  containerPort: Port,
  protocol: opt(z.string()),
  hostPort: opt(z.int()),
  hostIP: opt(z.string()),
});

export const Container = z.looseObject({
  name: z.string(),
  image: opt(z.string()),
  ports: optList(ContainerPort),
  /** "Always" on an init container makes it a native sidecar (its ports count as the pod's). */
  restartPolicy: opt(z.string()),
});

export const PodSchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  spec: z.looseObject({
    nodeName: opt(z.string()),
    serviceAccountName: opt(z.string()),
    hostNetwork: opt(z.boolean()),
    containers: z.array(Container),
    initContainers: optList(Container),
  }),
  status: opt(
    z.looseObject({
      phase: opt(z.string()),
      podIP: opt(z.string()),
      podIPs: optList(z.looseObject({ ip: z.string() })),
      hostIP: opt(z.string()),
      conditions: optList(Condition),
    }),
  ),
});

export const ServicePort = z.looseObject({
  name: opt(z.string()),
  protocol: opt(z.string()),
  port: Port,
  /** A number or the name of a container port. */
  targetPort: opt(z.union([z.int().min(0).max(65535), z.string()])),
  appProtocol: opt(z.string()),
  nodePort: opt(z.int()),
});

export const ServiceSchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  spec: z.looseObject({
    selector: opt(StringMap),
    clusterIP: opt(z.string()),
    clusterIPs: optList(z.string()),
    ports: optList(ServicePort),
    type: opt(z.string()),
    externalName: opt(z.string()),
    ipFamilies: optList(z.string()),
    ipFamilyPolicy: opt(z.string()),
    internalTrafficPolicy: opt(z.string()),
    trafficDistribution: opt(z.string()),
    publishNotReadyAddresses: opt(z.boolean()),
  }),
});

export const ObjectReference = z.looseObject({
  kind: opt(z.string()),
  namespace: opt(z.string()),
  name: opt(z.string()),
  uid: opt(z.string()),
  apiVersion: opt(z.string()),
});

export const Endpoint = z.looseObject({
  addresses: z.array(z.string()),
  conditions: opt(
    z.looseObject({ ready: opt(z.boolean()), serving: opt(z.boolean()), terminating: opt(z.boolean()) }),
  ),
  hostname: opt(z.string()),
  nodeName: opt(z.string()),
  zone: opt(z.string()),
  targetRef: opt(ObjectReference),
});

export const EndpointSliceSchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  addressType: z.string(),
  endpoints: optList(Endpoint),
  ports: optList(
    z.looseObject({
      name: opt(z.string()),
      port: opt(z.int()),
      protocol: opt(z.string()),
      appProtocol: opt(z.string()),
    }),
  ),
});

export const NodeSchema = z.looseObject({
  ...typeMeta,
  metadata: ObjectMeta,
  spec: opt(z.looseObject({ podCIDR: opt(z.string()), podCIDRs: optList(z.string()) })),
  status: opt(
    z.looseObject({
      addresses: optList(z.looseObject({ type: z.string(), address: z.string() })),
      conditions: optList(Condition),
    }),
  ),
});

/** Only what the CA reads: the type and the base64 data. */
export const SecretSchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  type: opt(z.string()),
  data: opt(z.record(z.string(), z.string())),
});

export type Namespace = z.infer<typeof NamespaceSchema>;
export type Pod = z.infer<typeof PodSchema>;
export type Container = z.infer<typeof Container>;
export type ContainerPort = z.infer<typeof ContainerPort>;
export type Service = z.infer<typeof ServiceSchema>;
export type ServicePort = z.infer<typeof ServicePort>;
export type EndpointSlice = z.infer<typeof EndpointSliceSchema>;
export type Endpoint = z.infer<typeof Endpoint>;
export type ObjectReference = z.infer<typeof ObjectReference>;
export type Node = z.infer<typeof NodeSchema>;
export type Secret = z.infer<typeof SecretSchema>;
