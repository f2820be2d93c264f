// One accepted ztunnel connection: the hello, then strictly one request in flight at a time, each
// waiting for its Ack (or the ack timeout, which drops the connection).
import { decodeAck, decodeHello, type ZdsRequest } from "@ambit/protocol";
import { closeFd, type SeqpacketMessage, type SeqpacketSocket } from "@ambit/sys";

import { ZdsAckTimeoutError, ZdsConnectionLostError, ZdsNackError } from "./errors.js";
import type { ZdsLogger } from "./log.js";

/** What a queued item becomes when its turn comes: the datagram and the fds to pass with it. */
export interface Materialized {
  req: ZdsRequest;
  data: Uint8Array;
  /** Borrowed from the pod store; SeqpacketSocket.send copies them, so nothing is handed over. */
  fds: number[];
}

/**
 * A queued request. It names the pod, not its fd: the fd is looked up from the store only when the
 * request is sent, so a pod removed (and its fd closed) while the request waited is never sent with
 * a stale fd.
 */
export interface QueuedItem {
  /** "snapshot": Add if the pod has an fd, Keep if not, nothing if it is gone by now. */
  kind: "add" | "del" | "snapshot" | "snapshot_sent";
  uid: string;
  resolve?: () => void;
  reject?: (err: Error) => void;
}

export interface RequestOutcome {
  connectionId: number;
  uid: string;
  kind: ZdsRequest["kind"];
  /** Empty on ACK; ztunnel's text on NACK. */
  error: string;
}

/** What a connection needs from the server that owns it. */
export interface ConnectionHost {
  readonly ackTimeoutMs: number;
  readonly log: ZdsLogger;
  /** Returns null when there is nothing to send (a snapshot entry whose pod is gone); throws to refuse. */
  materialize(item: QueuedItem): Materialized | null;
  onHello(conn: Connection): void;
  onOutcome(conn: Connection, outcome: RequestOutcome): void;
  onSnapshotAcked(conn: Connection): void;
  onClosed(conn: Connection, reason: string): void;
}

type State = "hello" | "snapshot" | "ready" | "closed";

interface InFlight {
  item: QueuedItem;
  req: ZdsRequest;
  timer: NodeJS.Timeout;
}

function uidOf(req: ZdsRequest): string {
  return req.kind === "snapshot_sent" ? "" : req.uid;
}

const MESSAGE_NAMES = { add: "AddWorkload", keep: "KeepWorkload", del: "DelWorkload", snapshot_sent: "SnapshotSent" } as const;

/** "AddWorkload for pod <uid>", "SnapshotSent". */
function describeRequest(req: ZdsRequest): string {
  return req.kind === "snapshot_sent" ? MESSAGE_NAMES[req.kind] : `${MESSAGE_NAMES[req.kind]} for pod ${req.uid}`;
}

export class Connection {
  #state: State = "hello";
  #queue: QueuedItem[] = [];
  #inFlight: InFlight | undefined;
  #helloTimer: NodeJS.Timeout | undefined;
  readonly closed: Promise<void>;

  constructor(
    readonly id: number,
    readonly socket: SeqpacketSocket,
    private readonly host: ConnectionHost,
  ) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("message", (msg) => this.#onMessage(msg));
    socket.on("error", (err) => host.log.warn({ conn: id, err: err.message }, "ZDS connection error"));
    socket.on("close", () => this.drop("ztunnel closed the connection"));
    // A client that never says hello would hold a slot forever.
    this.#helloTimer = setTimeout(() => this.drop(`no ZdsHello within ${host.ackTimeoutMs} ms`), host.ackTimeoutMs);
  }

  get state(): State {
    return this.#state;
  }

  get isClosed(): boolean {
    return this.#state === "closed";
  }

  /** Queues a request; it is sent once every earlier one was acked. */
  enqueue(item: QueuedItem): void {
    if (this.#state === "closed") {
      item.reject?.(new ZdsConnectionLostError(this.id, "connection already closed"));
      return;
    }
    this.#queue.push(item);
    this.#pump();
  }

