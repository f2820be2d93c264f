// The certificate manager: one certificate per SPIFFE identity, requested on demand or ahead of time, refreshed at
// half its lifetime, kept while still valid when a refresh fails, retried with per-identity exponential back-off.
// At most `concurrency` requests run at once; a request somebody waits on (fetch) jumps ahead of prefetches, which
// jump ahead of background refreshes. Without a valid certificate nothing is handed out (fail closed).
import { EventEmitter } from "node:events";
import { parseCertificate } from "@ambit/pki";
import type { WorkloadCertificate } from "./ca-client.js";

/** Where certificates come from (a CaClient in production). */
export interface CertificateSource {
  createCertificate(identity: string): Promise<WorkloadCertificate>;
}

/** The logger subset used (pino-compatible). */
export interface IdentityLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface CertificateManagerOptions {
  source: CertificateSource;
  log?: IdentityLogger;
  /** Requests in flight at most (default 8). */
  concurrency?: number;
  /** Clock (ms since the epoch) for validity and refresh times (default Date.now). */
  now?: () => number;
  /** Retry back-off: first delay (default 750 ms), doubled per failure, ±20 % jitter, capped (default 150 s). */
  backoff?: { initialMs?: number; maxMs?: number };
}

/** fetch() could not hand out a certificate: the identity is waiting for a retry, was forgotten, or the manager stopped. */
export class CertificateUnavailableError extends Error {
  override name = "CertificateUnavailableError";
  constructor(
    readonly identity: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Istio config_dump "certificates" entry. */
export interface CertificateDump {
  identity: string;
  state: string;
  certChain: CertificateDumpEntry[];
  rootCerts: CertificateDumpEntry[];
}
export interface CertificateDumpEntry {
  /** base64 of the PEM text. */
  pem: string;
  serialNumber: string;
  validFrom: string;
  expirationTime: string;
}

/** Request priorities, most urgent first. */
const Priority = { RealTime: 0, Warmup: 1, Background: 2 } as const;
type Priority = (typeof Priority)[keyof typeof Priority];

interface Job {
  identity: string;
  entry: Entry;
  priority: Priority;
  running: boolean;
  promise: Promise<WorkloadCertificate>;
  resolve: (c: WorkloadCertificate) => void;
  reject: (e: Error) => void;
}

interface Entry {
  cert: WorkloadCertificate | undefined;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (ms, manager clock), for messages. */
  timerAt: number;
  /** True while the timer is a retry after a failure (as opposed to a scheduled refresh). */
  retrying: boolean;
  failures: number;
  lastError: Error | undefined;
}

const DEFAULT_CONCURRENCY = 8;
const DEFAULT_INITIAL_BACKOFF_MS = 750;
const DEFAULT_MAX_BACKOFF_MS = 150_000;
const JITTER = 0.2;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Certificates per identity. Emits "updated" (identity, cert) after every successful issue or re-issue.
 */
export class CertificateManager extends EventEmitter {
  readonly #source: CertificateSource;
  readonly #log: IdentityLogger | undefined;
  readonly #concurrency: number;
  readonly #now: () => number;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #entries = new Map<string, Entry>();
  /** Queued (not running) jobs, one array per priority. */
  readonly #queues: Job[][] = [[], [], []];
  #running = 0;
  #stopped = false;

  constructor(o: CertificateManagerOptions) {
    super();
    this.#source = o.source;
    this.#log = o.log;
    const concurrency = o.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`certificate request concurrency ${concurrency} is not a positive integer`);
    this.#concurrency = concurrency;
    this.#now = o.now ?? Date.now;
    this.#initialMs = o.backoff?.initialMs ?? DEFAULT_INITIAL_BACKOFF_MS;
    this.#maxMs = o.backoff?.maxMs ?? DEFAULT_MAX_BACKOFF_MS;
    if (!(this.#initialMs > 0) || !(this.#maxMs >= this.#initialMs)) throw new RangeError(`certificate back-off ${this.#initialMs}…${this.#maxMs} ms is not a positive range`);
  }

  /**
   * A valid certificate for `identity`: the cached one, else the one being requested, else a new request (ahead
   * of prefetches and refreshes). Rejects when none can be had: the CA's error for the request waited on, or
   * CertificateUnavailableError while the identity waits for a retry after a failure, or after forget/stop.
   */
  fetch(identity: string): Promise<WorkloadCertificate> {
    if (this.#stopped) return Promise.reject(new CertificateUnavailableError(identity, `no certificate for ${identity}: the certificate manager is stopped`));
    let entry = this.#entries.get(identity);
    if (entry?.cert && this.#valid(entry.cert)) return Promise.resolve(entry.cert);
    if (entry?.job) {
      this.#raise(entry.job, Priority.RealTime);
      return entry.job.promise;
    }
    if (entry?.retrying && entry.lastError) {
      const inMs = Math.max(0, Math.round(entry.timerAt - this.#now()));
      return Promise.reject(new CertificateUnavailableError(identity, `no certificate for ${identity}: ${entry.lastError.message} (retrying in ${inMs} ms)`, { cause: entry.lastError }));
    }
    entry ??= this.#entry(identity);
    // A scheduled refresh of an expired certificate (clock jump) is replaced by this request.
    this.#clearTimer(entry);
    return this.#enqueue(identity, entry, Priority.RealTime).promise;
  }

  /** A currently valid certificate for `identity`, or undefined. */
  get(identity: string): WorkloadCertificate | undefined {
    const cert = this.#entries.get(identity)?.cert;
    return cert && this.#valid(cert) ? cert : undefined;
  }

  /** Starts fetching `identity` in the background (below fetch() in priority); a no-op if it is already tracked. */
  prefetch(identity: string): void {
    if (this.#stopped || this.#entries.has(identity)) return;
    this.#enqueue(identity, this.#entry(identity), Priority.Warmup);
  }

  /** Stops refreshing `identity` and drops its certificate; callers waiting on a queued request are rejected. */
  forget(identity: string): void {
    const entry = this.#entries.get(identity);
    if (!entry) return;
    this.#entries.delete(identity);
    this.#clearTimer(entry);
    const job = entry.job;
    if (job && !job.running) {
      this.#dequeue(job);
      job.reject(new CertificateUnavailableError(identity, `no certificate for ${identity}: the identity was forgotten`));
    }
    // A running request completes for its waiters but is neither stored nor refreshed (the entry is gone).
    this.#log?.debug({ identity }, "certificate forgotten");
  }

  /** The identities tracked (with a certificate, a request, or a pending retry). */
  identities(): string[] {
    return [...this.#entries.keys()];
  }

  /** Istio config_dump "certificates": state, chain (leaf first) and roots per identity. */
  dump(): CertificateDump[] {
    const out: CertificateDump[] = [];
    for (const [identity, entry] of this.#entries) {
      const cert = entry.cert && this.#valid(entry.cert) ? entry.cert : undefined;
      let state: string;
      if (cert) state = "Available";
      else if (entry.job || !entry.lastError) state = "Initializing";
      else state = `Unavailable: ${entry.lastError.message}`;
      out.push({
        identity,
        state,
        certChain: cert ? [cert.certPem, ...cert.chainPem].map(dumpEntry) : [],
        rootCerts: cert ? cert.rootsPem.map(dumpEntry) : [],
      });
    }
    return out;
  }

  /** Clears every timer and rejects queued requests; running requests finish but nothing is refreshed afterwards. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const [identity, entry] of this.#entries) {
      this.#clearTimer(entry);
      const job = entry.job;
      if (job && !job.running) job.reject(new CertificateUnavailableError(identity, `no certificate for ${identity}: the certificate manager is stopped`));
    }
    for (const q of this.#queues) q.length = 0;
  }

  // --- internals --------------------------------------------------------------------------------------

  #valid(cert: WorkloadCertificate): boolean {
    const now = this.#now();
    return now >= cert.notBefore.getTime() && now < cert.notAfter.getTime();
  }

  #entry(identity: string): Entry {
    const entry: Entry = { cert: undefined, job: undefined, timer: undefined, timerAt: 0, retrying: false, failures: 0, lastError: undefined };
    this.#entries.set(identity, entry);
    return entry;
  }

  #enqueue(identity: string, entry: Entry, priority: Priority): Job {
    let resolve!: (c: WorkloadCertificate) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<WorkloadCertificate>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody may be waiting (prefetch, refresh): the failure is handled by the retry logic, never unhandled.
    promise.catch(() => undefined);
    const job: Job = { identity, entry, priority, running: false, promise, resolve, reject };
    entry.job = job;
    this.#queues[priority]!.push(job);
    this.#pump();
    return job;
  }

  #raise(job: Job, priority: Priority): void {
    if (job.running || job.priority <= priority) return;
    this.#dequeue(job);
    job.priority = priority;
    this.#queues[priority]!.push(job);
  }

  #dequeue(job: Job): void {
    const q = this.#queues[job.priority]!;
    const i = q.indexOf(job);
    if (i >= 0) q.splice(i, 1);
  }

  #pump(): void {
    while (!this.#stopped && this.#running < this.#concurrency) {
      const job = this.#queues.find((q) => q.length > 0)?.shift();
      if (!job) return;
      this.#run(job);
    }
  }

  #run(job: Job): void {
    job.running = true;
    this.#running++;
    let p: Promise<WorkloadCertificate>;
    try {
      p = Promise.resolve(this.#source.createCertificate(job.identity));
    } catch (e) {
      p = Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    p.then(
      (cert) => this.#finish(job, cert, undefined),
      (err: unknown) => this.#finish(job, undefined, err instanceof Error ? err : new Error(String(err))),
    ).catch((e: unknown) => this.#log?.error({ identity: job.identity, err: (e as Error).message }, "certificate manager internal error"));
  }

  #finish(job: Job, cert: WorkloadCertificate | undefined, err: Error | undefined): void {
    this.#running--;
    const { identity, entry } = job;
    const current = this.#entries.get(identity) === entry && entry.job === job;
    if (current) entry.job = undefined;
    if (cert && !this.#valid(cert)) {
      // Refreshing such a certificate would loop; it is a failure like any other.
      err = new CertificateUnavailableError(identity, `no certificate for ${identity}: the CA returned a certificate that is not currently valid (${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`);
      cert = undefined;
    }
    if (cert) job.resolve(cert);
    else job.reject(err!);
    if (current && !this.#stopped) {
      if (cert) this.#succeeded(identity, entry, cert);
      else this.#failed(identity, entry, err!);
    }
    this.#pump();
  }

  #succeeded(identity: string, entry: Entry, cert: WorkloadCertificate): void {
    entry.cert = cert;
    entry.failures = 0;
    entry.lastError = undefined;
    const now = this.#now();
    const nb = cert.notBefore.getTime();
    const na = cert.notAfter.getTime();
    // Half-life; a certificate that arrives already past it (backdated notBefore) refreshes halfway through what is left.
    const halfLife = nb + (na - nb) / 2;
    const delay = halfLife > now ? halfLife - now : Math.max(0, (na - now) / 2);
    this.#schedule(identity, entry, delay, false);
    this.#log?.info({ identity, serial: cert.serial, notAfter: cert.notAfter.toISOString(), refreshInMs: Math.round(delay) }, "certificate issued");
    try {
      this.emit("updated", identity, cert);
    } catch (e) {
      this.#log?.error({ identity, err: (e as Error).message }, "certificate \"updated\" listener threw");
    }
  }

  #failed(identity: string, entry: Entry, err: Error): void {
    entry.failures++;
    entry.lastError = err;
    const base = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(entry.failures - 1, 40));
    const delay = Math.min(this.#maxMs, base * (1 - JITTER + 2 * JITTER * Math.random()));
    this.#schedule(identity, entry, delay, true);
    const keeping = entry.cert && this.#valid(entry.cert) ? entry.cert.notAfter.toISOString() : undefined;
    this.#log?.warn({ identity, err: err.message, attempt: entry.failures, retryInMs: Math.round(delay), ...(keeping ? { keepingCertUntil: keeping } : {}) }, "certificate request failed");
  }

  #schedule(identity: string, entry: Entry, delayMs: number, retrying: boolean): void {
    this.#clearTimer(entry);
    entry.retrying = retrying;
    entry.timerAt = this.#now() + delayMs;
    this.#arm(identity, entry, delayMs);
  }

  #arm(identity: string, entry: Entry, delayMs: number): void {
    const clamped = delayMs > MAX_TIMER_MS;
    const timer = setTimeout(() => {
      if (entry.timer !== timer) return;
      entry.timer = undefined;
      if (this.#stopped || this.#entries.get(identity) !== entry || entry.job) return;
      // setTimeout cannot wait longer than ~24.8 days: wait again for the rest.
      if (clamped && entry.timerAt > this.#now()) return this.#arm(identity, entry, entry.timerAt - this.#now());
      const fresh = entry.cert && this.#valid(entry.cert);
      this.#enqueue(identity, entry, fresh ? Priority.Background : Priority.Warmup);
    }, Math.min(MAX_TIMER_MS, Math.max(0, delayMs)));
    timer.unref();
    entry.timer = timer;
  }

  #clearTimer(entry: Entry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.retrying = false;
  }
}

function dumpEntry(pem: string): CertificateDumpEntry {
  const base64 = Buffer.from(pem).toString("base64");
  try {
    const c = parseCertificate(pem);
    return { pem: base64, serialNumber: c.serialHex, validFrom: c.notBefore.toISOString(), expirationTime: c.notAfter.toISOString() };
  } catch {
    return { pem: base64, serialNumber: "", validFrom: "", expirationTime: "" };
  }
}
