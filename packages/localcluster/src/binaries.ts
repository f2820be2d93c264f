// Locating the Kubernetes binaries: built from the Go module proxy by scripts/build-kube-binaries.sh into
// a cache outside the work tree (a no-op when they are there already), or taken from AMBIT_KUBE_BIN.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const KUBE_BINARIES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl", "coredns"] as const;
export type KubeBinary = (typeof KUBE_BINARIES)[number];

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Returns the directory holding every binary, building them first if needed (progress goes to stderr). */
export async function ensureBinaries(): Promise<string> {
  const fromEnv = process.env["AMBIT_KUBE_BIN"];
  if (fromEnv) {
    const missing = KUBE_BINARIES.filter((b) => !existsSync(join(fromEnv, b)));
    if (missing.length) throw new Error(`AMBIT_KUBE_BIN=${fromEnv} lacks ${missing.join(", ")}; unset it to build them`);
    return fromEnv;
  }
  const script = join(packageDir, "scripts/build-kube-binaries.sh");
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn("bash", [script], { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      process.stderr.write(d);
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${script} failed with exit ${code}`))));
  });
  const dir = out.trim().split("\n").pop() ?? "";
  if (!existsSync(join(dir, "kube-apiserver"))) throw new Error(`${script} did not print a binary directory (got "${dir}")`);
  return dir;
}
