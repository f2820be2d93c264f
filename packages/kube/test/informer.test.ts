// Informer collections over client-node's ListWatch, against a fake list+watch endpoint (real HTTP, real ListWatch
// and Watch code; the fake produces expiries, dropped watches and failing lists on demand).

import { Watch } from "@kubernetes/client-node";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { z } from "zod";
import {
  PodSchema,
  informerCollection,
  kubeContentEqual,
  listJson,
  resourceTypes,
  source,
  type Batch,
  type ErrorInfo,
  type InformerCollection,
  type Pod,
} from "../src/index.js";
import { FakeApiServer, until } from "./fake-apiserver.js";

const PATH = "/api/v1/pods";

function pod(name: string, extra: { ip?: string; labels?: Record<string, string>; containers?: unknown } = {}) {
  return {
    metadata: { name, namespace: "default", uid: `uid-${name}`, labels: extra.labels ?? { app: "web" } },
    spec: { nodeName: "n1", containers: extra.containers ?? [{ name: "app" }] },
    status: { phase: "Running", podIP: extra.ip ?? "10.0.0.1" },
  };
}

let api: FakeApiServer;
let informer: InformerCollection<Pod> | undefined;
let batches: Batch<Pod>[];
let errors: [unknown, ErrorInfo][];
let invalid: [unknown, z.ZodError][];

beforeEach(async () => {
  api = new FakeApiServer(PATH);
  await api.start();
  batches = [];
  errors = [];
  invalid = [];
});

afterEach(async () => {
  vi.restoreAllMocks();
  await informer?.stop();
  informer = undefined;
  await api.close();
});

function start(opts: { labelSelector?: string; fieldSelector?: string; pageSize?: number } = {}): InformerCollection<Pod> {
  const kc = api.kubeConfig();
  informer = informerCollection(kc, {
    path: PATH,
    list: (sel) => listJson(kc, PATH, sel, opts.pageSize ?? 500),
    schema: PodSchema,
    labelSelector: opts.labelSelector,
    fieldSelector: opts.fieldSelector,
    onInvalid: (obj, err) => invalid.push([obj, err]),
    onError: (err, info) => errors.push([err, info]),
    backoff: { initialMs: 10, maxMs: 50 },
  });
  informer.subscribe((b) => batches.push(b));
  return informer;
}

/** Resolves after every promise job and nextTick queued so far (and those they queue) has run: no time passes. */
const drainTicks = () => new Promise<void>((resolve) => setImmediate(resolve));

const summary = () => batches.flat().map((e) => `${e.type}:${e.key}`);

