// ZDS framing: one protobuf message per SOCK_SEQPACKET datagram, no length prefix. AddWorkload carries
// exactly one network-namespace fd (SCM_RIGHTS); no other message carries any. These helpers only turn
// messages into datagrams and back, with the protocol's rules checked; the socket I/O lives elsewhere.
import { istio } from "./generated/proto.js";

const zds = istio.workload.zds;

/** ztunnel reads each datagram into a buffer of this size; a longer message is an error. */
export const ZDS_MAX_MESSAGE = 1024;

export class ZdsProtocolError extends Error {
  override name = "ZdsProtocolError";
}

export interface ZdsWorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

/** A CNI-agent → ztunnel request, decoded and checked. `uid` is the Kubernetes pod UID. */
export type ZdsRequest =
  | { kind: "add"; uid: string; info: ZdsWorkloadInfo }
  | { kind: "keep"; uid: string }
  | { kind: "del"; uid: string }
  | { kind: "snapshot_sent" };

// protobufjs writes a field that is explicitly set even when it holds the proto3 default; Istio's
// encoders never do. Dropping empty strings keeps our datagrams byte-identical to theirs.
function omitEmpty<T extends Record<string, string>>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== "")) as Partial<T>;
}

function finish(bytes: Uint8Array): Uint8Array {
  if (bytes.length > ZDS_MAX_MESSAGE) throw new ZdsProtocolError(`message of ${bytes.length} bytes exceeds the ${ZDS_MAX_MESSAGE}-byte ZDS limit`);
  return bytes;
}

function decodeOrThrow<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    throw new ZdsProtocolError(`malformed ${what}: ${(err as Error).message}`);
  }
}

/** The first datagram ztunnel sends. */
export function encodeHello(): Uint8Array {
  return finish(zds.ZdsHello.encode({ version: zds.Version.V1 }).finish());
}

export function decodeHello(data: Uint8Array): { version: number } {
  const hello = decodeOrThrow("ZdsHello", () => zds.ZdsHello.decode(data));
  if (hello.version !== zds.Version.V1) throw new ZdsProtocolError(`unsupported ZDS version ${hello.version} (want V1)`);
  return { version: hello.version };
}

export function encodeRequest(req: ZdsRequest): Uint8Array {
  switch (req.kind) {
    case "add":
      if (!req.uid) throw new ZdsProtocolError("AddWorkload needs a uid");
      return finish(zds.WorkloadRequest.encode({
        add: { uid: req.uid, workload_info: omitEmpty({ name: req.info.name, namespace: req.info.namespace, service_account: req.info.serviceAccount }) },
      }).finish());
    case "keep":
      return finish(zds.WorkloadRequest.encode({ keep: { uid: req.uid } }).finish());
    case "del":
      return finish(zds.WorkloadRequest.encode({ del: { uid: req.uid } }).finish());
    case "snapshot_sent":
      return finish(zds.WorkloadRequest.encode({ snapshot_sent: {} }).finish());
  }
}

/**
 * Decodes a request datagram. `fdCount` is how many fds arrived with it: AddWorkload needs exactly one,
 * every other request none.
 */
export function decodeRequest(data: Uint8Array, fdCount: number): ZdsRequest {
  const msg = decodeOrThrow("WorkloadRequest", () => zds.WorkloadRequest.decode(data));
  const req = toRequest(msg);
  const wantFds = req.kind === "add" ? 1 : 0;
  if (fdCount !== wantFds) throw new ZdsProtocolError(`${req.kind} must carry ${wantFds} fd(s), got ${fdCount}`);
  return req;
}

function toRequest(msg: istio.workload.zds.WorkloadRequest): ZdsRequest {
  switch (msg.payload) {
    case "add": {
      const add = msg.add!;
      if (!add.uid) throw new ZdsProtocolError("AddWorkload without uid");
      const info = add.workload_info;
      if (!info) throw new ZdsProtocolError(`AddWorkload ${add.uid} without workload_info`);
      return { kind: "add", uid: add.uid, info: { name: info.name ?? "", namespace: info.namespace ?? "", serviceAccount: info.service_account ?? "" } };
    }
    case "keep":
      if (!msg.keep!.uid) throw new ZdsProtocolError("KeepWorkload without uid");
      return { kind: "keep", uid: msg.keep!.uid };
    case "del":
      if (!msg.del!.uid) throw new ZdsProtocolError("DelWorkload without uid");
      return { kind: "del", uid: msg.del!.uid };
    case "snapshot_sent":
      return { kind: "snapshot_sent" };
    default:
      throw new ZdsProtocolError("WorkloadRequest has no payload");
  }
}

/** ztunnel's reply to each request: empty error = ACK, otherwise NACK with the reason. */
export function encodeAck(error = ""): Uint8Array {
  return finish(zds.WorkloadResponse.encode({ ack: omitEmpty({ error }) }).finish());
}

export function decodeAck(data: Uint8Array): { error: string } {
  const msg = decodeOrThrow("WorkloadResponse", () => zds.WorkloadResponse.decode(data));
  if (msg.payload !== "ack") throw new ZdsProtocolError("WorkloadResponse has no ack");
  return { error: msg.ack!.error ?? "" };
}
