// Authentication of xDS and CA callers as istiod does it: the gRPC metadata "authorization: Bearer <JWT>" is a
// Kubernetes service-account token, checked by TokenReview with the configured audiences (default istio-ca).
// And access to the debug endpoints: a token the API server accepts, whose user may `get` the path as a
// non-resource URL (SubjectAccessReview).
import { createHash } from "node:crypto";
import { formatSpiffeId } from "@ambit/protocol";
import { AuthenticationUnavailable } from "@ambit/xds";

export { AuthenticationUnavailable };

export class AuthenticationError extends Error {
  override name = "AuthenticationError";
}

export interface Caller {
  namespace: string;
  serviceAccount: string;
  /** spiffe://<trust domain>/ns/<ns>/sa/<sa> */
  identity: string;
  /** From a pod-bound token's extras, when present. */
  podName?: string;
  podUid?: string;
}

export interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  user?: { username?: string; groups?: string[]; extra?: Record<string, string[]> };
}

/** Sends a TokenReview; the API call is injected so tests and callers choose the client. */
export type TokenReviewer = (token: string, audiences: string[]) => Promise<TokenReviewStatus>;

const BEARER = /^Bearer\s+(\S+)$/i;

export function bearerToken(authorization: string | undefined): string {
  if (!authorization) throw new AuthenticationError("no authorization metadata: send \"authorization: Bearer <service-account token>\"");
  const m = BEARER.exec(authorization);
  if (!m) throw new AuthenticationError("the authorization metadata is not \"Bearer <token>\"");
  return m[1]!;
}

/**
 * Reviews whose outcome is kept for a short while by (token hash, scope) and shared by concurrent requests, with a
 * cap on reviews in progress: a flood with one token costs one review, a flood of different tokens at most
 * `maxInFlight` concurrent reviews (the rest is refused at once with the `busy` error). A review that throws an
 * error `keep` does not accept (it could not be made) is forgotten, so the next request tries again.
 */
export class ReviewCache<T> {
  private readonly cache = new Map<string, { until: number; result: Promise<T> }>();
  private inFlight = 0;

  constructor(private readonly o: {
    /** How long an outcome is reused. */
    ttlMs: number;
    /** Outcomes kept at most (the oldest is dropped). */
    size: number;
    /** Reviews in progress at most. */
    maxInFlight: number;
    /** The error for a request refused because `maxInFlight` reviews are in progress (count it here). */
    busy: () => Error;
    /** Whether a review's error is an outcome to keep (a refusal) rather than a failure to decide. Default: never. */
    keep?: (err: unknown) => boolean;
  }) {}

