// What a client can make the server keep: at most MAX_WATCHES_PER_STREAM resource types per stream (the next one
// ends the stream with RESOURCE_EXHAUSTED), and type URLs the server does not know share one metric label.
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_WATCHES_PER_STREAM, type DeltaXdsServer } from "../src/index.js";
import { ADDRESS, RawClient, startServer, until } from "./helpers.js";

let server: DeltaXdsServer | undefined;
afterEach(async () => {
  await server?.close(100);
  server = undefined;
});

describe("what one client can make the server keep", () => {
  it(`a stream watching more than ${MAX_WATCHES_PER_STREAM} resource types is ended with RESOURCE_EXHAUSTED`, async () => {
    const s = await startServer();
    server = s.server;
    const c = new RawClient(s.port);
    c.open(ADDRESS);
    await c.nextAcked();
    for (let i = 1; i < MAX_WATCHES_PER_STREAM; i++) c.send({ type_url: `type.example/t${i}` });
    await until(() => s.server.debugConnections()[0]?.watches.length === MAX_WATCHES_PER_STREAM, 30_000, "every watch registered");
    expect(c.status).toBeNull();
    c.send({ type_url: "type.example/one-too-many" });
    const status = await c.statusPromise;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toBe(`more than ${MAX_WATCHES_PER_STREAM} resource types on one stream (the last was "type.example/one-too-many")`);
    await until(() => s.server.debugConnections().length === 0, 30_000, "the connection dropped");
    c.close();
  });

  it("type URLs the server does not know are counted under one label, not one series each", async () => {
    const s = await startServer();
    server = s.server;
    const c = new RawClient(s.port);
    c.open(ADDRESS);
    await c.nextAcked();
    for (let i = 0; i < 5; i++) c.send({ type_url: `type.example/made-up-${i}` });
    await until(() => s.server.debugConnections()[0]?.watches.length === 6, 30_000, "every watch registered");
    const text = await s.registry.metrics();
    expect(text).not.toMatch(/made-up/);
    expect(text).toMatch(/type="other"/);
    c.close();
  });
});
