// The control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as host processes
// bound to loopback. Pods and node components reach the API server through a forwarder that listens on
// the cluster bridge (see forwarder.ts); the API server advertises that address for the `kubernetes` Service.
import { join } from "node:path";
import { createServer } from "node:net";
import { readFileSync } from "node:fs";
import { Api, FatalWaitError, waitFor } from "./api.js";
import { CLUSTER_CIDR, CLUSTER_GATEWAY_IP, SERVICE_CIDR, paths } from "./layout.js";
import type { Pki, User } from "./pki.js";
import { isRunning, logFile, startProcess } from "./processes.js";
import type { ProcessRecord } from "./state.js";
import type { StateLog } from "./state.js";

/** Users of the control plane, authenticated by bearer token (tokens.csv). */
export function clusterUsers(nodes: number): User[] {
  return [
    { name: "admin", groups: ["system:masters"] },
    { name: "system:kube-controller-manager", groups: [] },
    { name: "system:kube-scheduler", groups: [] },
    { name: "system:kube-proxy", groups: [] },
    { name: "ambit-local:coredns", groups: [] },
    ...Array.from({ length: nodes }, (_, i) => ({ name: `system:node:node-${i + 1}`, groups: ["system:nodes"] })),
  ];
}

/** A free TCP port on 127.0.0.1 (bound and released, so another process may still race for it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function httpOk(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

/** Fails the wait at once (with the end of its log) when the process has died. */
function mustRun(rec: ProcessRecord): void {
  if (isRunning(rec)) return;
  let lines = "";
  try {
    lines = readFileSync(logFile(rec.name), "utf8").trimEnd().split("\n").slice(-5).join("\n");
  } catch {
    // no log
  }
  throw new FatalWaitError(`${rec.name} exited; the end of ${logFile(rec.name)}:\n${lines}`);
}

export async function startEtcd(bin: string, log: StateLog): Promise<string> {
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const rec = startProcess({
    name: "etcd", owner: log.state.owner, command: join(bin, "etcd"),
    args: [
      `--data-dir=${paths.etcd()}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=default=http://127.0.0.1:${peer}`, "--unsafe-no-fsync=true", "--log-level=warn",
      "--quota-backend-bytes=2147483648",
    ],
  });
  log.process(rec);
  await waitFor(`etcd at ${url}`, () => (mustRun(rec), httpOk(`${url}/health`)), 30_000);
  return url;
}

export async function startApiserver(bin: string, etcd: string, pki: Pki, log: StateLog): Promise<number> {
  const port = await freePort();
  log.update({ apiserverPort: port });
  const rec = startProcess({
    name: "kube-apiserver", owner: log.state.owner, command: join(bin, "kube-apiserver"),
    args: [
      `--etcd-servers=${etcd}`,
      "--bind-address=127.0.0.1", `--secure-port=${port}`,
      // Pods reach the API server at this address (the forwarder), via the `kubernetes` Service.
      `--advertise-address=${CLUSTER_GATEWAY_IP}`,
      `--tls-cert-file=${pki.serverCertFile}`, `--tls-private-key-file=${pki.serverKeyFile}`,
      `--client-ca-file=${pki.caFile}`,
      `--token-auth-file=${pki.tokensFile}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-signing-key-file=${pki.saKeyFile}`, `--service-account-key-file=${pki.saPubFile}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      "--authorization-mode=Node,RBAC",
      "--allow-privileged=true",
      "--enable-priority-and-fairness=false",
      "--profiling=false",
      "--v=1",
    ],
  });
  log.process(rec);
  const api = new Api({ server: `https://127.0.0.1:${port}`, ca: pki.caCert, token: pki.tokens["admin"]! });
  await waitFor("kube-apiserver /readyz", async () => (mustRun(rec), (await api.get<string>("/readyz")) === "ok"), 90_000, 200);
  return port;
}

export function startControllerManager(bin: string, pki: Pki, log: StateLog): void {
  log.process(startProcess({
    name: "kube-controller-manager", owner: log.state.owner, command: join(bin, "kube-controller-manager"),
    args: [
      `--kubeconfig=${paths.kubeconfig("kube-controller-manager")}`,
      "--leader-elect=false",
      "--secure-port=0",
      // Everything a cluster needs except what we do ourselves (node IPAM: each node agent owns its range)
      // and legacy secret-based service-account tokens.
      "--controllers=*,-nodeipam,-serviceaccount-token",
      "--allocate-node-cidrs=false",
      `--cluster-cidr=${CLUSTER_CIDR}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      `--root-ca-file=${pki.caFile}`,
      "--use-service-account-credentials=true", // each controller acts as its own service account, as on real clusters
      "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
      "--node-monitor-grace-period=40s",
      "--v=1",
    ],
  }));
}

export function startScheduler(bin: string, log: StateLog): void {
  log.process(startProcess({
    name: "kube-scheduler", owner: log.state.owner, command: join(bin, "kube-scheduler"),
    args: [`--kubeconfig=${paths.kubeconfig("kube-scheduler")}`, "--leader-elect=false", "--secure-port=0", "--v=1"],
  }));
}
