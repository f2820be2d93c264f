import { describe, expect, it, vi } from "vitest";
import {
  StaticCollection,
  deepEqual,
  derive,
  join,
  singleton,
  type Batch,
  type Collection,
  type ErrorInfo,
  type Event,
} from "../src/index.js";

interface Item {
  id: string;
  v: number;
  group?: string;
}

const byId = (x: { id: string }) => x.id;

function items(...xs: Item[]) {
  return new StaticCollection<Item>({ name: "items", key: byId, items: xs });
}

/** Records every batch a collection emits. */
function record<T>(c: Collection<T>) {
  const batches: Batch<T>[] = [];
  c.subscribe((b) => batches.push(b));
  return {
    batches,
    events: () => batches.flat(),
    summary: () => batches.flat().map((e) => `${e.type}:${e.key}`),
    clear: () => (batches.length = 0),
  };
}

function sorted<T>(xs: T[], key: (x: T) => string = (x) => JSON.stringify(x)): T[] {
  return [...xs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

describe("StaticCollection", () => {
  it("stores by key and emits add/update/delete with old and new", () => {
    const c = items();
    const r = record(c);
    c.set({ id: "a", v: 1 });
    c.set({ id: "a", v: 2 });
    c.delete("a");
    c.delete("a"); // absent: nothing
    expect(r.batches).toEqual([
      [{ type: "add", key: "a", new: { id: "a", v: 1 } }],
      [{ type: "update", key: "a", old: { id: "a", v: 1 }, new: { id: "a", v: 2 } }],
      [{ type: "delete", key: "a", old: { id: "a", v: 2 } }],
    ]);
    expect(c.size).toBe(0);
  });

  it("suppresses updates equal by value, and keeps the newer object", () => {
    const c = items({ id: "a", v: 1 });
    const r = record(c);
    const fresh = { id: "a", v: 1 };
    c.set(fresh);
    expect(r.batches).toEqual([]);
    expect(c.get("a")).toBe(fresh);
  });

  it("batch() collapses several writes into one event per key", () => {
    const c = items({ id: "a", v: 1 });
    const r = record(c);
    c.batch(() => {
      c.set({ id: "a", v: 5 });
      c.set({ id: "a", v: 1 }); // back to where it started: no event
      c.set({ id: "b", v: 1 });
      c.set({ id: "b", v: 2 });
      c.set({ id: "c", v: 1 });
      c.delete("c"); // added and removed: no event
    });
    expect(r.batches).toEqual([[{ type: "add", key: "b", new: { id: "b", v: 2 } }]]);
  });

  it("replaceAll emits adds, real updates and deletes of vanished keys in one batch", () => {
    const c = items({ id: "a", v: 1 }, { id: "b", v: 1 }, { id: "c", v: 1 });
    const r = record(c);
    c.replaceAll([{ id: "a", v: 1 }, { id: "b", v: 2 }, { id: "d", v: 1 }]);
    expect(r.batches).toHaveLength(1);
    expect(sorted(r.summary())).toEqual(["add:d", "delete:c", "update:b"]);
  });

  it("subscribe with replay delivers the current contents first", () => {
    const c = items({ id: "a", v: 1 }, { id: "b", v: 1 });
    const seen: Event<Item>[][] = [];
    c.subscribe((b) => seen.push([...b]), { replay: true });
    c.set({ id: "c", v: 1 });
    expect(seen.map((b) => b.map((e) => `${e.type}:${e.key}`))).toEqual([["add:a", "add:b"], ["add:c"]]);
  });

  it("unsubscribe stops delivery; a throwing subscriber does not stop the others", () => {
    const errors: ErrorInfo[] = [];
    const c = new StaticCollection<Item>({ key: byId, onError: (_e, info) => errors.push(info) });
    const got: string[] = [];
    c.subscribe(() => {
      throw new Error("bad handler");
    });
    const off = c.subscribe((b) => got.push(...b.map((e) => e.key)));
    c.set({ id: "a", v: 1 });
    off();
    c.set({ id: "b", v: 1 });
    expect(got).toEqual(["a"]);
    expect(errors.map((e) => e.phase)).toEqual(["handler", "handler"]);
  });

  it("writes made by a subscriber are delivered after the current batch, in order, to everyone", () => {
    const c = items();
    const order: string[] = [];
    c.subscribe((b) => {
      order.push(`1:${b.map((e) => e.key).join()}`);
      if (b.some((e) => e.key === "a")) c.set({ id: "b", v: 1 });
    });
    c.subscribe((b) => order.push(`2:${b.map((e) => e.key).join()}`));
    c.set({ id: "a", v: 1 });
    expect(order).toEqual(["1:a", "2:a", "1:b", "2:b"]);
  });

  it("synced: immediately by default, or when markSynced is called", async () => {
    expect(items().isSynced).toBe(true);
    const later = new StaticCollection<Item>({ key: byId, synced: false });
    expect(later.isSynced).toBe(false);
    later.markSynced();
    await later.synced;
    expect(later.isSynced).toBe(true);
  });
});

describe("indexes", () => {
  it("lookup follows adds, updates that move an item between buckets, and deletes", () => {
    const c = items({ id: "a", v: 1, group: "x" }, { id: "b", v: 1, group: "y" });
    const ix = c.index("group", (i) => (i.group ? [i.group] : []));
    expect(ix.lookup("x").map(byId)).toEqual(["a"]);
    c.set({ id: "b", v: 2, group: "x" });
    expect(sorted(ix.lookup("x").map(byId))).toEqual(["a", "b"]);
    expect(ix.lookup("y")).toEqual([]);
    c.delete("a");
    expect(ix.lookup("x").map(byId)).toEqual(["b"]);
    c.set({ id: "c", v: 1 }); // no index keys
    expect(ix.lookup("")).toEqual([]);
  });

  it("an item can be in several buckets; the same name returns the same index", () => {
    const c = new StaticCollection<{ id: string; tags: string[] }>({ key: byId });
    const ix = c.index("tags", (i) => i.tags);
    expect(c.index("tags", () => ["ignored"])).toBe(ix);
    c.set({ id: "a", tags: ["t1", "t2", "t1"] });
    expect(ix.lookup("t1").map(byId)).toEqual(["a"]);
    expect(ix.lookup("t2").map(byId)).toEqual(["a"]);
  });

  it("a throwing index function is reported and the item simply has no index keys", () => {
    const errors: ErrorInfo[] = [];
    const c = new StaticCollection<Item>({ key: byId, onError: (_e, i) => errors.push(i) });
    const ix = c.index("g", (i) => {
      if (i.v < 0) throw new Error("negative");
      return [String(i.v)];
    });
    c.set({ id: "a", v: -1 });
    c.set({ id: "b", v: 1 });
    expect(c.size).toBe(2);
    expect(ix.lookup("1").map(byId)).toEqual(["b"]);
    expect(errors).toEqual([{ collection: `${c.name}/index:g`, key: "a", phase: "index" }]);
  });
});

describe("derive", () => {
  it("map: one output per input, keyed by the input key by default", () => {
    const input = items({ id: "a", v: 1 }, { id: "b", v: 2 });
    const doubled = derive(input, (i) => ({ id: i.id, v: i.v * 2 }));
    expect(doubled.get("a")).toEqual({ id: "a", v: 2 });
    const r = record(doubled);
    input.set({ id: "a", v: 3 });
    input.set({ id: "c", v: 1 });
    input.delete("b");
    expect(r.summary()).toEqual(["update:a", "add:c", "delete:b"]);
    expect(doubled.get("a")).toEqual({ id: "a", v: 6 });
    expect(doubled.key(doubled.get("a")!)).toBe("a");
  });

  it("filter: returning null or undefined means no output", () => {
    const input = items({ id: "a", v: 1 }, { id: "b", v: 2 });
    const even = derive(input, (i) => (i.v % 2 === 0 ? i : null));
    expect(even.keys()).toEqual(["b"]);
    const r = record(even);
    input.set({ id: "a", v: 4 });
    input.set({ id: "b", v: 3 });
    expect(r.summary()).toEqual(["add:a", "delete:b"]);
  });

  it("flat-map: many outputs per input, with a key function; vanished outputs are deleted", () => {
    const input = new StaticCollection<{ id: string; ports: number[] }>({ key: byId, items: [{ id: "s", ports: [80, 443] }] });
    const ports = derive(input, (s) => s.ports.map((p) => ({ svc: s.id, port: p })), { key: (o) => `${o.svc}:${o.port}` });
    expect(sorted(ports.keys())).toEqual(["s:443", "s:80"]);
    const r = record(ports);
    input.set({ id: "s", ports: [80, 8080] });
    expect(r.batches).toHaveLength(1);
    expect(sorted(r.summary())).toEqual(["add:s:8080", "delete:s:443"]);
    input.delete("s");
    expect(ports.size).toBe(0);
  });

  it("flat-map without a key option is an error for that item", () => {
    const errors: unknown[] = [];
    const input = items({ id: "a", v: 1 });
    const out = derive(input, (i) => [i], { onError: (e) => errors.push(e) });
    expect(out.size).toBe(0);
    expect(String(errors[0])).toMatch(/key option/);
  });

  it("equality suppression: no event when the output did not change", () => {
    const input = items({ id: "a", v: 1 });
    const parity = derive(input, (i) => ({ id: i.id, odd: i.v % 2 === 1 }));
    const r = record(parity);
    input.set({ id: "a", v: 3 });
    input.set({ id: "a", v: 5 });
    expect(r.batches).toEqual([]);
    input.set({ id: "a", v: 4 });
    expect(r.summary()).toEqual(["update:a"]);
  });

  it("default equality covers Uint8Array contents; a custom equals can be given", () => {
    const input = items({ id: "a", v: 1 });
    const bytes = derive(input, (i) => ({ addr: new Uint8Array([10, 0, 0, i.v]) }));
    const r = record(bytes);
    input.set({ id: "a", v: 1, group: "irrelevant" });
    expect(r.batches).toEqual([]);
    input.set({ id: "a", v: 2 });
    expect(r.summary()).toEqual(["update:a"]);

    const never = derive(input, (i) => ({ v: i.v }), { equals: () => true });
    const r2 = record(never);
    input.set({ id: "a", v: 9 });
    expect(r2.batches).toEqual([]);
    expect(never.get("a")).toEqual({ v: 9 }); // stored, just not announced
  });

  it("fetch: only the items that fetched a key are recomputed when it changes", () => {
    const configs = new StaticCollection<{ id: string; weight: number }>({
      key: byId,
      items: [{ id: "c1", weight: 10 }, { id: "c2", weight: 20 }],
    });
    const input = items(...Array.from({ length: 100 }, (_, n) => ({ id: `i${n}`, v: n, group: n < 3 ? "c1" : "c2" })));
    const calls: string[] = [];
    const out = derive(input, (i, ctx) => {
      calls.push(i.id);
      const cfg = ctx.fetch(configs, i.group!);
      return { id: i.id, w: (cfg?.weight ?? 0) * i.v };
    });
    expect(calls).toHaveLength(100);
    calls.length = 0;
    const r = record(out);

    configs.set({ id: "c1", weight: 11 });
    expect(sorted(calls)).toEqual(["i0", "i1", "i2"]);
    expect(r.batches).toHaveLength(1);
    expect(sorted(r.summary())).toEqual(["update:i1", "update:i2"]); // i0 has v=0: output unchanged

    calls.length = 0;
    configs.set({ id: "c3", weight: 1 }); // nobody fetched c3
    expect(calls).toEqual([]);

    calls.length = 0;
    input.set({ id: "i5", v: 5, group: "c3" }); // i5 now depends on c3 and no longer on c2
    expect(calls).toEqual(["i5"]);
    calls.length = 0;
    configs.set({ id: "c2", weight: 21 });
    expect(calls).not.toContain("i5");
    expect(calls).toHaveLength(96);
    calls.length = 0;
    configs.set({ id: "c3", weight: 2 });
    expect(calls).toEqual(["i5"]);
  });

  it("fetch of a missing key is a dependency too (recomputed when it appears)", () => {
    const configs = new StaticCollection<{ id: string; weight: number }>({ key: byId });
    const input = items({ id: "a", v: 1, group: "g" });
    const out = derive(input, (i, ctx) => ctx.fetch(configs, i.group!) ? { id: i.id } : null);
    expect(out.size).toBe(0);
    configs.set({ id: "g", weight: 1 });
    expect(out.keys()).toEqual(["a"]);
    configs.delete("g");
    expect(out.size).toBe(0);
  });

  it("fetchIndex: depends on the bucket — items entering, leaving or changing in it", () => {
    const services = new StaticCollection<{ id: string; app: string }>({ key: byId });
    const byApp = services.index("app", (s) => [s.app]);
    const pods = items({ id: "p1", v: 1, group: "web" }, { id: "p2", v: 1, group: "db" });
    const calls: string[] = [];
    const workloads = derive(pods, (p, ctx) => {
      calls.push(p.id);
      return { id: p.id, services: ctx.fetchIndex(byApp, p.group!).map(byId).sort() };
    });
    calls.length = 0;

    services.set({ id: "s-web", app: "web" }); // enters bucket "web"
    expect(calls).toEqual(["p1"]);
    expect(workloads.get("p1")!.services).toEqual(["s-web"]);

    calls.length = 0;
    services.set({ id: "s-web", app: "db" }); // leaves "web", enters "db": both buckets
    expect(sorted(calls)).toEqual(["p1", "p2"]);
    expect(workloads.get("p1")!.services).toEqual([]);
    expect(workloads.get("p2")!.services).toEqual(["s-web"]);

    calls.length = 0;
    services.set({ id: "other", app: "cache" });
    expect(calls).toEqual([]);

    calls.length = 0;
    services.delete("s-web");
    expect(calls).toEqual(["p2"]);
    expect(workloads.get("p2")!.services).toEqual([]);
  });

  it("list: depends on the whole collection", () => {
    const all = new StaticCollection<{ id: string }>({ key: byId, items: [{ id: "x" }] });
    const input = items({ id: "a", v: 1 }, { id: "b", v: 1 });
    const other = items({ id: "o", v: 1 });
    const calls: string[] = [];
    const counted = derive(input, (i, ctx) => {
      calls.push(i.id);
      return { id: i.id, n: ctx.list(all).length };
    });
    derive(other, (i) => i); // does not list
    calls.length = 0;
    all.set({ id: "y" });
    expect(sorted(calls)).toEqual(["a", "b"]);
    expect(counted.get("a")!.n).toBe(2);
  });

  it("deletes cascade through a chain of derived collections", () => {
    const input = items({ id: "a", v: 1 }, { id: "b", v: 2 });
    const level1 = derive(input, (i) => ({ id: i.id, v: i.v + 1 }));
    const level2 = derive(level1, (i) => ({ id: i.id, v: i.v * 10 }));
    const r = record(level2);
    expect(level2.get("b")).toEqual({ id: "b", v: 30 });
    input.delete("b");
    expect(r.summary()).toEqual(["delete:b"]);
    expect(level1.has("b")).toBe(false);
    expect(level2.keys()).toEqual(["a"]);
  });

  it("a fetched item's deletion recomputes and can remove dependents' outputs", () => {
    const namespaces = new StaticCollection<{ id: string }>({ key: byId, items: [{ id: "ns1" }] });
    const pods = items({ id: "p", v: 1, group: "ns1" });
    const live = derive(pods, (p, ctx) => (ctx.fetch(namespaces, p.group!) ? p : null));
    const downstream = derive(live, (p) => ({ id: p.id }));
    const r = record(downstream);
    namespaces.delete("ns1");
    expect(r.summary()).toEqual(["delete:p"]);
  });

  it("batching: one upstream batch gives at most one downstream batch", () => {
    const input = items();
    const out = derive(input, (i) => (i.v > 0 ? i : null));
    const r = record(out);
    input.batch(() => {
      for (let n = 0; n < 10; n++) input.set({ id: `i${n}`, v: n });
    });
    expect(r.batches).toHaveLength(1);
    expect(r.batches[0]).toHaveLength(9);
  });

  it("error isolation: one throwing item is reported with its key; the others are computed", () => {
    const errors: [unknown, ErrorInfo][] = [];
    const input = items({ id: "good1", v: 1 }, { id: "bad", v: -1 }, { id: "good2", v: 2 });
    const out = derive(
      input,
      (i) => {
        if (i.v < 0) throw new Error(`negative ${i.id}`);
        return { id: i.id, sqrt: Math.sqrt(i.v) };
      },
      { name: "roots", onError: (e, info) => errors.push([e, info]) },
    );
    expect(sorted(out.keys())).toEqual(["good1", "good2"]);
    expect(errors).toHaveLength(1);
    expect(errors[0]![1]).toEqual({ collection: "roots", key: "bad", phase: "transform" });
    expect(String(errors[0]![0])).toMatch(/negative bad/);

    // fixed: it appears
    input.set({ id: "bad", v: 4 });
    expect(out.get("bad")).toEqual({ id: "bad", sqrt: 2 });
  });

  it("on error the previous output is kept by default, or removed when configured", () => {
    const onError = vi.fn();
    const input = items({ id: "a", v: 1 });
    const keep = derive(input, (i) => {
      if (i.v < 0) throw new Error("boom");
      return { v: i.v };
    }, { onError });
    const remove = derive(input, (i) => {
      if (i.v < 0) throw new Error("boom");
      return { v: i.v };
    }, { onError, onTransformError: "remove" });
    const rk = record(keep);
    const rr = record(remove);
    input.set({ id: "a", v: -1 });
    expect(keep.get("a")).toEqual({ v: 1 });
    expect(rk.batches).toEqual([]);
    expect(remove.has("a")).toBe(false);
    expect(rr.summary()).toEqual(["delete:a"]);
    expect(onError).toHaveBeenCalledTimes(2);
  });

  it("a failing item is retried when what it read before failing changes", () => {
    const cfg = new StaticCollection<{ id: string; ok: boolean }>({ key: byId, items: [{ id: "c", ok: false }] });
    const input = items({ id: "a", v: 1 });
    const out = derive(input, (i, ctx) => {
      if (!ctx.fetch(cfg, "c")?.ok) throw new Error("not ok yet");
      return { id: i.id };
    }, { onError: () => {} });
    expect(out.size).toBe(0);
    cfg.set({ id: "c", ok: true });
    expect(out.keys()).toEqual(["a"]);
  });

  it("Ctx cannot be used after the transformation returned, nor read its own collection", () => {
    const errors: unknown[] = [];
    let leaked: Parameters<Parameters<typeof derive<Item, Item>>[1]>[1] | undefined;
    const input = items({ id: "a", v: 1 });
    const out = derive(input, (i, ctx) => {
      leaked = ctx;
      return i;
    });
    expect(() => leaked!.fetch(input, "a")).toThrow(/after its transformation/);
    const selfish = derive(
      input,
      (i, ctx): Item => {
        ctx.fetch(selfishRef!, "a");
        return i;
      },
      { onError: (e) => errors.push(e) },
    );
    const selfishRef: Collection<Item> | undefined = selfish;
    input.set({ id: "a", v: 2 });
    expect(String(errors.at(-1))).toMatch(/its own collection/);
    expect(out.size).toBe(1);
  });

  it("output key collisions are reported and resolved deterministically (smallest input key wins)", () => {
    const errors: ErrorInfo[] = [];
    const input = items({ id: "b", v: 2, group: "same" }, { id: "a", v: 1, group: "same" });
    const out = derive(input, (i) => ({ k: i.group!, from: i.id }), { key: (o) => o.k, onError: (_e, info) => errors.push(info) });
    expect(out.get("same")).toEqual({ k: "same", from: "a" });
    expect(errors.map((e) => e.phase)).toEqual(["collision"]);
    input.delete("a");
    expect(out.get("same")).toEqual({ k: "same", from: "b" });
  });

  it("synced waits for the input and for every collection read", async () => {
    const input = new StaticCollection<Item>({ key: byId, synced: false, items: [{ id: "a", v: 1 }] });
    const dep = new StaticCollection<Item>({ key: byId, synced: false });
    const out = derive(input, (i, ctx) => ({ id: i.id, d: ctx.fetch(dep, "x")?.v ?? 0 }));
    const inputOnly = derive(input, (i) => i); // made after out: it learns of the input's sync after out did
    let synced = false;
    void out.synced.then(() => (synced = true));
    input.markSynced();
    await inputOnly.synced;
    expect(synced).toBe(false);
    dep.markSynced();
    await out.synced;
    expect(out.isSynced).toBe(true);
  });

  it("dispose stops following the input", () => {
    const input = items({ id: "a", v: 1 });
    const out = derive(input, (i) => i);
    out.dispose();
    input.set({ id: "b", v: 1 });
    expect(out.keys()).toEqual(["a"]);
  });
});

describe("join", () => {
  it("is the union of its sources and follows each of them", () => {
    const a = items({ id: "a1", v: 1 });
    const b = items({ id: "b1", v: 1 });
    const all = join([a, b]);
    expect(sorted(all.keys())).toEqual(["a1", "b1"]);
    const r = record(all);
    a.set({ id: "a2", v: 1 });
    b.delete("b1");
    b.set({ id: "a1x", v: 1 });
    expect(r.summary()).toEqual(["add:a2", "delete:b1", "add:a1x"]);
    expect(all.key({ id: "zz", v: 0 })).toBe("zz");
  });

  it("colliding keys: reported, first source wins, and the other shows when the first leaves", () => {
    const errors: ErrorInfo[] = [];
    const a = items({ id: "k", v: 1 });
    const b = items({ id: "k", v: 2 });
    const all = join([a, b], { name: "j", onError: (_e, info) => errors.push(info) });
    expect(all.get("k")).toEqual({ id: "k", v: 1 });
    expect(errors).toEqual([{ collection: "j", key: "k", phase: "collision" }]);
    const r = record(all);
    a.delete("k");
    expect(r.batches).toEqual([[{ type: "update", key: "k", old: { id: "k", v: 1 }, new: { id: "k", v: 2 } }]]);
  });

  it("colliding keys with a merge function", () => {
    const a = items({ id: "k", v: 1 });
    const b = items({ id: "k", v: 2 });
    const all = join([a, b], { merge: (vs, key) => ({ id: key, v: vs.reduce((s, x) => s + x.v, 0) }) });
    expect(all.get("k")).toEqual({ id: "k", v: 3 });
    b.set({ id: "k", v: 10 });
    expect(all.get("k")).toEqual({ id: "k", v: 11 });
  });

  it("can be fetched from inside a transformation like any collection", () => {
    const a = items({ id: "x", v: 1 });
    const b = items();
    const all = join([a, b]);
    const input = items({ id: "q", v: 0, group: "y" });
    const out = derive(input, (i, ctx) => ({ id: i.id, found: ctx.fetch(all, i.group!) !== undefined }));
    expect(out.get("q")!.found).toBe(false);
    b.set({ id: "y", v: 1 });
    expect(out.get("q")!.found).toBe(true);
  });
});

describe("singleton", () => {
  it("computes one value from what it reads and recomputes when that changes", () => {
    const configMaps = new StaticCollection<{ id: string; data: Record<string, string> }>({
      key: byId,
      items: [{ id: "istio-system/istio", data: { rootNamespace: "istio-system" } }],
    });
    let calls = 0;
    const mesh = singleton((ctx) => {
      calls++;
      const cm = ctx.fetch(configMaps, "istio-system/istio");
      return { rootNamespace: cm?.data["rootNamespace"] ?? "istio-system", trustDomain: cm?.data["trustDomain"] ?? "cluster.local" };
    }, { name: "mesh" });
    expect(mesh.current()).toEqual({ rootNamespace: "istio-system", trustDomain: "cluster.local" });
    const r = record(mesh);
    configMaps.set({ id: "other", data: {} });
    expect(calls).toBe(1);
    configMaps.set({ id: "istio-system/istio", data: { rootNamespace: "istio-system", trustDomain: "example.org" } });
    expect(calls).toBe(2);
    expect(r.summary()).toEqual(["update:singleton"]);
    expect(mesh.current()!.trustDomain).toBe("example.org");
  });

  it("other collections depend on it through fetch", () => {
    const settings = new StaticCollection<{ id: string; factor: number }>({ key: byId, items: [{ id: "s", factor: 2 }] });
    const factor = singleton((ctx) => ctx.fetch(settings, "s")?.factor ?? 1, { key: "factor" });
    const input = items({ id: "a", v: 3 }, { id: "b", v: 4 });
    const scaled = derive(input, (i, ctx) => ({ id: i.id, v: i.v * (ctx.fetch(factor, factor.singletonKey) ?? 1) }));
    expect(scaled.get("a")!.v).toBe(6);
    const r = record(scaled);
    settings.set({ id: "s", factor: 3 });
    expect(r.batches).toHaveLength(1);
    expect(scaled.get("b")!.v).toBe(12);
    settings.delete("s");
    expect(factor.current()).toBe(1);
    expect(scaled.get("a")!.v).toBe(3);
  });

  it("null means empty", () => {
    const flag = new StaticCollection<{ id: string }>({ key: byId });
    const s = singleton((ctx) => (ctx.fetch(flag, "on") ? "yes" : null));
    expect(s.size).toBe(0);
    flag.set({ id: "on" });
    expect(s.current()).toBe("yes");
  });
});

describe("glitch-free enough: a diamond converges", () => {
  it("a derived that reads another derived of the same input ends consistent", () => {
    const input = items({ id: "a", v: 1 });
    const plusOne = derive(input, (i) => ({ id: i.id, v: i.v + 1 }));
    const both = derive(input, (i, ctx) => ({ id: i.id, sum: i.v + (ctx.fetch(plusOne, i.id)?.v ?? 0) }));
    input.set({ id: "a", v: 10 });
    expect(both.get("a")).toEqual({ id: "a", sum: 21 });
  });
});

describe("deepEqual", () => {
  it("compares plain data structurally", () => {
    expect(deepEqual({ a: [1, { b: "x" }], c: null }, { c: null, a: [1, { b: "x" }] })).toBe(true);
    expect(deepEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(deepEqual({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(deepEqual([1, 2], [2, 1])).toBe(false);
    expect(deepEqual([], {})).toBe(false);
    expect(deepEqual(NaN, NaN)).toBe(true);
    expect(deepEqual(0, "0")).toBe(false);
    expect(deepEqual(null, undefined)).toBe(false);
  });

  it("compares bytes, dates, maps and sets", () => {
    expect(deepEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(true);
    expect(deepEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4]))).toBe(false);
    expect(deepEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3]))).toBe(false);
    expect(deepEqual(new Uint8Array([1]), new Int8Array([1]))).toBe(false);
    expect(deepEqual(Buffer.from([1, 2]).subarray(1), new Uint8Array([2]))).toBe(false); // Buffer ≠ Uint8Array type
    expect(deepEqual(new Uint8Array([0, 9, 2]).subarray(1), new Uint8Array([9, 2]))).toBe(true);
    expect(deepEqual({ ip: new Uint8Array([10, 0, 0, 1]) }, { ip: new Uint8Array([10, 0, 0, 1]) })).toBe(true);
    expect(deepEqual(new Date(5), new Date(5))).toBe(true);
    expect(deepEqual(new Date(5), new Date(6))).toBe(false);
    expect(deepEqual(new Map([["a", { x: 1 }]]), new Map([["a", { x: 1 }]]))).toBe(true);
    expect(deepEqual(new Map([["a", 1]]), new Map([["b", 1]]))).toBe(false);
    expect(deepEqual(new Set(["a", "b"]), new Set(["b", "a"]))).toBe(true);
    expect(deepEqual(new Set(["a"]), new Set(["b"]))).toBe(false);
  });

  it("objects of different classes differ", () => {
    class A {
      x = 1;
    }
    expect(deepEqual(new A(), { x: 1 })).toBe(false);
    expect(deepEqual(new A(), new A())).toBe(true);
  });
});
