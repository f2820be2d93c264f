// ztunnel's admin (15000), stats (15020) and readiness (15021) servers.
export * from "./servers.js";
