// Plug-in CA bundles: the files of Istio's `cacerts` Secret. Every problem is reported with the name of the file
// that holds it, because that is what an operator has to fix.
import { createPublicKey } from "node:crypto";
import { CertificateAuthority } from "./ca.js";
import { type CertificateInfo, describeCertificate, parseCertificate } from "./certificate.js";
import { CaError, PluggedCaError } from "./errors.js";
import { KeyUsage } from "./extensions.js";
import { Signer, privateKeyFromPem } from "./keys.js";
import { parsePemBundle } from "./pem.js";
import { isCaCertificate, verifyChain } from "./verify.js";

/** The files of an Istio plug-in CA (`cacerts` Secret, ROOT_CA_DIR), as strings. */
export interface PluggedCaFiles {
  /** The signing (intermediate) CA certificate. */
  "ca-cert.pem": string;
  /** Its private key (PKCS#8, SEC1 or PKCS#1 PEM). */
  "ca-key.pem": string;
  /** The chain from ca-cert.pem towards the root; may repeat ca-cert.pem first and the root last (Istio's tooling does). */
  "cert-chain.pem": string;
  /** The root certificate(s) clients trust. */
  "root-cert.pem": string;
}

/** The same bundle in the `kubernetes.io/tls` layout: tls.crt = CA cert (+ chain), tls.key, ca.crt = root(s). */
export interface PluggedCaTlsFiles {
  "tls.crt": string;
  "tls.key": string;
  "ca.crt": string;
}

function certs(file: string, text: string | undefined): CertificateInfo[] {
  if (typeof text !== "string" || text.trim() === "") throw new PluggedCaError(file, "is missing or empty");
  let pems: string[];
  try {
    pems = parsePemBundle(text, "CERTIFICATE");
  } catch (e) {
    throw new PluggedCaError(file, (e as Error).message);
  }
  if (pems.length === 0) throw new PluggedCaError(file, "contains no CERTIFICATE block");
  return pems.map((p, i) => {
    try {
      return parseCertificate(p);
    } catch (e) {
      throw new PluggedCaError(file, `certificate #${i + 1}: ${(e as Error).message}`);
    }
  });
}

/**
 * Loads a plug-in CA bundle and returns a CertificateAuthority signing with ca-cert.pem. Validates that the key
 * parses and matches the certificate, that the certificate is a CA allowed to sign, that every root is a CA, and
 * that ca-cert.pem verifies through cert-chain.pem to root-cert.pem now. Copies of ca-cert.pem and of the roots
 * inside cert-chain.pem are tolerated; any other certificate there must be on the path. Throws PluggedCaError
 * whose `file` names the file at fault.
 */
export function loadPluggedCa(files: PluggedCaFiles | PluggedCaTlsFiles): CertificateAuthority {
  const tls = "tls.crt" in files;
  const n = tls
    ? { cert: "tls.crt", key: "tls.key", chain: "tls.crt", root: "ca.crt" }
    : { cert: "ca-cert.pem", key: "ca-key.pem", chain: "cert-chain.pem", root: "root-cert.pem" };
  const get = (name: string): string | undefined => (files as unknown as Record<string, string | undefined>)[name];

  const roots = certs(n.root, get(n.root));
  roots.forEach((r, i) => {
    if (!isCaCertificate(r)) throw new PluggedCaError(n.root, `certificate #${i + 1} ${describeCertificate(r)} is not a CA (BasicConstraints cA is not set)`);
  });

  const certFile = certs(n.cert, get(n.cert));
  if (!tls && certFile.length !== 1) throw new PluggedCaError(n.cert, `expected one certificate, found ${certFile.length}`);
  const ca = certFile[0]!;
  if (!isCaCertificate(ca)) throw new PluggedCaError(n.cert, `${describeCertificate(ca)} is not a CA certificate (BasicConstraints cA is not set)`);
  if (ca.keyUsage !== undefined && !(ca.keyUsage & KeyUsage.keyCertSign)) throw new PluggedCaError(n.cert, `${describeCertificate(ca)} may not sign certificates (KeyUsage lacks keyCertSign)`);

  const keyText = get(n.key);
  if (typeof keyText !== "string" || keyText.trim() === "") throw new PluggedCaError(n.key, "is missing or empty");
  let signer: Signer;
  try {
    signer = new Signer(privateKeyFromPem(keyText));
  } catch (e) {
    throw new PluggedCaError(n.key, (e as Error).message);
  }
  if (!createPublicKey(signer.keyObject).export({ type: "spki", format: "der" }).equals(ca.spki)) {
    throw new PluggedCaError(n.key, `the private key does not match the certificate in ${n.cert}`);
  }

  const chainCerts = tls ? certFile.slice(1) : certs(n.chain, get(n.chain));
  const candidates = chainCerts.filter((c) => !c.der.equals(ca.der) && !roots.some((r) => r.der.equals(c.der)));
  let path: CertificateInfo[];
  try {
    path = verifyChain(ca.pem, candidates.map((c) => c.pem), roots.map((r) => r.pem)).certificates;
  } catch (e) {
    throw new PluggedCaError(n.chain, `${n.cert} does not verify through ${n.chain} to ${n.root}: ${(e as Error).message}`);
  }
  const intermediates = path.slice(1, -1);
  for (const c of candidates) {
    if (!intermediates.some((i) => i.der.equals(c.der))) {
      throw new PluggedCaError(n.chain, `certificate ${describeCertificate(c)} is not on the path from ${n.cert} to ${n.root}; remove it`);
    }
  }
  try {
    return new CertificateAuthority({ caCert: ca.pem, caKey: signer, chain: intermediates.map((c) => c.pem), roots: roots.map((r) => r.pem) });
  } catch (e) {
    if (e instanceof CaError) throw new PluggedCaError(n.cert, e.message);
    throw e;
  }
}
