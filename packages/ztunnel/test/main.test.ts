// The program's start: a bad configuration stops it with exit 2 and a message naming the variable and the fix,
// before any network access.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const main = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const run = (env: Record<string, string>) =>
  spawnSync(process.execPath, [main], { env: { PATH: process.env["PATH"] ?? "", ...env }, encoding: "utf8", timeout: 30_000 });

describe("ambit-ztunnel start", () => {
  it("needs NODE_NAME", () => {
    const r = run({});
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/NODE_NAME is not set.*spec\.nodeName/);
  });

  it("names every bad variable at once, with the fix", () => {
    const r = run({ NODE_NAME: "node-1", SECRET_TTL: "forever", HTTP2_STREAM_WINDOW_SIZE: "huge", ENABLE_ORIG_SRC: "sometimes" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/SECRET_TTL="forever".*a duration such as 24h/);
    expect(r.stderr).toMatch(/HTTP2_STREAM_WINDOW_SIZE="huge".*a size such as 4Mi/);
    expect(r.stderr).toMatch(/ENABLE_ORIG_SRC="sometimes"/);
  });

  it("refuses an ISTIO_METAJSON_ value that is not JSON", () => {
    const r = run({ NODE_NAME: "node-1", ISTIO_METAJSON_LABELS: "{not json" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/ISTIO_METAJSON_LABELS: is not JSON/);
  });
});
