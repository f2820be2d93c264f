// Requests are limited to 4 MiB, as istiod limits them, and a larger one is refused from its length prefix: the
// server never reads (nor buffers) the rest, and the client is stopped. Responses may still be large.
import * as grpc from "@grpc/grpc-js";
import { DeltaDiscoveryRequest } from "@ambit/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { DELTA_ADS_PATH, MAX_REQUEST_BYTES, grpcStatusOf, sendOversizedRequest, type DeltaXdsServer } from "../src/index.js";
import { ADDRESS, RawClient, bytes, startServer } from "./helpers.js";

let server: DeltaXdsServer | undefined;
afterEach(async () => {
  await server?.close(100);
  server = undefined;
});

/** A first request whose encoding is at least `size` bytes (initial_resource_versions, as a large resuming client sends). */
const requestOfSize = (size: number) => {
  const versions: Record<string, string> = {};
  for (let i = 0; i * 1000 < size; i++) versions[`n${i}`] = "v".repeat(1000);
  const req = { type_url: ADDRESS, node: { id: "ztunnel~10.0.0.1~z.istio-system~istio-system.svc.cluster.local" }, resource_names_subscribe: ["*"], initial_resource_versions: versions };
  expect(DeltaDiscoveryRequest.encode(req).finish().byteLength).toBeGreaterThanOrEqual(size);
  return req;
};

describe("request size limit", () => {
  it("serves a request under 4 MiB and refuses one over it with RESOURCE_EXHAUSTED", async () => {
    const s = await startServer();
    server = s.server;
    s.server.set(ADDRESS, "a", bytes("1"));
    const ok = new RawClient(s.port);
    ok.send(requestOfSize(3 * 1024 * 1024)); // under the limit, as MAX_REQUEST_BYTES allows
    expect((await ok.next()).type_url).toBe(ADDRESS);
    ok.close();
    const big = new RawClient(s.port);
    big.send(requestOfSize(MAX_REQUEST_BYTES + 1024));
    const status = await big.statusPromise;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(/larger than max .* vs 4194304/);
    big.close();
  });

  it("stops a client that claims 150 MiB after its length prefix: RESOURCE_EXHAUSTED, the stream reset, the rest never sent", async () => {
    const s = await startServer();
    server = s.server;
    const r = await sendOversizedRequest(`http://127.0.0.1:${s.port}`, DELTA_ADS_PATH, 150 * 1024 * 1024);
    expect(grpcStatusOf(r)).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // The server read the prefix and at most a flow-control window of the rest; the client could not send more
    // than what sat in the socket buffers when the reset came.
    expect(r.bytesOnWire).toBeLessThan(16 * 1024 * 1024);
  });

  it("does not read an unauthenticated stream: UNAUTHENTICATED, and the claimed 150 MiB are never sent", async () => {
    const s = await startServer({ authenticate: () => { throw new Error("no token"); } });
    server = s.server;
    const r = await sendOversizedRequest(`http://127.0.0.1:${s.port}`, DELTA_ADS_PATH, 150 * 1024 * 1024);
    expect(grpcStatusOf(r)).toBe(grpc.status.UNAUTHENTICATED);
    expect(r.bytesOnWire).toBeLessThan(16 * 1024 * 1024);
  });

  it("refuses a node id longer than 1024 characters (it would be in every log line about the stream)", async () => {
    const s = await startServer();
    server = s.server;
    const c = new RawClient(s.port);
    c.open(ADDRESS, {}, `ztunnel~10.0.0.1~z.istio-system~${"d".repeat(2000)}`);
    const status = await c.statusPromise;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toMatch(/longer than 1024 characters/);
    expect(status.details.length).toBeLessThan(400);
    c.close();
  });

  it("a status the server ends a stream with still reaches the client before the reset", async () => {
    const s = await startServer({ authorize: () => false });
    server = s.server;
    for (let i = 0; i < 20; i++) {
      const c = new RawClient(s.port);
      c.open(ADDRESS);
      const status = await c.statusPromise;
      expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
      c.close();
    }
  });
});
