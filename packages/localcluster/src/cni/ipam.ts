// Address management for one node's pod range, like CNI's host-local: one file per allocated address
// (created with O_EXCL, so concurrent ADDs never share an address), holding the owning container id.
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

export class IpamError extends Error {
  override name = "IpamError";
}

/** First usable host number: .1 is the node's pod gateway, .2–.9 are reserved for cluster add-ons. */
const FIRST_HOST = 10;

function hosts(cidr: string): { prefix: string; first: number; last: number } {
  const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(cidr);
  if (!m) throw new IpamError(`subnet ${cidr} is not a /24 (the local cluster gives each node one)`);
  return { prefix: m[1]!, first: FIRST_HOST, last: 254 };
}

/** Allocates an address of `subnet` to `containerId` (the same one again if it already has one). */
export function allocate(dataDir: string, subnet: string, containerId: string): string {
  mkdirSync(dataDir, { recursive: true });
  const existing = owned(dataDir, containerId);
  if (existing[0]) return existing[0];
  const { prefix, first, last } = hosts(subnet);
  for (let h = first; h <= last; h++) {
    const ip = `${prefix}.${h}`;
    let fd: number;
    try {
      fd = openSync(join(dataDir, ip), "wx");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw err;
    }
    writeSync(fd, containerId);
    closeSync(fd);
    return ip;
  }
  throw new IpamError(`no free address left in ${subnet}`);
}

/** Addresses held by a container. */
export function owned(dataDir: string, containerId: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return [];
  }
  return names.filter((ip) => {
    try {
      return readFileSync(join(dataDir, ip), "utf8") === containerId;
    } catch {
      return false;
    }
  });
}

/** Releases every address held by a container (idempotent). */
export function release(dataDir: string, containerId: string): void {
  for (const ip of owned(dataDir, containerId)) rmSync(join(dataDir, ip), { force: true });
}
