// Test helper: real network namespaces `ambit-zt-test-<pid>-<random>` with loopback up, removed by `removeAll()`
// (call it in afterAll), by an exit hook if that never ran, and — for namespaces of dead test processes — by the
// next run.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";

const live = new Set<string>();
let hooked = false;

export function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function del(name: string): void {
  try { sh("ip", "netns", "delete", name); } catch { /* already gone */ }
  live.delete(name);
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === "EPERM"; }
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error("these ztunnel tests must run as root: they create network namespaces and bind listeners inside them");
}

export interface Netns {
  name: string;
  path: string;
  exec(cmd: string, ...args: string[]): string;
}

export function createNetns(): Netns {
  requireRoot();
  if (!hooked) {
    hooked = true;
    let stale: string[] = [];
    try { stale = fs.readdirSync("/var/run/netns"); } catch { /* none yet */ }
    for (const n of stale) {
      const m = /^ambit-zt-test-(\d+)-[0-9a-f]+$/.exec(n);
      if (m && !alive(Number(m[1]))) del(n);
    }
    process.on("exit", () => { for (const n of [...live]) del(n); });
  }
  const name = `ambit-zt-test-${process.pid}-${randomBytes(4).toString("hex")}`;
  sh("ip", "netns", "add", name);
  live.add(name);
  try {
    sh("ip", "-n", name, "link", "set", "lo", "up");
  } catch (err) {
    del(name);
    throw err;
  }
  return { name, path: `/var/run/netns/${name}`, exec: (cmd, ...args) => sh("ip", "netns", "exec", name, cmd, ...args) };
}

export function removeNetns(ns: Netns): void {
  del(ns.name);
}

export function removeAllNetns(): void {
  for (const n of [...live]) del(n);
}
