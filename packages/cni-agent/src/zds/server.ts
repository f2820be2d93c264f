// The CNI agent's side of ZDS: a SOCK_SEQPACKET server that ztunnel connects to. It keeps a store of
// the node's enrolled pods (with one open netns fd per pod when it has one), replays that store as a
// snapshot to every ztunnel that says hello, and then sends adds (newest ztunnel) and dels (all).
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";

import { DEFAULT_ZDS_SOCKET, ZDS_MAX_MESSAGE, ZdsProtocolError, encodeRequest, type ZdsRequest, type ZdsWorkloadInfo } from "@ambit/protocol";
import { SeqpacketServer, closeFd, isNetnsFd, type SeqpacketSocket } from "@ambit/sys";

import { Connection, type ConnectionHost, type Materialized, type QueuedItem, type RequestOutcome } from "./connection.js";
import { ZdsConnectionLostError, ZdsNotConnectedError, ZdsRequestError } from "./errors.js";
import { silentZdsLogger, type ZdsLogger } from "./log.js";

export const DEFAULT_ZDS_ACK_TIMEOUT_MS = 5_000;

export interface ZdsServerOptions {
  /** Where to listen; the parent directory is created. Default `/var/run/ztunnel/ztunnel.sock` (Istio's `INPOD_UDS`). */
  socketPath?: string;
  /**
   * How long to wait for each Ack (and for the hello) before closing the connection as broken. Default 5000 ms.
   * An AddWorkload it did not ack goes to the next newest connection (see sendWorkload).
   */
  ackTimeoutMs?: number;
  logger?: ZdsLogger;
  /** Called with the outcome of every acked or NACKed request, snapshot entries included. */
  onPodStatus?: (status: ZdsPodStatus) => void;
}

export interface ZdsPod {
  /** The Kubernetes pod UID. */
  uid: string;
  info: ZdsWorkloadInfo;
  /** An open netns fd; ownership passes to the server (see setPod). */
  netnsFd: number | null;
}

/** The outcome of one request on one connection. */
export interface ZdsPodStatus extends RequestOutcome {
  ok: boolean;
}

export interface ZdsConnectionInfo {
  id: number;
}

export type ZdsServerEvents = {
  /** A ztunnel completed the hello; its snapshot is being sent. */
  connected: [ZdsConnectionInfo];
  /** A connection that had said hello is gone. */
  disconnected: [ZdsConnectionInfo, reason: string];
  /** ztunnel acked SnapshotSent. */
  "snapshot-acked": [ZdsConnectionInfo];
  "pod-status": [ZdsPodStatus];
};

interface StoredPod {
  info: ZdsWorkloadInfo;
  fd: number | null;
}

function checkInfo(info: ZdsWorkloadInfo): void {
  if (typeof info !== "object" || info === null) throw new TypeError("workload info must be an object");
  for (const key of ["name", "namespace", "serviceAccount"] as const) {
    if (typeof info[key] !== "string") throw new TypeError(`workload info.${key} must be a string`);
  }
}

/**
 * ZDS server. Lifecycle: `new ZdsServer(opts)` → `listen()` → feed pods (`setPod`/`removePod`, or
 * `addWorkload`/`delWorkload` which also tell ztunnel) → `close()`.
 *
 * Fd ownership: `setPod(uid, info, fd)` (and `addWorkload`) take ownership of `fd` when they return
 * normally; if they throw, the caller keeps it. The server closes a pod's fd when the pod is removed,
 * when a different fd replaces it, and on `close()`. Fds are passed to ztunnel as copies (SCM_RIGHTS),
 * so sending never consumes the stored fd.
 */
export class ZdsServer extends EventEmitter<ZdsServerEvents> {
  readonly socketPath: string;
  readonly #ackTimeoutMs: number;
  readonly #log: ZdsLogger;
  readonly #onPodStatus: ((status: ZdsPodStatus) => void) | undefined;
  readonly #pods = new Map<string, StoredPod>();
  /** Every accepted connection, hello or not. */
  readonly #all = new Set<Connection>();
  /** Connections that said hello, oldest first: the last one is "the newest ztunnel". */
  #ready: Connection[] = [];
  #listener: SeqpacketServer | undefined;
  #nextId = 1;
  #closed = false;
  readonly #host: ConnectionHost;

