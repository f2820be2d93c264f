// The program's command line: bad input stops it with a message naming what to fix (exit 2), before any
// Kubernetes access.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const main = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [main, ...args], { env: { PATH: process.env["PATH"] ?? "", ...env }, encoding: "utf8", timeout: 30_000 });

describe("ambit-cni-agent command line", () => {
  it("refuses an unknown command", () => {
    const r = run(["frobnicate"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command "frobnicate".*uninstall-hook/);
  });

  it("uninstall-hook needs its namespace", () => {
    const r = run(["uninstall-hook"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/POD_NAMESPACE is not set/);
  });

  it("uninstall-hook refuses a bad timeout", () => {
    const r = run(["uninstall-hook"], { POD_NAMESPACE: "istio-system", UNINSTALL_HOOK_TIMEOUT_SECONDS: "soon" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/UNINSTALL_HOOK_TIMEOUT_SECONDS="soon": set it to a number of seconds/);
  });

  it("the agent refuses a bad uninstall setting", () => {
    const r = run([], { NODE_NAME: "node-1", AMBIT_CNI_UNINSTALL_ON_EXIT: "maybe" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/AMBIT_CNI_UNINSTALL_ON_EXIT="maybe"/);
  });
});
