// Derived collections: outputs declared as a pure function of one input item plus whatever the function reads through
// its Ctx. Every read is a recorded dependency; a change recomputes exactly the input items whose last evaluation
// read what changed, and only outputs that really changed (by `equals`) are emitted downstream.

import { BaseCollection, type BaseOptions } from "./base.js";
import type { Batch, Collection, Ctx, Index, Unsubscribe } from "./types.js";

export type DeriveResult<O> = O | readonly O[] | null | undefined;
export type Transform<I, O> = (item: I, ctx: Ctx) => DeriveResult<O>;

export interface DeriveOptions<O> extends BaseOptions<O> {
  /**
   * The key of an output. Default: the key of the input item that produced it, which suits one-to-one maps; a
   * transformation returning arrays needs this option.
   */
  key?: (output: O) => string;
  /**
   * What happens to an input item's outputs when its transformation throws: "keep" (default) keeps the outputs of its
   * last successful evaluation, "remove" withdraws them. Either way the error goes to `onError` with the input key.
   */
  onTransformError?: "keep" | "remove";
}

/** What one input item's last evaluation read. */
interface DepRecord {
  keys: [Collection<unknown>, string][];
  indexes: [Index<unknown>, string][];
  lists: Collection<unknown>[];
}

interface InputState {
  outKeys: string[];
  deps: DepRecord;
}

/** Reverse dependencies on one upstream collection: what was read → which input keys read it. */
interface SourceDeps {
  readonly keys: Map<string, Set<string>>;
  readonly indexes: Map<Index<unknown>, Map<string, Set<string>>>;
  readonly lists: Set<string>;
  readonly unsubscribe: Unsubscribe;
}

const EMPTY_DEPS: DepRecord = { keys: [], indexes: [], lists: [] };

export class DerivedCollection<I, O> extends BaseCollection<O> {
  private readonly sources = new Map<Collection<unknown>, SourceDeps>();
  private readonly states = new Map<string, InputState>();
  /** Output key → the input keys producing it, with their values (more than one only on a key collision). */
  private readonly producers = new Map<string, Map<string, O>>();
  private readonly keyFn: ((output: O) => string) | undefined;
  private readonly keysOfOutputs = new WeakMap<object, string>();
  private readonly keepOnError: boolean;
  private disposed = false;

  constructor(
    readonly input: Collection<I>,
    private readonly fn: Transform<I, O>,
    options: DeriveOptions<O> = {},
  ) {
    super("derived", options);
    this.keyFn = options.key;
    this.keepOnError = (options.onTransformError ?? "keep") === "keep";
    this.source(input as Collection<unknown>);
    this.recompute(input.keys());
    void this.waitSynced();
  }

  key(item: O): string {
    if (this.keyFn) return this.keyFn(item);
    if (typeof item === "object" && item !== null) {
      const key = this.keysOfOutputs.get(item);
      if (key !== undefined) return key;
    }
    throw new Error(`${this.name}: item is not in the collection and there is no key option`);
  }

  /** Stops following the input and every dependency; the contents stay as they are. */
  dispose(): void {
    this.disposed = true;
    for (const s of this.sources.values()) s.unsubscribe();
    this.sources.clear();
  }

  /** Synced when the input is and every collection the transformations have read is. */
  private async waitSynced(): Promise<void> {
    await this.input.synced;
    for (;;) {
      const pending = [...this.sources.keys()].filter((c) => !c.isSynced);
      if (pending.length === 0) break;
      await Promise.all(pending.map((c) => c.synced));
    }
    this.markSynced();
  }

  private source(c: Collection<unknown>): SourceDeps {
    let s = this.sources.get(c);
    if (!s) {
      s = {
        keys: new Map(),
        indexes: new Map(),
        lists: new Set(),
        unsubscribe: c.subscribe((batch) => this.onBatch(c, batch)),
      };
      this.sources.set(c, s);
    }
    return s;
  }

  private onBatch(c: Collection<unknown>, batch: Batch<unknown>): void {
    if (this.disposed) return;
    const dirty = new Set<string>();
    if (c === this.input) for (const ev of batch) dirty.add(ev.key);
    const s = this.sources.get(c);
    if (s) {
      if (s.keys.size > 0) {
        for (const ev of batch) addAll(dirty, s.keys.get(ev.key));
      }
      for (const [ix, buckets] of s.indexes) {
        for (const ev of batch) {
          if (ev.old !== undefined) for (const ik of ix.keysOf(ev.old)) addAll(dirty, buckets.get(ik));
          if (ev.new !== undefined) for (const ik of ix.keysOf(ev.new)) addAll(dirty, buckets.get(ik));
        }
      }
      if (batch.length > 0) addAll(dirty, s.lists);
    }
    if (dirty.size > 0) this.recompute(dirty);
  }

