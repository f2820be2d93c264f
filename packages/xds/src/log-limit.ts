// Bounded logging of what clients cause. A client decides how many NACKs (or malformed requests, or refused
// streams) it sends; it must not decide how many lines the server logs. Lines caused by a client pass a token
// bucket of their stream and one shared by all streams; what does not pass is counted and summarised in one line
// per interval. Client-supplied text is cut to a bounded length before it is logged or kept.
import type { Logger } from "./log.js";

export interface ClientLogLimits {
  /** Lines per stream: this many at once, then one per `streamIntervalMs`. Default 3. */
  streamBurst?: number;
  /** Default 60 000 (one line a minute per stream once the burst is spent). */
  streamIntervalMs?: number;
  /** Lines over all streams: this many at once, then one per `globalIntervalMs`. Default 20. */
  globalBurst?: number;
  /** Default 1000. */
  globalIntervalMs?: number;
  /** A summary of the lines not logged is written at most once per this interval. Default 60 000. */
  summaryIntervalMs?: number;
  /** Longest client-supplied text logged or kept (an error detail); the rest is cut. Default 1024 characters. */
  maxDetailChars?: number;
}

/** Refills continuously: `burst` tokens at most, one more every `intervalMs`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly burst: number,
    private readonly intervalMs: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) / this.intervalMs);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Cuts `text` to `max` characters, saying how much was cut. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

export class ClientLogLimiter {
  readonly maxDetailChars: number;
  private readonly streamBurst: number;
  private readonly streamIntervalMs: number;
  private readonly summaryIntervalMs: number;
  private readonly global: TokenBucket;
  /** Lines not logged since the last summary, by message. */
  private readonly suppressed = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly logger: Logger,
    limits: ClientLogLimits = {},
  ) {
    this.streamBurst = limits.streamBurst ?? 3;
    this.streamIntervalMs = limits.streamIntervalMs ?? 60_000;
    this.summaryIntervalMs = limits.summaryIntervalMs ?? 60_000;
    this.maxDetailChars = limits.maxDetailChars ?? 1024;
    this.global = new TokenBucket(limits.globalBurst ?? 20, limits.globalIntervalMs ?? 1000, Date.now());
  }

  /** A bucket for one stream. */
  streamBucket(): TokenBucket {
    return new TokenBucket(this.streamBurst, this.streamIntervalMs, Date.now());
  }

  /** Whether a line with message `msg` caused by a client may be logged now; counts it for the summary if not. */
  allow(msg: string, bucket?: TokenBucket): boolean {
    const now = Date.now();
    if ((bucket === undefined || bucket.take(now)) && this.global.take(now)) return true;
    this.suppress(msg);
    return false;
  }

  /** Counts a line that is not logged (rate-limited, or a repeat of the last one). */
  suppress(msg: string): void {
    this.suppressed.set(msg, (this.suppressed.get(msg) ?? 0) + 1);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.summarise();
    }, this.summaryIntervalMs);
    this.timer.unref();
  }

  /** Logs the summary of what was not logged, now (also at close). */
  summarise(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.suppressed.size === 0) return;
    const counts = Object.fromEntries(this.suppressed);
    this.suppressed.clear();
    this.logger.warn({ suppressed: counts }, "log lines caused by xDS clients not written (rate limit or repeats)");
  }
}
