// AF_UNIX SOCK_SEQPACKET sockets that carry fds (SCM_RIGHTS), as ZDS uses between
// the CNI agent and ztunnel. Readiness comes from the addon's epoll thread (poller.ts);
// all reads and writes are non-blocking calls on the JS thread.
import { EventEmitter } from "node:events";
import fs from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import { native, type SeqpacketMessage } from "./native.js";
import { EV, FdWatch } from "./poller.js";
import { checkFd, checkOptions, checkOptionalInt, checkPath, closeQuietly, invalidArg } from "./validate.js";

export type { SeqpacketMessage };

const DEFAULT_MAX_MESSAGE = 64 * 1024;
const READ_BATCH = 64; // messages read per wake-up before yielding to the event loop
const ITERATOR_HIGH_WATER = 16; // buffered messages at which an async iterator pauses reading
const MAX_FDS = 253; // SCM_MAX_FD

export interface SeqpacketSocketOptions {
  /** Largest message accepted; a longer one is an EMSGSIZE error. Default 64 KiB. */
  maxMessageSize?: number;
}

interface PendingSend {
  data: Uint8Array;
  fds: number[]; // our own duplicates, closed once sent or failed
  resolve: () => void;
  reject: (err: Error) => void;
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) closeQuietly(fd);
}

function checkFds(value: unknown): number[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalidArg("fds must be an array of fds");
  if (value.length > MAX_FDS) throw invalidArg(`at most ${MAX_FDS} fds fit in one message`);
  return value.map((fd, i) => checkFd(fd, `fds[${i}]`));
}

function checkSocketOptions(opts: unknown): Required<SeqpacketSocketOptions> {
  const o = checkOptions(opts);
  return { maxMessageSize: checkOptionalInt(o.maxMessageSize, "maxMessageSize", 1, 1 << 30) ?? DEFAULT_MAX_MESSAGE };
}

function closedError(): Error {
  return Object.assign(new Error("seqpacket socket is closed"), { code: "ERR_SOCKET_CLOSED" });
}

type SocketEvents = {
  message: [SeqpacketMessage];
  error: [Error];
  close: [hadError: boolean];
  newListener: [event: string | symbol, listener: unknown];
  removeListener: [event: string | symbol, listener: unknown];
};

/**
 * A connected SOCK_SEQPACKET socket. Messages keep their boundaries and may carry fds.
 *
 * Reading starts when a 'message' listener is added (or an async iterator is used) and
 * stops when the last one goes, or on pause(). Each 'message' gets `{ data, fds }`; the
 * listener owns `fds` and must close them (closeFd). A truncated message (longer than
 * maxMessageSize, or fds lost) destroys the socket with an EMSGSIZE 'error'. When the
 * peer hangs up the socket closes: 'close' is emitted (after any queued messages were read).
 */
export class SeqpacketSocket extends EventEmitter<SocketEvents> {
  #fd: number;
  readonly #watch: FdWatch;
  readonly #maxMessageSize: number;
  #reading = false;
  #closing = false; // close() called: flush the send queue, then destroy
  #destroyed = false;
  readonly #queue: PendingSend[] = [];

  /**
   * Wraps a connected SOCK_SEQPACKET fd (e.g. one received over another socket) and takes
   * ownership of it. If it throws (bad arguments, or an fd that cannot be polled), the
   * caller keeps the fd.
   */
  constructor(fd: number, opts: SeqpacketSocketOptions = {}) {
    super();
    this.#maxMessageSize = checkSocketOptions(opts).maxMessageSize;
    this.#fd = checkFd(fd);
    this.#watch = new FdWatch(this.#fd, () => this.#onReady());
    this.#watch.register(); // an open socket keeps the event loop alive (unless unref'd)
    this.on("newListener", (event) => {
      if (event === "message") this.resume();
    });
    this.on("removeListener", (event) => {
      if (event === "message" && this.listenerCount("message") === 0) this.pause();
    });
  }

