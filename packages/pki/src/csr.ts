// PKCS#10 certificate signing requests: creating them as ztunnel does (empty subject, one URI SAN, SHA-256) and
// parsing untrusted ones for the CA. Parsing is a strict DER walk plus a node:crypto signature check; it is on the
// CA's hot path, so it avoids generic ASN.1 object mapping.
import { verify as nodeVerify, webcrypto } from "node:crypto";
import {
  bitStringBytes,
  bytesOf,
  children,
  DerError,
  encodeBitString,
  encodeExtension,
  encodeOid,
  encodeUnsignedInteger,
  expectTlv,
  Oid,
  readAlgorithmIdentifier,
  readOid,
  sequence,
  SignatureAlgorithms,
  Tag,
  tlv,
} from "./der.js";
import { CsrError, KeyError, PemError } from "./errors.js";
import { decodeGeneralNames, dnsSanProblem, encodeGeneralNames, uriSanProblem } from "./extensions.js";
import { nameToString } from "./name.js";
import { EC_CURVES } from "./keys.js";
import { derToPem, decodeSinglePem } from "./pem.js";
import { PublicKeyInfo } from "./publickey.js";

/** Largest CSR PEM accepted (a P-256 CSR is about 500 bytes). */
export const MAX_CSR_BYTES = 64 * 1024;

/** Input of `createCsr`. */
export interface CreateCsrOptions {
  /** The key pair whose public key is requested (WebCrypto; ECDSA or RSASSA-PKCS1-v1_5). */
  keyPair: webcrypto.CryptoKeyPair;
  /** URI SANs, normally exactly one SPIFFE id. */
  uriSans: string[];
  /** Optional DNS SANs. */
  dnsSans?: string[];
}

/**
 * Creates a PEM PKCS#10 request like ztunnel's: empty subject, SHA-256 (SHA-384 for P-384 keys) signature, and a
 * SubjectAltName extension request with the given names, marked critical because the subject is empty. The DER is
 * written here (no ASN.1 library) and signed with WebCrypto: ECDSA with SHA-256/384/512 for P-256/384/521 keys,
 * RSASSA-PKCS1-v1_5 with the key's own hash (SHA-256/384/512).
 */
export async function createCsr(opts: CreateCsrOptions): Promise<string> {
  const dns = opts.dnsSans ?? [];
  if (opts.uriSans.length + dns.length === 0) throw new CsrError("a CSR needs at least one SAN (its subject is empty)");
  for (const u of opts.uriSans) {
    const p = uriSanProblem(u);
    if (p) throw new CsrError(p);
  }
  for (const d of dns) {
    const p = dnsSanProblem(d);
    if (p) throw new CsrError(p);
  }
  const { privateKey, publicKey } = opts.keyPair;
  const alg = privateKey.algorithm as { name: string; namedCurve?: string; hash?: { name: string } };
  let signingAlgorithm: { name: string; hash: string };
  let sigOid: string;
  if (alg.name === "ECDSA") {
    // Other curves sign with SHA-256.
    const c = Object.values(EC_CURVES).find((e) => e.name === alg.namedCurve) ?? EC_CURVES["prime256v1"]!;
    signingAlgorithm = { name: "ECDSA", hash: c.webHash };
    sigOid = c.sigOid;
  } else if (alg.name === "RSASSA-PKCS1-v1_5") {
    const hash = alg.hash?.name ?? "SHA-256";
    const oid = RSA_HASHES[hash];
    if (!oid) throw new CsrError(`cannot sign a CSR with RSASSA-PKCS1-v1_5 and ${hash}`);
    signingAlgorithm = { name: alg.name, hash };
    sigOid = oid;
  } else throw new CsrError(`cannot sign a CSR with a ${alg.name} key`);

  // CertificationRequestInfo (RFC 2986 §4.1): version 0, the empty subject, the key, and one extensionRequest
  // attribute (PKCS#9) holding a SubjectAltName extension, critical because the subject is empty (RFC 5280 §4.2.1.6).
  const spki = new Uint8Array(await webcrypto.subtle.exportKey("spki", publicKey));
  const san = encodeExtension(Oid.subjectAltName, true, encodeGeneralNames(opts.uriSans, dns));
  const extensionRequest = sequence(encodeOid(Oid.extensionRequest), tlv(Tag.SET, sequence(san)));
  const cri = sequence(Uint8Array.of(Tag.INTEGER, 1, 0), EMPTY_NAME, spki, tlv(0xa0, extensionRequest));
  const signature = new Uint8Array(await webcrypto.subtle.sign(signingAlgorithm, privateKey, cri));
  const algorithmIdentifier = alg.name === "ECDSA" ? sequence(encodeOid(sigOid)) : sequence(encodeOid(sigOid), Uint8Array.of(Tag.NULL, 0));
  const value = alg.name === "ECDSA" ? ecdsaP1363ToDer(signature) : signature;
  return derToPem(sequence(cri, algorithmIdentifier, encodeBitString(value)), "CERTIFICATE REQUEST");
}

const EMPTY_NAME = Uint8Array.of(Tag.SEQUENCE, 0);

const RSA_HASHES: Record<string, string> = {
  "SHA-256": Oid.sha256WithRsa,
  "SHA-384": Oid.sha384WithRsa,
  "SHA-512": Oid.sha512WithRsa,
};

/** WebCrypto ECDSA signatures are r‖s of equal halves; X.509 wants SEQUENCE { INTEGER r, INTEGER s }. */
function ecdsaP1363ToDer(sig: Uint8Array): Buffer {
  const half = sig.length / 2;
  return sequence(encodeUnsignedInteger(sig.subarray(0, half)), encodeUnsignedInteger(sig.subarray(half)));
}

