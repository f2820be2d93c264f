// The addon's plain build path (no node-gyp, no local Node headers) works and is idempotent.
// The default path (node-gyp with local headers) is what `npm install` / `npm run build` ran.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, it } from "vitest";

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// Inside the package, so that node-addon-api and node-api-headers resolve as they do for the package.
const work = path.join(pkgDir, "build", `plain-test-${process.pid}`);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function build(env: Record<string, string>): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ["scripts/build-addon.mjs"], {
    cwd: work,
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

it("AMBIT_SYS_PLAIN_BUILD=1 builds with one compiler call against node-api-headers, then skips", () => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  for (const entry of ["native", "scripts", "binding.gyp", "package.json"]) {
    fs.cpSync(path.join(pkgDir, entry), path.join(work, entry), { recursive: true });
  }
  const first = build({ AMBIT_SYS_PLAIN_BUILD: "1" });
  expect(first.out).toContain("plain compiler build");
  expect(first.out).toMatch(/node-api-headers[/\\]include/);
  expect(first.status).toBe(0);
  const addon = path.join(work, "build", "Release", "ambit_sys.node");
  expect(fs.existsSync(addon)).toBe(true);

  // The result loads and works in a fresh process.
  const probe = spawnSync(process.execPath, ["-e", `const m = require(${JSON.stringify(addon)}); const fd = m.openNetns("/proc/self/ns/net"); console.log(m.isNetnsFd(fd)); m.closeFd(fd);`], {
    encoding: "utf8",
  });
  expect(probe.stderr).toBe("");
  expect(probe.stdout.trim()).toBe("true");

  const second = build({ AMBIT_SYS_PLAIN_BUILD: "1" });
  expect(second.status).toBe(0);
  expect(second.out).toContain("up to date");
}, 180_000);
