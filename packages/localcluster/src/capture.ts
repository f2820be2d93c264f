// Packet capture on a node's link (eth0 of its netns) with tcpdump, to show what really crosses the wire between
// nodes: used by the end-to-end suites and the demo.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Capture {
  /** The raw pcap bytes. */
  data: Buffer;
  /** TCP ports seen in the capture. */
  ports: Set<number>;
  /** Number of packets captured. */
  packets: number;
}

function tcpdumpRead(file: string): Promise<string> {
  return new Promise((resolve, reject) => execFile("tcpdump", ["-nn", "-r", file, "tcp"], { maxBuffer: 64 << 20 }, (err, out) => (err ? reject(err) : resolve(out))));
}

/** Captures packets matching `filter` on `node`'s link while `during` runs. */
export async function captureNodeLink(node: string, filter: string, during: () => Promise<void>): Promise<Capture> {
  const dir = mkdtempSync(join(tmpdir(), "ambit-capture-"));
  const file = join(dir, "link.pcap");
  // --immediate-mode: without it, libpcap hands packets over in blocks and a short capture can end up empty.
  const dump = spawn("ip", ["netns", "exec", `ambit-${node}`, "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-s", "0", "-w", file, filter], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  try {
    await new Promise<void>((resolve, reject) => {
      dump.stderr!.on("data", (d: Buffer) => { stderr += d; if (stderr.includes("listening on")) resolve(); });
      dump.once("error", reject);
      dump.once("exit", (code) => reject(new Error(`tcpdump exited with ${code}: ${stderr.trim()} (is tcpdump installed? scripts/setup.sh installs it)`)));
    });
    await during();
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    dump.kill("SIGINT");
    if (dump.exitCode === null) await new Promise((r) => dump.once("close", r));
  }
  try {
    const text = await tcpdumpRead(file);
    const ports = new Set<number>();
    let packets = 0;
    for (const m of text.matchAll(/ (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/g)) {
      packets++;
      ports.add(Number(m[2]));
      ports.add(Number(m[4]));
    }
    return { data: readFileSync(file), ports, packets };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
