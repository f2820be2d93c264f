// @ambit/echo: the test workload. Library entry for tests and benchmarks; the process entry is main.ts.
export { startEcho, formatAddress, H2_PREFACE, MAX_BYTES, MAX_DELAY_MS, MAX_ECHOED_BODY } from "./server.js";
export type { EchoOptions, EchoServer, EchoReply } from "./server.js";
export { fetchEcho, request, connectH2c, parseTarget, EchoFetchError } from "./client.js";
export type { RequestOptions, RawAnswer } from "./client.js";
export { identityFromEnv, serveConfigFromEnv, UsageError, DEFAULT_HTTP_PORT, DEFAULT_TCP_PORT, DEFAULT_BIND_ADDRESS } from "./config.js";
export type { EchoIdentity, ServeConfig } from "./config.js";