  /**
   * Closes the connection and rejects everything it still owed (with ZdsConnectionLostError naming `reason`; the
   * request in flight with `inFlightError` when given). Idempotent.
   */
  drop(reason: string, inFlightError?: Error): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    if (this.#helloTimer) clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
    this.socket.destroy();
    const owed: QueuedItem[] = [];
    if (this.#inFlight) {
      clearTimeout(this.#inFlight.timer);
      if (inFlightError) this.#inFlight.item.reject?.(inFlightError);
      else owed.push(this.#inFlight.item);
      this.#inFlight = undefined;
    }
    owed.push(...this.#queue.splice(0));
    for (const item of owed) item.reject?.(new ZdsConnectionLostError(this.id, reason));
    this.host.onClosed(this, reason);
  }

  #protocolError(why: string): void {
    this.host.log.warn({ conn: this.id, reason: why }, "ZDS protocol error; dropping the connection");
    this.drop(`protocol error: ${why}`);
  }

  #onMessage({ data, fds }: SeqpacketMessage): void {
    // We own any fds that arrived; ztunnel never sends any.
    for (const fd of fds) closeFd(fd);
    if (this.#state === "closed") return;
    if (fds.length > 0) return this.#protocolError(`ztunnel sent ${fds.length} fd(s)`);
    if (this.#state === "hello") {
      try {
        decodeHello(data);
      } catch (err) {
        return this.#protocolError(`expected ZdsHello first: ${(err as Error).message}`);
      }
      clearTimeout(this.#helloTimer);
      this.#helloTimer = undefined;
      this.#state = "snapshot";
      this.host.onHello(this);
      return;
    }
    const inFlight = this.#inFlight;
    if (!inFlight) return this.#protocolError("message while no request was outstanding");
    let ack: { error: string };
    try {
      ack = decodeAck(data);
    } catch (err) {
      return this.#protocolError((err as Error).message);
    }
    clearTimeout(inFlight.timer);
    this.#inFlight = undefined;
    const uid = uidOf(inFlight.req);
    this.host.onOutcome(this, { connectionId: this.id, uid, kind: inFlight.req.kind, error: ack.error });
    if (ack.error) inFlight.item.reject?.(new ZdsNackError(uid, inFlight.req.kind, this.id, ack.error));
    else inFlight.item.resolve?.();
    if (inFlight.req.kind === "snapshot_sent" && this.#state === "snapshot") {
      this.#state = "ready";
      if (!ack.error) this.host.onSnapshotAcked(this);
    }
    this.#pump();
  }

  #pump(): void {
    while (this.#state !== "closed" && this.#state !== "hello" && !this.#inFlight && this.#queue.length > 0) {
      const item = this.#queue.shift()!;
      let msg: Materialized | null;
      try {
        msg = this.host.materialize(item);
      } catch (err) {
        const error = err as Error;
        this.host.log.warn({ conn: this.id, uid: item.uid, kind: item.kind, err: error.message }, "ZDS request refused before sending");
        item.reject?.(error);
        continue;
      }
      if (!msg) continue;
      // A ztunnel that does not ack in time is broken: close it (the server re-sends an Add elsewhere).
      const timer = setTimeout(() => {
        const err = new ZdsAckTimeoutError(this.id, describeRequest(msg.req), this.host.ackTimeoutMs);
        this.host.log.warn({ conn: this.id, uid: item.uid, kind: msg.req.kind, timeoutMs: this.host.ackTimeoutMs }, err.message);
        this.drop(err.reason, err);
      }, this.host.ackTimeoutMs);
      this.#inFlight = { item, req: msg.req, timer };
      this.host.log.debug({ conn: this.id, uid: item.uid, kind: msg.req.kind }, "ZDS request sent");
      this.socket.send(msg.data, msg.fds).catch((err: Error) => this.drop(`send failed: ${err.message}`));
    }
  }
}
