// ambit-local: a Kubernetes cluster on one machine, without Docker.
import { parseArgs } from "node:util";
import { down, status, up } from "./cluster.js";
import { paths } from "./layout.js";
import { installMesh } from "./mesh.js";
import { parsePodRef, podExecArgv, podLogs } from "./pod-access.js";
import { execIn } from "./run.js";
import { loadState } from "./state.js";

const USAGE = `usage: ambit-local <command>

  up [--nodes N] [--mesh [-f values.yaml] [--set k=v]]
                            start a cluster of N nodes (default 2); replaces a previous one; with --mesh, also
                            install the mesh with its Helm chart (charts/ambit) and wait until it is Ready
  down                      remove everything the cluster made (processes, namespaces, files)
  status                    show the cluster's processes and nodes
  kubeconfig                print the admin kubeconfig path
  exec <ns>/<pod> [-c name] -- cmd…  run a command in a pod's container (its network, mounts, host name)
  logs <ns>/<pod> [-c name] print a pod's container logs
`;

class UsageError extends Error {}

/** A "<namespace>/<pod>" argument, or a usage error. */
function podArg(arg: string | undefined): string {
  try {
    parsePodRef(arg);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return arg!;
}

function requireUp(): void {
  if (!loadState()) throw new Error("no local cluster is up (run: ambit-local up)");
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "up": {
      const { values } = parseArgs({
        args: rest,
        options: { nodes: { type: "string", default: "2" }, mesh: { type: "boolean", default: false }, values: { type: "string", short: "f", multiple: true }, set: { type: "string", multiple: true } },
      });
      if (!values.mesh && (values.values?.length || values.set?.length)) throw new UsageError("-f/--values and --set go with --mesh");
      const info = await up({ nodes: Number(values.nodes) });
      if (values.mesh) {
        process.stderr.write("[ambit-local] installing the mesh: helm upgrade --install ambit charts/ambit -n istio-system\n");
        await installMesh({ values: values.values ?? [], set: values.set ?? [] });
      }
      console.log(`cluster up with ${info.nodes} node(s)${values.mesh ? ", mesh installed (release ambit in istio-system)" : ""}\nkubectl --kubeconfig ${info.kubeconfig} get nodes\nambit-local down   # to remove it`);
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
      return execIn(await podExecArgv(podArg(positionals[0]), rest.slice(sep + 1), values.container));
    }
    case "logs": {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { container: { type: "string", short: "c" } } });
      process.stdout.write(await podLogs(podArg(positionals[0]), values.container));
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
