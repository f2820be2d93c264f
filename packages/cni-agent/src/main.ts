#!/usr/bin/env node
// ambit-cni-agent: one per node (a hostNetwork DaemonSet pod). Configuration from the environment: NODE_NAME
// (required), POD_NAMESPACE (its own namespace, excluded from enrollment), AMBIENT_EXCLUDED_NAMESPACES (more,
// comma-separated; kube-system by default), INPOD_UDS (the ZDS socket, Istio's default path), AMBIENT_DNS_CAPTURE,
// MONITORING_PORT (/healthz, /readyz, /metrics; default 15014), CNI_CONF_DIR / CNI_BIN_DIR / CNI_AGENT_SOCKET
// (where to install the chained plugin; not installed when CNI_CONF_DIR is unset).
import { loadKubeConfig } from "@ambit/kube";
import { DEFAULT_ZDS_SOCKET } from "@ambit/protocol";
import { CniAgent } from "./agent.js";

function fail(message: string): never {
  process.stderr.write(`ambit-cni-agent: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const env = process.env;
  const nodeName = env["NODE_NAME"] || fail("NODE_NAME is not set: give the agent its node's name (downward API spec.nodeName)");
  const dns = env["AMBIENT_DNS_CAPTURE"] ?? "false";
  if (!["true", "false"].includes(dns)) fail(`AMBIENT_DNS_CAPTURE="${dns}": set it to true or false`);
  const excluded = new Set([env["POD_NAMESPACE"] || "istio-system", ...(env["AMBIENT_EXCLUDED_NAMESPACES"] ?? "kube-system").split(",").map((s) => s.trim()).filter(Boolean)]);
  const port = Number(env["MONITORING_PORT"] ?? 15014);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`MONITORING_PORT="${env["MONITORING_PORT"]}": set it to a port number`);
  const cni = env["CNI_CONF_DIR"] ? { confDir: env["CNI_CONF_DIR"], binDir: env["CNI_BIN_DIR"] || "/opt/cni/bin", socket: env["CNI_AGENT_SOCKET"] || "/var/run/ambit/cni.sock" } : undefined;
  const agent = new CniAgent({
    kc: loadKubeConfig(), nodeName, excludedNamespaces: [...excluded], zdsSocket: env["INPOD_UDS"] || DEFAULT_ZDS_SOCKET, dnsCapture: dns === "true",
    monitoringPort: port, ...(cni ? { cni } : {}),
  });
  const stop = () => void agent.stop().then(() => process.exit(0), () => process.exit(1));
  process.on("SIGTERM", stop).on("SIGINT", stop);
  await agent.start();
}

main().catch((err: Error) => fail(err.stack ?? err.message));
