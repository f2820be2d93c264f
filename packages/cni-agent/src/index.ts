// @ambit/cni-agent: the per-node agent that puts pods into the mesh (the program is main.ts).
export { CniAgent, type AgentOptions, type StopOptions } from "./agent.js";
export { enrollment, type Decision } from "./enrollment.js";
export * from "./redirect/index.js";
export * from "./zds/index.js";
export { unchainFrom, uninstallPlugin, PLUGIN_KUBECONFIG } from "./cni-install.js";
export * from "./uninstall.js";
