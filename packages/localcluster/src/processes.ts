// Long-running processes of the cluster: started detached (own process group), logging to files,
// tagged with the owner variable, optionally inside a network namespace; stopped by group.
import { spawn } from "node:child_process";
import { openSync, closeSync, readFileSync, readdirSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { OWNER_ENV, paths } from "./layout.js";
import type { ProcessRecord } from "./state.js";

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  owner: string;
  /** Run inside this named network namespace (via `ip netns exec`, which execs in place: same pid). */
  netns?: string;
  env?: Record<string, string>;
  cwd?: string;
}

/** Start time of a pid (field 22 of /proc/<pid>/stat), to tell a live process from a reused pid. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

export function logFile(name: string): string {
  return join(paths.logs(), `${name}.log`);
}

export function startProcess(o: StartOptions): ProcessRecord {
  mkdirSync(paths.logs(), { recursive: true });
  const out = openSync(logFile(o.name), "a");
  try {
    const [cmd, args] = o.netns ? ["ip", ["netns", "exec", o.netns, o.command, ...o.args]] : [o.command, o.args];
    const child = spawn(cmd, args as string[], {
      detached: true,
      stdio: ["ignore", out, out],
      cwd: o.cwd,
      env: { ...process.env, ...o.env, [OWNER_ENV]: o.owner },
    });
    if (child.pid === undefined) throw new Error(`could not start ${o.name} (${o.command})`);
    child.unref();
    return { name: o.name, pid: child.pid, startTime: processStartTime(child.pid) ?? "" };
  } finally {
    closeSync(out);
  }
}

export function isRunning(rec: ProcessRecord): boolean {
  const t = processStartTime(rec.pid);
  return t !== null && t === rec.startTime;
}

/** Pids of every live process carrying AMBIT_LOCAL_OWNER=<owner> (or any owner when owner is "*"). */
export function ownedPids(owner: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, "latin1").split("\0");
      if (env.some((kv) => (owner === "*" ? kv.startsWith(`${OWNER_ENV}=`) : kv === `${OWNER_ENV}=${owner}`))) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM to each process (and its group), then SIGKILL whatever is left after the grace period. */
export async function stopProcesses(pids: number[], graceMs = 3000): Promise<void> {
  const alive = () => pids.filter((p) => processStartTime(p) !== null && !isZombie(p));
  for (const p of pids) { signal(p, "SIGTERM", true); signal(p, "SIGTERM", false); }
  const deadline = Date.now() + graceMs;
  while (alive().length && Date.now() < deadline) await sleep(50);
  for (const p of alive()) { signal(p, "SIGKILL", true); signal(p, "SIGKILL", false); }
  const hard = Date.now() + 2000;
  while (alive().length && Date.now() < hard) await sleep(20);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}
