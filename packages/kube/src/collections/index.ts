export type {
  Batch,
  Collection,
  Ctx,
  Equals,
  ErrorHook,
  ErrorInfo,
  ErrorPhase,
  Event,
  EventType,
  Handler,
  Index,
  SubscribeOptions,
  Unsubscribe,
} from "./types.js";
export { deepEqual } from "./equal.js";
export { setDefaultErrorHook } from "./errors.js";
export { BaseCollection, type BaseOptions } from "./base.js";
export { StaticCollection, type StaticOptions } from "./static.js";
export { DerivedCollection, derive, type DeriveOptions, type DeriveResult, type Transform } from "./derive.js";
export { JoinCollection, join, type JoinOptions } from "./join.js";
export { Singleton, singleton, type SingletonOptions } from "./singleton.js";
