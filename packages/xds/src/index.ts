// @ambit/xds: delta ADS (incremental xDS) server and client over @grpc/grpc-js, generic over type URLs.
export * from "./service.js";
export * from "./store.js";
export * from "./metrics.js";
export * from "./log.js";
export * from "./log-limit.js";
export * from "./server.js";
export * from "./client.js";
export * from "./probe.js";
