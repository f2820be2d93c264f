// One container: a process started inside the pod's network namespace (or the node's, for hostNetwork pods),
// with its own UTS namespace (host name) and a private mount namespace that bind-mounts its volumes, /etc/resolv.conf and /etc/hosts at their paths,
// with the Linux capabilities its securityContext allows (bounding set via setpriv). It restarts per the
// pod's restartPolicy with exponential back-off and keeps the state the kubelet reports.
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { closeSync, openSync, writeFileSync } from "node:fs";

/** Capabilities a container gets by default (the usual container-runtime set). */
export const DEFAULT_CAPABILITIES = [
  "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
  "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
];

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface ContainerSpec {
  name: string;
  netns: string;
  argv: string[];
  env: Record<string, string>;
  mounts: Mount[];
  workingDir?: string;
  /** Host name inside the container's own UTS namespace (the pod name; the node name for hostNetwork pods). */
  hostname: string;
  /** null = privileged (everything); otherwise the capability names (without CAP_). */
  capabilities: string[] | null;
  logFile: string;
}

export type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; signal?: number; reason: string; message?: string; startedAt: string; finishedAt: string } };

/** Effective capabilities of a container from its securityContext (null when privileged). */
export function effectiveCapabilities(sc: { privileged?: boolean; capabilities?: { add?: string[]; drop?: string[] } } | undefined): string[] | null {
  if (sc?.privileged) return null;
  const norm = (c: string) => c.toUpperCase().replace(/^CAP_/, "");
  const drop = new Set((sc?.capabilities?.drop ?? []).map(norm));
  const base = drop.has("ALL") ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.has(c));
  const add = (sc?.capabilities?.add ?? []).map(norm);
  if (add.includes("ALL")) return null;
  return [...new Set([...base, ...add])];
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The shell program run inside the container's private mount namespace before exec'ing the process. */
export function launchScript(spec: ContainerSpec): string {
  const lines = ["set -e", `hostname ${q(spec.hostname)}`];
  for (const m of spec.mounts) {
    lines.push(`mount --bind ${q(m.source)} ${q(m.target)}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${q(m.target)}`);
  }
  if (spec.workingDir) lines.push(`cd ${q(spec.workingDir)}`);
  const caps = spec.capabilities === null ? "" : `setpriv --inh-caps=-all --bounding-set=-all${spec.capabilities.map((c) => `,+${c.toLowerCase()}`).join("")} -- `;
  lines.push(`exec ${caps}"$@"`);
  return lines.join("\n");
}

export class Container extends EventEmitter<{ change: []; exit: [code: number] }> {
  state: ContainerState = { waiting: { reason: "ContainerCreating" } };
  lastState: ContainerState | Record<string, never> = {};
  restartCount = 0;
  ready = false;
  private child: ChildProcess | undefined;
  /** Set while stop() runs: an exit then is not a crash to restart. */
  stopping = false;

  constructor(readonly spec: ContainerSpec) {
    super();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return "running" in this.state;
  }

  /** Starts the process (again). Emits "exit" with its code when it ends. */
  start(): void {
    if (this.child) return;
    this.stopping = false;
    const out = openSync(this.spec.logFile, "a");
    const child = spawn("ip", ["netns", "exec", this.spec.netns, "unshare", "--uts", "sh", "-c", launchScript(this.spec), "container", ...this.spec.argv], {
      detached: true,
      stdio: ["ignore", out, out],
      env: this.spec.env,
    });
    closeSync(out);
    this.child = child;
    // `ambit-local exec` enters the container's namespaces through this pid.
    if (child.pid) writeFileSync(this.spec.logFile.replace(/\.log$/, ".pid"), String(child.pid));
    const startedAt = now();
    this.state = { running: { startedAt } };
    this.emit("change");
    child.on("error", (err) => this.finish(startedAt, 128, undefined, err.message));
    child.on("exit", (code, signal) => this.finish(startedAt, code ?? 128 + signalNumber(signal), signal ? signalNumber(signal) : undefined));
  }

  private finish(startedAt: string, exitCode: number, signal?: number, message?: string): void {
    if (!this.child) return;
    this.child = undefined;
    this.ready = false;
    const reason = exitCode === 0 ? "Completed" : "Error";
    this.state = { terminated: { exitCode, ...(signal ? { signal } : {}), reason, ...(message ? { message } : {}), startedAt, finishedAt: now() } };
    this.emit("change");
    this.emit("exit", exitCode);
  }

  /** Marks the container as waiting (back-off, or an error before it could start). */
  wait(reason: string, message?: string): void {
    if ("terminated" in this.state) this.lastState = this.state;
    this.state = { waiting: { reason, ...(message ? { message } : {}) } };
    this.emit("change");
  }

  setReady(ready: boolean): void {
    if (this.ready === ready) return;
    this.ready = ready && this.running;
    this.emit("change");
  }

  /** SIGTERM to the container's process group, SIGKILL after the grace period; resolves once it has exited. */
  async stop(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    this.stopping = true;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    kill(child.pid, "SIGTERM");
    const timer = setTimeout(() => kill(child.pid!, "SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try { process.kill(pid, sig); } catch { /* gone */ }
  }
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
function signalNumber(s: NodeJS.Signals | null): number {
  return s ? SIGNALS[s] ?? 1 : 0;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}
