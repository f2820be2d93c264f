// The machinery every collection shares: the keyed store, secondary indexes kept in step with it, change batches
// (old values remembered at the start of a batch, compared with `equals` at its end) and FIFO event delivery.

import { deepEqual } from "./equal.js";
import { safeHook } from "./errors.js";
import type {
  Batch,
  Collection,
  Equals,
  ErrorHook,
  Event,
  Handler,
  Index,
  SubscribeOptions,
  Unsubscribe,
} from "./types.js";

export interface BaseOptions<T> {
  name?: string;
  /** Output equality; an update event is emitted only when this says the value changed. Default: `deepEqual`. */
  equals?: Equals<T>;
  /** Receives errors of transformations, index functions and subscribers. Default: the process-wide hook. */
  onError?: ErrorHook;
}

let anonymous = 0;

export function collectionName(prefix: string, name: string | undefined): string {
  return name ?? `${prefix}#${++anonymous}`;
}

interface Subscriber<T> {
  readonly handler: Handler<T>;
  /** Batches with a sequence number at or below this were queued before the subscription. */
  readonly since: number;
  active: boolean;
}

export abstract class BaseCollection<T> implements Collection<T> {
  readonly name: string;
  readonly synced: Promise<void>;
  protected readonly equals: Equals<T>;
  protected readonly onError: ErrorHook;
  protected readonly items = new Map<string, T>();

  private readonly indexes = new Map<string, IndexImpl<T>>();
  private readonly subscribers: Subscriber<T>[] = [];
  private readonly queue: { seq: number; batch: Batch<T> }[] = [];
  private seq = 0;
  private delivering = false;
  private pending: Map<string, T | undefined> | null = null;
  private depth = 0;
  private syncedFlag = false;
  private resolveSynced!: () => void;

  protected constructor(prefix: string, options: BaseOptions<T>) {
    this.name = collectionName(prefix, options.name);
    this.equals = options.equals ?? deepEqual;
    this.onError = safeHook(options.onError);
    this.synced = new Promise<void>((resolve) => {
      this.resolveSynced = resolve;
    });
  }

  abstract key(item: T): string;

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  has(key: string): boolean {
    return this.items.has(key);
  }

  list(): T[] {
    return [...this.items.values()];
  }

  keys(): string[] {
    return [...this.items.keys()];
  }

  get size(): number {
    return this.items.size;
  }

  get isSynced(): boolean {
    return this.syncedFlag;
  }

  protected markSynced(): void {
    if (this.syncedFlag) return;
    this.syncedFlag = true;
    this.resolveSynced();
  }

  subscribe(handler: Handler<T>, options: SubscribeOptions = {}): Unsubscribe {
    const sub: Subscriber<T> = { handler, since: this.seq, active: true };
    this.subscribers.push(sub);
    if (options.replay && this.items.size > 0) {
      const events: Event<T>[] = [];
      for (const [key, value] of this.items) events.push({ type: "add", key, new: value });
      this.call(sub, events);
    }
    return () => {
      if (!sub.active) return;
      sub.active = false;
      const i = this.subscribers.indexOf(sub);
      if (i >= 0) this.subscribers.splice(i, 1);
    };
  }

  index(name: string, fn: (item: T) => readonly string[]): Index<T> {
    let ix = this.indexes.get(name);
    if (!ix) {
      ix = new IndexImpl(name, this, fn, this.onError);
      for (const [key, value] of this.items) ix.update(key, value);
      this.indexes.set(name, ix);
    }
    return ix;
  }

  /** Opens a change batch (batches nest; only the outermost commit emits). */
  protected begin(): void {
    if (this.depth++ === 0) this.pending = new Map();
  }

  /** Sets (value) or removes (undefined) one key inside a batch; indexes follow at once, events at commit. */
  protected put(key: string, value: T | undefined): void {
    const pending = this.pending;
    if (!pending) throw new Error(`${this.name}: put outside a batch`);
    const old = this.items.get(key);
    if (old === undefined && value === undefined) return;
    if (!pending.has(key)) pending.set(key, old);
    if (value === undefined) {
      this.items.delete(key);
      for (const ix of this.indexes.values()) ix.remove(key);
    } else {
      this.items.set(key, value);
      for (const ix of this.indexes.values()) ix.update(key, value);
    }
  }

