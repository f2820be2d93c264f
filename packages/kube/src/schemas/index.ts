export * from "./common.js";
export * from "./core.js";
export * from "./istio.js";
export * from "./gateway.js";
export * from "./format.js";
