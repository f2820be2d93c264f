// The ZDS server of the CNI agent (see README-zds.md).
export { ZdsServer, DEFAULT_ZDS_ACK_TIMEOUT_MS, type ZdsServerOptions, type ZdsServerEvents, type ZdsPod, type ZdsPodStatus, type ZdsConnectionInfo } from "./server.js";
export { ZdsNackError, ZdsNotConnectedError, ZdsConnectionLostError, ZdsAckTimeoutError, ZdsRequestError } from "./errors.js";
export { silentZdsLogger, type ZdsLogger } from "./log.js";
