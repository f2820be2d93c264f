// What every pod proxy shares: the configuration, the xDS state, the certificate manager, telemetry and the log.
import type { Logger } from "pino";
import type { Config } from "../config.js";
import type { CertificateManager } from "../identity/index.js";
import type { ProxyState } from "../state.js";
import type { Telemetry } from "../telemetry/index.js";

export interface ProxyContext {
  config: Config;
  state: ProxyState;
  certs: CertificateManager;
  telemetry: Telemetry;
  log: Logger;
}
