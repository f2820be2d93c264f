// A ztunnel stand-in for tests: a real ZDS client on the agent's SOCK_SEQPACKET socket that says hello, reads the
// requests (decoded with ztunnel's rules) and acks or NACKs them when told, or all of them as they come (autoAck).
import { decodeRequest, encodeAck, encodeHello, type ZdsRequest } from "@ambit/protocol";
import { SeqpacketSocket, closeFd, type SeqpacketMessage } from "@ambit/sys";

export interface Received {
  req: ZdsRequest;
  fds: number[];
}

/** Plays ztunnel: connects, says hello, reads requests, acks or NACKs them. */
export class FakeZtunnel {
  readonly #inbox: SeqpacketMessage[] = [];
  #waiter: (() => void) | undefined;
  readonly #received: number[] = [];
  readonly closed: Promise<boolean>;
  isClosed = false;

  private constructor(readonly socket: SeqpacketSocket) {
    this.closed = new Promise((resolve) =>
      socket.once("close", (hadError) => {
        this.isClosed = true;
        this.#waiter?.();
        resolve(hadError);
      }),
    );
    socket.on("error", () => {});
    socket.on("message", (msg) => {
      this.#received.push(...msg.fds);
      this.#inbox.push(msg);
      this.#waiter?.();
      if (this.#acking) this.#ackAll();
    });
  }

  #acking: Received[] | undefined;

  /** From now on acks every request as it arrives; returns the list they are recorded in (fds closed by close()). */
  autoAck(): Received[] {
    this.#acking ??= [];
    this.#ackAll();
    return this.#acking;
  }

  #ackAll(): void {
    for (const msg of this.#inbox.splice(0)) {
      this.#acking!.push({ req: decodeRequest(msg.data, msg.fds.length), fds: msg.fds });
      this.ack().catch(() => undefined);
    }
  }

  static async connect(path: string): Promise<FakeZtunnel> {
    return new FakeZtunnel(await SeqpacketSocket.connect(path));
  }

  hello(): Promise<void> {
    return this.socket.send(encodeHello());
  }

  ack(error = ""): Promise<void> {
    return this.socket.send(encodeAck(error));
  }

  /** Messages received and not yet taken by next(). */
  get pending(): number {
    return this.#inbox.length;
  }

  /** The next request, decoded with ztunnel's rules (fd count checked). */
  async next(timeoutMs = 20_000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    while (this.#inbox.length === 0) {
      if (this.isClosed) throw new Error("fake ztunnel: connection closed while waiting for a request");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("fake ztunnel: no request within the timeout");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
    const msg = this.#inbox.shift()!;
    return { req: decodeRequest(msg.data, msg.fds.length), fds: msg.fds };
  }

  /** Acks every request through SnapshotSent; returns them. */
  async takeSnapshot(): Promise<Received[]> {
    const out: Received[] = [];
    for (;;) {
      const r = await this.next();
      out.push(r);
      await this.ack();
      if (r.req.kind === "snapshot_sent") return out;
    }
  }

  /** Closes the socket and every fd this fake received. */
  async close(): Promise<void> {
    for (const fd of this.#received.splice(0)) {
      try {
        closeFd(fd);
      } catch {
        // closed by the test already
      }
    }
    this.socket.destroy();
    await this.closed;
  }
}

