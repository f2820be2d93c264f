#!/usr/bin/env node
// ambit-cni-agent: one per node (a hostNetwork DaemonSet pod). Configuration from the environment: NODE_NAME
// (required), POD_NAMESPACE (its own namespace, excluded from enrollment), AMBIENT_EXCLUDED_NAMESPACES (more,
// comma-separated; kube-system by default), INPOD_UDS (the ZDS socket, Istio's default path), AMBIENT_DNS_CAPTURE,
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
import { loadKubeConfig } from "@ambit/kube";
import { DEFAULT_ZDS_SOCKET } from "@ambit/protocol";
import { CniAgent } from "./agent.js";
import { UNINSTALL_ENV, decideOnExit, kubeExitCheckApi, parseUninstallSetting } from "./uninstall.js";
import { markDone, ownDaemonSet, requestUninstall, watchUninstallRequest } from "./uninstall-hook.js";

function fail(message: string): never {
  process.stderr.write(`ambit-cni-agent: ${message}\n`);
  process.exit(2);
}

function log(msg: string, fields?: object): void {
  console.log(JSON.stringify({ level: "info", msg, ...fields }));
}

/** The pre-delete hook: exits 0 even when some agents did not answer, so that an uninstall is never blocked. */
async function uninstallHook(): Promise<void> {
  const env = process.env;
  const namespace = env["POD_NAMESPACE"] || fail("POD_NAMESPACE is not set: give the hook its namespace (downward API metadata.namespace)");
  const timeout = Number(env["UNINSTALL_HOOK_TIMEOUT_SECONDS"] ?? 90);
  if (!Number.isFinite(timeout) || timeout <= 0) fail(`UNINSTALL_HOOK_TIMEOUT_SECONDS="${env["UNINSTALL_HOOK_TIMEOUT_SECONDS"]}": set it to a number of seconds`);
  const r = await requestUninstall(loadKubeConfig(), namespace, env["CNI_DAEMONSET"] || "istio-cni-node", timeout * 1000, log);
  if (r.missing.length) log("uninstall: some node agents did not confirm their cleanup; they clean up on SIGTERM instead", { done: r.done, missing: r.missing });
  else log("uninstall: every node agent cleaned its node", { done: r.done });
}

async function main(): Promise<void> {
  if (process.argv[2] === "uninstall-hook") return uninstallHook();
  if (process.argv[2] !== undefined) fail(`unknown command "${process.argv[2]}" (the agent takes none, or "uninstall-hook")`);
  const env = process.env;
  const nodeName = env["NODE_NAME"] || fail("NODE_NAME is not set: give the agent its node's name (downward API spec.nodeName)");
  const dns = env["AMBIENT_DNS_CAPTURE"] ?? "false";
  if (!["true", "false"].includes(dns)) fail(`AMBIENT_DNS_CAPTURE="${dns}": set it to true or false`);
  const excluded = new Set([env["POD_NAMESPACE"] || "istio-system", ...(env["AMBIENT_EXCLUDED_NAMESPACES"] ?? "kube-system").split(",").map((s) => s.trim()).filter(Boolean)]);
  const port = Number(env["MONITORING_PORT"] ?? 15014);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`MONITORING_PORT="${env["MONITORING_PORT"]}": set it to a port number`);
  const uninstallSetting = parseUninstallSetting(env[UNINSTALL_ENV]) ??
    fail(`${UNINSTALL_ENV}="${env[UNINSTALL_ENV]}": set it to auto (uninstall cleanup when the agent's DaemonSet is gone), true or false`);
  const probeSnat = env["AMBIT_PROBE_SNAT"] ?? "true";
  if (!["true", "false"].includes(probeSnat)) fail(`AMBIT_PROBE_SNAT="${probeSnat}": set it to true (SNAT the node's probes of enrolled pods to 169.254.7.127, so policies do not judge them) or false`);
  const cni = env["CNI_CONF_DIR"] ? { confDir: env["CNI_CONF_DIR"], binDir: env["CNI_BIN_DIR"] || "/opt/cni/bin", socket: env["CNI_AGENT_SOCKET"] || "/var/run/ambit/cni.sock" } : undefined;
  const kc = loadKubeConfig();
  const agent = new CniAgent({
    kc, nodeName, excludedNamespaces: [...excluded], zdsSocket: env["INPOD_UDS"] || DEFAULT_ZDS_SOCKET, dnsCapture: dns === "true",
    monitoringPort: port, ...(cni ? { cni } : {}), ...(probeSnat === "true" ? { probeSnat: { netns: "" } } : {}),
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return; // a second signal changes nothing: the first one's shutdown is bounded
    stopping = true;
    void decideOnExit(kubeExitCheckApi(kc), { podName: env["POD_NAME"], namespace: env["POD_NAMESPACE"] }, uninstallSetting)
      .then((d) => {
        log("shutting down", { signal, mode: d.uninstall ? "uninstall" : "restart", reason: d.reason });
        return agent.stop({ uninstall: d.uninstall });
      })
      .then(() => process.exit(0), (err: Error) => { log("shutdown failed", { err: err.message }); process.exit(1); });
  };
  process.on("SIGTERM", stop).on("SIGINT", stop);
  await agent.start();
  // Answer the chart's pre-delete hook.
  const podName = env["POD_NAME"];
  const namespace = env["POD_NAMESPACE"];
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

main().then(() => { if (process.argv[2] === "uninstall-hook") process.exit(0); }, (err: Error) => fail(err.stack ?? err.message));
