// Readiness and liveness probes, run as the kubelet runs them: HTTP and TCP checks connect from the node's
// network namespace to the pod's IP; exec checks run the command in the container's namespaces.
import { execFile } from "node:child_process";
import { request } from "node:http";
import type { V1ContainerPort, V1Probe } from "@kubernetes/client-node";
import { connectTcp } from "@ambit/sys";

export interface ProbeTarget {
  podIp: string;
  /** Path of the node's netns (where HTTP/TCP probes connect from). */
  nodeNetns: string;
  /** The container's process: exec probes run in its namespaces (network, mounts, host name). */
  pid: number | undefined;
  ports: V1ContainerPort[];
  env: Record<string, string>;
}

function port(p: number | string | undefined, ports: V1ContainerPort[]): number {
  if (typeof p === "number") return p;
  if (p && /^\d+$/.test(p)) return Number(p);
  const named = ports.find((x) => x.name === p);
  if (!named) throw new Error(`no container port named "${p}"`);
  return named.containerPort;
}

/** Runs one probe; resolves true on success, false on failure (never rejects). */
export async function runProbe(probe: V1Probe, t: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet) {
      const g = probe.httpGet;
      const socket = await connectTcp({ netns: t.nodeNetns, host: g.host || t.podIp, port: port(g.port, t.ports), timeout: timeoutMs });
      return await new Promise<boolean>((resolve) => {
        const req = request({
          createConnection: () => socket, path: g.path ?? "/", method: "GET", timeout: timeoutMs,
          headers: { "user-agent": "kube-probe/1.34", ...Object.fromEntries((g.httpHeaders ?? []).map((h) => [h.name, h.value])) },
        }, (res) => {
          res.resume();
          resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
          socket.destroy();
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(false));
        req.end();
      });
    }
    if (probe.tcpSocket) {
      const socket = await connectTcp({ netns: t.nodeNetns, host: probe.tcpSocket.host || t.podIp, port: port(probe.tcpSocket.port, t.ports), timeout: timeoutMs });
      socket.destroy();
      return true;
    }
    if (probe.exec?.command?.length) {
      return await new Promise<boolean>((resolve) => {
        if (!t.pid) return resolve(false);
        execFile("nsenter", ["--target", String(t.pid), "--net", "--mount", "--uts", "--", ...probe.exec!.command!], { timeout: timeoutMs, env: t.env }, (err) => resolve(!err));
      });
    }
  } catch {
    return false;
  }
  return false; // grpc probes and empty probes are not supported: they never succeed
}

/** Periodically runs a probe and reports the thresholded result (successThreshold/failureThreshold). */
export class Prober {
  private timer: NodeJS.Timeout | undefined;
  private successes = 0;
  private failures = 0;
  private result: boolean | undefined;

  constructor(private readonly probe: V1Probe, private readonly target: () => ProbeTarget, private readonly onResult: (ok: boolean) => void) {}

  start(): void {
    this.stop();
    const period = (this.probe.periodSeconds ?? 10) * 1000;
    const tick = async () => {
      const ok = await runProbe(this.probe, this.target());
      if (!this.timer) return;
      if (ok) { this.successes++; this.failures = 0; } else { this.failures++; this.successes = 0; }
      if (ok && this.successes >= (this.probe.successThreshold ?? 1) && this.result !== true) this.report(true);
      if (!ok && this.failures >= (this.probe.failureThreshold ?? 3) && this.result !== false) this.report(false);
      this.timer = setTimeout(() => void tick(), period);
    };
    this.timer = setTimeout(() => void tick(), (this.probe.initialDelaySeconds ?? 0) * 1000);
  }

  private report(ok: boolean): void {
    this.result = ok;
    this.onResult(ok);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.successes = this.failures = 0;
    this.result = undefined;
  }
}
