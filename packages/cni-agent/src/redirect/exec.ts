// Runs iptables / ip commands inside a pod's network namespace, given either a name under /var/run/netns
// (`ip netns exec`) or a path such as /proc/<pid>/ns/net (`nsenter --net=`).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";

export type RedirectErrorCode = "NETNS_NOT_FOUND" | "COMMAND_FAILED";

/** A failed rule operation: names the netns, the command line, its exit status and stderr. */
export class RedirectError extends Error {
  override readonly name = "RedirectError";
  constructor(
    message: string,
    readonly code: RedirectErrorCode,
    readonly netns: string,
    readonly command: string,
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(message);
  }
}

const NETNS_NAME = /^[A-Za-z0-9_.-]+$/;

/** Where a netns argument points: a path (contains "/") or a name under /var/run/netns. */
export function netnsPath(netns: string): string {
  if (netns.includes("/")) return netns;
  if (!NETNS_NAME.test(netns) || netns === "." || netns === "..") {
    throw new TypeError(`invalid network namespace name ${JSON.stringify(netns)}`);
  }
  return `/var/run/netns/${netns}`;
}

/** Throws NETNS_NOT_FOUND when the namespace file does not exist. */
export function assertNetnsExists(netns: string, action: string): void {
  const path = netnsPath(netns);
  if (!existsSync(path)) {
    throw new RedirectError(
      `cannot ${action}: network namespace "${netns}" does not exist (${path})`,
      "NETNS_NOT_FOUND",
      netns,
      "",
      "",
      null,
    );
  }
}

export interface NetnsRunner {
  /** Runs argv inside the netns; resolves with stdout, rejects with a RedirectError. */
  run(argv: readonly string[], input?: string): Promise<string>;
}

/** Runs commands inside `netns` (a name under /var/run/netns or a path); "" means the caller's own netns. */
export function netnsRunner(netns: string): NetnsRunner {
  const prefix = netns === "" ? [] : netns.includes("/") ? ["nsenter", `--net=${netnsPath(netns)}`, "--"] : ["ip", "netns", "exec", netns];
  return {
    run(argv, input) {
      const full = [...prefix, ...argv];
      const command = full.join(" ");
      return new Promise<string>((resolve, reject) => {
        const child = spawn(full[0] as string, full.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on("data", (d: Buffer) => out.push(d));
        child.stderr.on("data", (d: Buffer) => err.push(d));
        child.on("error", (e) =>
          reject(new RedirectError(`${command} (netns "${netns}"): ${e.message}`, "COMMAND_FAILED", netns, command, "", null)),
        );
        child.on("close", (code, signal) => {
          const stderr = Buffer.concat(err).toString("utf8").trim();
          if (code === 0) return resolve(Buffer.concat(out).toString("utf8"));
          const status = code === null ? `signal ${signal ?? "?"}` : `exit ${code}`;
          const gone = netns !== "" && !existsSync(netnsPath(netns));
          reject(
            new RedirectError(
              gone
                ? `network namespace "${netns}" does not exist (${netnsPath(netns)}); \`${command}\` failed`
                : `\`${command}\` failed in netns "${netns}" (${status}): ${stderr || "(no stderr)"}`,
              gone ? "NETNS_NOT_FOUND" : "COMMAND_FAILED",
              netns,
              command,
              stderr,
              code,
            ),
          );
        });
        child.stdin.on("error", () => {
          // the child exited before reading stdin; its exit status reports the failure
        });
        child.stdin.end(input ?? "");
      });
    },
  };
}
