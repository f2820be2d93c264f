// The generated message classes, re-exported under short names. Field names keep the proto's
// snake_case (generated with --keep-case) so code reads like the wire schema.
import { envoy, google, istio } from "./generated/proto.js";

export { envoy, google, istio };

export const Address = istio.workload.Address;
export type Address = istio.workload.Address;
export const Workload = istio.workload.Workload;
export type Workload = istio.workload.Workload;
export const Service = istio.workload.Service;
export type Service = istio.workload.Service;
export const Authorization = istio.security.Authorization;
export type Authorization = istio.security.Authorization;

export const WorkloadRequest = istio.workload.zds.WorkloadRequest;
export type WorkloadRequest = istio.workload.zds.WorkloadRequest;
export const WorkloadResponse = istio.workload.zds.WorkloadResponse;
export type WorkloadResponse = istio.workload.zds.WorkloadResponse;
export const ZdsHello = istio.workload.zds.ZdsHello;
export type ZdsHello = istio.workload.zds.ZdsHello;

export const DeltaDiscoveryRequest = envoy.service.discovery.v3.DeltaDiscoveryRequest;
export type DeltaDiscoveryRequest = envoy.service.discovery.v3.DeltaDiscoveryRequest;
export const DeltaDiscoveryResponse = envoy.service.discovery.v3.DeltaDiscoveryResponse;
export type DeltaDiscoveryResponse = envoy.service.discovery.v3.DeltaDiscoveryResponse;
export const Resource = envoy.service.discovery.v3.Resource;
export type Resource = envoy.service.discovery.v3.Resource;

export const IstioCertificateRequest = istio.v1.auth.IstioCertificateRequest;
export type IstioCertificateRequest = istio.v1.auth.IstioCertificateRequest;
export const IstioCertificateResponse = istio.v1.auth.IstioCertificateResponse;
export type IstioCertificateResponse = istio.v1.auth.IstioCertificateResponse;
