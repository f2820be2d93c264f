// The Kubernetes objects the model reads, as plain data (the shapes of @ambit/kube's schemas; only what is used).
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { kind: string; name: string; apiVersion?: string; controller?: boolean }[];
  deletionTimestamp?: string | Date | null;
  creationTimestamp?: string | Date;
}

export interface Pod {
  metadata: ObjectMeta;
  spec?: {
    nodeName?: string;
    serviceAccountName?: string;
    hostNetwork?: boolean;
    containers?: { name: string; ports?: { name?: string; containerPort: number; protocol?: string }[] }[];
    initContainers?: { name: string; restartPolicy?: string; ports?: { name?: string; containerPort: number; protocol?: string }[] }[];
  };
  status?: { phase?: string; podIP?: string; podIPs?: { ip: string }[]; conditions?: { type: string; status: string }[] };
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

export interface Service {
  metadata: ObjectMeta;
  spec?: {
    type?: string;
    selector?: Record<string, string> | null;
    clusterIP?: string;
    clusterIPs?: string[];
    ports?: ServicePort[];
    ipFamilies?: string[];
    ipFamilyPolicy?: string;
    internalTrafficPolicy?: string;
    trafficDistribution?: string;
    publishNotReadyAddresses?: boolean;
  };
}

export interface Namespace {
  metadata: ObjectMeta;
}

export interface Node {
  metadata: ObjectMeta;
}

export interface EndpointSlice {
  metadata: ObjectMeta;
  endpoints?: { addresses: string[]; targetRef?: { kind?: string; name?: string; namespace?: string; uid?: string } }[];
  ports?: { name?: string; port?: number; protocol?: string }[];
}

export interface Gateway {
  metadata: ObjectMeta;
  spec?: { gatewayClassName?: string; listeners?: { name?: string; port: number; protocol: string }[] };
  status?: { addresses?: { type?: string; value: string }[] };
}

/** Settings of the model (from the controller's configuration). */
export interface MeshSettings {
  clusterId: string;
  trustDomain: string;
  domainSuffix: string;
  /** Network of this cluster ("" = the default network). */
  network: string;
  /** The mesh's root namespace (the controller's own namespace). */
  rootNamespace: string;
}
