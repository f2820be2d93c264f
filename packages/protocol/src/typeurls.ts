// Type URLs of the xDS resources, and google.protobuf.Any packing for them.
import { google, istio } from "./generated/proto.js";

const PREFIX = "type.googleapis.com/";

export const TypeUrl = {
  /** istio.workload.Address: workloads and services. */
  address: `${PREFIX}istio.workload.Address`,
  /** istio.security.Authorization: L4 policies. */
  authorization: `${PREFIX}istio.security.Authorization`,
} as const;
export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

const CODECS: Record<TypeUrl, Codec<unknown>> = {
  [TypeUrl.address]: istio.workload.Address as unknown as Codec<unknown>,
  [TypeUrl.authorization]: istio.security.Authorization as unknown as Codec<unknown>,
};

export function isKnownTypeUrl(typeUrl: string): typeUrl is TypeUrl {
  return Object.prototype.hasOwnProperty.call(CODECS, typeUrl);
}

export function packAddress(address: istio.workload.Address.$Properties): google.protobuf.Any {
  return google.protobuf.Any.create({ type_url: TypeUrl.address, value: istio.workload.Address.encode(address).finish() });
}

export function packAuthorization(policy: istio.security.Authorization.$Properties): google.protobuf.Any {
  return google.protobuf.Any.create({ type_url: TypeUrl.authorization, value: istio.security.Authorization.encode(policy).finish() });
}

/** Thrown when an Any cannot be unpacked as the expected type. */
export class UnpackError extends Error {
  override name = "UnpackError";
}

function unpack<T>(any: google.protobuf.Any.$Properties, typeUrl: TypeUrl): T {
  if (any.type_url !== typeUrl) throw new UnpackError(`expected ${typeUrl}, got ${any.type_url ?? "(no type_url)"}`);
  try {
    return (CODECS[typeUrl] as Codec<T>).decode(any.value ?? new Uint8Array());
  } catch (err) {
    throw new UnpackError(`malformed ${typeUrl}: ${(err as Error).message}`);
  }
}

export function unpackAddress(any: google.protobuf.Any.$Properties): istio.workload.Address {
  return unpack(any, TypeUrl.address);
}

export function unpackAuthorization(any: google.protobuf.Any.$Properties): istio.security.Authorization {
  return unpack(any, TypeUrl.authorization);
}
