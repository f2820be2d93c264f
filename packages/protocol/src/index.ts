// @ambit/protocol: Istio wire-compatible message types and pure helpers. No I/O.
export * from "./messages.js";
export * from "./constants.js";
export * from "./typeurls.js";
export * from "./spiffe.js";
export * from "./names.js";
export * from "./ip.js";
export * from "./zds.js";
export * from "./hbone.js";
export * from "./env.js";
