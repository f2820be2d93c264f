// NACKs cannot flood the log: thousands from one client give a bounded number of lines (the first of each
// (nonce, error), within per-stream and global rate limits, and one summary of the rest), while
// pilot_total_xds_rejects counts every one. The client's error text is cut to a bounded length.
import { afterEach, describe, expect, it } from "vitest";
import type { DeltaXdsServer, Logger } from "../src/index.js";
import { ADDRESS, RawClient, bytes, startServer, until } from "./helpers.js";

let server: DeltaXdsServer | undefined;
afterEach(async () => {
  await server?.close(100);
  server = undefined;
});

/** A logger that keeps every line as the JSON a log shipper would see. */
function capture(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const line = (level: string) => (obj: object, msg?: string) => lines.push(JSON.parse(JSON.stringify({ level, msg, ...obj })) as Record<string, unknown>);
  return { logger: { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") }, lines };
}

const rejects = async (registry: { metrics(): Promise<string> }) => Number(/pilot_total_xds_rejects\{type="wds"\} (\d+)/.exec(await registry.metrics())?.[1] ?? 0);

describe("NACK logging", () => {
  it("5,000 NACKs from one client: every one counted, a bounded number of lines, the rest summarised", async () => {
    const { logger, lines } = capture();
    const s = await startServer({ logger, clientLogLimits: { summaryIntervalMs: 200 } });
    server = s.server;
    s.server.set(ADDRESS, "a", bytes("1"));
    const c = new RawClient(s.port);
    c.open(ADDRESS);
    const r = await c.next();
    const N = 5000;
    for (let i = 0; i < N; i++) c.ack(r, `a: cannot parse (attempt ${i})`);
    await until(() => s.server.debugConnections()[0]?.watches[0]?.nackCount === N, 60_000, "every NACK received");
    expect(await rejects(s.registry)).toBe(N);
    const nackLines = () => lines.filter((l) => l["msg"] === "xDS NACK");
    const suppressed = () => lines.filter((l) => typeof l["suppressed"] === "object").reduce((sum, l) => sum + ((l["suppressed"] as Record<string, number>)["xDS NACK"] ?? 0), 0);
    // Every NACK is either a line or in a summary.
    await until(() => nackLines().length + suppressed() === N, 30_000, "the summary of the NACKs not logged");
    // The stream's burst (3), refilled by one line a minute at most during the test.
    expect(nackLines().length).toBeLessThanOrEqual(5);
    expect(nackLines()[0]).toMatchObject({ level: "warn", typeUrl: ADDRESS, nonce: r.nonce, message: "a: cannot parse (attempt 0)" });
    c.close();
  });

  it("a repeated NACK (same nonce, same error) is logged once", async () => {
    const { logger, lines } = capture();
    const s = await startServer({ logger, clientLogLimits: { streamBurst: 100, globalBurst: 100 } });
    server = s.server;
    const c = new RawClient(s.port);
    c.open(ADDRESS);
    const r = await c.next();
    for (let i = 0; i < 50; i++) c.ack(r, "same error");
    await until(() => s.server.debugConnections()[0]?.watches[0]?.nackCount === 50, 30_000, "every NACK received");
    expect(lines.filter((l) => l["msg"] === "xDS NACK")).toHaveLength(1);
    expect(await rejects(s.registry)).toBe(50);
    c.close();
  });

  it("many streams share one global limit", async () => {
    const { logger, lines } = capture();
    const s = await startServer({ logger, clientLogLimits: { globalBurst: 5, globalIntervalMs: 3_600_000 } });
    server = s.server;
    const clients = Array.from({ length: 10 }, () => new RawClient(s.port));
    for (const c of clients) {
      c.open(ADDRESS);
      const r = await c.next();
      for (let i = 0; i < 3; i++) c.ack(r, `error ${i}`);
    }
    await until(() => s.server.debugConnections().reduce((n, d) => n + (d.watches[0]?.nackCount ?? 0), 0) === 30, 30_000, "every NACK received");
    expect(lines.filter((l) => l["msg"] === "xDS NACK")).toHaveLength(5);
    expect(await rejects(s.registry)).toBe(30);
    for (const c of clients) c.close();
  });

  it("refused streams and requests without type_url are rate-limited the same way", async () => {
    const { logger, lines } = capture();
    const s = await startServer({ logger, authenticate: () => { throw new Error("no token"); }, clientLogLimits: { globalBurst: 5, globalIntervalMs: 3_600_000 } });
    server = s.server;
    for (let i = 0; i < 30; i++) {
      const c = new RawClient(s.port);
      c.open(ADDRESS);
      await c.statusPromise;
      c.close();
    }
    expect(lines.filter((l) => l["msg"] === "xDS stream ended")).toHaveLength(5);
    expect(await s.registry.metrics()).toMatch(/ambit_xds_rejected_streams\{code="UNAUTHENTICATED"\} 30/);
    await s.server.close(100);
    server = undefined;
    expect(lines.find((l) => typeof l["suppressed"] === "object")).toMatchObject({ suppressed: { "xDS stream ended": 25 } });

    const { logger: logger2, lines: lines2 } = capture();
    const t = await startServer({ logger: logger2 });
    server = t.server;
    const c = new RawClient(t.port);
    c.open(ADDRESS);
    const r = await c.next();
    for (let i = 0; i < 100; i++) c.send({ response_nonce: "x" });
    c.ack(r, "marker"); // requests are handled in order: once this NACK is counted, the 100 were handled
    await until(() => t.server.debugConnections()[0]?.watches[0]?.nackCount === 1, 30_000, "the marker");
    expect(lines2.filter((l) => l["msg"] === "xDS request without type_url ignored")).toHaveLength(3);
    c.close();
  });

  it("cuts the client's error text (and keeps only the cut text for /debug/connections)", async () => {
    const { logger, lines } = capture();
    const s = await startServer({ logger });
    server = s.server;
    const c = new RawClient(s.port);
    c.open(ADDRESS);
    const r = await c.next();
    c.ack(r, "x".repeat(100_000));
    await until(() => lines.some((l) => l["msg"] === "xDS NACK"), 30_000, "the NACK line");
    const message = lines.find((l) => l["msg"] === "xDS NACK")!["message"] as string;
    expect(message).toBe(`${"x".repeat(1024)}… (${100_000 - 1024} more characters)`);
    expect(s.server.debugConnections()[0]!.watches[0]!.lastNack!.message).toBe(message);
    c.close();
  });
});
