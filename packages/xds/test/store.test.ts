import { describe, expect, it } from "vitest";
import { DeltaDiscoveryResponse, Resource, packAddress } from "@ambit/protocol";
import { ResourceStore, contentVersion, encodeDeltaResponse } from "../src/index.js";
import { ADDRESS, bytes } from "./helpers.js";

describe("ResourceStore", () => {
  it("versions are content hashes: same bytes, same version", () => {
    const a = new ResourceStore();
    const b = new ResourceStore();
    a.set(ADDRESS, "x", bytes("hello"));
    b.set(ADDRESS, "other-name", bytes("hello"));
    expect(a.get(ADDRESS, "x")!.version).toBe(b.get(ADDRESS, "other-name")!.version);
    expect(a.get(ADDRESS, "x")!.version).toMatch(/^[0-9a-f]{16}$/);
    expect(a.get(ADDRESS, "x")!.version).toBe(contentVersion(bytes("hello")));
    a.set(ADDRESS, "x", bytes("hello!"));
    expect(a.get(ADDRESS, "x")!.version).not.toBe(b.get(ADDRESS, "other-name")!.version);
  });

  it("an unchanged set is a no-op and notifies nobody", () => {
    const store = new ResourceStore();
    const seen: string[][] = [];
    store.onChange((_t, names) => seen.push([...names]));
    expect(store.set(ADDRESS, "x", bytes("1"))).toBe(true);
    expect(store.set(ADDRESS, "x", bytes("1"))).toBe(false);
    expect(store.set(ADDRESS, "x", bytes("1"), { aliases: ["/10.0.0.1"] })).toBe(true);
    expect(store.delete(ADDRESS, "nope")).toBe(false);
    expect(store.update(ADDRESS, [{ name: "x", resource: bytes("1"), aliases: ["/10.0.0.1"] }, { name: "y", resource: bytes("2") }], ["nope"])).toEqual(["y"]);
    expect(seen).toEqual([["x"], ["x"], ["y"]]);
  });

  it("accepts an Any of its own type only, and encodes the envoy Resource once", () => {
    const store = new ResourceStore();
    const any = packAddress({ workload: { uid: "c//Pod/ns/p", name: "p", namespace: "ns" } });
    store.set(ADDRESS, "c//Pod/ns/p", any, { aliases: ["/10.0.0.5", "/10.0.0.5"] });
    const r = store.get(ADDRESS, "c//Pod/ns/p")!;
    expect(r.aliases).toEqual(["/10.0.0.5"]);
    const decoded = Resource.decode(r.encoded);
    expect(decoded.name).toBe("c//Pod/ns/p");
    expect(decoded.version).toBe(r.version);
    expect(decoded.aliases).toEqual(["/10.0.0.5"]);
    expect(decoded.resource?.type_url).toBe(ADDRESS);
    expect(Buffer.from(decoded.resource!.value!)).toEqual(Buffer.from(any.value));
    expect(() => store.set("type.googleapis.com/istio.security.Authorization", "x", any)).toThrow(/packed as/);
    expect(() => store.set(ADDRESS, "", bytes("x"))).toThrow(/name is required/);
  });

  it("indexes aliases and keeps the index right on change and removal", () => {
    const store = new ResourceStore();
    store.set(ADDRESS, "w1", bytes("1"), { aliases: ["/10.0.0.1"] });
    store.set(ADDRESS, "svc", bytes("2"), { aliases: ["/10.96.0.1", "/10.0.0.1"] });
    expect(store.byAlias(ADDRESS, "/10.0.0.1").map((r) => r.name).sort()).toEqual(["svc", "w1"]);
    store.set(ADDRESS, "w1", bytes("1"), { aliases: ["/10.0.0.2"] });
    expect(store.byAlias(ADDRESS, "/10.0.0.1").map((r) => r.name)).toEqual(["svc"]);
    store.delete(ADDRESS, "svc");
    expect(store.byAlias(ADDRESS, "/10.0.0.1")).toEqual([]);
    expect(store.byAlias(ADDRESS, "/10.0.0.2").map((r) => r.name)).toEqual(["w1"]);
  });

  it("replace() removes what is not in the new content", () => {
    const store = new ResourceStore();
    store.update(ADDRESS, [{ name: "a", resource: bytes("a") }, { name: "b", resource: bytes("b") }]);
    expect(store.replace(ADDRESS, [{ name: "a", resource: bytes("a") }, { name: "c", resource: bytes("c") }]).sort()).toEqual(["b", "c"]);
    expect(store.names(ADDRESS).sort()).toEqual(["a", "c"]);
  });
});

describe("encodeDeltaResponse", () => {
  it("produces what the protobuf decoder reads back", () => {
    const store = new ResourceStore();
    store.set(ADDRESS, "a", bytes("x".repeat(300)), { aliases: ["/1.2.3.4"] });
    store.set(ADDRESS, "ü-name", bytes(""));
    const encoded = encodeDeltaResponse({
      typeUrl: ADDRESS,
      nonce: "n-1",
      resources: [store.get(ADDRESS, "a")!.encoded, store.get(ADDRESS, "ü-name")!.encoded],
      removed: ["gone", "gone-too"],
    });
    const r = DeltaDiscoveryResponse.decode(encoded);
    expect(r.type_url).toBe(ADDRESS);
    expect(r.nonce).toBe("n-1");
    expect(r.removed_resources).toEqual(["gone", "gone-too"]);
    expect(r.resources.map((x) => x.name)).toEqual(["a", "ü-name"]);
    expect(r.resources[0]!.aliases).toEqual(["/1.2.3.4"]);
    expect(r.resources[0]!.resource!.value!.length).toBe(300);
    // Byte-identical to protobufjs' own encoding of the same message.
    const reference = DeltaDiscoveryResponse.encode({
      resources: [Resource.decode(store.get(ADDRESS, "a")!.encoded), Resource.decode(store.get(ADDRESS, "ü-name")!.encoded)],
      type_url: ADDRESS,
      nonce: "n-1",
      removed_resources: ["gone", "gone-too"],
    }).finish();
    expect(Buffer.from(encoded)).toEqual(Buffer.from(reference));
    expect(encodeDeltaResponse({ typeUrl: "", nonce: "", resources: [], removed: [] }).length).toBe(0);
  });
});