  /**
   * Connects to a SeqpacketServer (or any SOCK_SEQPACKET listener) at path. Retries for up to
   * `timeout` ms (default 1000) while the listener's backlog is full (EAGAIN).
   */
  static async connect(path: string, opts: SeqpacketSocketOptions & { timeout?: number } = {}): Promise<SeqpacketSocket> {
    checkPath(path, "path");
    checkSocketOptions(opts);
    const timeout = checkOptionalInt(checkOptions(opts).timeout, "timeout", 0, 0x7fffffff) ?? 1000;
    const deadline = Date.now() + timeout;
    for (;;) {
      let fd: number;
      try {
        fd = native.seqpacketConnect(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN" || Date.now() >= deadline) throw err;
        await sleep(10);
        continue;
      }
      return adopt(fd, opts);
    }
  }

  /** The fd, or -1 once destroyed. */
  get fd(): number {
    return this.#fd;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Sends one message, with copies of `fds` (SCM_RIGHTS; at most 253). The caller keeps
   * its own fds and may close them as soon as send() returns. Resolves once the kernel
   * took the message; rejects with a system error (e.g. EPIPE, EMSGSIZE) or
   * ERR_SOCKET_CLOSED. Messages are sent in call order. Await or catch the promise.
   */
  send(data: Uint8Array, fds?: readonly number[]): Promise<void> {
    if (!(data instanceof Uint8Array)) return Promise.reject(invalidArg("data must be a Uint8Array (or Buffer)"));
    let list: number[];
    try {
      list = checkFds(fds);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.#destroyed || this.#closing) return Promise.reject(closedError());
    if (this.#queue.length === 0) {
      try {
        if (native.seqpacketSend(this.#fd, data, list)) return Promise.resolve();
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    // The socket is full: queue a copy of the data and our own duplicates of the fds.
    const dups: number[] = [];
    try {
      for (const fd of list) dups.push(native.dupFd(fd));
    } catch (err) {
      closeAll(dups);
      return Promise.reject(err as Error);
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ data: Uint8Array.prototype.slice.call(data), fds: dups, resolve, reject });
      this.#arm();
    });
  }

  /** Stops reading (messages wait in the kernel; the peer's sends eventually block). */
  pause(): this {
    this.#reading = false;
    return this;
  }

  /** Resumes reading; called automatically when a 'message' listener is added. */
  resume(): this {
    if (!this.#reading && !this.#destroyed) {
      this.#reading = true;
      this.#arm();
    }
    return this;
  }

  /** Sends what is queued, then destroys the socket. */
  close(): void {
    if (this.#destroyed) return;
    this.#closing = true;
    if (this.#queue.length === 0) this.destroy();
  }

  /**
   * Closes the fd now. Queued sends reject; 'error' (if err) and then 'close' are
   * emitted on the next tick. Idempotent.
   */
  destroy(err?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#reading = false;
    this.#watch.close();
    closeQuietly(this.#fd);
    this.#fd = -1;
    for (const pending of this.#queue.splice(0)) {
      closeAll(pending.fds);
      pending.reject(err ?? closedError());
    }
    process.nextTick(() => {
      if (err) this.emit("error", err);
      this.emit("close", err !== undefined);
    });
  }

  /** Whether this socket keeps the event loop alive (default: yes). */
  ref(): this {
    this.#watch.ref();
    return this;
  }

  unref(): this {
    this.#watch.unref();
    return this;
  }

  /**
   * Messages as an async iterator. It pauses reading while `ITERATOR_HIGH_WATER` messages
   * wait for the consumer, ends on 'close' and throws on 'error'. Leaving the loop early
   * destroys the socket unless `destroyOnReturn` is false; fds of messages it buffered but
   * never handed out are closed.
   */
  messages({ destroyOnReturn = true }: { destroyOnReturn?: boolean } = {}): AsyncIterableIterator<SeqpacketMessage> {
    const buffered: SeqpacketMessage[] = [];
    const waiting: { resolve: (r: IteratorResult<SeqpacketMessage>) => void; reject: (err: Error) => void }[] = [];
    let failure: Error | undefined;
    let ended = this.#destroyed;

    const onMessage = (msg: SeqpacketMessage): void => {
      const waiter = waiting.shift();
      if (waiter) {
        waiter.resolve({ value: msg, done: false });
        return;
      }
      buffered.push(msg);
      if (buffered.length >= ITERATOR_HIGH_WATER) this.pause();
    };
    const settle = (): void => {
      for (const waiter of waiting.splice(0)) {
        if (failure) waiter.reject(failure);
        else waiter.resolve({ value: undefined, done: true });
        failure = undefined; // reported once
      }
    };
    const onError = (err: Error): void => {
      failure = err;
      ended = true;
      settle();
    };
    const onClose = (): void => {
      ended = true;
      settle();
    };
    const detach = (): void => {
      this.off("message", onMessage);
      this.off("error", onError);
      this.off("close", onClose);
      for (const msg of buffered.splice(0)) closeAll(msg.fds);
    };
    this.on("error", onError);
    this.on("close", onClose);
    this.on("message", onMessage);

    const iterator: AsyncIterableIterator<SeqpacketMessage> = {
      next: () => {
        const msg = buffered.shift();
        if (msg) {
          if (buffered.length < ITERATOR_HIGH_WATER / 2 && !ended) this.resume();
          return Promise.resolve({ value: msg, done: false });
        }
        if (failure) {
          const err = failure;
          failure = undefined;
          detach();
          return Promise.reject(err);
        }
        if (ended) {
          detach();
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
      },
      return: () => {
        ended = true;
        detach();
        settle();
        if (destroyOnReturn) this.destroy();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<SeqpacketMessage> {
    return this.messages();
  }

  #arm(): void {
    if (this.#destroyed) return;
    const events = (this.#reading ? EV.IN : 0) | (this.#queue.length > 0 ? EV.OUT : 0);
    try {
      this.#watch.arm(events);
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  #onReady(): void {
    try {
      if (this.#queue.length > 0) this.#flush();
      if (this.#reading) this.#read();
    } finally {
      this.#arm();
    }
  }

  #flush(): void {
    while (this.#queue.length > 0 && !this.#destroyed) {
      const pending = this.#queue[0]!;
      let error: Error | undefined;
      try {
        if (!native.seqpacketSend(this.#fd, pending.data, pending.fds)) return; // still full: wait for EPOLLOUT
      } catch (err) {
        error = err as Error;
      }
      this.#queue.shift();
      closeAll(pending.fds);
      if (error) pending.reject(error);
      else pending.resolve();
    }
    if (this.#closing && this.#queue.length === 0) this.destroy();
  }

  #read(): void {
    for (let i = 0; i < READ_BATCH && this.#reading && !this.#destroyed; i++) {
      let msg: SeqpacketMessage | null | undefined;
      try {
        msg = native.seqpacketRecv(this.#fd, this.#maxMessageSize);
      } catch (err) {
        this.destroy(err as Error); // truncated message, ECONNRESET, ...
        return;
      }
      if (msg === undefined) return; // drained
      if (msg === null) {
        this.destroy(); // peer hung up
        return;
      }
      if (this.listenerCount("message") === 0) {
        closeAll(msg.fds); // unreachable in practice: reading stops with the last listener
        continue;
      }
      this.emit("message", msg);
    }
  }
}

type ServerEvents = { connection: [SeqpacketSocket]; error: [Error]; close: [] };

/**
 * A SOCK_SEQPACKET listener on a filesystem path. listen() replaces a stale socket file
 * (one nobody listens on) and refuses a live one or any other file (EADDRINUSE).
 * Emits 'connection' with each accepted SeqpacketSocket (destroyed at once if nobody
 * listens), 'error' for accept failures (retried after 100 ms), 'close' after close().
 */
export class SeqpacketServer extends EventEmitter<ServerEvents> {
  #fd = -1;
  #watch: FdWatch | undefined;
  #path: string | undefined;
  #file: { dev: number; ino: number } | undefined;
  #closed = false;
  #ref = true;
  #retry: NodeJS.Timeout | undefined;
  readonly #socketOptions: SeqpacketSocketOptions;

  constructor(onConnection?: (socket: SeqpacketSocket) => void, socketOptions: SeqpacketSocketOptions = {}) {
    super();
    if (onConnection !== undefined) {
      if (typeof onConnection !== "function") throw invalidArg("onConnection must be a function");
      this.on("connection", onConnection);
    }
    this.#socketOptions = checkSocketOptions(socketOptions);
  }

  /** Binds and listens on path (synchronously; throws system errors such as EADDRINUSE, EACCES). */
  listen(path: string, opts: { backlog?: number } = {}): this {
    checkPath(path, "path");
    const backlog = checkOptionalInt(checkOptions(opts).backlog, "backlog", 0, 0x7fffffff) ?? 511;
    if (this.#closed || this.#fd >= 0) throw Object.assign(new Error("server is already listening or closed"), { code: "ERR_SERVER_ALREADY_LISTEN" });
    const fd = native.seqpacketListen(path, backlog);
    try {
      const st = fs.lstatSync(path);
      this.#file = { dev: st.dev, ino: st.ino };
      this.#watch = new FdWatch(fd, () => this.#onReadable());
      if (!this.#ref) this.#watch.unref();
      this.#watch.arm(EV.IN);
    } catch (err) {
      this.#watch?.close();
      closeQuietly(fd);
      throw err;
    }
    this.#fd = fd;
    this.#path = path;
    return this;
  }

  /** The listening path, until close(). */
  get path(): string | undefined {
    return this.#path;
  }

  get fd(): number {
    return this.#fd;
  }

  /** Stops listening and removes the socket file (if it is still ours). Accepted sockets stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#watch?.close();
    if (this.#fd >= 0) closeQuietly(this.#fd);
    this.#fd = -1;
    if (this.#path !== undefined && this.#file) {
      try {
        const st = fs.lstatSync(this.#path);
        if (st.dev === this.#file.dev && st.ino === this.#file.ino) fs.unlinkSync(this.#path);
      } catch {
        // already gone
      }
    }
    this.#path = undefined;
    process.nextTick(() => this.emit("close"));
  }

  ref(): this {
    this.#ref = true;
    this.#watch?.ref();
    return this;
  }

  unref(): this {
    this.#ref = false;
    this.#watch?.unref();
    return this;
  }

  #onReadable(): void {
    let rearm = true;
    try {
      while (!this.#closed) {
        let fd: number;
        try {
          fd = native.seqpacketAccept(this.#fd);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "ECONNABORTED" || code === "EPROTO") continue; // that client gave up
          // EMFILE, ENFILE, ENOBUFS, ...: report, and retry later instead of spinning.
          rearm = false;
          this.#retry = setTimeout(() => {
            this.#retry = undefined;
            if (!this.#closed) this.#watch?.arm(EV.IN);
          }, 100);
          this.emit("error", err as Error);
          return;
        }
        if (fd < 0) return;
        let socket: SeqpacketSocket;
        try {
          socket = adopt(fd, this.#socketOptions);
        } catch (err) {
          this.emit("error", err as Error); // e.g. ENOSPC: out of epoll watches
          continue;
        }
        if (this.listenerCount("connection") === 0) socket.destroy();
        else this.emit("connection", socket);
      }
    } finally {
      if (rearm && !this.#closed) this.#watch?.arm(EV.IN);
    }
  }
}

/** A connected pair of SOCK_SEQPACKET sockets (socketpair), e.g. for tests. */
export function seqpacketPair(opts: SeqpacketSocketOptions = {}): [SeqpacketSocket, SeqpacketSocket] {
  checkSocketOptions(opts);
  const [a, b] = native.seqpacketPair();
  let first: SeqpacketSocket;
  try {
    first = adopt(a, opts);
  } catch (err) {
    closeQuietly(b);
    throw err;
  }
  try {
    return [first, adopt(b, opts)];
  } catch (err) {
    first.destroy();
    throw err;
  }
}

/** Wraps an fd this module just created; closes it if wrapping fails. */
function adopt(fd: number, opts: SeqpacketSocketOptions): SeqpacketSocket {
  try {
    return new SeqpacketSocket(fd, opts);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}
