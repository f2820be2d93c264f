// Test helper: real network namespaces named `ambit-cni-test-<random>`, removed by `cleanup()` (call it
// in afterAll) and, as a fallback, by a process exit hook.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: "utf8", input: input ?? "", stdio: ["pipe", "pipe", "pipe"] });
}

const live = new Set<string>();
let hooked = false;

function del(name: string): void {
  try {
    sh("ip", ["netns", "delete", name]);
  } catch {
    // already gone
  }
  live.delete(name);
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error("cni-agent redirect tests must run as root: they create network namespaces and program iptables");
  }
}

/** Creates a netns with loopback up; returns its name. */
export function createNetns(): string {
  requireRoot();
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const n of [...live]) del(n);
    });
  }
  const name = `ambit-cni-test-${randomBytes(4).toString("hex")}`;
  sh("ip", ["netns", "add", name]);
  live.add(name);
  sh("ip", ["-n", name, "link", "set", "lo", "up"]);
  return name;
}

export function deleteNetns(name: string): void {
  del(name);
}

/** Deletes every namespace this helper created. */
export function cleanup(): void {
  for (const n of [...live]) del(n);
}

export function nsExec(ns: string, cmd: string, ...args: string[]): string {
  return sh("ip", ["netns", "exec", ns, cmd, ...args]);
}

export interface Pair {
  pod: string;
  outside: string;
  podIp: string;
  outsideIp: string;
  podIp6: string;
  outsideIp6: string;
}

/** A "pod" netns joined by a veth pair to an "outside" netns, with IPv4 and IPv6 addresses on both ends. */
export function createPair(): Pair {
  const pod = createNetns();
  const outside = createNetns();
  const p: Pair = { pod, outside, podIp: "10.250.0.2", outsideIp: "10.250.0.1", podIp6: "fd00:a3b1::2", outsideIp6: "fd00:a3b1::1" };
  sh("ip", ["-n", outside, "link", "add", "veth-out", "type", "veth", "peer", "name", "veth-pod", "netns", pod]);
  sh("ip", ["-n", outside, "addr", "add", `${p.outsideIp}/24`, "dev", "veth-out"]);
  sh("ip", ["-n", outside, "addr", "add", `${p.outsideIp6}/64`, "dev", "veth-out", "nodad"]);
  sh("ip", ["-n", pod, "addr", "add", `${p.podIp}/24`, "dev", "veth-pod"]);
  sh("ip", ["-n", pod, "addr", "add", `${p.podIp6}/64`, "dev", "veth-pod", "nodad"]);
  sh("ip", ["-n", outside, "link", "set", "veth-out", "up"]);
  sh("ip", ["-n", pod, "link", "set", "veth-pod", "up"]);
  sh("ip", ["-n", pod, "route", "add", "default", "via", p.outsideIp]);
  return p;
}
