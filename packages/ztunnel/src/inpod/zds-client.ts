// The ZDS client: ztunnel connects to the CNI agent's SOCK_SEQPACKET socket, says hello (V1), then answers every
// request with an ACK or a NACK. AddWorkload carries the pod's netns fd. A protocol error (a bad message, a Keep
// after the snapshot, a second snapshot) drops the connection; it is re-established with back-off (10 ms doubling
// to 15 s), and the agent then replays its pods.
import { ZDS_MAX_MESSAGE, ZdsProtocolError, decodeRequest, encodeAck, encodeHello, type ZdsRequest } from "@ambit/protocol";
import { SeqpacketSocket, closeQuietly, isNetnsFd } from "@ambit/sys";
import type { Logger } from "pino";
import type { WorkloadManager } from "./manager.js";

const INITIAL_BACKOFF_MS = 10;
const MAX_BACKOFF_MS = 15_000;

export class ZdsClient {
  private socket?: SeqpacketSocket;
  private timer?: NodeJS.Timeout;
  private backoff = INITIAL_BACKOFF_MS;
  private stopped = false;
  private chain: Promise<void> = Promise.resolve();
  /** The connection attempt in progress, if any (stop() waits for it). */
  private attempt?: Promise<void>;
  /** Connected and greeted. */
  connected = false;

  constructor(
    private readonly path: string,
    private readonly manager: WorkloadManager,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.connect();
  }

  /**
   * Stops for good: no new connection, the current one is closed. Resolves once a connection attempt that was in
   * flight has ended too (it is closed without saying hello), so nothing reaches the agent after that.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.destroy();
    await this.attempt;
  }

  private connect(): void {
    if (this.stopped) return;
    const attempt = this.attempt = this.open().finally(() => { if (this.attempt === attempt) this.attempt = undefined; });
  }

  private async open(): Promise<void> {
    let socket: SeqpacketSocket | undefined;
    try {
      socket = await SeqpacketSocket.connect(this.path, { maxMessageSize: ZDS_MAX_MESSAGE });
      // Stopped while connecting: close without a hello, so the agent never takes this for a live ztunnel.
      if (this.stopped) { socket.destroy(); return; }
      await socket.send(encodeHello());
    } catch (err) {
      socket?.destroy(); // connected, but the hello failed: do not leak the fd
      this.retry(`connect to ${this.path}: ${(err as Error).message}`);
      return;
    }
    if (this.stopped) { socket.destroy(); return; }
    this.socket = socket;
    this.connected = true;
    this.backoff = INITIAL_BACKOFF_MS;
    this.manager.connected();
    this.log.info({ path: this.path }, "connected to the CNI agent (ZDS)");
    socket.on("message", ({ data, fds }) => {
      this.chain = this.chain.then(() => this.handle(socket, data, fds)).catch((err: Error) => {
        this.log.warn({ err: err.message }, "ZDS protocol error: dropping the connection");
        socket.destroy();
      });
    });
    socket.on("error", () => undefined);
    socket.once("close", () => {
      this.connected = false;
      this.manager.disconnected();
      if (this.socket === socket) this.socket = undefined;
      this.retry("the CNI agent closed the ZDS connection");
    });
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    this.log.warn({ retryInMs: this.backoff }, `ZDS: ${reason}`);
    this.timer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
  }

  private async handle(socket: SeqpacketSocket, data: Uint8Array, fds: number[]): Promise<void> {
    let req: ZdsRequest;
    try {
      req = decodeRequest(data, fds.length);
      if (req.kind === "add" && !isNetnsFd(fds[0]!)) throw new ZdsProtocolError(`AddWorkload ${req.uid}: the fd is not a network namespace`);
      if (req.kind === "keep" && !this.manager.beforeSnapshot) throw new ZdsProtocolError("KeepWorkload after the snapshot");
    } catch (err) {
      for (const fd of fds) closeQuietly(fd);
      await socket.send(encodeAck((err as Error).message)).catch(() => undefined);
      throw err;
    }
    let error = "";
    switch (req.kind) {
      case "add":
        error = await this.manager.add(req.uid, req.info, fds[0]!);
        break;
      case "keep":
        this.manager.keep(req.uid);
        break;
      case "del":
        this.manager.del(req.uid);
        break;
      case "snapshot_sent":
        error = this.manager.snapshot();
        if (error) {
          await socket.send(encodeAck(error)).catch(() => undefined);
          throw new ZdsProtocolError(error);
        }
        break;
    }
    await socket.send(encodeAck(error));
  }
}
