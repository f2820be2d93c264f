// Argument checks (bad arguments are TypeErrors, never a crash) and error helpers.
import { isIP } from "node:net";
import { constants } from "node:os";

import { native } from "./native.js";

/** A TypeError with Node's code for a bad argument. */
export function invalidArg(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: "ERR_INVALID_ARG_VALUE" });
}

export function checkInt(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArg(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

export function checkFd(value: unknown, name = "fd"): number {
  return checkInt(value, name, 0, 0x7fffffff);
}

export function checkBool(value: unknown, name: string): boolean {
  if (typeof value !== "boolean") throw invalidArg(`${name} must be a boolean, got ${String(value)}`);
  return value;
}

export function checkOptionalBool(value: unknown, name: string): boolean | undefined {
  return value === undefined ? undefined : checkBool(value, name);
}

export function checkOptionalInt(value: unknown, name: string, min: number, max: number): number | undefined {
  return value === undefined ? undefined : checkInt(value, name, min, max);
}

/** A numeric IPv4/IPv6 address (no host names: resolving them is the caller's business). */
export function checkIp(value: unknown, name: string): string {
  if (typeof value !== "string" || isIP(value) === 0) {
    throw invalidArg(`${name} must be a numeric IPv4 or IPv6 address, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkPath(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "" || value.includes("\0")) {
    throw invalidArg(`${name} must be a non-empty path without NUL bytes, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A network namespace: a path such as /var/run/netns/foo or /proc/<pid>/ns/net, or an open fd. */
export type Netns = string | number;

export function checkNetns(value: unknown): Netns | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return checkPath(value, "netns");
  if (typeof value === "number") return checkFd(value, "netns");
  throw invalidArg(`netns must be a path (string) or an fd (number), got ${typeof value}`);
}

export function checkOptions(value: unknown, name = "options"): Record<string, unknown> {
  if (typeof value !== "object" || value === null) throw invalidArg(`${name} must be an object`);
  return value as Record<string, unknown>;
}

/** An Error shaped like Node's system errors (code, negative errno, syscall). */
export function systemError(code: keyof typeof constants.errno, syscall: string, text: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${syscall}: ${text}`), { code, errno: -constants.errno[code], syscall });
}

/** Closes an fd this package owns on a cleanup path, where a second error must not mask the first. */
export function closeQuietly(fd: number): void {
  try {
    native.closeFd(fd);
  } catch {
    // already closed: nothing left to release
  }
}
