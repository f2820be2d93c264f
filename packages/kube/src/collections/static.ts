// A collection written to directly: tests, configuration, and inputs computed outside the runtime.

import { kubeKey } from "../keys.js";
import { BaseCollection, type BaseOptions } from "./base.js";

export interface StaticOptions<T> extends BaseOptions<T> {
  /** The key of an item. Default: {@link kubeKey} ("<namespace>/<name>" of a Kubernetes object). */
  key?: (item: T) => string;
  /** Initial contents (no events: there is no subscriber yet). */
  items?: Iterable<T>;
  /** Whether the collection starts synced. Default true; pass false and call `markSynced()` when filled. */
  synced?: boolean;
}

export class StaticCollection<T> extends BaseCollection<T> {
  private readonly keyFn: (item: T) => string;

  constructor(options: StaticOptions<T> = {}) {
    super("static", options);
    this.keyFn = options.key ?? (kubeKey as unknown as (item: T) => string);
    if (options.items) {
      this.begin();
      try {
        for (const item of options.items) this.put(this.keyFn(item), item);
      } finally {
        this.commit();
      }
    }
    if (options.synced !== false) this.markSynced();
  }

  key(item: T): string {
    return this.keyFn(item);
  }

  /** Adds or replaces an item. Emits nothing when the new value `equals` the old (the store keeps the new one). */
  set(item: T): void {
    this.batched(() => this.put(this.keyFn(item), item));
  }

  /** Removes the item with this key, if any. */
  delete(key: string): void {
    this.batched(() => this.put(key, undefined));
  }

  /** Makes the contents exactly `items`: one batch with adds, real updates, and deletes of vanished keys. */
  replaceAll(items: Iterable<T>): void {
    this.batched(() => {
      const seen = new Set<string>();
      for (const item of items) {
        const key = this.keyFn(item);
        seen.add(key);
        this.put(key, item);
      }
      for (const key of [...this.items.keys()]) if (!seen.has(key)) this.put(key, undefined);
    });
  }

  /** Groups the writes made by `fn` into one batch (one event per key, compared with its value before `fn`). */
  batch(fn: () => void): void {
    this.batched(fn);
  }

  override markSynced(): void {
    super.markSynced();
  }
}
