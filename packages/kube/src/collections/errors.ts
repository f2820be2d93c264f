// Where errors go when a collection was given no `onError` hook.

import type { ErrorHook, ErrorInfo } from "./types.js";

function consoleHook(error: unknown, info: ErrorInfo): void {
  const where = info.key === undefined ? info.collection : `${info.collection} key ${JSON.stringify(info.key)}`;
  const message = error instanceof Error ? error.message : String(error);
  console.error(`[collections] ${info.phase} error in ${where}: ${message}`);
}

let defaultHook: ErrorHook = consoleHook;

/**
 * Replaces the process-wide fallback error hook (initially one line on stderr). Programs point it at their logger;
 * collections given their own `onError` never use it. Returns the previous hook.
 */
export function setDefaultErrorHook(hook: ErrorHook): ErrorHook {
  const previous = defaultHook;
  defaultHook = hook;
  return previous;
}

/** A hook that forwards to the process-wide fallback as it is at the time of the error. */
export const reportToDefault: ErrorHook = (error, info) => {
  try {
    defaultHook(error, info);
  } catch {
    // an error hook must never break the runtime
  }
};

/** Wraps a user hook so that its own failures cannot break the runtime. */
export function safeHook(hook: ErrorHook | undefined): ErrorHook {
  if (!hook) return reportToDefault;
  return (error, info) => {
    try {
      hook(error, info);
    } catch (hookError) {
      reportToDefault(hookError, info);
    }
  };
}
