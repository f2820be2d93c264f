// @ambit/cni-agent: the per-node agent that puts pods into the mesh (the program is main.ts).
export { CniAgent, type AgentOptions } from "./agent.js";
export { enrollment, type Decision } from "./enrollment.js";
export * from "./redirect/index.js";
export * from "./zds/index.js";
