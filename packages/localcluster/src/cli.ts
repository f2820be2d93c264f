// ambit-local: a Kubernetes cluster on one machine, without Docker.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { adminApi, down, status, up } from "./cluster.js";
import { netnsPath, nodeIndex, nodeNetns, paths, podNetns } from "./layout.js";
import { execIn, execInNetns } from "./run.js";
import { loadState } from "./state.js";

const USAGE = `usage: ambit-local <command>

  up [--nodes N]            start a cluster of N nodes (default 2); replaces a previous one
  down                      remove everything the cluster made (processes, namespaces, files)
  status                    show the cluster's processes and nodes
  kubeconfig                print the admin kubeconfig path
  exec <ns>/<pod> [-c name] -- cmd…  run a command in a pod's container (its network, mounts, host name)
  logs <ns>/<pod> [-c name] print a pod's container logs
`;

class UsageError extends Error {}

function podRef(arg: string | undefined): { namespace: string; name: string } {
  const m = arg ? /^([^/]+)\/([^/]+)$/.exec(arg) : null;
  if (!m) throw new UsageError(`expected <namespace>/<pod>, got ${arg ?? "nothing"}`);
  return { namespace: m[1]!, name: m[2]! };
}

interface PodInfo {
  metadata: { uid: string; name: string; namespace: string };
  spec: { nodeName?: string; hostNetwork?: boolean };
}

async function getPod(arg: string | undefined): Promise<PodInfo> {
  const ref = podRef(arg);
  if (!loadState()) throw new Error("no local cluster is up (run: ambit-local up)");
  return adminApi().get<PodInfo>(`/api/v1/namespaces/${ref.namespace}/pods/${ref.name}`);
}

function podDir(pod: PodInfo): string {
  return join(paths.nodeRoot(pod.spec.nodeName ?? ""), "pods", `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`);
}

function readFileOr(file: string): string | null {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return null;
  }
}

function requireUp(): void {
  if (!loadState()) throw new Error("no local cluster is up (run: ambit-local up)");
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "up": {
      const { values } = parseArgs({ args: rest, options: { nodes: { type: "string", default: "2" } } });
      const info = await up({ nodes: Number(values.nodes) });
      console.log(`cluster up with ${info.nodes} node(s)\nkubectl --kubeconfig ${info.kubeconfig} get nodes\nambit-local down   # to remove it`);
      return 0;
    }
    case "down":
      await down();
      console.log("cluster removed");
      return 0;
    case "status": {
      const s = await status();
      if (s.phase === "down") {
        console.log("no cluster");
        return 1;
      }
      console.log(`phase: ${s.phase}\nnodes: ${s.nodes} (ready: ${s.readyNodes.join(", ") || "none"})\napiserver: ${s.apiserver}`);
      for (const p of s.processes) console.log(`  ${p.running ? "running" : "STOPPED"}  ${p.name} (pid ${p.pid})`);
      return s.phase === "up" && s.processes.every((p) => p.running) ? 0 : 1;
    }
    case "kubeconfig":
      requireUp();
      console.log(paths.adminKubeconfig());
      return 0;
    case "exec": {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { container: { type: "string", short: "c" } } });
      const sep = rest.indexOf("--");
      if (sep < 0 || positionals.length < 2) throw new UsageError("usage: ambit-local exec <ns>/<pod> [-c container] -- command [args…]");
      const pod = await getPod(positionals[0]);
      const argv = rest.slice(sep + 1);
      // Enter the running container's namespaces (network, mounts, host name), as kubectl exec does.
      const dir = podDir(pod);
      const names = values.container ? [values.container] : (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".pid")).map((f) => f.slice(0, -4)).sort() : []);
      for (const name of names) {
        const pid = readFileOr(join(dir, `${name}.pid`));
        if (pid && existsSync(`/proc/${pid}`)) return execIn(["nsenter", "--target", pid, "--net", "--mount", "--uts", "--", ...argv]);
      }
      if (values.container) throw new Error(`pod ${positionals[0]} has no running container "${values.container}"`);
      if (!pod.spec.nodeName) throw new Error(`pod ${positionals[0]} is not scheduled yet`);
      const netns = pod.spec.hostNetwork ? nodeNetns(nodeIndex(pod.spec.nodeName)) : podNetns(pod.metadata.uid);
      if (!existsSync(netnsPath(netns))) throw new Error(`pod ${positionals[0]} has no network namespace on this machine (is it running?)`);
      return execInNetns(netns, argv);
    }
    case "logs": {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { container: { type: "string", short: "c" } } });
      const pod = await getPod(positionals[0]);
      const dir = podDir(pod);
      const logs = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".log")).sort() : [];
      if (!logs.length) throw new Error(`no logs for pod ${positionals[0]} (it has not run on this cluster)`);
      const pick = values.container ? logs.filter((f) => f === `${values.container}.log`) : logs;
      if (!pick.length) throw new Error(`pod ${positionals[0]} has no container "${values.container}" (has: ${logs.map((f) => f.slice(0, -4)).join(", ")})`);
      for (const f of pick) process.stdout.write(readFileSync(join(dir, f)));
      return 0;
    }
    // Internal: processes the cluster starts for itself.
    case "forward": {
      const [netns, listen, target] = rest;
      const [lh, lp] = (listen ?? "").split(":");
      const [th, tp] = (target ?? "").split(":");
      const { runForwarder } = await import("./forwarder.js"); // loads the native addon: only here
      await runForwarder({ netns: netns!, listenHost: lh!, listenPort: Number(lp), targetHost: th!, targetPort: Number(tp) });
      return -1;
    }
    case "node-agent":
      await (await import("./node/agent.js")).runNodeAgent(rest[0] ?? "");
      return -1;
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(USAGE);
      return command ? 0 : 2;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

// Commands exit as soon as they are done (kept-alive API connections must not hold the process);
// the internal daemons (code -1) run until signalled.
main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`ambit-local: ${err.message}\n${err instanceof UsageError ? USAGE : ""}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
