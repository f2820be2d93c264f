export * from "./rbac.js";
