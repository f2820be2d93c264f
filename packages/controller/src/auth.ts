// Authentication of xDS and CA callers as istiod does it: the gRPC metadata "authorization: Bearer <JWT>" is a
// Kubernetes service-account token, checked by TokenReview with the configured audiences (default istio-ca).
// And access to the debug endpoints: a token the API server accepts, whose user may `get` the path as a
// non-resource URL (SubjectAccessReview).
import { createHash } from "node:crypto";
import { formatSpiffeId } from "@ambit/protocol";

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

export async function authenticate(review: TokenReviewer, authorization: string | undefined, audiences: string[], trustDomain: string): Promise<Caller> {
  const token = bearerToken(authorization);
  let status: TokenReviewStatus;
  try {
    status = await review(token, audiences);
  } catch (err) {
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

export interface DebugAccessOptions {
  review: TokenReviewer;
  accessReview: AccessReviewer;
  /** How long a decision (allowed or refused) is reused for the same token and path. Default 10 s. */
  cacheTtlMs?: number;
  /** Decisions kept at most (the oldest is dropped). Default 1000. */
  cacheSize?: number;
  /** Reviews in progress at most; beyond that a request with an unknown token gets 503 at once. Default 8. */
  maxInFlight?: number;
}

const MAX_TOKEN_CHARS = 16 * 1024;

interface Decision {
  until: number;
  /** Resolves to the user name, or rejects with a DebugAccessError. */
  result: Promise<string>;
}

/**
 * Decides who may read /debug/*: the bearer token must be accepted by the API server (TokenReview with its own
 * audiences) and its user allowed to `get` the path as a non-resource URL (SubjectAccessReview). Decisions are
 * cached by (token hash, path) for a short while and shared by concurrent requests, so a flood with one bad token
 * costs one review; reviews in progress are capped, so a flood of different tokens costs at most `maxInFlight`
 * concurrent reviews and the rest is refused with 503. Fails closed: a review that fails is a 503, never access.
 */
export class DebugAccess {
  private readonly cache = new Map<string, Decision>();
  private inFlight = 0;
  private readonly ttlMs: number;
  private readonly cacheSize: number;
  private readonly maxInFlight: number;

  constructor(private readonly o: DebugAccessOptions) {
    this.ttlMs = o.cacheTtlMs ?? 10_000;
    this.cacheSize = o.cacheSize ?? 1000;
    this.maxInFlight = o.maxInFlight ?? 8;
  }

  /** Resolves to the user name when `authorization` may read `path`; rejects with a DebugAccessError otherwise. */
  check(authorization: string | undefined, path: string): Promise<string> {
    if (!authorization) return Promise.reject(new DebugAccessError(401, `no token: send "Authorization: Bearer <token>" with a token whose user may get ${path}`));
    const token = BEARER.exec(authorization)?.[1];
    if (!token) return Promise.reject(new DebugAccessError(401, 'the Authorization header is not "Bearer <token>"'));
    if (token.length > MAX_TOKEN_CHARS) return Promise.reject(new DebugAccessError(401, `the token is longer than ${MAX_TOKEN_CHARS} characters`));
    const key = `${createHash("sha256").update(token).digest("base64")} ${path}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.result;
    this.cache.delete(key);
    if (this.inFlight >= this.maxInFlight) {
      return Promise.reject(new DebugAccessError(503, `too many debug requests are being authenticated (${this.maxInFlight}); retry later`));
    }
    this.inFlight++;
    const result = this.decide(token, path).finally(() => this.inFlight--);
    const decision: Decision = { until: now + this.ttlMs, result };
    // A review that could not be made is not remembered: the next request tries again.
    result.catch((err: unknown) => {
      if (!(err instanceof DebugAccessError) || err.status === 503) this.cache.delete(key);
    });
    this.cache.set(key, decision);
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    return result;
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
