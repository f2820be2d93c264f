// Chain verification: find a path from a leaf through the given intermediates to one of the roots, checking on
// every hop the name chaining, the issuer's signature, CA flag, keyCertSign usage and path length, every
// certificate's validity period, and that no certificate carries a critical extension we do not understand.
import { createPublicKey, verify as nodeVerify, type KeyObject } from "node:crypto";
import { type CertificateInfo, describeCertificate, parseCertificate } from "./certificate.js";
import { Oid, SignatureAlgorithms } from "./der.js";
import { ChainVerificationError, PkiError } from "./errors.js";
import { KeyUsage } from "./extensions.js";
import { parsePemBundle } from "./pem.js";

/** Result of a successful `verifyChain`. */
export interface VerifiedChain {
  /** The path that verified, leaf first and the trust anchor last (PEM, each ending with "\n"). */
  path: string[];
  /** The same path, decoded. */
  certificates: CertificateInfo[];
}

const MAX_DEPTH = 8;
const UNDERSTOOD_CRITICAL = new Set<string>([Oid.basicConstraints, Oid.keyUsage, Oid.extKeyUsage, Oid.subjectAltName, Oid.subjectKeyIdentifier, Oid.authorityKeyIdentifier]);

const keyCache = new WeakMap<CertificateInfo, KeyObject>();
function publicKeyOf(c: CertificateInfo): KeyObject {
  let k = keyCache.get(c);
  if (!k) {
    k = createPublicKey({ key: c.spki, format: "der", type: "spki" });
    keyCache.set(c, k);
  }
  return k;
}

/** Whether `issuer`'s key produced `child`'s signature. Throws PkiError for an unsupported algorithm. */
export function signatureVerifies(child: CertificateInfo, issuer: CertificateInfo): boolean {
  const alg = SignatureAlgorithms[child.signatureOid];
  if (!alg) throw new PkiError(`signature algorithm ${child.signatureOid} is not supported`);
  try {
    return nodeVerify(alg.hash, child.tbs, publicKeyOf(issuer), child.signature);
  } catch {
    return false;
  }
}

function validityProblem(c: CertificateInfo, at: Date): string | undefined {
  if (at.getTime() < c.notBefore.getTime()) return `${describeCertificate(c)} is not valid before ${c.notBefore.toISOString()}`;
  if (at.getTime() > c.notAfter.getTime()) return `${describeCertificate(c)} expired at ${c.notAfter.toISOString()}`;
  return undefined;
}

function criticalProblem(c: CertificateInfo): string | undefined {
  for (const [oid, ext] of c.extensions) {
    if (ext.critical && !UNDERSTOOD_CRITICAL.has(oid)) {
      const what = oid === Oid.nameConstraints ? "nameConstraints (not enforced by Ambit)" : oid;
      return `${describeCertificate(c)} has a critical extension ${what}`;
    }
  }
  return undefined;
}

/** Whether a certificate may act as a CA: BasicConstraints cA, or a v1 certificate (legacy roots). */
export function isCaCertificate(c: CertificateInfo): boolean {
  return c.basicConstraints ? c.basicConstraints.ca : c.version === 1;
}

/** Problems with `issuer` signing `child`, where `below` are the certificates between the leaf and the issuer. */
function issuerProblem(issuer: CertificateInfo, child: CertificateInfo, below: CertificateInfo[], at: Date): string | undefined {
  const who = describeCertificate(issuer);
  if (child.authorityKeyId && issuer.subjectKeyId && !child.authorityKeyId.equals(issuer.subjectKeyId)) {
    return `${who} has the right name but a different key identifier than ${describeCertificate(child)} names as its issuer`;
  }
  if (!isCaCertificate(issuer)) return `issuer ${who} is not a CA (BasicConstraints cA is not set)`;
  if (issuer.keyUsage !== undefined && !(issuer.keyUsage & KeyUsage.keyCertSign)) return `issuer ${who} may not sign certificates (KeyUsage lacks keyCertSign)`;
  const pathLen = issuer.basicConstraints?.pathLen;
  if (pathLen !== undefined) {
    const intermediatesBelow = below.slice(1).filter((c) => !c.selfIssued).length;
    if (intermediatesBelow > pathLen) return `issuer ${who} allows ${pathLen} intermediate CA(s) below it, the path has ${intermediatesBelow}`;
  }
  const v = validityProblem(issuer, at);
  if (v) return v;
  const crit = criticalProblem(issuer);
  if (crit) return crit;
  let ok: boolean;
  try {
    ok = signatureVerifies(child, issuer);
  } catch (e) {
    return (e as Error).message;
  }
  if (!ok) return `signature of ${describeCertificate(child)} does not verify with the key of ${who}`;
  return undefined;
}