  constructor(opts: ZdsServerOptions = {}) {
    super();
    this.socketPath = opts.socketPath ?? DEFAULT_ZDS_SOCKET;
    const timeout = opts.ackTimeoutMs ?? DEFAULT_ZDS_ACK_TIMEOUT_MS;
    if (!Number.isFinite(timeout) || timeout <= 0) throw new RangeError(`ackTimeoutMs must be a positive number, got ${timeout}`);
    this.#ackTimeoutMs = timeout;
    this.#log = opts.logger ?? silentZdsLogger;
    this.#onPodStatus = opts.onPodStatus;
    this.#host = {
      ackTimeoutMs: this.#ackTimeoutMs,
      log: this.#log,
      materialize: (item) => this.#materialize(item),
      onHello: (conn) => this.#onHello(conn),
      onOutcome: (conn, outcome) => this.#onOutcome(conn, outcome),
      onSnapshotAcked: (conn) => {
        this.#log.info({ conn: conn.id }, "ZDS snapshot acked");
        this.emit("snapshot-acked", { id: conn.id });
      },
      onClosed: (conn, reason) => this.#onClosed(conn, reason),
    };
  }

  /** Creates the socket's directory and starts listening (a stale socket file is replaced). */
  async listen(): Promise<void> {
    if (this.#closed) throw new Error("ZdsServer is closed");
    if (this.#listener) throw new Error("ZdsServer is already listening");
    await fs.promises.mkdir(path.dirname(this.socketPath), { recursive: true });
    const listener = new SeqpacketServer((socket) => this.#accept(socket), { maxMessageSize: ZDS_MAX_MESSAGE });
    listener.on("error", (err) => this.#log.error({ err: err.message, path: this.socketPath }, "ZDS accept failed"));
    listener.listen(this.socketPath);
    this.#listener = listener;
    this.#log.info({ path: this.socketPath }, "ZDS server listening");
  }

  /** Connections that completed the hello. */
  get connected(): number {
    return this.#ready.length;
  }

  /** The uids in the pod store. */
  podUids(): string[] {
    return [...this.#pods.keys()];
  }

  /** A stored pod (its fd stays owned by the server). */
  getPod(uid: string): ZdsPod | undefined {
    const pod = this.#pods.get(uid);
    return pod ? { uid, info: { ...pod.info }, netnsFd: pod.fd } : undefined;
  }

  /**
   * Adds or updates a pod in the store without telling ztunnel (the next snapshot carries it).
   * Takes ownership of `netnsFd` unless it throws. `null` means the agent has no netns fd for the pod
   * (a snapshot then sends KeepWorkload). A previous, different fd of the same pod is closed.
   */
  setPod(uid: string, info: ZdsWorkloadInfo, netnsFd: number | null): void {
    if (this.#closed) throw new Error("ZdsServer is closed");
    if (typeof uid !== "string" || uid === "") throw new TypeError("uid must be a non-empty string");
    checkInfo(info);
    if (netnsFd !== null) {
      if (!Number.isInteger(netnsFd) || netnsFd < 0) throw new TypeError(`netnsFd must be an fd or null, got ${netnsFd}`);
      if (!isNetnsFd(netnsFd)) throw new ZdsRequestError(`fd ${netnsFd} of pod ${uid} is not a network namespace`);
    }
    // Refuse what could never be sent, now rather than at send time.
    encodeOrRefuse({ kind: "add", uid, info: { ...info } });
    const old = this.#pods.get(uid);
    this.#pods.set(uid, { info: { ...info }, fd: netnsFd });
    if (old?.fd != null && old.fd !== netnsFd) closeFd(old.fd);
  }

  /** Removes a pod from the store and closes its fd. Does not tell ztunnel (see delWorkload). */
  removePod(uid: string): boolean {
    const pod = this.#pods.get(uid);
    if (!pod) return false;
    this.#pods.delete(uid);
    if (pod.fd !== null) closeFd(pod.fd);
    return true;
  }

  /**
   * Stores the pod (as setPod, so ownership of `pod.netnsFd` passes to the server once this returns
   * without throwing) and sends AddWorkload with its netns fd to the newest connected ztunnel (sendWorkload).
   * The pod stays in the store in every case, so a later snapshot still carries it.
   */
  addWorkload(pod: ZdsPod): Promise<void> {
    if (pod.netnsFd === null) throw new ZdsRequestError(`AddWorkload for pod ${pod.uid} needs a netns fd`);
    this.setPod(pod.uid, pod.info, pod.netnsFd);
    return this.sendWorkload(pod.uid);
  }

  /**
   * Sends AddWorkload for a stored pod (with its stored netns fd) to the newest connected ztunnel. If that connection
   * is lost before its ack (it did not ack within the ack timeout and was closed as broken, or it hung up), the Add
   * goes to the next newest connection, until one answers. Resolves on ACK; rejects with ZdsNackError (ztunnel's
   * text), with the last loss (ZdsAckTimeoutError or ZdsConnectionLostError) when no connection is left to try, with
   * ZdsNotConnectedError when none was connected, or ZdsRequestError when the pod is not stored with an fd. A
   * ztunnel that says hello later gets the pod in its snapshot.
   */
  async sendWorkload(uid: string): Promise<void> {
    const tried = new Set<Connection>();
    let lost: ZdsConnectionLostError | undefined;
    for (;;) {
      const conn = this.#ready.findLast((c) => !tried.has(c));
      if (!conn) throw lost ?? new ZdsNotConnectedError();
      tried.add(conn);
      try {
        await new Promise<void>((resolve, reject) => conn.enqueue({ kind: "add", uid, resolve, reject }));
        return;
      } catch (err) {
        if (!(err instanceof ZdsConnectionLostError) || this.#closed) throw err;
        lost = err;
        if (this.#ready.some((c) => !tried.has(c))) this.#log.warn({ uid, conn: err.connectionId, err: err.message }, "re-sending AddWorkload to the next ztunnel connection");
      }
    }
  }

  /**
   * Removes the pod from the store (closing its fd) and sends DelWorkload to every connected ztunnel
   * (during a rolling restart both the old and the new one hold the pod). Resolves when all acked;
   * rejects with the first failure (NACK text passed through) or ZdsNotConnectedError.
   */
  delWorkload(uid: string): Promise<void> {
    if (typeof uid !== "string" || uid === "") return Promise.reject(new TypeError("uid must be a non-empty string"));
    this.removePod(uid);
    try {
      encodeOrRefuse({ kind: "del", uid });
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.#ready.length === 0) return Promise.reject(new ZdsNotConnectedError());
    const sends = this.#ready.map((conn) => new Promise<void>((resolve, reject) => conn.enqueue({ kind: "del", uid, resolve, reject })));
    return Promise.allSettled(sends).then((results) => {
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    });
  }

  /** Stops listening, drops every connection (pending requests reject), closes every owned fd, removes the socket file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const listener = this.#listener;
    this.#listener = undefined;
    const listenerClosed = listener ? new Promise<void>((resolve) => listener.once("close", () => resolve())) : Promise.resolve();
    listener?.close();
    const conns = [...this.#all];
    for (const conn of conns) conn.drop("ZDS server closed");
    for (const uid of [...this.#pods.keys()]) this.removePod(uid);
    await Promise.all([listenerClosed, ...conns.map((c) => c.closed)]);
    this.#log.info({ path: this.socketPath }, "ZDS server closed");
  }

  #accept(socket: SeqpacketSocket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const conn = new Connection(this.#nextId++, socket, this.#host);
    this.#all.add(conn);
    this.#log.debug({ conn: conn.id }, "ZDS connection accepted; waiting for hello");
  }

  #onHello(conn: Connection): void {
    this.#ready.push(conn);
    this.#log.info({ conn: conn.id, pods: this.#pods.size }, "ztunnel connected to ZDS; sending snapshot");
    this.emit("connected", { id: conn.id });
    // The snapshot is every pod known now; each entry becomes Add or Keep when its turn comes.
    for (const uid of this.#pods.keys()) conn.enqueue({ kind: "snapshot", uid });
    conn.enqueue({ kind: "snapshot_sent", uid: "" });
  }

  #onOutcome(conn: Connection, outcome: RequestOutcome): void {
    const status: ZdsPodStatus = { ...outcome, ok: outcome.error === "" };
    if (!status.ok) this.#log.warn({ conn: conn.id, uid: outcome.uid, kind: outcome.kind, error: outcome.error }, "ztunnel NACKed a ZDS request");
    else this.#log.debug({ conn: conn.id, uid: outcome.uid, kind: outcome.kind }, "ZDS request acked");
    this.emit("pod-status", status);
    try {
      this.#onPodStatus?.(status);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, "onPodStatus callback threw");
    }
  }

  #onClosed(conn: Connection, reason: string): void {
    this.#all.delete(conn);
    const i = this.#ready.indexOf(conn);
    if (i < 0) {
      this.#log.debug({ conn: conn.id, reason }, "ZDS connection closed before hello");
      return;
    }
    this.#ready.splice(i, 1);
    this.#log.info({ conn: conn.id, reason }, "ztunnel disconnected from ZDS");
    this.emit("disconnected", { id: conn.id }, reason);
  }

  #materialize(item: QueuedItem): Materialized | null {
    switch (item.kind) {
      case "snapshot": {
        const pod = this.#pods.get(item.uid);
        if (!pod) return null; // removed since the hello: not part of the node any more
        if (pod.fd === null) return withData({ kind: "keep", uid: item.uid }, []);
        return withData({ kind: "add", uid: item.uid, info: pod.info }, [pod.fd]);
      }
      case "add": {
        const pod = this.#pods.get(item.uid);
        if (!pod) throw new ZdsRequestError(`pod ${item.uid} was removed before its AddWorkload was sent`);
        if (pod.fd === null) throw new ZdsRequestError(`pod ${item.uid} has no netns fd any more; AddWorkload not sent`);
        return withData({ kind: "add", uid: item.uid, info: pod.info }, [pod.fd]);
      }
      case "del":
        return withData({ kind: "del", uid: item.uid }, []);
      case "snapshot_sent":
        return withData({ kind: "snapshot_sent" }, []);
    }
  }
}

function encodeOrRefuse(req: ZdsRequest): Uint8Array {
  try {
    return encodeRequest(req);
  } catch (err) {
    if (err instanceof ZdsProtocolError) {
      const what = req.kind === "snapshot_sent" ? req.kind : `${req.kind} for pod ${req.uid}`;
      throw new ZdsRequestError(`refusing to send ${what}: ${err.message}`);
    }
    throw err;
  }
}

function withData(req: ZdsRequest, fds: number[]): Materialized {
  return { req, data: encodeOrRefuse(req), fds };
}
