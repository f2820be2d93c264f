// @ambit/cni-agent: the per-node agent that puts pods into the mesh. So far: the in-pod redirection rules
// (src/redirect) and the ZDS server that hands pods to ztunnel (src/zds). Enrollment, the chained CNI plugin and
// the agent program come next (issue 7).
export * from "./redirect/index.js";
export * from "./zds/index.js";
