// Stream churn cannot flood the log: "xDS client connected"/"disconnected" pass the shared limit of client-caused
// lines (the first ones are written, the rest counted in the summary line).
import { describe, expect, it } from "vitest";
import type { Logger } from "../src/index.js";
import { ADDRESS, RawClient, startServer, until } from "./helpers.js";

describe("connection log lines", () => {
  it("many short streams: the first connect/disconnect lines are written, the rest summarised", async () => {
    const lines: Array<{ msg?: string; obj: Record<string, unknown> }> = [];
    const line = (obj: object, msg?: string): void => void lines.push({ msg, obj: obj as Record<string, unknown> });
    const logger: Logger = { debug: line, info: line, warn: line, error: line };
    const { server, port } = await startServer({ logger, clientLogLimits: { globalBurst: 6, globalIntervalMs: 3_600_000 } });
    const N = 40;
    for (let i = 0; i < N; i++) {
      const c = new RawClient(port);
      c.open(ADDRESS);
      await c.next();
      c.close();
      await until(() => server.connectionCount === 0, 30_000, "the stream dropped");
    }
    const count = (msg: string): number => lines.filter((l) => l.msg === msg).length;
    expect(count("xDS client connected")).toBeGreaterThanOrEqual(3);
    expect(count("xDS client connected") + count("xDS client disconnected")).toBe(6);
    await server.close(100);
    const summary = lines.find((l) => l.msg === "log lines caused by xDS clients not written (rate limit or repeats)");
    const suppressed = summary?.obj["suppressed"] as Record<string, number>;
    expect(suppressed["xDS client connected"]! + count("xDS client connected")).toBe(N);
    expect(suppressed["xDS client disconnected"]! + count("xDS client disconnected")).toBe(N);
  });
});