/** What the CA learns from a verified CSR. */
export interface ParsedCsr {
  /** The requested public key, validated against the key policy; pass it to `CertificateAuthority.sign`. */
  publicKey: PublicKeyInfo;
  /** URI SANs requested (informational: Istio's CA ignores them and uses the caller's identity). */
  uriSans: string[];
  /** DNS SANs requested. */
  dnsSans: string[];
  /** The subject DN as a string ("" for the empty subject ztunnel sends). */
  subject: string;
}

/**
 * Parses a PEM PKCS#10 request and verifies its self-signature. Throws CsrError for malformed PEM or DER, a
 * signature that does not verify, a signature algorithm that does not match the key, or a key outside the policy
 * (EC P-256/P-384, RSA ≥ 2048 bits).
 */
export function parseCsr(pem: string): ParsedCsr {
  if (typeof pem !== "string" || pem.length === 0) throw new CsrError("CSR is empty");
  if (pem.length > MAX_CSR_BYTES) throw new CsrError(`CSR is larger than ${MAX_CSR_BYTES} bytes`);
  let der: Buffer;
  try {
    der = decodeSinglePem(pem, ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"], "CSR").der;
  } catch (e) {
    throw new CsrError((e as PemError).message);
  }
  let info: { cri: Uint8Array; sigOid: string; signature: Uint8Array; spki: Uint8Array; subject: Uint8Array; uris: string[]; dns: string[] };
  try {
    info = walk(der);
  } catch (e) {
    if (e instanceof DerError) throw new CsrError(`CSR is not valid DER PKCS#10: ${e.message}`);
    throw e;
  }
  let publicKey: PublicKeyInfo;
  try {
    publicKey = PublicKeyInfo.fromSpki(info.spki);
  } catch (e) {
    if (e instanceof KeyError) throw new CsrError(`CSR key rejected: ${e.message}`);
    throw e;
  }
  const alg = SignatureAlgorithms[info.sigOid];
  if (!alg) throw new CsrError(`CSR signature algorithm ${info.sigOid === Oid.rsaPss ? "RSASSA-PSS" : info.sigOid} is not supported`);
  if (alg.keyType !== publicKey.keyType) throw new CsrError(`CSR signature algorithm ${alg.name} does not match its ${publicKey.description} key`);
  let ok: boolean;
  try {
    ok = nodeVerify(alg.hash, info.cri, publicKey.keyObject, info.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrError("CSR signature does not verify");
  return { publicKey, uriSans: info.uris, dnsSans: info.dns, subject: subjectString(info.subject) };
}

function subjectString(name: Uint8Array): string {
  if (name.length === 2) return ""; // 30 00
  try {
    return nameToString(name);
  } catch {
    return "(undecodable subject)";
  }
}

function walk(der: Buffer) {
  const outer = expectTlv(der, 0, der.length, Tag.SEQUENCE, "CertificationRequest");
  if (outer.end !== der.length) throw new DerError("trailing bytes after the CSR");
  const cri = expectTlv(der, outer.value, outer.end, Tag.SEQUENCE, "CertificationRequestInfo");
  const sigAlg = expectTlv(der, cri.end, outer.end, Tag.SEQUENCE, "signatureAlgorithm");
  const sig = expectTlv(der, sigAlg.end, outer.end, Tag.BIT_STRING, "signature");
  if (sig.end !== outer.end) throw new DerError("extra fields after the signature");
  const alg = readAlgorithmIdentifier(der, sigAlg);
  if (alg.params === "other" && alg.oid !== Oid.rsaPss) throw new DerError("unexpected signature algorithm parameters");

  const version = expectTlv(der, cri.value, cri.end, Tag.INTEGER, "version");
  if (version.end - version.value !== 1 || der[version.value] !== 0) throw new DerError("CSR version must be 1 (encoded 0)");
  const subject = expectTlv(der, version.end, cri.end, Tag.SEQUENCE, "subject");
  const spki = expectTlv(der, subject.end, cri.end, Tag.SEQUENCE, "subjectPKInfo");
  let uris: string[] = [];
  let dns: string[] = [];
  if (spki.end < cri.end) {
    const attrs = expectTlv(der, spki.end, cri.end, 0xa0, "attributes");
    if (attrs.end !== cri.end) throw new DerError("extra fields after the attributes");
    let sawSan = false;
    for (const attr of children(der, attrs)) {
      if (attr.tag !== Tag.SEQUENCE) throw new DerError("attribute is not a SEQUENCE");
      const [type, values, ...rest] = children(der, attr);
      if (!type || !values || rest.length || values.tag !== Tag.SET) throw new DerError("malformed attribute");
      if (readOid(der, type) !== Oid.extensionRequest) continue;
      for (const exts of children(der, values)) {
        if (exts.tag !== Tag.SEQUENCE) throw new DerError("extensionRequest is not a SEQUENCE");
        for (const ext of children(der, exts)) {
          const parts = children(der, ext);
          const id = parts[0];
          const value = parts[parts.length - 1];
          if (!id || !value || parts.length > 3 || value.tag !== Tag.OCTET_STRING) throw new DerError("malformed extension");
          if (readOid(der, id) !== Oid.subjectAltName) continue;
          if (sawSan) throw new DerError("duplicate SubjectAltName extension");
          sawSan = true;
          const names = decodeGeneralNames(der, value.value, value.end);
          uris = names.uris;
          dns = names.dnsNames;
        }
      }
    }
  }
  return {
    cri: bytesOf(der, cri),
    sigOid: alg.oid,
    signature: bitStringBytes(der, sig),
    spki: bytesOf(der, spki),
    subject: bytesOf(der, subject),
    uris,
    dns,
  };
}
