// SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN } from "./constants.js";

export interface Identity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export class SpiffeIdError extends Error {
  override name = "SpiffeIdError";
}

const SCHEME = "spiffe://";
// SPIFFE spec: trust domain is lower-case letters, digits, '.', '-', '_'.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
// Kubernetes namespace / service-account names (DNS-1123 subdomain for SAs, label for namespaces).
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function check(what: string, value: string, re: RegExp, max: number): void {
  if (!value) throw new SpiffeIdError(`${what} is empty`);
  if (value.length > max) throw new SpiffeIdError(`${what} "${value}" is longer than ${max} characters`);
  if (!re.test(value)) throw new SpiffeIdError(`${what} "${value}" has characters that are not allowed`);
}

/** Validates the parts of an identity; throws SpiffeIdError naming the bad part. */
export function validateIdentity(id: Identity): Identity {
  check("trust domain", id.trustDomain, TRUST_DOMAIN, 255);
  check("namespace", id.namespace, K8S_NAME, 63);
  check("service account", id.serviceAccount, K8S_NAME, 253);
  return id;
}

/** Formats an identity as a SPIFFE URI. */
export function formatSpiffeId(id: Identity): string {
  validateIdentity(id);
  return `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a SPIFFE URI; requires exactly the five segments <td>/ns/<ns>/sa/<sa>. */
export function parseSpiffeId(uri: string): Identity {
  if (!uri.startsWith(SCHEME)) throw new SpiffeIdError(`"${uri}" is not a SPIFFE id (must start with ${SCHEME})`);
  const parts = uri.slice(SCHEME.length).split("/");
  if (parts.length !== 5 || parts[1] !== "ns" || parts[3] !== "sa") {
    throw new SpiffeIdError(`"${uri}" is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  return validateIdentity({ trustDomain: parts[0]!, namespace: parts[2]!, serviceAccount: parts[4]! });
}

/** The identity of a workload as sent in xDS, with Istio's defaults for empty fields. */
export function workloadIdentity(w: { trust_domain?: string | null; namespace?: string | null; service_account?: string | null }): Identity {
  return {
    trustDomain: w.trust_domain || DEFAULT_TRUST_DOMAIN,
    namespace: w.namespace ?? "",
    serviceAccount: w.service_account || DEFAULT_SERVICE_ACCOUNT,
  };
}
