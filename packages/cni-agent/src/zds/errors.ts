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
    reason: string,
  ) {
    super(`ZDS connection ${connectionId} lost before the ack: ${reason}`);
  }
}

/** The request cannot be sent at all (unknown pod, pod without netns fd, message too large, ...). */
export class ZdsRequestError extends Error {
  override name = "ZdsRequestError";
}
