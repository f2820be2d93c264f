#!/usr/bin/env node
// The chained CNI plugin ("ambit-cni"), run by the container runtime after the network plugin set up the pod's
// netns and before any container starts. On ADD it asks the node's agent to enroll the pod now, so its first
// packet is already redirected; it passes prevResult through. It never fails a pod that is not to be enrolled; if
// the agent cannot be reached, it asks the API server (with the kubeconfig the agent keeps for it) and starts the
// pod only when the answers prove it is not to be enrolled: any answer it cannot interpret (401, 403, 404, 5xx, a
// body that is not the object, no answer in time) fails the ADD (the runtime retries) rather than let the pod
// start unprotected.
import { readFileSync } from "node:fs";
import { STATUS_CODES, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { DataplaneMode, Labels } from "@ambit/protocol";
import { z } from "zod";
import { enrollment, type Decision, type NamespaceLike, type PodLike } from "./enrollment.js";

export interface PluginConf {
  cniVersion: string;
  name: string;
  type: string;
  prevResult?: unknown;
  /** The agent's unix socket. */
  agent_socket: string;
  /** A kubeconfig (JSON, written by the agent) to check the pod and its namespace when the agent is down. */
  kubeconfig?: string;
  /** Namespaces the agent never enrolls: their pods pass without any API call. */
  exclude_namespaces?: string[];
  /** Time limit of each API call of that check, in ms (default 5000). */
  kube_timeout_ms?: number;
}

const DEFAULT_KUBE_TIMEOUT_MS = 5000;
const MAX_BODY = 1 << 20;

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

/** The API server gave no answer the plugin can act on: the pod cannot be proven to stay out of the mesh. */
class KubeCheckError extends Error {
  override name = "KubeCheckError";
}

/** The parts of the agent's kubeconfig the plugin uses (see cni-install.ts, which writes it). */
const PluginKubeconfig = z.object({
  clusters: z.array(z.object({ cluster: z.object({ server: z.string().url(), "certificate-authority-data": z.string().optional() }) })).min(1),
  users: z.array(z.object({
    user: z.object({ token: z.string().optional(), "client-certificate-data": z.string().optional(), "client-key-data": z.string().optional() }),
  })).min(1),
});

interface KubeTarget {
  server: string;
  ca?: Buffer;
  token?: string;
  cert?: Buffer;
  key?: Buffer;
  timeoutMs: number;
}

function readKubeconfig(file: string, timeoutMs: number): KubeTarget {
  let parsed: z.infer<typeof PluginKubeconfig>;
  try {
    parsed = PluginKubeconfig.parse(JSON.parse(readFileSync(file, "utf8")));
  } catch (err) {
    throw new KubeCheckError(`the plugin's kubeconfig ${file} is unusable: ${(err as Error).message.split("\n")[0]}`);
  }
  const { cluster } = parsed.clusters[0]!;
  const { user } = parsed.users[0]!;
  const b64 = (v: string | undefined) => (v ? Buffer.from(v, "base64") : undefined);
  return {
    server: cluster.server.replace(/\/+$/, ""), timeoutMs,
    ...(cluster["certificate-authority-data"] ? { ca: b64(cluster["certificate-authority-data"])! } : {}),
    ...(user.token ? { token: user.token } : {}),
    ...(user["client-certificate-data"] && user["client-key-data"] ? { cert: b64(user["client-certificate-data"])!, key: b64(user["client-key-data"])! } : {}),
  };
}

const Labelled = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional(), labels: z.record(z.string(), z.string()).nullish(), annotations: z.record(z.string(), z.string()).nullish() }),
});

/**
 * GET of one object; resolves with it only on a 200 whose body is that object. Every other outcome rejects with a
 * KubeCheckError naming it: the status (401, 403, 404, 5xx, …), a body that is not the object, no answer in time.
 */