function parseAll(pems: readonly string[], what: string): CertificateInfo[] {
  const out: CertificateInfo[] = [];
  pems.forEach((text, i) => {
    let blocks: string[];
    try {
      blocks = parsePemBundle(text, "CERTIFICATE");
    } catch (e) {
      throw new ChainVerificationError(`${what} #${i + 1}: ${(e as Error).message}`);
    }
    if (blocks.length === 0) throw new ChainVerificationError(`${what} #${i + 1}: no CERTIFICATE block`);
    for (const b of blocks) {
      try {
        out.push(parseCertificate(b));
      } catch (e) {
        throw new ChainVerificationError(`${what} #${i + 1}: ${(e as Error).message}`);
      }
    }
  });
  return out;
}

/**
 * Verifies that `leafPem` chains to one of `roots` through `intermediates` (in any order; each element may hold
 * several certificates) at time `at` (default now). Checks signatures, name chaining, CA flags, keyCertSign,
 * path-length constraints, validity periods of every certificate including the root, and rejects unknown critical
 * extensions (nameConstraints included: they are not enforced). Returns the path; throws ChainVerificationError
 * with the most specific problem found.
 */
export function verifyChain(leafPem: string, intermediates: readonly string[], roots: readonly string[], at: Date = new Date()): VerifiedChain {
  const [leaf, ...leafExtra] = parseAll([leafPem], "leaf");
  if (!leaf) throw new ChainVerificationError("leaf: no certificate");
  const pool = [...leafExtra, ...parseAll(intermediates, "intermediate")];
  const anchors = parseAll(roots, "root");
  if (anchors.length === 0) throw new ChainVerificationError("no trust roots given");

  const early = validityProblem(leaf, at) ?? criticalProblem(leaf);
  if (early) throw new ChainVerificationError(early);
  const asRoot = anchors.find((r) => r.der.equals(leaf.der));
  if (asRoot) return { path: [leaf.pem], certificates: [leaf] };

  let best: { depth: number; reason: string } | undefined;
  const fail = (depth: number, reason: string) => {
    if (!best || depth > best.depth) best = { depth, reason };
  };

  const search = (path: CertificateInfo[]): CertificateInfo[] | undefined => {
    const current = path[path.length - 1]!;
    if (path.length > MAX_DEPTH) {
      fail(path.length, `path is longer than ${MAX_DEPTH} certificates`);
      return undefined;
    }
    let candidates = 0;
    for (const root of anchors) {
      if (!root.subjectDer.equals(current.issuerDer)) continue;
      candidates++;
      const problem = issuerProblem(root, current, path, at);
      if (problem) fail(path.length, problem);
      else return [...path, root];
    }
    for (const next of pool) {
      if (path.includes(next) || !next.subjectDer.equals(current.issuerDer)) continue;
      candidates++;
      const problem = issuerProblem(next, current, path, at);
      if (problem) {
        fail(path.length, problem);
        continue;
      }
      const found = search([...path, next]);
      if (found) return found;
    }
    if (candidates === 0) {
      const issuer = current.issuer ? `"${current.issuer}"` : "(empty name)";
      fail(path.length - 1, `no issuer of ${describeCertificate(current)} (issuer ${issuer}) among the intermediates or trusted roots`);
    }
    return undefined;
  };

  const found = search([leaf]);
  if (!found) throw new ChainVerificationError(best?.reason ?? "no path to a trusted root");
  return { path: found.map((c) => c.pem), certificates: found };
}

/** The URI SANs of the first certificate in `certPem` that are SPIFFE ids (start with "spiffe://"). */
export function spiffeIdsOf(certPem: string): string[] {
  const first = parsePemBundle(certPem, "CERTIFICATE")[0];
  if (!first) throw new PkiError("no CERTIFICATE block");
  return parseCertificate(first).sans.uris.filter((u) => u.startsWith("spiffe://"));
}
