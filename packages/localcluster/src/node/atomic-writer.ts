// Writes a volume's files the way the kubelet does, so readers can watch for atomic swaps: the payload lives
// in a timestamped directory, "..data" is a symlink to it, and each top-level entry is a symlink through
// "..data". An update writes a new directory and renames a new "..data" over the old one in one step.
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export type Payload = Map<string, { data: Buffer; mode?: number }>;

export class PayloadError extends Error {
  override name = "PayloadError";
}

function checkPath(path: string): void {
  if (!path || path.startsWith("/") || path.split("/").some((p) => p === ".." || p === "" || p.startsWith(".."))) {
    throw new PayloadError(`invalid file path "${path}" in a volume (must be relative, without "..")`);
  }
}

function current(dir: string): Payload | null {
  try {
    const data = join(dir, readlinkSync(join(dir, "..data")));
    const out: Payload = new Map();
    const walk = (rel: string) => {
      for (const e of readdirSync(join(data, rel), { withFileTypes: true })) {
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(p);
        else out.set(p, { data: readFileSync(join(data, p)) });
      }
    };
    walk("");
    return out;
  } catch {
    return null;
  }
}

function same(a: Payload, b: Payload): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!b.get(k)?.data.equals(v.data)) return false;
  return true;
}

/** Makes `dir` hold exactly `payload`; returns false when nothing changed. */
export function writeAtomically(dir: string, payload: Payload): boolean {
  for (const path of payload.keys()) checkPath(path);
  const old = current(dir);
  if (old && same(old, payload)) return false;
  mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, "_")}.${process.hrtime.bigint()}`;
  for (const [path, file] of payload) {
    const target = join(dir, stamp, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, file.data, { mode: file.mode ?? 0o644 });
  }
  mkdirSync(join(dir, stamp), { recursive: true });
  const oldTarget = existsSync(join(dir, "..data")) ? readlinkSync(join(dir, "..data")) : null;
  symlinkSync(stamp, join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  const top = new Set([...payload.keys()].map((p) => p.split("/")[0]!));
  for (const name of top) {
    if (!existsSync(join(dir, name))) symlinkSync(join("..data", name), join(dir, name));
  }
  for (const e of readdirSync(dir)) {
    if (!e.startsWith("..") && !top.has(e)) rmSync(join(dir, e), { force: true, recursive: true });
  }
  if (oldTarget) rmSync(join(dir, oldTarget), { recursive: true, force: true });
  return true;
}