  private recompute(keys: Iterable<string>): void {
    this.batched(() => {
      for (const key of keys) this.evaluate(key);
    });
  }

  private evaluate(inputKey: string): void {
    const item = this.input.get(inputKey);
    const state = this.states.get(inputKey);
    if (item === undefined) {
      if (state) {
        for (const k of state.outKeys) this.withdraw(k, inputKey);
        this.untrack(inputKey, state.deps);
        this.states.delete(inputKey);
      }
      return;
    }

    const deps: DepRecord = { keys: [], indexes: [], lists: [] };
    let open = true;
    const ctx: Ctx = {
      key: inputKey,
      fetch: <T>(c: Collection<T>, key: string): T | undefined => {
        this.check(open, c);
        deps.keys.push([c as Collection<unknown>, key]);
        return c.get(key);
      },
      fetchIndex: <T>(ix: Index<T>, indexKey: string): T[] => {
        this.check(open, ix.collection);
        deps.indexes.push([ix as Index<unknown>, indexKey]);
        return ix.lookup(indexKey);
      },
      list: <T>(c: Collection<T>): T[] => {
        this.check(open, c);
        deps.lists.push(c as Collection<unknown>);
        return c.list();
      },
    };

    let outputs: [string, O][];
    try {
      outputs = this.outputsOf(this.fn(item, ctx), inputKey);
    } catch (error) {
      open = false;
      this.onError(error, { collection: this.name, key: inputKey, phase: "transform" });
      const prev = state?.deps ?? EMPTY_DEPS;
      // Retry when anything either evaluation read changes.
      const merged = mergeDeps(prev, deps);
      if (state) this.untrack(inputKey, state.deps);
      this.track(inputKey, merged);
      if (this.keepOnError && state) {
        state.deps = merged;
      } else {
        for (const k of state?.outKeys ?? []) this.withdraw(k, inputKey);
        this.states.set(inputKey, { outKeys: [], deps: merged });
      }
      return;
    }
    open = false;

    const outKeys: string[] = [];
    for (const [k, value] of outputs) {
      outKeys.push(k);
      this.produce(k, inputKey, value);
    }
    if (state) {
      const kept = state.outKeys.length > 1 ? new Set(outKeys) : undefined;
      for (const k of state.outKeys) if (!(kept ? kept.has(k) : outKeys.includes(k))) this.withdraw(k, inputKey);
      this.untrack(inputKey, state.deps);
    }
    this.track(inputKey, deps);
    this.states.set(inputKey, { outKeys, deps });
  }

  private check(open: boolean, c: Collection<unknown>): void {
    if (!open) throw new Error(`${this.name}: Ctx used after its transformation returned (no async reads)`);
    if (c === (this as Collection<unknown>)) throw new Error(`${this.name}: a transformation cannot read its own collection`);
  }

  private outputsOf(result: DeriveResult<O>, inputKey: string): [string, O][] {
    if (result === null || result === undefined) return [];
    if (Array.isArray(result)) {
      const keyFn = this.keyFn;
      if (!keyFn) throw new Error(`${this.name}: the transformation returned an array; outputs need a key option`);
      const out: [string, O][] = [];
      const seen = new Set<string>();
      for (const value of result as readonly O[]) {
        if (value === null || value === undefined) continue;
        const k = keyFn(value);
        if (seen.has(k)) {
          this.onError(new Error(`duplicate output key ${JSON.stringify(k)} from one input; the first is kept`), {
            collection: this.name,
            key: inputKey,
            phase: "collision",
          });
          continue;
        }
        seen.add(k);
        out.push([k, value]);
      }
      return out;
    }
    const value = result as O;
    return [[this.keyFn ? this.keyFn(value) : inputKey, value]];
  }

