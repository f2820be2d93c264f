// Why a ZDS request did not succeed. Every rejected promise of ZdsServer carries one of these.

/** ztunnel answered with a non-empty Ack.error. `message` is ztunnel's text, unchanged. */
export class ZdsNackError extends Error {
  override name = "ZdsNackError";
  constructor(
    readonly uid: string,
    readonly kind: "add" | "keep" | "del" | "snapshot_sent",
    readonly connectionId: number,
    error: string,
  ) {
    super(error);
  }
}

/** No ztunnel has completed the hello, so the request could not be sent anywhere. */
export class ZdsNotConnectedError extends Error {
  override name = "ZdsNotConnectedError";
  constructor() {
    super("no ztunnel is connected to the ZDS socket");
  }
}

/** The connection went away (peer hung up, ack timeout, protocol error, server closed) before the ack. */
export class ZdsConnectionLostError extends Error {
  override name = "ZdsConnectionLostError";
  constructor(
    readonly connectionId: number,
    readonly reason: string,
  ) {
    super(`ZDS connection ${connectionId} lost before the ack: ${reason}`);
  }
}

/**
 * ztunnel did not acknowledge a request within the ack timeout. The connection is closed as broken (the requests
 * queued behind it reject with ZdsConnectionLostError naming this reason).
 */
export class ZdsAckTimeoutError extends ZdsConnectionLostError {
  override name = "ZdsAckTimeoutError";
  constructor(
    connectionId: number,
    /** What was not acknowledged, e.g. "AddWorkload for pod <uid>". */
    readonly request: string,
    readonly timeoutMs: number,
  ) {
    super(connectionId, ackTimeoutReason(request, timeoutMs));
    this.message = `${ackTimeoutReason(request, timeoutMs)} (ZDS connection ${connectionId}); the connection is closed as broken`;
  }
}

/** "ztunnel did not acknowledge AddWorkload for pod x within 5 s". */
export function ackTimeoutReason(request: string, timeoutMs: number): string {
  return `ztunnel did not acknowledge ${request} within ${timeoutMs / 1000} s`;
}

/** The request cannot be sent at all (unknown pod, pod without netns fd, message too large, ...). */
export class ZdsRequestError extends Error {
  override name = "ZdsRequestError";
}
