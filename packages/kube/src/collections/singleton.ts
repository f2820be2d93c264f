// A collection of at most one computed value, with the same dependency tracking as a derived collection: "the mesh
// config", "the root namespace", "the trust domain"…

import { DerivedCollection, type DeriveOptions } from "./derive.js";
import { StaticCollection } from "./static.js";
import type { Ctx } from "./types.js";

export interface SingletonOptions<T> extends Omit<DeriveOptions<T>, "key"> {
  /** The key of the single item. Default "singleton". */
  key?: string;
}

export class Singleton<T> extends DerivedCollection<string, T> {
  readonly singletonKey: string;

  constructor(fn: (ctx: Ctx) => T | null | undefined, options: SingletonOptions<T> = {}) {
    const key = options.key ?? "singleton";
    const name = options.name ?? `singleton#${key}`;
    const trigger = new StaticCollection<string>({ name: `${name}/trigger`, key: (k) => k, items: [key] });
    super(trigger, (_k, ctx) => fn(ctx), { ...options, name, key: () => key });
    this.singletonKey = key;
  }

  /** The current value (undefined when the function returned nothing or has always failed). */
  current(): T | undefined {
    return this.get(this.singletonKey);
  }
}

/** A collection holding the one value `fn` computes, recomputed when anything it read through `ctx` changes. */
export function singleton<T>(fn: (ctx: Ctx) => T | null | undefined, options?: SingletonOptions<T>): Singleton<T> {
  return new Singleton(fn, options);
}