  /** Closes a batch; the outermost one emits one event per key whose value really changed. */
  protected commit(): void {
    if (--this.depth > 0) return;
    const pending = this.pending;
    this.pending = null;
    if (!pending || pending.size === 0) return;
    const events: Event<T>[] = [];
    for (const [key, old] of pending) {
      const cur = this.items.get(key);
      if (old === undefined) {
        if (cur !== undefined) events.push({ type: "add", key, new: cur });
      } else if (cur === undefined) {
        events.push({ type: "delete", key, old });
      } else {
        let same: boolean;
        try {
          same = this.equals(old, cur);
        } catch (error) {
          this.onError(error, { collection: this.name, key, phase: "handler" });
          same = false;
        }
        if (!same) events.push({ type: "update", key, old, new: cur });
      }
    }
    if (events.length > 0) this.emit(events);
  }

  /** Runs `fn` inside one batch. */
  protected batched(fn: () => void): void {
    this.begin();
    try {
      fn();
    } finally {
      this.commit();
    }
  }

  private emit(batch: Batch<T>): void {
    this.queue.push({ seq: ++this.seq, batch });
    if (this.delivering) return; // a subscriber caused this; delivered after the current batch, in order
    this.delivering = true;
    try {
      for (let next = this.queue.shift(); next; next = this.queue.shift()) {
        for (const sub of [...this.subscribers]) {
          if (sub.active && next.seq > sub.since) this.call(sub, next.batch);
        }
      }
    } finally {
      this.delivering = false;
    }
  }

  private call(sub: Subscriber<T>, batch: Batch<T>): void {
    try {
      sub.handler(batch);
    } catch (error) {
      this.onError(error, { collection: this.name, phase: "handler" });
    }
  }
}

class IndexImpl<T> implements Index<T> {
  private readonly byItem = new Map<string, readonly string[]>();
  private readonly buckets = new Map<string, Set<string>>();

  constructor(
    readonly name: string,
    readonly collection: Collection<T>,
    private readonly fn: (item: T) => readonly string[],
    private readonly onError: ErrorHook,
  ) {}

  lookup(indexKey: string): T[] {
    const bucket = this.buckets.get(indexKey);
    if (!bucket) return [];
    const out: T[] = [];
    for (const key of bucket) {
      const value = this.collection.get(key);
      if (value !== undefined) out.push(value);
    }
    return out;
  }

  keysOf(item: T): string[] {
    try {
      return unique(this.fn(item));
    } catch {
      return [];
    }
  }

  update(key: string, item: T): void {
    let next: string[];
    try {
      next = unique(this.fn(item));
    } catch (error) {
      this.onError(error, { collection: `${this.collection.name}/index:${this.name}`, key, phase: "index" });
      next = [];
    }
    const prev = this.byItem.get(key);
    if (prev && sameKeys(prev, next)) return;
    if (prev) for (const ik of prev) if (!next.includes(ik)) this.unlink(ik, key);
    for (const ik of next) {
      let bucket = this.buckets.get(ik);
      if (!bucket) this.buckets.set(ik, (bucket = new Set()));
      bucket.add(key);
    }
    if (next.length > 0) this.byItem.set(key, next);
    else this.byItem.delete(key);
  }

  remove(key: string): void {
    const prev = this.byItem.get(key);
    if (!prev) return;
    for (const ik of prev) this.unlink(ik, key);
    this.byItem.delete(key);
  }

  private unlink(indexKey: string, key: string): void {
    const bucket = this.buckets.get(indexKey);
    if (!bucket) return;
    bucket.delete(key);
    if (bucket.size === 0) this.buckets.delete(indexKey);
  }
}

function unique(keys: readonly string[]): string[] {
  if (keys.length <= 1) return [...keys];
  return [...new Set(keys)];
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
