// Running host commands (ip, iptables, …) with errors that say what failed.
import { execFile, spawn } from "node:child_process";

export class CommandError extends Error {
  override name = "CommandError";
  constructor(readonly command: string[], readonly code: number | null, readonly stderr: string) {
    super(`${command.join(" ")} failed (exit ${code ?? "signal"}): ${stderr.trim() || "(no output)"}`);
  }
}

/** Runs a command to completion; resolves with its stdout, rejects with CommandError. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        if (err) {
          const code = typeof (err as NodeJS.ErrnoException).code === "number" ? ((err as unknown as { code: number }).code) : null;
          reject(new CommandError([cmd, ...args], code, stderr || err.message));
        } else resolve(stdout);
      });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs `ip` with the given arguments. */
export function ip(...args: string[]): Promise<string> {
  return run("ip", args);
}

/** Runs a command inside a named network namespace, inheriting stdio (for `ambit-local exec`). */
export function execInNetns(netns: string, argv: string[]): Promise<number> {
  return execIn(["ip", "netns", "exec", netns, ...argv]);
}

/** Runs argv with inherited stdio; resolves with its exit code. */
export function execIn(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "inherit" });
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
