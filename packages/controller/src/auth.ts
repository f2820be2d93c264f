// Authentication of xDS and CA callers as istiod does it: the gRPC metadata "authorization: Bearer <JWT>" is a
// Kubernetes service-account token, checked by TokenReview with the configured audiences (default istio-ca).
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

export function bearerToken(authorization: string | undefined): string {
  if (!authorization) throw new AuthenticationError("no authorization metadata: send \"authorization: Bearer <service-account token>\"");
  const m = /^Bearer\s+(\S+)$/i.exec(authorization);
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
