// The gRPC service definition of delta ADS, built by hand from the protocol package's codecs (no proto-loader),
// and a fast encoder for DeltaDiscoveryResponse that splices in Resources encoded once by the store.
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { DeltaDiscoveryRequest, DeltaDiscoveryResponse, type envoy } from "@ambit/protocol";

export type DeltaRequestProperties = envoy.service.discovery.v3.DeltaDiscoveryRequest.$Properties;
export type DeltaResponseProperties = envoy.service.discovery.v3.DeltaDiscoveryResponse.$Properties;
export type NodeProperties = envoy.config.core.v3.Node.$Properties;

export const DELTA_ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService";
export const DELTA_ADS_METHOD = "DeltaAggregatedResources";
export const DELTA_ADS_PATH = `/${DELTA_ADS_SERVICE}/${DELTA_ADS_METHOD}`;

/** ztunnel's decode limit: the largest response the server sends and the client accepts. */
export const MAX_MESSAGE_BYTES = 200 * 1024 * 1024;

/**
 * The largest request message the server reads (istiod's `ISTIO_GPRC_MAXRECVMSGSIZE` default, 4 MiB). A larger
 * one is refused with RESOURCE_EXHAUSTED as soon as its 5-byte length prefix arrives, before it is buffered.
 */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The bidi method. The server writes pre-encoded responses (`Uint8Array`, see `encodeDeltaResponse`); a message
 * object is accepted too and encoded with protobufjs.
 */
export const deltaAggregatedResources = {
  path: DELTA_ADS_PATH,
  requestStream: true,
  responseStream: true,
  originalName: "deltaAggregatedResources",
  requestSerialize: (value: DeltaRequestProperties): Buffer => toBuffer(DeltaDiscoveryRequest.encode(value).finish()),
  requestDeserialize: (bytes: Buffer): DeltaDiscoveryRequest => DeltaDiscoveryRequest.decode(bytes),
  responseSerialize: (value: DeltaResponseProperties | Uint8Array): Buffer =>
    toBuffer(value instanceof Uint8Array ? value : DeltaDiscoveryResponse.encode(value).finish()),
  responseDeserialize: (bytes: Buffer): DeltaDiscoveryResponse => DeltaDiscoveryResponse.decode(bytes),
} satisfies MethodDefinition<DeltaRequestProperties, DeltaResponseProperties | Uint8Array>;

/** `envoy.service.discovery.v3.AggregatedDiscoveryService` with only the delta method (all ztunnel uses). */
export const aggregatedDiscoveryService: ServiceDefinition = {
  [DELTA_ADS_METHOD]: deltaAggregatedResources,
};

// --- DeltaDiscoveryResponse wire encoding --------------------------------------------------------------
// Field numbers (envoy.service.discovery.v3.DeltaDiscoveryResponse): resources = 2, type_url = 4, nonce = 5,
// removed_resources = 6, all length-delimited (wire type 2). Fields are written in ascending order, and empty
// ones are left out, as protobuf encoders do.
const TAG_RESOURCES = (2 << 3) | 2;
const TAG_TYPE_URL = (4 << 3) | 2;
const TAG_NONCE = (5 << 3) | 2;
const TAG_REMOVED = (6 << 3) | 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

export interface ResponseParts {
  typeUrl: string;
  nonce: string;
  /** Each an encoded `envoy.service.discovery.v3.Resource`. */
  resources: readonly Uint8Array[];
  removed: readonly string[];
}

/** Encodes a DeltaDiscoveryResponse from already-encoded Resources (no per-client re-encoding). */
export function encodeDeltaResponse(parts: ResponseParts): Buffer {
  const strings: Array<[number, Buffer]> = [];
  if (parts.typeUrl) strings.push([TAG_TYPE_URL, Buffer.from(parts.typeUrl, "utf8")]);
  if (parts.nonce) strings.push([TAG_NONCE, Buffer.from(parts.nonce, "utf8")]);
  for (const name of parts.removed) strings.push([TAG_REMOVED, Buffer.from(name, "utf8")]);

  let size = 0;
  for (const r of parts.resources) size += 1 + varintSize(r.byteLength) + r.byteLength;
  for (const [, s] of strings) size += 1 + varintSize(s.byteLength) + s.byteLength;

  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const r of parts.resources) {
    out[pos++] = TAG_RESOURCES;
    pos = writeVarint(out, pos, r.byteLength);
    out.set(r, pos);
    pos += r.byteLength;
  }
  for (const [tag, s] of strings) {
    out[pos++] = tag;
    pos = writeVarint(out, pos, s.byteLength);
    s.copy(out, pos);
    pos += s.byteLength;
  }
  return out;
}
