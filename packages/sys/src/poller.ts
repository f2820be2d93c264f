// JS half of the addon's epoll thread (native/poller.cc): fd readiness for sockets
// that libuv does not manage. Each FdWatch is one oneshot epoll registration: after a
// notification it stays disarmed until its owner, having done its non-blocking I/O
// until EAGAIN, arms it again. Owners must tolerate spurious wake-ups.
import { native } from "./native.js";

export const EV = native.pollEvents;

const watches = new Map<number, FdWatch>();
let nextId = 1; // 0 is the addon's wake-up fd
let started = false;
let refCount = 0;

// Called by the addon's ThreadSafeFunction with [id, events, id, events, ...].
function dispatch(batch: number[]): void {
  for (let i = 0; i + 1 < batch.length; i += 2) {
    watches.get(batch[i]!)?.deliver(batch[i + 1]!); // unknown id: closed since; drop
  }
}

export class FdWatch {
  readonly #fd: number;
  readonly #onEvents: (events: number) => void;
  #id = 0; // 0: not registered
  #armed = 0; // events armed in the kernel, as far as JS knows
  #ref = true;
  #counted = false;

  /** Watches fd (owned elsewhere, which must close() this before closing the fd). */
  constructor(fd: number, onEvents: (events: number) => void) {
    this.#fd = fd;
    this.#onEvents = onEvents;
  }

  /**
   * Registers the fd without asking for readiness (the kernel may still report a hang-up
   * or error once). A registered, ref'd watch keeps the event loop alive. Throws the
   * epoll_ctl error for an fd that cannot be polled.
   */
  register(): void {
    if (this.#id !== 0) return;
    if (!started) {
      native.pollStart(dispatch);
      started = true;
    }
    const id = nextId++;
    native.pollAdd(id, this.#fd, this.#armed);
    this.#id = id;
    watches.set(id, this);
    this.#updateRef();
  }

  /** Asks for one notification when any of events (EV.IN, EV.OUT) is ready. */
  arm(events: number): void {
    if (events === 0 || events === this.#armed) return;
    if (this.#id === 0) {
      this.#armed = events;
      try {
        this.register();
      } catch (err) {
        this.#armed = 0;
        throw err;
      }
      return;
    }
    native.pollArm(this.#id, this.#fd, events);
    this.#armed = events;
  }

  /** @internal Runs the owner's handler; its exceptions surface as uncaught, like an event listener's. */
  deliver(events: number): void {
    this.#armed = 0;
    try {
      this.#onEvents(events);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
    }
  }

  /** Unregisters; call before closing the fd. Idempotent. */
  close(): void {
    if (this.#id === 0) return;
    native.pollDel(this.#fd);
    watches.delete(this.#id);
    this.#id = 0;
    this.#armed = 0;
    this.#updateRef();
  }

  /** Whether this registration keeps the event loop alive (default: yes). */
  ref(): void {
    this.#ref = true;
    this.#updateRef();
  }

  unref(): void {
    this.#ref = false;
    this.#updateRef();
  }

  #updateRef(): void {
    const want = this.#id !== 0 && this.#ref;
    if (want === this.#counted) return;
    this.#counted = want;
    refCount += want ? 1 : -1;
    if (refCount === (want ? 1 : 0)) native.pollRef(want);
  }
}
