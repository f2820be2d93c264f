// A node's registration and heartbeats, as a kubelet does them: create (or update) the Node object with its
// pod range and addresses, renew its Lease in kube-node-lease every 10 s, refresh its Ready condition every minute.
import { release } from "node:os";
import { Api, ApiError, microTime } from "../api.js";
import { nodeIp, nodeName, podCidr } from "../layout.js";

export const KUBELET_VERSION = "v1.34.4";
const LEASE_SECONDS = 40;

function conditions(now: string) {
  const cond = (type: string, status: string, reason: string, message: string) =>
    ({ type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: now });
  return [
    cond("Ready", "True", "KubeletReady", "ambit-local node agent is posting ready status"),
    cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "node has sufficient memory available"),
    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "node has no disk pressure"),
    cond("PIDPressure", "False", "KubeletHasSufficientPID", "node has sufficient PID available"),
  ];
}

export function nodeObject(index: number) {
  const name = nodeName(index);
  const capacity = { cpu: "2", memory: "8Gi", pods: "110", "ephemeral-storage": "20Gi" };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
      },
    },
    spec: { podCIDR: podCidr(index), podCIDRs: [podCidr(index)] },
    status: {
      addresses: [{ type: "InternalIP", address: nodeIp(index) }, { type: "Hostname", address: name }],
      capacity,
      allocatable: capacity,
      conditions: conditions(new Date().toISOString().replace(/\.\d{3}Z$/, "Z")),
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: `ambit-local-${name}`, systemUUID: `ambit-local-${name}`, bootID: `ambit-local-${name}`,
        kernelVersion: release(), osImage: "ambit-local", containerRuntimeVersion: "ambit-local://0.1.0",
        kubeletVersion: KUBELET_VERSION, kubeProxyVersion: KUBELET_VERSION, operatingSystem: "linux", architecture: "amd64",
      },
    },
  };
}

/** Creates or refreshes the Node object and its status. */
export async function registerNode(api: Api, index: number): Promise<void> {
  const node = nodeObject(index);
  try {
    await api.post("/api/v1/nodes", node);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) throw err;
    await api.patch(`/api/v1/nodes/${node.metadata.name}`, { metadata: { labels: node.metadata.labels } });
  }
  await updateNodeStatus(api, index);
}

export async function updateNodeStatus(api: Api, index: number): Promise<void> {
  const node = nodeObject(index);
  await api.patch(`/api/v1/nodes/${node.metadata.name}/status`, { status: node.status });
}

/** Creates or renews the node's Lease (the heartbeat the node-lifecycle controller watches). */
export async function renewLease(api: Api, index: number): Promise<void> {
  const name = nodeName(index);
  const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`;
  const spec = { holderIdentity: name, leaseDurationSeconds: LEASE_SECONDS, renewTime: microTime() };
  try {
    await api.patch(path, { spec }, "application/merge-patch+json");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    const owner = await api.get<{ metadata: { uid: string } }>(`/api/v1/nodes/${name}`);
    await api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
      apiVersion: "coordination.k8s.io/v1", kind: "Lease",
      metadata: { name, namespace: "kube-node-lease", ownerReferences: [{ apiVersion: "v1", kind: "Node", name, uid: owner.metadata.uid }] },
      spec,
    });
  }
}