describe("informerCollection", () => {
  it("lists, validates (invalid objects are absent and reported), then follows the watch", async () => {
    api.upsert(pod("a"));
    api.upsert(pod("b"));
    api.upsert(pod("broken", { containers: "not-a-list" }));
    const inf = start();
    await inf.synced;
    expect(inf.isSynced).toBe(true);
    expect(inf.keys().sort()).toEqual(["default/a", "default/b"]);
    expect(invalid).toHaveLength(1);
    expect((invalid[0]![0] as { metadata: { name: string } }).metadata.name).toBe("broken");
    await until(() => api.watcherCount === 1, 5000, "watch");

    api.upsert(pod("c"));
    api.upsert(pod("a", { ip: "10.0.0.9" }));
    api.remove("default/b");
    await until(() => summary().length >= 5, 5000, "events");
    expect(summary()).toEqual(["add:default/a", "add:default/b", "add:default/c", "update:default/a", "delete:default/b"]);
    expect(inf.get("default/a")?.status?.podIP).toBe("10.0.0.9");
    expect(invalid).toHaveLength(1); // the broken one is not re-validated when the ListWatch replays the list
  });

  it("a resourceVersion-only change (or managedFields) emits nothing but refreshes the stored object", async () => {
    api.upsert(pod("a"));
    const inf = start();
    await inf.synced;
    await until(() => api.watcherCount === 1);
    batches.length = 0;
    const stored = api.upsert({ ...pod("a"), metadata: { ...pod("a").metadata, managedFields: [{ manager: "kubectl" }] } as never });
    await until(() => inf.get("default/a")?.metadata.resourceVersion === stored.metadata.resourceVersion);
    api.upsert(pod("a", { ip: "10.0.0.2" }));
    await until(() => batches.length > 0);
    expect(summary()).toEqual(["update:default/a"]);
  });

  it("an update to an invalid object removes the previous valid version; a valid one brings it back", async () => {
    api.upsert(pod("a"));
    const inf = start();
    await inf.synced;
    await until(() => api.watcherCount === 1);
    batches.length = 0;
    api.upsert(pod("a", { containers: [{ name: "app", ports: [{ containerPort: 99999 }] }] }));
    await until(() => batches.length > 0);
    expect(summary()).toEqual(["delete:default/a"]);
    expect(invalid[0]![1].issues[0]!.path).toEqual(["spec", "containers", 0, "ports", 0, "containerPort"]);
    api.upsert(pod("a", { ip: "10.0.0.3" }));
    await until(() => batches.length > 1);
    expect(summary()).toEqual(["delete:default/a", "add:default/a"]);
  });

  it("watch events arriving together are delivered as one batch", async () => {
    const inf = start();
    await inf.synced;
    await until(() => api.watcherCount === 1);
    api.burst([pod("x"), pod("y"), pod("z")]);
    await until(() => inf.size === 3);
    // A later event on the same stream: once it is in, nothing more of the burst can follow.
    api.upsert(pod("w"));
    await until(() => inf.has("default/w"));
    expect(batches.map((b) => b.map((e) => e.key))).toEqual([["default/x", "default/y", "default/z"], ["default/w"]]);
  });

  it("relists after an expired watch (410): one batch with adds, updates and deletes of vanished objects", async () => {
    api.upsert(pod("keep"));
    api.upsert(pod("change"));
    api.upsert(pod("gone"));
    const inf = start();
    await inf.synced;
    await until(() => api.watcherCount === 1);
    batches.length = 0;
    const listsBefore = api.requests.filter((u) => !u.searchParams.has("watch")).length;

    // Changes the informer does not see as events (as if they happened while the watch was down).
    api.remove("default/gone", { silent: true });
    api.upsert(pod("change", { ip: "10.0.0.7" }), { silent: true });
    api.upsert(pod("new"), { silent: true });
    api.expireWatches();

    await until(() => batches.length > 0, 5000, "relist");
    await until(() => api.watcherCount === 1, 5000, "re-watch");
    expect(api.requests.filter((u) => !u.searchParams.has("watch")).length).toBe(listsBefore + 1);
    expect(batches).toHaveLength(1);
    expect(summary().sort()).toEqual(["add:default/new", "delete:default/gone", "update:default/change"]);
    expect(inf.keys().sort()).toEqual(["default/change", "default/keep", "default/new"]);
  });

  it("restarts with back-off after the watch breaks or fails, and after failing lists", async () => {
    api.failLists = 2;
    api.upsert(pod("a"));
    const inf = start();
    await inf.synced;
    expect(errors.filter(([, i]) => i.phase === "watch")).toHaveLength(2);
    await until(() => api.watcherCount === 1);

    api.failWatches = 1;
    api.dropWatches();
    await until(() => api.watcherCount === 1, 5000, "watch restarted");
    expect(errors.filter(([, i]) => i.phase === "watch").length).toBeGreaterThanOrEqual(3);
    api.upsert(pod("b"));
    await until(() => inf.has("default/b"), 5000, "event after restart");
  });

  it("passes label and field selectors to both the list and the watch; pages long lists", async () => {
    for (let i = 0; i < 7; i++) api.upsert(pod(`p${i}`));
    const inf = start({ labelSelector: "app=web", fieldSelector: "spec.nodeName=n1", pageSize: 3 });
    await inf.synced;
    await until(() => api.watcherCount === 1);
    expect(inf.size).toBe(7);
    const lists = api.requests.filter((u) => !u.searchParams.has("watch"));
    expect(lists).toHaveLength(3); // 3 + 3 + 1
    const watch = api.requests.find((u) => u.searchParams.get("watch") === "true")!;
    for (const u of [lists[0]!, watch]) {
      expect(u.searchParams.get("labelSelector")).toBe("app=web");
      expect(u.searchParams.get("fieldSelector")).toBe("spec.nodeName=n1");
    }
  });

  it("stop ends the watch and restarts nothing; nothing more is applied", async () => {
    api.upsert(pod("a"));
    const watches = vi.spyOn(Watch.prototype, "watch");
    const inf = start();
    await inf.synced;
    await until(() => api.watcherCount === 1);
    const requests = api.requests.length;
    await inf.stop();
    await until(() => api.watcherCount === 0, 5000, "watch closed");
    await drainTicks(); // the aborted watch's end has been handled
    // A restart goes through a reported failure (then a back-off timer) or a new watch: neither happened.
    expect(errors).toEqual([]);
    expect(watches).toHaveBeenCalledTimes(1);
    expect(api.requests).toHaveLength(requests);
    expect(inf.isRunning).toBe(false);
    api.upsert(pod("b")); // no watch is open to carry it
    expect(inf.has("default/b")).toBe(false);
  });
});

