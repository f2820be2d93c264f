// @ambit/localcluster: a real Kubernetes control plane plus nodes made of network namespaces.
export { up, down, status, adminApi, kubectl, dnsAnswers, leftovers, validateNodeCount, type ClusterInfo, type Status } from "./cluster.js";
export { Api, ApiError, waitFor, targetFromKubeconfig } from "./api.js";
export { attachPod, detachPod, createNetns, deleteNetns, netnsExists } from "./network.js";
export * from "./layout.js";
export { ensureBinaries } from "./binaries.js";
export { installMesh, uninstallMesh, waitMeshReady, helm, ztunnelAccessLog, ztunnelGet, CHART_DIR, MESH_NAMESPACE, type MeshOptions } from "./mesh.js";
export { captureNodeLink, type Capture } from "./capture.js";
export { podExecArgv, podLogs } from "./pod-access.js";
