// The resource store that feeds the xDS server: per type URL, name → resource, with content-hash versions and
// an alias index. Each resource is encoded once, as an envoy `Resource`, and that encoding is shared by every
// response to every client.
import { createHash } from "node:crypto";
import { Resource, type google } from "@ambit/protocol";

export type AnyProperties = google.protobuf.Any.$Properties;

/** A resource as handed to the store: the encoded message (packed into an Any of the store's type URL) or an Any. */
export type ResourceBody = Uint8Array | AnyProperties;

export interface ResourceInput {
  name: string;
  resource: ResourceBody;
  /** Other names the resource answers to (e.g. "network/IP"); carried in responses. */
  aliases?: readonly string[];
}

export interface StoredResource {
  readonly name: string;
  /** Content hash: same bytes and aliases → same version. */
  readonly version: string;
  readonly aliases: readonly string[];
  /** The Any as served (its value is a view into `encoded`). */
  readonly resource: google.protobuf.Any.$Properties & { type_url: string; value: Uint8Array };
  /** The encoded `envoy.service.discovery.v3.Resource` (name, version, resource, aliases). */
  readonly encoded: Uint8Array;
}

/** Called synchronously with the names of a type whose resources were added, changed or removed. */
export type StoreListener = (typeUrl: string, names: readonly string[]) => void;

const VERSION_HEX_CHARS = 16;

/** Version of a resource: the first 64 bits of SHA-256 over the Any's value bytes (and the aliases, if any). */
export function contentVersion(value: Uint8Array, aliases: readonly string[] = []): string {
  const hash = createHash("sha256").update(value);
  for (const alias of aliases) hash.update("\0").update(alias);
  return hash.digest("hex").slice(0, VERSION_HEX_CHARS);
}

interface TypeTable {
  byName: Map<string, StoredResource>;
  /** alias → primary names carrying it. */
  byAlias: Map<string, Set<string>>;
}

const NO_RESOURCES: ReadonlyMap<string, StoredResource> = new Map();

export class ResourceStore {
  private readonly types = new Map<string, TypeTable>();
  private readonly listeners = new Set<StoreListener>();

  /** Registers a change listener; returns the function that unregisters it. */
  onChange(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adds or replaces one resource. Returns false (and notifies nobody) when nothing changed. */
  set(typeUrl: string, name: string, resource: ResourceBody, options: { aliases?: readonly string[] } = {}): boolean {
    const changed = this.apply(typeUrl, [{ name, resource, aliases: options.aliases ?? [] }], []);
    return changed.length > 0;
  }

  /** Removes one resource. Returns false when there was none. */
  delete(typeUrl: string, name: string): boolean {
    return this.apply(typeUrl, [], [name]).length > 0;
  }

  /** Applies upserts and removals of one type as one change; returns the names that actually changed. */
  update(typeUrl: string, upserts: Iterable<ResourceInput>, removals: Iterable<string> = []): string[] {
    return this.apply(typeUrl, upserts, removals);
  }

  /** Makes the type's content exactly `resources`: upserts them and removes every other name. */
  replace(typeUrl: string, resources: Iterable<ResourceInput>): string[] {
    const list = [...resources];
    const keep = new Set(list.map((r) => r.name));
    const removals = [...this.table(typeUrl).byName.keys()].filter((n) => !keep.has(n));
    return this.apply(typeUrl, list, removals);
  }

  get(typeUrl: string, name: string): StoredResource | undefined {
    return this.types.get(typeUrl)?.byName.get(name);
  }

  /** Resources carrying `alias` among their aliases. */
  byAlias(typeUrl: string, alias: string): StoredResource[] {
    const table = this.types.get(typeUrl);
    const names = table?.byAlias.get(alias);
    if (!table || !names) return [];
    const out: StoredResource[] = [];
    for (const n of names) {
      const r = table.byName.get(n);
      if (r) out.push(r);
    }
    return out;
  }

  values(typeUrl: string): IterableIterator<StoredResource> {
    // Reading never creates a type's table: clients name the types they watch.
    return (this.types.get(typeUrl)?.byName ?? NO_RESOURCES).values();
  }

  names(typeUrl: string): string[] {
    return [...this.table(typeUrl).byName.keys()];
  }

  size(typeUrl: string): number {
    return this.types.get(typeUrl)?.byName.size ?? 0;
  }

  typeUrls(): string[] {
    return [...this.types.keys()];
  }

  private table(typeUrl: string): TypeTable {
    let t = this.types.get(typeUrl);
    if (!t) {
      t = { byName: new Map(), byAlias: new Map() };
      this.types.set(typeUrl, t);
    }
    return t;
  }

  private apply(typeUrl: string, upserts: Iterable<ResourceInput>, removals: Iterable<string>): string[] {
    if (!typeUrl) throw new TypeError("type URL is required");
    const table = this.table(typeUrl);
    const changed = new Set<string>();
    // Validate and encode everything first, so a bad input changes nothing.
    const prepared: StoredResource[] = [];
    for (const input of upserts) {
      const next = prepare(typeUrl, input);
      if (table.byName.get(next.name)?.version !== next.version) prepared.push(next);
    }
    for (const next of prepared) {
      const prev = table.byName.get(next.name);
      if (prev) unindex(table, prev);
      table.byName.set(next.name, next);
      for (const alias of next.aliases) {
        let set = table.byAlias.get(alias);
        if (!set) table.byAlias.set(alias, (set = new Set()));
        set.add(next.name);
      }
      changed.add(next.name);
    }
    for (const name of removals) {
      const prev = table.byName.get(name);
      if (!prev) continue;
      unindex(table, prev);
      table.byName.delete(name);
      changed.add(name);
    }
    const names = [...changed];
    if (names.length > 0) for (const l of this.listeners) l(typeUrl, names);
    return names;
  }
}

function unindex(table: TypeTable, r: StoredResource): void {
  for (const alias of r.aliases) {
    const set = table.byAlias.get(alias);
    if (!set) continue;
    set.delete(r.name);
    if (set.size === 0) table.byAlias.delete(alias);
  }
}

function prepare(typeUrl: string, input: ResourceInput): StoredResource {
  const { name } = input;
  if (typeof name !== "string" || name === "") throw new TypeError(`${typeUrl}: resource name is required`);
  let value: Uint8Array;
  if (input.resource instanceof Uint8Array) {
    value = input.resource;
  } else {
    const anyTypeUrl = input.resource.type_url ?? "";
    if (anyTypeUrl !== typeUrl) {
      throw new TypeError(`${typeUrl}: resource ${name} is packed as ${anyTypeUrl || "(no type_url)"}`);
    }
    value = input.resource.value ?? new Uint8Array();
  }
  const aliases = [...new Set(input.aliases ?? [])].sort();
  const version = contentVersion(value, aliases);
  const encoded = Resource.encode({
    name,
    version,
    resource: { type_url: typeUrl, value },
    ...(aliases.length > 0 ? { aliases } : {}),
  }).finish();
  // Decode once so the stored Any's bytes are a view into `encoded` (one copy of the payload in memory).
  const any = Resource.decode(encoded).resource;
  return {
    name,
    version,
    aliases,
    resource: { type_url: typeUrl, value: any?.value ?? new Uint8Array() },
    encoded,
  };
}