  /** The outcome of `review` for `token` (and `scope`), from the cache or a new review. */
  get(token: string, scope: string, review: () => Promise<T>): Promise<T> {
    const key = `${createHash("sha256").update(token).digest("base64")} ${scope}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.result;
    this.cache.delete(key);
    if (this.inFlight >= this.o.maxInFlight) return Promise.reject(this.o.busy());
    this.inFlight++;
    const result = review().finally(() => this.inFlight--);
    result.catch((err: unknown) => {
      if (!this.o.keep?.(err)) this.cache.delete(key);
    });
    this.cache.set(key, { until: now + this.o.ttlMs, result });
    while (this.cache.size > this.o.size) this.cache.delete(this.cache.keys().next().value!);
    return result;
  }

  /** Outcomes kept (some may have expired). */
  get size(): number {
    return this.cache.size;
  }
}

/** Limits of `TokenAuthenticator` (and of `DebugAccess`). */
export interface ReviewLimits {
  /** How long a review's outcome (accepted or refused) is reused for the same token. Default 10 s. */
  cacheTtlMs?: number;
  /** Outcomes kept at most (the oldest is dropped). Default 1000. */
  cacheSize?: number;
  /** Reviews in progress at most; beyond that a request with an unknown token is refused at once. */
  maxInFlight?: number;
  /** Called for each request refused because `maxInFlight` reviews are in progress. */
  onBusy?: () => void;
}

const MAX_TOKEN_CHARS = 16 * 1024;

function reviewCache<T>(l: ReviewLimits, defaultMaxInFlight: number, busy: (max: number) => Error, keep?: (err: unknown) => boolean): ReviewCache<T> {
  const maxInFlight = l.maxInFlight ?? defaultMaxInFlight;
  return new ReviewCache<T>({
    ttlMs: l.cacheTtlMs ?? 10_000, size: l.cacheSize ?? 1000, maxInFlight, keep,
    busy: () => {
      l.onBusy?.();
      return busy(maxInFlight);
    },
  });
}

/**
 * Authenticates xDS and CA callers (one instance shared by both): TokenReview results are cached by token hash
 * (accepted and refused alike; a review that fails is not kept) and reviews in progress are capped (default 16);
 * beyond the cap a caller with an unknown token gets `AuthenticationUnavailable` (gRPC UNAVAILABLE) at once.
 */
export class TokenAuthenticator {
  private readonly reviews: ReviewCache<TokenReviewStatus>;

  constructor(private readonly review: TokenReviewer, private readonly audiences: string[], private readonly trustDomain: string, limits: ReviewLimits = {}) {
    this.reviews = reviewCache(limits, 16, (max) => new AuthenticationUnavailable(`too many callers are being authenticated (${max}); retry later`));
  }

  authenticate(authorization: string | undefined): Promise<Caller> {
    return authenticate((token, audiences) => this.reviews.get(token, "", () => this.review(token, audiences)), authorization, this.audiences, this.trustDomain);
  }
}

/** Authenticates one caller with one TokenReview (uncached; see `TokenAuthenticator`). */
export async function authenticate(review: TokenReviewer, authorization: string | undefined, audiences: string[], trustDomain: string): Promise<Caller> {
  const token = bearerToken(authorization);
  if (token.length > MAX_TOKEN_CHARS) throw new AuthenticationError(`the token is longer than ${MAX_TOKEN_CHARS} characters`);
  let status: TokenReviewStatus;
  try {
    status = await review(token, audiences);
  } catch (err) {
    if (err instanceof AuthenticationUnavailable) throw err;
    throw new AuthenticationError(`token review failed: ${(err as Error).message}`);
  }
  if (!status.authenticated) throw new AuthenticationError(`the token was not accepted: ${status.error || "not authenticated"}`);
  const user = status.user ?? {};
  if (!user.groups?.includes("system:serviceaccounts")) throw new AuthenticationError(`${user.username ?? "the caller"} is not a service account`);
  const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user.username ?? "");
  if (!m) throw new AuthenticationError(`unexpected service-account user name "${user.username}"`);
  const [, namespace, serviceAccount] = m as unknown as [string, string, string];
  return {
    namespace, serviceAccount,
    identity: formatSpiffeId({ trustDomain, namespace, serviceAccount }),
    podName: user.extra?.["authentication.kubernetes.io/pod-name"]?.[0],
    podUid: user.extra?.["authentication.kubernetes.io/pod-uid"]?.[0],
  };
}

// --- the debug endpoints ---------------------------------------------------------------------------------

/** Why a debug request is refused: 401 (no or bad token), 403 (no permission), 503 (could not decide). */
export class DebugAccessError extends Error {
  override name = "DebugAccessError";
  constructor(readonly status: 401 | 403 | 503, message: string) {
    super(message);
  }
}

export type ReviewedUser = NonNullable<TokenReviewStatus["user"]> & { uid?: string };

/** Sends a SubjectAccessReview for `get` on the non-resource URL `path`. */
export type AccessReviewer = (user: ReviewedUser, path: string) => Promise<{ allowed?: boolean; reason?: string }>;

export interface DebugAccessOptions extends ReviewLimits {
  review: TokenReviewer;
  accessReview: AccessReviewer;
}

/**
 * Decides who may read /debug/*: the bearer token must be accepted by the API server (TokenReview with its own
 * audiences) and its user allowed to `get` the path as a non-resource URL (SubjectAccessReview). Decisions are
 * cached by (token hash, path) and reviews in progress capped (default 8; beyond: 503), see `ReviewCache`. Fails
 * closed: a review that fails is a 503, never access.
 */
export class DebugAccess {
  private readonly cache: ReviewCache<string>;

  constructor(private readonly o: DebugAccessOptions) {
    this.cache = reviewCache(o, 8, (max) => new DebugAccessError(503, `too many debug requests are being authenticated (${max}); retry later`),
      (err) => err instanceof DebugAccessError && err.status !== 503);
  }

  /** Resolves to the user name when `authorization` may read `path`; rejects with a DebugAccessError otherwise. */
  check(authorization: string | undefined, path: string): Promise<string> {
    if (!authorization) return Promise.reject(new DebugAccessError(401, `no token: send "Authorization: Bearer <token>" with a token whose user may get ${path}`));
    const token = BEARER.exec(authorization)?.[1];
    if (!token) return Promise.reject(new DebugAccessError(401, 'the Authorization header is not "Bearer <token>"'));
    if (token.length > MAX_TOKEN_CHARS) return Promise.reject(new DebugAccessError(401, `the token is longer than ${MAX_TOKEN_CHARS} characters`));
    return this.cache.get(token, path, () => this.decide(token, path));
  }

  private async decide(token: string, path: string): Promise<string> {
    let status: TokenReviewStatus;
    try {
      status = await this.o.review(token, []);
    } catch (err) {
      throw new DebugAccessError(503, `token review failed: ${(err as Error).message}`);
    }
    if (!status.authenticated || !status.user?.username) throw new DebugAccessError(401, `the token was not accepted: ${status.error || "not authenticated"}`);
    const user = status.user as ReviewedUser;
    let access: { allowed?: boolean; reason?: string };
    try {
      access = await this.o.accessReview(user, path);
    } catch (err) {
      throw new DebugAccessError(503, `access review failed: ${(err as Error).message}`);
    }
    if (!access.allowed) {
      throw new DebugAccessError(403, `${user.username} may not get ${path}: it needs the verb get on the non-resource URL ${path} (for example a ClusterRole with nonResourceURLs ["/debug/*"])${access.reason ? `; ${access.reason}` : ""}`);
    }
    return user.username!;
  }
}
