// Test helper: real network namespaces (`ip netns add ambit-test-<pid>-<random>`), with
// loopback up, removed by the test's afterAll, by an exit hook if that never ran, and
// (namespaces of dead test processes) by the next run.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";

/** Fails clearly when not root: these tests need CAP_SYS_ADMIN and CAP_NET_ADMIN, CI runs them as root. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "@ambit/sys tests must run as root: they create network namespaces (ip netns), switch into them " +
        "(setns needs CAP_SYS_ADMIN) and program iptables and SO_MARK (CAP_NET_ADMIN). CI runs them as root.",
    );
  }
}

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface TestNetns {
  name: string;
  /** /var/run/netns/<name> */
  path: string;
  /** Runs a command inside the namespace (ip netns exec). */
  exec(cmd: string, ...args: string[]): string;
  remove(): void;
}

const live = new Set<string>();
let hooked = false;

function removeNetns(name: string): void {
  try {
    run("ip", ["netns", "delete", name]);
  } catch {
    // already gone
  }
  live.delete(name);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes namespaces left by test processes that died before cleaning up. */
function reapStale(): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync("/var/run/netns");
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^ambit-test-(\d+)-[0-9a-f]+$/.exec(name);
    if (m && !pidAlive(Number(m[1]))) removeNetns(name);
  }
}

export function createNetns(): TestNetns {
  requireRoot();
  if (!hooked) {
    hooked = true;
    reapStale();
    process.on("exit", () => {
      for (const name of [...live]) removeNetns(name);
    });
  }
  const name = `ambit-test-${process.pid}-${randomBytes(4).toString("hex")}`;
  run("ip", ["netns", "add", name]);
  live.add(name);
  try {
    run("ip", ["-n", name, "link", "set", "lo", "up"]);
  } catch (err) {
    removeNetns(name);
    throw err;
  }
  return {
    name,
    path: `/var/run/netns/${name}`,
    exec: (cmd, ...args) => run("ip", ["netns", "exec", name, cmd, ...args]),
    remove: () => removeNetns(name),
  };
}

/** Number of open fds of this process. */
export function openFdCount(): number {
  return fs.readdirSync("/proc/self/fd").length;
}

/** A port that is free in the host namespace right now. */
export async function freeHostPort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}
