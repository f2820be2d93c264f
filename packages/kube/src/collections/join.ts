// The union of several collections of the same type (e.g. Workloads from Pods, from WorkloadEntries, from
// EndpointSlices). Level-triggered: on any event for a key, the key's value is recomputed from all sources.

import { BaseCollection, type BaseOptions } from "./base.js";
import type { Collection, Unsubscribe } from "./types.js";

export interface JoinOptions<T> extends BaseOptions<T> {
  /**
   * Combines the values of a key present in more than one source (given in source order). Without it, keys must not
   * collide: a collision is reported to `onError` (phase "collision") and the first source's value is used.
   */
  merge?: (values: T[], key: string) => T;
  /** The key of an item. Default: the first source's key function (sources are expected to share one). */
  key?: (item: T) => string;
}

export class JoinCollection<T> extends BaseCollection<T> {
  private readonly unsubscribes: Unsubscribe[] = [];
  private readonly colliding = new Set<string>();
  private readonly keyFn: (item: T) => string;
  private readonly merge: ((values: T[], key: string) => T) | undefined;

  constructor(
    readonly sources: readonly Collection<T>[],
    options: JoinOptions<T> = {},
  ) {
    super("join", options);
    const first = sources[0];
    this.keyFn = options.key ?? (first ? (item: T) => first.key(item) : () => {
      throw new Error(`${this.name}: join of no collections has no keys`);
    });
    this.merge = options.merge;
    for (const s of sources) {
      this.unsubscribes.push(s.subscribe((batch) => this.batched(() => {
        for (const ev of batch) this.refresh(ev.key);
      })));
    }
    this.batched(() => {
      for (const s of sources) for (const key of s.keys()) this.refresh(key);
    });
    void Promise.all(sources.map((s) => s.synced)).then(() => this.markSynced());
  }

  key(item: T): string {
    return this.keyFn(item);
  }

  dispose(): void {
    for (const u of this.unsubscribes.splice(0)) u();
  }

  private refresh(key: string): void {
    const values: T[] = [];
    for (const s of this.sources) {
      const v = s.get(key);
      if (v !== undefined) values.push(v);
    }
    if (values.length <= 1) {
      this.colliding.delete(key);
      this.put(key, values[0]);
      return;
    }
    if (this.merge) {
      try {
        this.put(key, this.merge(values, key));
        return;
      } catch (error) {
        this.onError(error, { collection: this.name, key, phase: "merge" });
        this.put(key, values[0]);
        return;
      }
    }
    if (!this.colliding.has(key)) {
      this.colliding.add(key);
      this.onError(new Error(`key ${JSON.stringify(key)} is present in ${values.length} joined collections; the first is used`), {
        collection: this.name,
        key,
        phase: "collision",
      });
    }
    this.put(key, values[0]);
  }
}

/** The union of `sources` (see {@link JoinOptions} for colliding keys). */
export function join<T>(sources: readonly Collection<T>[], options?: JoinOptions<T>): JoinCollection<T> {
  return new JoinCollection(sources, options);
}
