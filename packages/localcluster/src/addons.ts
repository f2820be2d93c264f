// Cluster add-ons that run before the node agents can run pods: kube-proxy in every node netns, and
// CoreDNS for cluster.local as a system pod of node-1 behind the kube-dns Service.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Api } from "./api.js";
import { attachPod, createNetns } from "./network.js";
import {
  CLUSTER_CIDR, CLUSTER_DOMAIN, DNS_SERVICE_IP, nodeIp, nodeName, nodeNetns, paths, stateDir,
} from "./layout.js";
import { startProcess } from "./processes.js";
import type { StateLog } from "./state.js";

export const DNS_NETNS = "ambit-dns";
export const DNS_POD_IP = "10.244.1.2";

export function startKubeProxy(bin: string, index: number, log: StateLog): void {
  log.process(startProcess({
    name: `kube-proxy-${nodeName(index)}`, owner: log.state.owner, command: join(bin, "kube-proxy"), netns: nodeNetns(index),
    args: [
      `--kubeconfig=${paths.kubeconfig("kube-proxy")}`,
      `--hostname-override=${nodeName(index)}`,
      "--proxy-mode=iptables",
      `--cluster-cidr=${CLUSTER_CIDR}`,
      `--bind-address=${nodeIp(index)}`,
      // Leave the netns's conntrack settings alone (they are not all writable in a netns).
      "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0s", "--conntrack-tcp-timeout-close-wait=0s",
      "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
      "--v=1",
    ],
  }));
}

/** RBAC for CoreDNS's user, the kube-dns Service and its EndpointSlice (the Service has no selector). */
export async function createDnsObjects(api: Api): Promise<void> {
  await api.ensure("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
    metadata: { name: "ambit-local:coredns" },
    rules: [
      { apiGroups: [""], resources: ["endpoints", "services", "pods", "namespaces"], verbs: ["list", "watch"] },
      { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
    ],
  } as never);
  await api.ensure("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    metadata: { name: "ambit-local:coredns" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "ambit-local:coredns" },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "ambit-local:coredns" }],
  } as never);
  await api.ensure("/api/v1/namespaces/kube-system/services", {
    metadata: { name: "kube-dns", labels: { "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS" } },
    spec: {
      clusterIP: DNS_SERVICE_IP,
      ports: [{ name: "dns", port: 53, protocol: "UDP" }, { name: "dns-tcp", port: 53, protocol: "TCP" }],
    },
  } as never);
  await api.ensure("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices", {
    metadata: {
      name: "kube-dns-ambit-local",
      labels: { "kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "ambit-local" },
    },
    addressType: "IPv4",
    endpoints: [{ addresses: [DNS_POD_IP], conditions: { ready: true }, nodeName: nodeName(1) }],
    ports: [{ name: "dns", port: 53, protocol: "UDP" }, { name: "dns-tcp", port: 53, protocol: "TCP" }],
  } as never);
}

/** CoreDNS in its own netns wired into node-1's pod range, serving cluster.local from the API. */
export async function startCoreDns(bin: string, log: StateLog): Promise<void> {
  await createNetns(DNS_NETNS, log);
  await attachPod(1, DNS_NETNS, DNS_POD_IP);
  const dir = join(stateDir(), "coredns");
  mkdirSync(dir, { recursive: true });
  const corefile = join(dir, "Corefile");
  writeFileSync(corefile, `.:53 {
    errors
    ready 127.0.0.1:8181
    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
        kubeconfig ${paths.kubeconfig("coredns")} ambit-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
`);
  log.process(startProcess({ name: "coredns", owner: log.state.owner, command: join(bin, "coredns"), args: ["-conf", corefile], netns: DNS_NETNS }));
}
