// The public shapes of the collections runtime. Everything else in this folder implements them.

/** What happened to one key. `old` is set for update/delete, `new` for add/update. */
export type EventType = "add" | "update" | "delete";

export interface Event<T> {
  readonly type: EventType;
  readonly key: string;
  readonly old?: T;
  readonly new?: T;
}

/** Events are always delivered in batches: at most one event per key per batch. */
export type Batch<T> = readonly Event<T>[];
export type Handler<T> = (events: Batch<T>) => void;
export type Unsubscribe = () => void;

export interface SubscribeOptions {
  /**
   * Deliver the current contents first, as one batch of "add" events (nothing if empty). Later batches carry only
   * changes made after the subscription. Default false.
   */
  replay?: boolean;
}

export interface Collection<T> {
  /** A name for errors and debugging. */
  readonly name: string;
  /** The key this item has in this collection. */
  key(item: T): string;
  get(key: string): T | undefined;
  has(key: string): boolean;
  /** All items, in insertion order of their keys (deterministic for a given history, not sorted). */
  list(): T[];
  keys(): string[];
  readonly size: number;
  subscribe(handler: Handler<T>, options?: SubscribeOptions): Unsubscribe;
  /** Resolves once the collection holds a complete view of its source (an informer's first list, …). */
  readonly synced: Promise<void>;
  readonly isSynced: boolean;
  /**
   * A secondary index maintained with the collection (before any event is delivered). `fn` returns the index keys of
   * an item (any number). Asking again for an existing name returns the existing index and ignores `fn`.
   */
  index(name: string, fn: (item: T) => readonly string[]): Index<T>;
}

export interface Index<T> {
  readonly name: string;
  readonly collection: Collection<T>;
  /** Items whose index keys include `indexKey`. */
  lookup(indexKey: string): T[];
  /** The index keys of an item, as the index function computes them (errors → no keys, not reported). */
  keysOf(item: T): string[];
}

/**
 * What a transformation may read. Every read is recorded as a dependency of the input item under evaluation; when
 * what was read changes, that input item (and only it) is evaluated again. Valid only during the synchronous call.
 */
export interface Ctx {
  /** The key of the input item being evaluated. */
  readonly key: string;
  /** One item by key; depends on that key (also on its absence). */
  fetch<T>(collection: Collection<T>, key: string): T | undefined;
  /** Items of one index bucket; depends on the bucket (items entering, leaving or changing). */
  fetchIndex<T>(index: Index<T>, indexKey: string): T[];
  /** Every item; depends on any change of the collection. Prefer fetch/fetchIndex for cost. */
  list<T>(collection: Collection<T>): T[];
}

export type ErrorPhase = "transform" | "index" | "handler" | "collision" | "merge" | "watch" | "invalid";

export interface ErrorInfo {
  /** The collection reporting the error. */
  readonly collection: string;
  /** The input (derive) or output (join) key concerned, when there is one. */
  readonly key?: string;
  readonly phase: ErrorPhase;
}

export type ErrorHook = (error: unknown, info: ErrorInfo) => void;

export type Equals<T> = (a: T, b: T) => boolean;
