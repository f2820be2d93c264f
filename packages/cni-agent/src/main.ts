#!/usr/bin/env node
// ambit-cni-agent: one per node (a hostNetwork DaemonSet pod). Configuration from the environment: NODE_NAME
// (required), POD_NAMESPACE (its own namespace, excluded from enrollment), AMBIENT_EXCLUDED_NAMESPACES (more,
// comma-separated; kube-system by default), INPOD_UDS (the ZDS socket, Istio's default path), AMBIT_ZDS_ACK_TIMEOUT
// (how long ztunnel has to ack a ZDS message before its connection is closed as broken; 5s), AMBIENT_DNS_CAPTURE,
// MONITORING_PORT (/healthz, /readyz, /metrics; default 15014), CNI_CONF_DIR / CNI_BIN_DIR / CNI_AGENT_SOCKET
// (where to install the chained plugin; not installed when CNI_CONF_DIR is unset), POD_NAME (its own pod, with
// POD_NAMESPACE: how it finds its DaemonSet on exit), AMBIT_CNI_UNINSTALL_ON_EXIT (auto | true | false),
// AMBIT_PROBE_SNAT (true: the node's probes of enrolled pods are SNATed to 169.254.7.127; see redirect/probe-snat.ts).
//
// Uninstall: the chart's pre-delete hook runs `ambit-cni-agent uninstall-hook` (CNI_DAEMONSET, default
// istio-cni-node; UNINSTALL_HOOK_TIMEOUT_SECONDS, default 90), which asks every agent to clean its node while the
// RBAC still exists (uninstall-hook.ts). On SIGTERM/SIGINT: a restart (the DaemonSet is there) leaves the node as it
// is; an uninstall (the DaemonSet is gone or being deleted) cleans it up (uninstall.ts), a fallback for a removal
// without the hook.
import { z } from "zod";
import { loadKubeConfig } from "@ambit/kube";
import { ConfigError, DEFAULT_ZDS_SOCKET, envVar, parseEnv } from "@ambit/protocol";
import { CniAgent } from "./agent.js";
import { UNINSTALL_ENV, decideOnExit, kubeExitCheckApi, parseUninstallSetting } from "./uninstall.js";
import { markDone, ownDaemonSet, requestUninstall, watchUninstallRequest } from "./uninstall-hook.js";

const AgentEnv = z.object({
  NODE_NAME: z.string().min(1),
  POD_NAME: z.string().optional(),
  POD_NAMESPACE: envVar.dnsName.optional(),
  AMBIENT_EXCLUDED_NAMESPACES: envVar.list("kube-system"),
  INPOD_UDS: z.string().default(DEFAULT_ZDS_SOCKET),
  AMBIT_ZDS_ACK_TIMEOUT: envVar.duration("5s").refine((ms) => ms > 0, "must be longer than 0"),
  AMBIENT_DNS_CAPTURE: envVar.bool(false),
  MONITORING_PORT: envVar.port(15014),
  [UNINSTALL_ENV]: z.string().default("auto").transform((v, ctx) => parseUninstallSetting(v) ?? (ctx.addIssue({ code: "custom", message: "is not auto, true or false" }), z.NEVER)),
  AMBIT_PROBE_SNAT: envVar.bool(true),
  CNI_CONF_DIR: z.string().optional(),
  CNI_BIN_DIR: z.string().default("/opt/cni/bin"),
  CNI_AGENT_SOCKET: z.string().default("/var/run/ambit/cni.sock"),
});

const HookEnv = z.object({
  POD_NAMESPACE: envVar.dnsName,
  CNI_DAEMONSET: envVar.dnsName.default("istio-cni-node"),
  UNINSTALL_HOOK_TIMEOUT_SECONDS: z.coerce.number().positive().default(90),
});

