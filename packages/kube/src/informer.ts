// A Collection fed by a Kubernetes list+watch (client-node's ListWatch), every object validated with a zod schema.
//
// Semantics:
// - key: "<namespace>/<name>" (cluster-scoped: "<name>").
// - An object that fails validation is treated as ABSENT: it is not inserted, and if an earlier valid version was in
//   the collection, that version is removed (a delete event). Keeping a stale version would keep enforcing something
//   the user has already changed; the onInvalid hook says what was wrong. It never throws.
// - A (re)list replaces the whole contents in one batch: adds, real updates, and deletes of vanished objects.
// - A new resourceVersion whose content (ignoring metadata.resourceVersion and metadata.managedFields) is unchanged
//   updates the stored object silently: no event.
// - Watch events arriving together (one network chunk, one tick) are delivered as one batch.
// - When the watch or the list fails, it is restarted with exponential back-off (reset by any successful list or event).
// - `synced` resolves after the first successful list.

import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import type { z } from "zod";
import { BaseCollection } from "./collections/base.js";
import { deepEqual } from "./collections/equal.js";
import type { Equals, ErrorHook } from "./collections/types.js";
import { kubeKey, type NamedObject } from "./keys.js";
import { describeZodError } from "./schemas/format.js";

export interface Selectors {
  labelSelector?: string;
  fieldSelector?: string;
}

/** The JSON of a Kubernetes list response (items as the API server sent them, not client-node model classes). */
export interface KubeList {
  metadata?: { resourceVersion?: string; continue?: string } | undefined;
  items: unknown[];
}

export type ListFn = (selectors: Selectors) => Promise<KubeList>;

/** What to watch: the watch path, how to list it, and the schema of its objects. See `sources` in resources.ts. */
export interface InformerSource<T> {
  /** API path of the collection, e.g. "/api/v1/pods" (the same path is watched with ?watch=true). */
  path: string;
  /** Lists the collection with the given selectors; must return raw JSON objects. */
  list: ListFn;
  schema: z.ZodType<T>;
}

export interface BackoffOptions {
  /** First retry delay. Default 500 ms. */
  initialMs?: number;
  /** Longest delay. Default 30 s. */
  maxMs?: number;
}

export interface InformerOptions<T> extends InformerSource<T>, Selectors {
  name?: string;
  /** Called for every object that fails validation (it is then treated as absent). Default: `onError`, phase "invalid". */
  onInvalid?: (object: unknown, error: z.ZodError) => void;
  /** Watch/list failures (phase "watch") and subscriber errors. Default: the process-wide hook. */
  onError?: ErrorHook;
  /** Content equality deciding whether an update is emitted. Default: {@link kubeContentEqual}. */
  equals?: Equals<T>;
  backoff?: BackoffOptions;
  /** Start listing at once. Default true. */
  start?: boolean;
}

/** Deep equality ignoring metadata.resourceVersion and metadata.managedFields. */
export function kubeContentEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (!isRecord(a) || !isRecord(b) || !isRecord(a["metadata"]) || !isRecord(b["metadata"])) return deepEqual(a, b);
  const { resourceVersion: _ra, managedFields: _ma, ...metaA } = a["metadata"];
  const { resourceVersion: _rb, managedFields: _mb, ...metaB } = b["metadata"];
  return deepEqual({ ...a, metadata: metaA }, { ...b, metadata: metaB });
}

export class InformerCollection<T extends NamedObject> extends BaseCollection<T> {
  readonly path: string;
  private readonly lw: ListWatch<KubernetesObject>;
  private readonly options: InformerOptions<T>;
  /** resourceVersion of the last raw object handled per key (valid or not): repeats are skipped, not re-validated. */
  private readonly seenVersions = new Map<string, string | undefined>();
  private running = false;
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  private attempts = 0;
  private tickBatchOpen = false;

  constructor(kc: KubeConfig, options: InformerOptions<T>) {
    super("informer", { name: options.name ?? options.path, equals: options.equals ?? kubeContentEqual, onError: options.onError });
    this.options = options;
    this.path = options.path;
    this.lw = new ListWatch<KubernetesObject>(
      options.path,
      new Watch(kc),
      () => this.listAndApply(),
      false,
      options.labelSelector,
      options.fieldSelector,
    );
    this.lw.on("add", (obj) => this.onObject(obj));
    this.lw.on("update", (obj) => this.onObject(obj));
    this.lw.on("delete", (obj) => this.onDeleted(obj));
    this.lw.on("error", (err: unknown) => this.onFailure(err));
    if (options.start !== false) this.start();
  }

