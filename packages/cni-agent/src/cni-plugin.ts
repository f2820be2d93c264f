#!/usr/bin/env node
// The chained CNI plugin ("ambit-cni"), run by the container runtime after the network plugin set up the pod's
// netns and before any container starts. On ADD it asks the node's agent to enroll the pod now, so its first
// packet is already redirected; it passes prevResult through. It never fails a pod that is not to be enrolled; if
// the agent cannot be reached and the pod's namespace is enrolled, it fails the ADD (the runtime retries) rather
// than let the pod start unprotected.
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { DataplaneMode, Labels } from "@ambit/protocol";


export interface PluginConf {
  cniVersion: string;
  name: string;
  type: string;
  prevResult?: unknown;
  /** The agent's unix socket. */
  agent_socket: string;
  /** A kubeconfig (JSON) to check the namespace when the agent is down. */
  kubeconfig?: string;
}

function out(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj));
}

function fail(conf: Partial<PluginConf>, code: number, msg: string, details = ""): never {
  out({ cniVersion: conf.cniVersion ?? "1.0.0", code, msg, details });
  process.exit(1);
}

function cniArgs(): Record<string, string> {
  return Object.fromEntries((process.env["CNI_ARGS"] ?? "").split(";").filter(Boolean).map((kv) => kv.split("=") as [string, string]));
}

/** POSTs to the agent over its unix socket; resolves with the status and body. */
function agentPost(socketPath: string, path: string, body: object): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, path, method: "POST", headers: { "content-type": "application/json" }, timeout: 30_000 }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("timeout", () => req.destroy(new Error("the agent did not answer within 30 s")));
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

/** GET on the API server with the kubeconfig the agent wrote for the plugin. */
function kubeGet(kubeconfig: string, path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const cfg = JSON.parse(readFileSync(kubeconfig, "utf8"));
  const url = new URL(path, cfg.clusters[0].cluster.server);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, {
      ca: Buffer.from(cfg.clusters[0].cluster["certificate-authority-data"], "base64"),
      headers: { authorization: `Bearer ${cfg.users[0].user.token}`, accept: "application/json" }, timeout: 10_000,
    }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c));
      res.on("end", () => { try { resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }); } catch (err) { reject(err); } });
    });
    req.on("error", reject);
    req.end();
  });
}

/** With the agent down: does this pod belong in the mesh? (An unreachable API counts as yes: fail closed.) */
async function wouldEnroll(conf: PluginConf, namespace: string, name: string): Promise<boolean> {
  if (!conf.kubeconfig) return true;
  const pod = await kubeGet(conf.kubeconfig, `/api/v1/namespaces/${namespace}/pods/${name}`);
  const podMode = (pod.json["metadata"] as { labels?: Record<string, string> } | undefined)?.labels?.[Labels.dataplaneMode];
  if (podMode === DataplaneMode.none) return false;
  if (podMode === DataplaneMode.ambient) return true;
  const ns = await kubeGet(conf.kubeconfig, `/api/v1/namespaces/${namespace}`);
  return (ns.json["metadata"] as { labels?: Record<string, string> } | undefined)?.labels?.[Labels.dataplaneMode] === DataplaneMode.ambient;
}

async function main(): Promise<void> {
  const command = process.env["CNI_COMMAND"];
  if (command === "VERSION") return out({ cniVersion: "1.0.0", supportedVersions: ["0.4.0", "1.0.0", "1.1.0"] });
  let conf: PluginConf;
  try {
    conf = JSON.parse(readFileSync(0, "utf8")) as PluginConf;
  } catch (err) {
    fail({}, 6, "cannot decode the network configuration", (err as Error).message);
  }
  const passThrough = () => out(conf.prevResult ?? { cniVersion: conf.cniVersion });
  const args = cniArgs();
  const pod = { namespace: args["K8S_POD_NAMESPACE"] ?? "", name: args["K8S_POD_NAME"] ?? "", uid: args["K8S_POD_UID"] ?? "", netns: process.env["CNI_NETNS"] ?? "" };
  if (command === "DEL") {
    await agentPost(conf.agent_socket, "/cmd-del", pod).catch(() => undefined); // best effort: DEL must succeed
    return passThrough();
  }
  if (command === "CHECK") return;
  if (command !== "ADD") fail(conf, 4, `unknown CNI_COMMAND "${command ?? ""}"`);
  if (!pod.namespace || !pod.name) return passThrough(); // not a Kubernetes pod: nothing to do
  try {
    const res = await agentPost(conf.agent_socket, "/cmd-add", pod);
    if (res.status === 200) return passThrough();
    fail(conf, 999, `the ambit cni-agent could not enroll ${pod.namespace}/${pod.name}`, res.body);
  } catch (err) {
    let enroll = true;
    try {
      enroll = await wouldEnroll(conf, pod.namespace, pod.name);
    } catch {
      // the API is unreachable too: fail closed
    }
    if (!enroll) return passThrough();
    fail(conf, 999, `the ambit cni-agent is unreachable (${(err as Error).message}) and ${pod.namespace}/${pod.name} belongs in the mesh: refusing to start it unprotected`);
  }
}

main().catch((err: Error) => fail({}, 999, err.message));