describe("CustomObjectsApi lister", () => {
  it("lists a CRD with CustomObjectsApi and returns the raw JSON", async () => {
    await api.close();
    api = new FakeApiServer("/apis/security.istio.io/v1/authorizationpolicies");
    await api.start();
    api.upsert({ metadata: { name: "deny", namespace: "default", creationTimestamp: "2025-01-01T00:00:00Z" }, spec: { action: "DENY" } } as never);
    const src = source(api.kubeConfig(), resourceTypes.authorizationPolicies);
    expect(src.path).toBe("/apis/security.istio.io/v1/authorizationpolicies");
    const list = await src.list({ labelSelector: "x=y" });
    expect(list.items).toHaveLength(1);
    // plain JSON, not a model class with Date objects
    expect((list.items[0] as { metadata: { creationTimestamp: unknown } }).metadata.creationTimestamp).toBe("2025-01-01T00:00:00Z");
    expect(api.requests[0]!.searchParams.get("labelSelector")).toBe("x=y");
  });
});

describe("kubeContentEqual", () => {
  it("ignores resourceVersion and managedFields only", () => {
    const a = { metadata: { name: "a", resourceVersion: "1", managedFields: [1] }, spec: { x: 1 } };
    expect(kubeContentEqual(a, { metadata: { name: "a", resourceVersion: "2" }, spec: { x: 1 } })).toBe(true);
    expect(kubeContentEqual(a, { metadata: { name: "a", resourceVersion: "2", generation: 2 }, spec: { x: 1 } })).toBe(false);
    expect(kubeContentEqual(a, { metadata: { name: "a", resourceVersion: "1" }, spec: { x: 2 } })).toBe(false);
  });
});

describe("informerCollection stop while listing", () => {
  it("does not open a watch when stopped before the list returned", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let listed!: () => void;
    const listReturned = new Promise<void>((r) => (listed = r));
    const watches = vi.spyOn(Watch.prototype, "watch");
    const kc = api.kubeConfig();
    const inf = informerCollection(kc, {
      path: PATH,
      list: async (sel) => {
        await gate;
        const list = await listJson(kc, PATH, sel);
        listed();
        return list;
      },
      schema: PodSchema,
      onError: (err, info) => errors.push([err, info]),
    });
    await inf.stop();
    release();
    await listReturned;
    await drainTicks(); // what follows a returned list (applying it, opening the watch) runs in promise jobs
    expect(watches).not.toHaveBeenCalled();
    expect(api.requests.filter((u) => u.searchParams.get("watch") === "true")).toHaveLength(0);
    expect(inf.isSynced).toBe(false);
    expect(errors).toEqual([]);
  });
});
