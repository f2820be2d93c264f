// @ambit/controller: the control plane as a library (the program is main.ts).
export { Controller, type ControllerOptions } from "./controller.js";
export { loadConfig, ConfigError, type Config } from "./config.js";
export { buildAmbientIndex, type AmbientIndex, type Inputs } from "./model/index.js";
export { convertAuthorizationPolicy } from "./model/authorization.js";
