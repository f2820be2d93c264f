// Finding a running pod's network namespace on this node without help from the runtime, as Istio's agent does
// after a restart: every network namespace in use by a process is looked at once (by inode), and the one holding
// the pod's IP is the pod's.
import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";

function addressesIn(nsPath: string): Promise<string[]> {
  return new Promise((resolve) => {
    execFile("nsenter", [`--net=${nsPath}`, "ip", "-o", "addr", "show"], { timeout: 5000 }, (err, out) => {
      if (err) return resolve([]);
      resolve([...out.matchAll(/\binet6? ([0-9a-f.:]+)\//g)].map((m) => m[1]!));
    });
  });
}

/** IP → a /proc path of a network namespace that has it (one entry per namespace). */
export async function netnsByIp(): Promise<Map<string, string>> {
  const seen = new Set<string>();
  const out = new Map<string, string>();
  for (const pid of readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
    const path = `/proc/${pid}/ns/net`;
    let id: string;
    try {
      const st = statSync(path);
      id = `${st.dev}:${st.ino}`;
    } catch {
      continue;
    }
    if (seen.has(id)) continue;
    seen.add(id);
    for (const ip of await addressesIn(path)) if (!out.has(ip)) out.set(ip, path);
  }
  return out;
}