const FIX: Record<string, string> = {
  NODE_NAME: "the node's name (downward API spec.nodeName)",
  POD_NAMESPACE: "the pod's namespace (downward API metadata.namespace)",
  AMBIENT_DNS_CAPTURE: "true or false",
  AMBIT_ZDS_ACK_TIMEOUT: "a duration such as 5s or 500ms: how long ztunnel has to acknowledge a ZDS message",
  MONITORING_PORT: "a port number",
  [UNINSTALL_ENV]: "auto (uninstall cleanup when the agent's DaemonSet is gone), true or false",
  AMBIT_PROBE_SNAT: "true (SNAT the node's probes of enrolled pods to 169.254.7.127, so policies do not judge them) or false",
  UNINSTALL_HOOK_TIMEOUT_SECONDS: "a number of seconds",
};

function fail(message: string): never {
  process.stderr.write(`ambit-cni-agent: ${message}\n`);
  process.exit(2);
}

function log(msg: string, fields?: object): void {
  console.log(JSON.stringify({ level: "info", msg, ...fields }));
}

/** The pre-delete hook: exits 0 even when some agents did not answer, so that an uninstall is never blocked. */
async function uninstallHook(): Promise<void> {
  const env = parseEnv(HookEnv, process.env, FIX);
  const r = await requestUninstall(loadKubeConfig(), env.POD_NAMESPACE, env.CNI_DAEMONSET, env.UNINSTALL_HOOK_TIMEOUT_SECONDS * 1000, log);
  if (r.missing.length) log("uninstall: some node agents did not confirm their cleanup; they clean up on SIGTERM instead", { done: r.done, missing: r.missing });
  else log("uninstall: every node agent cleaned its node", { done: r.done });
}

async function main(): Promise<void> {
  if (process.argv[2] === "uninstall-hook") return uninstallHook();
  if (process.argv[2] !== undefined) fail(`unknown command "${process.argv[2]}" (the agent takes none, or "uninstall-hook")`);
  const env = parseEnv(AgentEnv, process.env, FIX);
  const excluded = new Set([env.POD_NAMESPACE ?? "istio-system", ...env.AMBIENT_EXCLUDED_NAMESPACES]);
  const cni = env.CNI_CONF_DIR ? { confDir: env.CNI_CONF_DIR, binDir: env.CNI_BIN_DIR, socket: env.CNI_AGENT_SOCKET } : undefined;
  const kc = loadKubeConfig();
  const agent = new CniAgent({
    kc, nodeName: env.NODE_NAME, excludedNamespaces: [...excluded], zdsSocket: env.INPOD_UDS, zdsAckTimeoutMs: env.AMBIT_ZDS_ACK_TIMEOUT, dnsCapture: env.AMBIENT_DNS_CAPTURE,
    monitoringPort: env.MONITORING_PORT, ...(cni ? { cni } : {}), ...(env.AMBIT_PROBE_SNAT ? { probeSnat: { netns: "" } } : {}),
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return; // a second signal changes nothing: the first one's shutdown is bounded
    stopping = true;
    void decideOnExit(kubeExitCheckApi(kc), { podName: env.POD_NAME, namespace: env.POD_NAMESPACE }, env[UNINSTALL_ENV])
      .then((d) => {
        log("shutting down", { signal, mode: d.uninstall ? "uninstall" : "restart", reason: d.reason });
        return agent.stop({ uninstall: d.uninstall });
      })
      .then(() => process.exit(0), (err: Error) => { log("shutdown failed", { err: err.message }); process.exit(1); });
  };
  process.on("SIGTERM", stop).on("SIGINT", stop);
  await agent.start();
  // Answer the chart's pre-delete hook.
  const { POD_NAME: podName, POD_NAMESPACE: namespace } = env;
  const daemonSet = podName && namespace ? await ownDaemonSet(kc, namespace, podName).catch(() => undefined) : undefined;
  if (daemonSet) {
    watchUninstallRequest(kc, namespace!, daemonSet, () => {
      log("uninstall requested by the chart's pre-delete hook: cleaning up the node", { daemonSet });
      void agent.stop({ uninstall: true })
        .then(() => markDone(kc, namespace!, podName!))
        .then(() => log("uninstall: reported done"), (err: Error) => log("uninstall: could not report done", { err: err.message }));
    });
  }
}

main().then(() => { if (process.argv[2] === "uninstall-hook") process.exit(0); }, (err: Error) => fail(err instanceof ConfigError ? err.message : err.stack ?? err.message));
