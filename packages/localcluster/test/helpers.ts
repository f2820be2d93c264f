// Test helpers: run the real CLI, take snapshots of what the host has (to prove `down` removes everything).
import { execFile } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ownedPids } from "../src/processes.js";
import { run } from "../src/run.js";

export const CLI = join(dirname(fileURLToPath(import.meta.url)), "../bin/ambit-local.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cli(...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 600_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export interface HostSnapshot {
  netns: string[];
  links: string[];
  iptables: string;
  ip6tables: string;
  ownedProcesses: number[];
  clusterProcesses: string[];
}

/** What the host netns has now: namespaces, links, netfilter rules, and processes of ours. */
export async function snapshot(): Promise<HostSnapshot> {
  const links = (await run("ip", ["-o", "link", "show"])).split("\n").filter(Boolean).map((l) => l.split(":")[1]!.trim().split("@")[0]!).sort();
  const strip = (rules: string) => rules.split("\n").filter((l) => l && !l.startsWith("#") && !/^:/.test(l)).join("\n");
  const clusterProcesses: string[] = [];
  for (const p of readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
      if (cmd.some((a) => /\/(etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|coredns)$/.test(a)) || cmd.includes("node-agent") || cmd.includes("forward")) {
        clusterProcesses.push(`${p}:${cmd.join(" ").slice(0, 80)}`);
      }
    } catch {
      // gone
    }
  }
  return {
    netns: (existsSync("/var/run/netns") ? readdirSync("/var/run/netns") : []).filter((n) => n.startsWith("ambit-")).sort(),
    links,
    iptables: strip(await run("iptables-save", [])),
    ip6tables: strip(await run("ip6tables-save", [])),
    ownedProcesses: ownedPids("*"),
    clusterProcesses,
  };
}

export { kubectl } from "../src/cluster.js";

/** `ambit-local exec` ("-c name" first to pick a container), returning stdout (rejects on a non-zero exit). */
export async function podExec(pod: string, ...argv: string[]): Promise<string> {
  const container = argv[0] === "-c" ? argv.splice(0, 2) : [];
  const res = await cli("exec", pod, ...container, "--", ...argv);
  if (res.code !== 0) throw new Error(`exec in ${pod} failed (${res.code}): ${res.stderr}`);
  return res.stdout;
}
