// Test helper: waiting for a condition or an event instead of sleeping for a fixed time.
import type { EventEmitter } from "node:events";

/** Polls `check` (every 10 ms) until it returns a truthy value or throws no more; fails after `timeoutMs`. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The first emission of `event`, with a deadline. */
export function once<T = unknown>(emitter: EventEmitter, event: string, timeoutMs = 15_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(event, on); reject(new Error(`no '${event}' within ${timeoutMs} ms`)); }, timeoutMs);
    const on = (v: T) => { clearTimeout(timer); resolve(v); };
    emitter.once(event, on);
  });
}

/**
 * Like waitFor, for a test on vitest's fake timers (a faked setTimeout would never fire, and vi.waitFor moves the
 * fake clock): polls on setImmediate, with a deadline in real time.
 */
export async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}
