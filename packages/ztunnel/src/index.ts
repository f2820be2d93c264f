export * from "./rbac.js";
export * from "./state.js";