function kubeGet(t: KubeTarget, path: string, what: string, name: string): Promise<unknown> {
  const url = new URL(t.server + path);
  const request = url.protocol === "http:" ? httpRequest : httpsRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      headers: { accept: "application/json", ...(t.token ? { authorization: `Bearer ${t.token}` } : {}) },
      ...(t.ca ? { ca: t.ca } : {}), ...(t.cert && t.key ? { cert: t.cert, key: t.key } : {}),
    }, (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy(new KubeCheckError(`the API server's answer for ${what} is larger than ${MAX_BODY} bytes`));
        else chunks.push(c);
      });
      res.on("end", () => {
        if (status !== 200) return reject(new KubeCheckError(`the API server answered ${status} ${STATUS_CODES[status] ?? ""} for ${what}`.trimEnd()));
        let obj: unknown;
        try {
          obj = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          return reject(new KubeCheckError(`the API server answered 200 for ${what} with a body that is not JSON`));
        }
        const shape = Labelled.safeParse(obj);
        if (!shape.success || shape.data.metadata.name !== name) return reject(new KubeCheckError(`the API server answered 200 for ${what} with something else than ${what}`));
        resolve(obj);
      });
      res.on("error", (err) => reject(new KubeCheckError(`the API server's answer for ${what} broke off: ${err.message}`)));
    });
    const timer = setTimeout(() => req.destroy(new KubeCheckError(`the API server did not answer for ${what} within ${t.timeoutMs / 1000} s`)), t.timeoutMs);
    req.on("close", () => clearTimeout(timer));
    req.on("error", (err) => reject(err instanceof KubeCheckError ? err : new KubeCheckError(`the API server could not be reached for ${what}: ${err.message}`)));
    req.end();
  });
}

/**
 * With the agent down: would the agent enroll this pod? Decided as the agent decides (enrollment.ts), from the pod
 * and, when its labels leave it open, its namespace. Rejects with KubeCheckError when the answers do not tell.
 */
async function decideWithoutAgent(conf: PluginConf, namespace: string, name: string): Promise<Decision> {
  const excluded = new Set(conf.exclude_namespaces ?? []);
  if (excluded.has(namespace)) return { enroll: false, reason: `namespace ${namespace} is excluded` };
  if (!conf.kubeconfig) throw new KubeCheckError("the plugin has no kubeconfig to check the pod with");
  const target = readKubeconfig(conf.kubeconfig, conf.kube_timeout_ms ?? DEFAULT_KUBE_TIMEOUT_MS);
  const pod = (await kubeGet(target, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, `pod ${namespace}/${name}`, name)) as PodLike;
  const nsWith = (labels: Record<string, string>): NamespaceLike => ({ metadata: { name: namespace, labels } });
  const ifAmbient = enrollment(pod, nsWith({ [Labels.dataplaneMode]: DataplaneMode.ambient }), excluded);
  const ifNot = enrollment(pod, nsWith({}), excluded);
  if (ifAmbient.enroll === ifNot.enroll) return ifNot; // the namespace does not matter
  const ns = (await kubeGet(target, `/api/v1/namespaces/${encodeURIComponent(namespace)}`, `namespace ${namespace}`, namespace)) as NamespaceLike;
  return enrollment(pod, ns, excluded);
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
  const key = `${pod.namespace}/${pod.name}`;
  let agentErr: Error;
  try {
    const res = await agentPost(conf.agent_socket, "/cmd-add", pod);
    if (res.status === 200) return passThrough();
    fail(conf, 999, `the ambit cni-agent could not enroll ${key}`, res.body);
  } catch (err) {
    agentErr = err as Error;
  }
  const unreachable = `the ambit cni-agent is unreachable (${agentErr.message})`;
  let d: Decision;
  try {
    d = await decideWithoutAgent(conf, pod.namespace, pod.name);
  } catch (err) {
    fail(conf, 999, `${unreachable} and ${(err as Error).message}: cannot prove ${key} stays out of the mesh, refusing to start it unprotected`);
  }
  if (!d.enroll) return passThrough();
  fail(conf, 999, `${unreachable} and ${key} belongs in the mesh (${d.reason}): refusing to start it unprotected`);
}

main().catch((err: Error) => fail({}, 999, err.message));
