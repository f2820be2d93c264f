// Kubelet probes of enrolled pods, node side. In a pod the redirect rules send every inbound TCP connection to
// ztunnel, whose policies would judge the kubelet's plaintext probes like any other caller (an ALLOW policy would
// fail them). As Istio's agent does, probes from the node to an enrolled pod are SNATed to 169.254.7.127
// (fd16:9254:7127:1337:ffff:ffff:ffff:ffff for IPv6), which the in-pod rules let through to the app. The chain
// ISTIO_POSTRT in the node's nat table holds one rule per enrolled pod IP, matching connections opened by a local
// socket (the kubelet), and is rewritten whole on every change (level-triggered, atomic with iptables-restore).
import { isIPv6 } from "node:net";
import { PROBE_SNAT_IPV4, PROBE_SNAT_IPV6 } from "@ambit/protocol";
import { RedirectError, netnsRunner } from "./exec.js";
import type { Family } from "./rules.js";

export const POSTRT_CHAIN = "ISTIO_POSTRT";

const tools = (f: Family) => (f === "ipv4" ? { cmd: "iptables", restore: "iptables-restore", snat: PROBE_SNAT_IPV4, host: "/32" } : { cmd: "ip6tables", restore: "ip6tables-restore", snat: PROBE_SNAT_IPV6, host: "/128" });

async function hasJump(run: ReturnType<typeof netnsRunner>, f: Family): Promise<boolean> {
  try {
    await run.run([tools(f).cmd, "-w", "-t", "nat", "-C", "POSTROUTING", "-j", POSTRT_CHAIN]);
    return true;
  } catch (err) {
    if (err instanceof RedirectError && err.code === "COMMAND_FAILED") return false;
    throw err;
  }
}

/** The nat-table input for one family: our chain with one SNAT rule per pod IP, plus the jump if missing. */
export function renderProbeSnat(f: Family, podIps: readonly string[], addJump: boolean): string {
  const t = tools(f);
  return [
    "*nat",
    `:${POSTRT_CHAIN} - [0:0]`,
    ...(addJump ? [`-A POSTROUTING -j ${POSTRT_CHAIN}`] : []),
    ...[...new Set(podIps)].sort().map((ip) => `-A ${POSTRT_CHAIN} -d ${ip}${t.host} -p tcp -m owner --socket-exists -j SNAT --to-source ${t.snat}`),
    "COMMIT",
    "",
  ].join("\n");
}

/** Makes the node's probe SNAT exactly match `podIps` (v4 and v6 mixed). `netns` "" = the caller's own. */
export async function syncProbeSnat(podIps: readonly string[], netns = "", ipv6 = true): Promise<void> {
  const run = netnsRunner(netns);
  for (const f of (ipv6 ? ["ipv4", "ipv6"] : ["ipv4"]) as Family[]) {
    const ips = podIps.filter((ip) => isIPv6(ip) === (f === "ipv6"));
    await run.run([tools(f).restore, "-w", "--noflush"], renderProbeSnat(f, ips, !(await hasJump(run, f))));
  }
}

/** Removes the jump and the chain (uninstall). Idempotent. */
export async function removeProbeSnat(netns = "", ipv6 = true): Promise<void> {
  const run = netnsRunner(netns);
  for (const f of (ipv6 ? ["ipv4", "ipv6"] : ["ipv4"]) as Family[]) {
    const t = tools(f).cmd;
    while (await hasJump(run, f)) await run.run([t, "-w", "-t", "nat", "-D", "POSTROUTING", "-j", POSTRT_CHAIN]);
    for (const op of ["-F", "-X"]) await run.run([t, "-w", "-t", "nat", op, POSTRT_CHAIN]).catch(() => undefined);
  }
}