  /** Records `inputKey` as a producer of output key `k` and refreshes the visible value. */
  private produce(k: string, inputKey: string, value: O): void {
    let byInput = this.producers.get(k);
    if (!byInput) this.producers.set(k, (byInput = new Map()));
    const isNew = !byInput.has(inputKey);
    byInput.set(inputKey, value);
    if (isNew && byInput.size > 1) {
      this.onError(
        new Error(`output key ${JSON.stringify(k)} is produced by inputs ${[...byInput.keys()].map((x) => JSON.stringify(x)).join(", ")}; the smallest input key wins`),
        { collection: this.name, key: inputKey, phase: "collision" },
      );
    }
    this.refresh(k, byInput);
  }

  private withdraw(k: string, inputKey: string): void {
    const byInput = this.producers.get(k);
    if (!byInput) return;
    byInput.delete(inputKey);
    if (byInput.size === 0) this.producers.delete(k);
    this.refresh(k, byInput);
  }

  /** The visible value of an output key: its only producer's, or on a collision the smallest input key's. */
  private refresh(k: string, byInput: Map<string, O>): void {
    let winner: string | undefined;
    for (const inputKey of byInput.keys()) if (winner === undefined || inputKey < winner) winner = inputKey;
    const value = winner === undefined ? undefined : byInput.get(winner);
    if (value !== undefined && !this.keyFn && typeof value === "object" && value !== null) {
      this.keysOfOutputs.set(value as object, k);
    }
    this.put(k, value);
  }

  private track(inputKey: string, deps: DepRecord): void {
    for (const [c, key] of deps.keys) {
      const s = this.source(c);
      let set = s.keys.get(key);
      if (!set) s.keys.set(key, (set = new Set()));
      set.add(inputKey);
    }
    for (const [ix, indexKey] of deps.indexes) {
      const s = this.source(ix.collection as Collection<unknown>);
      let buckets = s.indexes.get(ix);
      if (!buckets) s.indexes.set(ix, (buckets = new Map()));
      let set = buckets.get(indexKey);
      if (!set) buckets.set(indexKey, (set = new Set()));
      set.add(inputKey);
    }
    for (const c of deps.lists) this.source(c).lists.add(inputKey);
  }

  private untrack(inputKey: string, deps: DepRecord): void {
    for (const [c, key] of deps.keys) {
      const s = this.sources.get(c);
      const set = s?.keys.get(key);
      if (!s || !set) continue;
      set.delete(inputKey);
      if (set.size === 0) s.keys.delete(key);
    }
    for (const [ix, indexKey] of deps.indexes) {
      const s = this.sources.get(ix.collection as Collection<unknown>);
      const buckets = s?.indexes.get(ix);
      const set = buckets?.get(indexKey);
      if (!s || !buckets || !set) continue;
      set.delete(inputKey);
      if (set.size === 0) buckets.delete(indexKey);
      if (buckets.size === 0) s.indexes.delete(ix);
    }
    for (const c of deps.lists) this.sources.get(c)?.lists.delete(inputKey);
  }
}

/** The union of two dependency records, without duplicates (so repeated failures do not grow it). */
function mergeDeps(a: DepRecord, b: DepRecord): DepRecord {
  const out: DepRecord = { keys: [], indexes: [], lists: [] };
  const keys = new Map<Collection<unknown>, Set<string>>();
  for (const [c, k] of [...a.keys, ...b.keys]) {
    let set = keys.get(c);
    if (!set) keys.set(c, (set = new Set()));
    if (!set.has(k)) {
      set.add(k);
      out.keys.push([c, k]);
    }
  }
  const indexes = new Map<Index<unknown>, Set<string>>();
  for (const [ix, k] of [...a.indexes, ...b.indexes]) {
    let set = indexes.get(ix);
    if (!set) indexes.set(ix, (set = new Set()));
    if (!set.has(k)) {
      set.add(k);
      out.indexes.push([ix, k]);
    }
  }
  out.lists = [...new Set([...a.lists, ...b.lists])];
  return out;
}

function addAll(target: Set<string>, from: Iterable<string> | undefined): void {
  if (from) for (const x of from) target.add(x);
}

/**
 * A collection derived from `input`: `fn` maps one input item to nothing (null/undefined), one output, or many
 * (an array; then `options.key` is required). Reads of other collections go through `ctx` and are tracked.
 */
export function derive<I, O>(input: Collection<I>, fn: Transform<I, O>, options?: DeriveOptions<O>): DerivedCollection<I, O> {
  return new DerivedCollection(input, fn, options);
}
