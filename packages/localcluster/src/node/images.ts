// The local cluster's "image registry": image names map to local entrypoints (there are no container
// images here). "ambit/<name>" matches with any registry prefix, tag or digest.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../../../..");
const nodeScript = (pkg: string, file = "dist/main.js") => [process.execPath, join(repo, "packages", pkg, file)];

/** Entrypoint (the image's ENTRYPOINT) per image; the pod's `command` replaces it, `args` follow it. */
const IMAGES: Record<string, string[]> = {
  "ambit/echo": nodeScript("echo"),
  "ambit/controller": nodeScript("controller"),
  "ambit/ztunnel": nodeScript("ztunnel"),
  "ambit/cni-agent": nodeScript("cni-agent"),
  "ambit/waypoint": nodeScript("waypoint"),
  "ambit/coredns": [], // resolved to the built CoreDNS binary by the node agent
  // The host's own tools (sh, sleep, ip …): the pod's command runs as given.
  "ambit/host": [],
};

export class ImageError extends Error {
  override name = "ImageError";
}

/** "registry.example/ambit/echo:1.2@sha256:…" → "ambit/echo". */
export function imageKey(image: string): string {
  const noDigest = image.split("@")[0]!;
  const parts = noDigest.split("/");
  const last = parts.pop()!.split(":")[0]!;
  return `${parts.pop() ?? ""}/${last}`;
}

export function knownImages(): string[] {
  return Object.keys(IMAGES);
}

/** The argv a container runs: image entrypoint (or `command`) followed by `args`. */
export function containerArgv(image: string, command: string[] | undefined, args: string[] | undefined, corednsBin?: string): string[] {
  const key = imageKey(image);
  const entry = key === "ambit/coredns" && corednsBin ? [corednsBin] : IMAGES[key];
  if (entry === undefined) throw new ImageError(`image "${image}" is not in ambit-local's image table (known: ${knownImages().join(", ")})`);
  const argv = [...(command?.length ? command : entry), ...(args ?? [])];
  if (!argv.length) throw new ImageError(`image "${image}" has no entrypoint: the container needs a command`);
  return argv;
}
