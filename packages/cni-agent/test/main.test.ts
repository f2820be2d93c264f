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
    expect(r.stderr).toMatch(/UNINSTALL_HOOK_TIMEOUT_SECONDS="soon": .*\(set it to a number of seconds\)/);
  });

  it("the agent refuses a bad uninstall setting", () => {
    const r = run([], { NODE_NAME: "node-1", AMBIT_CNI_UNINSTALL_ON_EXIT: "maybe" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/AMBIT_CNI_UNINSTALL_ON_EXIT="maybe": is not auto, true or false \(set it to auto .*\)/);
  });

  it("the agent refuses a ZDS ack timeout that is not a positive duration", () => {
    for (const v of ["soon", "0s"]) {
      const r = run([], { NODE_NAME: "node-1", AMBIT_ZDS_ACK_TIMEOUT: v });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`AMBIT_ZDS_ACK_TIMEOUT="${v}": .*\\(set it to a duration such as 5s or 500ms`));
    }
  });

  it("the agent needs its node's name", () => {
    const r = run([]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/NODE_NAME is not set: .*\(set it to the node's name \(downward API spec\.nodeName\)\)/);
  });

  it("the agent names every bad variable, one per line, before any Kubernetes access", () => {
    const r = run([], { NODE_NAME: "node-1", MONITORING_PORT: "70000", AMBIENT_DNS_CAPTURE: "yes", AMBIT_PROBE_SNAT: "sometimes", POD_NAMESPACE: "Istio_System" });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split("\n").slice(1).map((l) => l.trim().split("=")[0]);
    expect(lines.sort()).toEqual(["AMBIENT_DNS_CAPTURE", "AMBIT_PROBE_SNAT", "MONITORING_PORT", "POD_NAMESPACE"]);
    expect(r.stderr).toMatch(/MONITORING_PORT="70000": .*\(set it to a port number\)/);
    expect(r.stderr).toMatch(/AMBIT_PROBE_SNAT="sometimes": .*\(set it to true \(SNAT/);
  });
});
