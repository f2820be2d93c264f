// What one authenticated stream can make the server keep through names: type URLs over MAX_TYPE_URL_CHARS and
// resource names over MAX_RESOURCE_NAME_CHARS end the stream with INVALID_ARGUMENT (and are never logged whole);
// explicit subscriptions beyond the per-watch and per-stream caps end it with RESOURCE_EXHAUSTED. Each refusal
// counts in ambit_xds_rejected_streams. And one HTTP/2 connection may open at most MAX_STREAMS_PER_CONNECTION streams.
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_RESOURCE_NAME_CHARS, MAX_STREAMS_PER_CONNECTION, MAX_TYPE_URL_CHARS, type DeltaXdsServer, type Logger } from "../src/index.js";
import { ADDRESS, AUTHZ, RawClient, startServer, until } from "./helpers.js";

let server: DeltaXdsServer | undefined;
let client: RawClient | undefined;
afterEach(async () => {
  client?.close();
  await server?.close(100);
  server = client = undefined;
});

/** A server whose log lines are kept, and a connected client (its first response of ADDRESS read). */
async function connected(options: { maxSubscriptionsPerWatch?: number; maxSubscriptionsPerStream?: number } = {}) {
  const lines: string[] = [];
  const line = (obj: object, msg?: string): void => void lines.push(`${msg} ${JSON.stringify(obj)}`);
  const logger: Logger = { debug: line, info: line, warn: line, error: line };
  const s = await startServer({ logger, ...options });
  server = s.server;
  client = new RawClient(s.port);
  client.open(ADDRESS, { resource_names_subscribe: ["x"] });
  await client.nextAcked();
  const rejected = async (code: string): Promise<number> =>
    (await s.registry.getSingleMetric("ambit_xds_rejected_streams")!.get()).values.find((v) => v.labels["code"] === code)?.value ?? 0;
  return { c: client, port: s.port, lines, rejected };
}

describe("names a client may send", () => {
  it(`a type URL longer than ${MAX_TYPE_URL_CHARS} characters: INVALID_ARGUMENT, never logged or kept whole`, async () => {
    const { c, lines, rejected } = await connected();
    const long = "type.googleapis.com/" + "A".repeat(3_000_000);
    c.send({ type_url: long });
    const status = await c.statusPromise;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toMatch(new RegExp(`^type URL "type\\.googleapis\\.com/A+… \\(\\d+ more characters\\)" is longer than ${MAX_TYPE_URL_CHARS} characters$`));
    expect(status.details.length).toBeLessThan(200);
    expect(await rejected("INVALID_ARGUMENT")).toBe(1);
    await until(() => server!.debugConnections().length === 0, 30_000, "the connection dropped");
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(2000);
  });

  it(`a type URL of exactly ${MAX_TYPE_URL_CHARS} characters is served`, async () => {
    const { c } = await connected();
    const type = "type.example/" + "t".repeat(MAX_TYPE_URL_CHARS - "type.example/".length);
    c.send({ type_url: type });
    const r = await c.next();
    expect(r.type_url).toBe(type);
  });

  for (const [field, req] of [
    ["resource_names_subscribe", (n: string) => ({ type_url: ADDRESS, resource_names_subscribe: [n] })],
    ["resource_names_unsubscribe", (n: string) => ({ type_url: ADDRESS, resource_names_unsubscribe: [n] })],
    ["initial_resource_versions", (n: string) => ({ type_url: AUTHZ, resource_names_subscribe: ["a"], initial_resource_versions: { [n]: "v1" } })],
  ] as const) {
    it(`a resource name longer than ${MAX_RESOURCE_NAME_CHARS} characters in ${field}: INVALID_ARGUMENT`, async () => {
      const { c, rejected } = await connected();
      c.send(req("n".repeat(MAX_RESOURCE_NAME_CHARS + 1)));
      const status = await c.statusPromise;
      expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.details).toMatch(new RegExp(`^resource name "n{64}… \\(\\d+ more characters\\)" is longer than ${MAX_RESOURCE_NAME_CHARS} characters$`));
      expect(await rejected("INVALID_ARGUMENT")).toBe(1);
    });
  }

  it("subscriptions beyond the per-watch cap (names and initial_resource_versions): RESOURCE_EXHAUSTED", async () => {
    const { c, port, rejected } = await connected({ maxSubscriptionsPerWatch: 1000 });
    // Up to the cap is served ("x" is subscribed already).
    c.send({ type_url: ADDRESS, resource_names_subscribe: Array.from({ length: 999 }, (_, i) => `n${i}`) });
    await until(() => server!.debugConnections()[0]?.watches[0]?.subscriptions.length === 1000, 30_000, "1000 subscriptions");
    expect(c.status).toBeNull();
    c.send({ type_url: ADDRESS, resource_names_subscribe: ["one-too-many"] });
    const status = await c.statusPromise;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toBe(`more than 1000 subscribed names for type "${ADDRESS}"`);
    expect(await rejected("RESOURCE_EXHAUSTED")).toBe(1);
    await until(() => server!.debugConnections().length === 0, 30_000, "the connection dropped");

    const again = new RawClient(port);
    // A named watch counts the names it says it has (initial_resource_versions) as subscribed.
    again.open(AUTHZ, { resource_names_subscribe: ["a"], initial_resource_versions: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`r${i}`, "v"])) });
    expect((await again.statusPromise).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    again.close();
  });

  it("subscriptions beyond the per-stream cap, over several types: RESOURCE_EXHAUSTED", async () => {
    const { c } = await connected({ maxSubscriptionsPerWatch: 1000, maxSubscriptionsPerStream: 1500 });
    c.send({ type_url: AUTHZ, resource_names_subscribe: Array.from({ length: 1000 }, (_, i) => `a${i}`) });
    await until(() => server!.debugConnections()[0]?.watches.length === 2, 30_000, "the second watch");
    c.send({ type_url: "type.example/third", resource_names_subscribe: Array.from({ length: 500 }, (_, i) => `b${i}`) });
    const status = await c.statusPromise;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toBe("more than 1500 subscribed names on one stream");
  });

  it(`one HTTP/2 connection is told it may open ${MAX_STREAMS_PER_CONNECTION} streams at once`, async () => {
    const s = await startServer();
    server = s.server;
    const session = http2.connect(`http://127.0.0.1:${s.port}`);
    session.on("error", () => {});
    await new Promise<void>((r) => session.once("remoteSettings", () => r()));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(MAX_STREAMS_PER_CONNECTION);
    session.destroy();
  });
});