  key(item: T): string {
    return kubeKey(item);
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts (or restarts after stop) listing and watching. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempts = 0;
    this.run();
  }

  /** Stops watching; the contents stay as they are. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.lw.stop();
  }

  private run(): void {
    this.lw.start().catch((err: unknown) => this.onFailure(err));
  }

  private async listAndApply(): Promise<KubernetesListObject<KubernetesObject>> {
    const { labelSelector, fieldSelector } = this.options;
    const result = await this.options.list({ labelSelector, fieldSelector });
    if (!result || !Array.isArray(result.items)) throw new Error(`${this.name}: list returned no items array`);
    // Stopped while listing: fail the list so that ListWatch does not go on to open a watch.
    if (!this.running) throw new Error(`${this.name}: stopped`);
    this.applyList(result.items);
    this.attempts = 0;
    this.markSynced();
    return result as unknown as KubernetesListObject<KubernetesObject>;
  }

  private applyList(items: unknown[]): void {
    this.inTickBatch(() => {
      const seen = new Set<string>();
      for (const raw of items) {
        const key = this.keyOfRaw(raw);
        if (key === undefined) continue;
        seen.add(key);
        this.handle(key, raw);
      }
      for (const key of [...this.items.keys()]) if (!seen.has(key)) this.put(key, undefined);
      for (const key of [...this.seenVersions.keys()]) if (!seen.has(key)) this.seenVersions.delete(key);
    });
  }

  private onObject(raw: unknown): void {
    if (!this.running) return;
    this.attempts = 0;
    const key = this.keyOfRaw(raw);
    if (key === undefined) return;
    this.inTickBatch(() => this.handle(key, raw));
  }

  private onDeleted(raw: unknown): void {
    if (!this.running) return;
    const key = this.keyOfRaw(raw);
    if (key === undefined) return;
    this.seenVersions.delete(key);
    this.inTickBatch(() => this.put(key, undefined));
  }

  /** Validates one raw object and stores it, or removes the key when it is invalid. */
  private handle(key: string, raw: unknown): void {
    const rv = resourceVersionOf(raw);
    if (rv !== undefined && this.seenVersions.has(key) && this.seenVersions.get(key) === rv) return;
    this.seenVersions.set(key, rv);
    const parsed = this.options.schema.safeParse(raw);
    if (parsed.success) {
      this.put(key, parsed.data);
    } else {
      this.put(key, undefined);
      this.reportInvalid(raw, parsed.error, key);
    }
  }

  private keyOfRaw(raw: unknown): string | undefined {
    try {
      return kubeKey(raw as NamedObject);
    } catch (error) {
      this.onError(error, { collection: this.name, phase: "invalid" });
      return undefined;
    }
  }

  private reportInvalid(raw: unknown, error: z.ZodError, key: string): void {
    if (this.options.onInvalid) {
      try {
        this.options.onInvalid(raw, error);
      } catch (hookError) {
        this.onError(hookError, { collection: this.name, key, phase: "invalid" });
      }
      return;
    }
    this.onError(new Error(`invalid object ignored: ${describeZodError(error)}`), { collection: this.name, key, phase: "invalid" });
  }

  /** Groups everything applied in this tick (a list, a chunk of watch events) into one batch. */
  private inTickBatch(fn: () => void): void {
    if (!this.tickBatchOpen) {
      this.tickBatchOpen = true;
      this.begin();
      queueMicrotask(() => {
        this.tickBatchOpen = false;
        this.commit();
      });
    }
    this.begin();
    try {
      fn();
    } finally {
      this.commit();
    }
  }

  private onFailure(err: unknown): void {
    if (!this.running) return;
    this.onError(err, { collection: this.name, phase: "watch" });
    if (this.restartTimer) return;
    const { initialMs = 500, maxMs = 30_000 } = this.options.backoff ?? {};
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempts, 30));
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempts++;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.running) this.run();
    }, delay);
  }
}

/** A collection of the objects at `options.path`, kept up to date by list+watch. */
export function informerCollection<T extends NamedObject>(kc: KubeConfig, options: InformerOptions<T>): InformerCollection<T> {
  return new InformerCollection(kc, options);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function resourceVersionOf(raw: unknown): string | undefined {
  if (!isRecord(raw) || !isRecord(raw["metadata"])) return undefined;
  const rv = raw["metadata"]["resourceVersion"];
  return typeof rv === "string" && rv !== "" ? rv : undefined;
}
