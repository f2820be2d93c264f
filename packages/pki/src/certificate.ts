// Reading X.509 certificates: a strict DER walk that keeps the raw bytes where they matter (issuer and subject
// names are compared and copied byte for byte) and decodes the extensions the mesh relies on.
import {
  bitStringBytes,
  bytesOf,
  children,
  DerError,
  expectTlv,
  readAlgorithmIdentifier,
  readOid,
  readSmallUnsigned,
  readTime,
  readTlv,
  Oid,
  Tag,
  valueOf,
} from "./der.js";
import { PemError, PkiError } from "./errors.js";
import {
  decodeAuthorityKeyId,
  decodeBasicConstraints,
  decodeGeneralNames,
  decodeKeyUsage,
  decodeSubjectKeyId,
  type GeneralNames,
} from "./extensions.js";
import { decodeSinglePem, derToPem } from "./pem.js";
import { nameToString } from "./name.js";

/** One extension as found in a certificate. */
export interface RawExtension {
  critical: boolean;
  value: Buffer;
}

/** A decoded certificate. Byte fields are copies owned by this object. */
export interface CertificateInfo {
  /** DER of the whole certificate. */
  der: Buffer;
  /** PEM of the certificate, ending with "\n". */
  pem: string;
  /** DER of the TBSCertificate (what the issuer signed). */
  tbs: Buffer;
  /** Signature algorithm OID and signature bytes. */
  signatureOid: string;
  signature: Buffer;
  /** X.509 version (3 for v3). */
  version: number;
  /** Serial number as lower-case hex of its DER INTEGER content. */
  serialHex: string;
  /** Raw DER of the issuer and subject Names. */
  issuerDer: Buffer;
  subjectDer: Buffer;
  /** Names as strings (RFC 4514 style, "" when empty). */
  issuer: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  /** DER SubjectPublicKeyInfo, and the key bits inside it. */
  spki: Buffer;
  publicKeyBits: Buffer;
  /** Every extension by OID. */
  extensions: Map<string, RawExtension>;
  /** BasicConstraints, if present. */
  basicConstraints: { ca: boolean; pathLen: number | undefined; critical: boolean } | undefined;
  /** KeyUsage flags (see `KeyUsage`), if present. */
  keyUsage: number | undefined;
  /** ExtendedKeyUsage OIDs, if present. */
  extKeyUsage: string[] | undefined;
  subjectKeyId: Buffer | undefined;
  authorityKeyId: Buffer | undefined;
  /** SubjectAltName entries (empty lists when absent) and whether the extension is critical. */
  sans: GeneralNames;
  sanCritical: boolean;
  /** True when issuer and subject names are byte-identical. */
  selfIssued: boolean;
}

function nameString(der: Buffer): string {
  if (der.length === 2) return "";
  try {
    return nameToString(der);
  } catch {
    return "(undecodable name)";
  }
}

/** Parses one certificate from PEM (exactly one CERTIFICATE block) or DER. Throws PkiError naming the problem. */
export function parseCertificate(input: string | Uint8Array): CertificateInfo {
  let der: Buffer;
  if (typeof input === "string") {
    try {
      der = decodeSinglePem(input, ["CERTIFICATE"], "certificate").der;
    } catch (e) {
      throw new PkiError((e as PemError).message);
    }
  } else der = Buffer.from(input);
  try {
    return walk(der);
  } catch (e) {
    if (e instanceof DerError) throw new PkiError(`certificate is not valid DER X.509: ${e.message}`);
    throw e;
  }
}

function walk(der: Buffer): CertificateInfo {
  const outer = expectTlv(der, 0, der.length, Tag.SEQUENCE, "Certificate");
  if (outer.end !== der.length) throw new DerError("trailing bytes after the certificate");
  const tbs = expectTlv(der, outer.value, outer.end, Tag.SEQUENCE, "tbsCertificate");
  const sigAlg = expectTlv(der, tbs.end, outer.end, Tag.SEQUENCE, "signatureAlgorithm");
  const sig = expectTlv(der, sigAlg.end, outer.end, Tag.BIT_STRING, "signatureValue");
  if (sig.end !== outer.end) throw new DerError("extra fields after the signature");
  const signatureOid = readAlgorithmIdentifier(der, sigAlg).oid;

  let p = tbs.value;
  let version = 1;
  let t = readTlv(der, p, tbs.end);
  if (t.tag === 0xa0) {
    const v = expectTlv(der, t.value, t.end, Tag.INTEGER, "version");
    version = readSmallUnsigned(der, v) + 1;
    p = t.end;
  }
  const serial = expectTlv(der, p, tbs.end, Tag.INTEGER, "serialNumber");
  const innerAlg = expectTlv(der, serial.end, tbs.end, Tag.SEQUENCE, "signature");
  if (readAlgorithmIdentifier(der, innerAlg).oid !== signatureOid) throw new DerError("inner and outer signature algorithms differ");
  const issuer = expectTlv(der, innerAlg.end, tbs.end, Tag.SEQUENCE, "issuer");
  const validity = expectTlv(der, issuer.end, tbs.end, Tag.SEQUENCE, "validity");
  const [nb, na, ...extra] = children(der, validity);
  if (!nb || !na || extra.length) throw new DerError("malformed validity");
  const subject = expectTlv(der, validity.end, tbs.end, Tag.SEQUENCE, "subject");
  const spki = expectTlv(der, subject.end, tbs.end, Tag.SEQUENCE, "subjectPublicKeyInfo");
  const spkiKids = children(der, spki);
  if (spkiKids.length !== 2) throw new DerError("malformed subjectPublicKeyInfo");
  const publicKeyBits = Buffer.from(bitStringBytes(der, spkiKids[1]!));

  const extensions = new Map<string, RawExtension>();
  p = spki.end;
  while (p < tbs.end) {
    t = readTlv(der, p, tbs.end);
    if (t.tag === 0xa3) {
      if (version !== 3) throw new DerError("extensions in a certificate that is not v3");
      const seq = expectTlv(der, t.value, t.end, Tag.SEQUENCE, "extensions");
      for (const ext of children(der, seq)) {
        const parts = children(der, ext);
        if (parts.length < 2 || parts.length > 3) throw new DerError("malformed extension");
        const id = readOid(der, parts[0]!);
        let critical = false;
        if (parts.length === 3) {
          const b = parts[1]!;
          if (b.tag !== Tag.BOOLEAN || b.end - b.value !== 1) throw new DerError("malformed extension criticality");
          critical = der[b.value] !== 0;
        }
        const value = parts[parts.length - 1]!;
        if (value.tag !== Tag.OCTET_STRING) throw new DerError("malformed extension value");
        if (extensions.has(id)) throw new DerError(`duplicate extension ${id}`);
        extensions.set(id, { critical, value: Buffer.from(valueOf(der, value)) });
      }
    } else if (t.tag !== 0x81 && t.tag !== 0x82) throw new DerError(`unexpected field 0x${t.tag.toString(16)} in tbsCertificate`);
    p = t.end;
  }

  const bc = extensions.get(Oid.basicConstraints);
  const ku = extensions.get(Oid.keyUsage);
  const eku = extensions.get(Oid.extKeyUsage);
  const ski = extensions.get(Oid.subjectKeyIdentifier);
  const aki = extensions.get(Oid.authorityKeyIdentifier);
  const san = extensions.get(Oid.subjectAltName);
  let extKeyUsage: string[] | undefined;
  if (eku) {
    const seq = readTlv(eku.value, 0, eku.value.length);
    if (seq.tag !== Tag.SEQUENCE) throw new DerError("ExtendedKeyUsage must be a SEQUENCE");
    extKeyUsage = children(eku.value, seq).map((k) => readOid(eku.value, k));
  }
  const issuerDer = Buffer.from(bytesOf(der, issuer));
  const subjectDer = Buffer.from(bytesOf(der, subject));
  return {
    der,
    pem: derToPem(der, "CERTIFICATE"),
    tbs: Buffer.from(bytesOf(der, tbs)),
    signatureOid,
    signature: Buffer.from(bitStringBytes(der, sig)),
    version,
    serialHex: Buffer.from(valueOf(der, serial)).toString("hex"),
    issuerDer,
    subjectDer,
    issuer: nameString(issuerDer),
    subject: nameString(subjectDer),
    notBefore: new Date(readTime(der, nb)),
    notAfter: new Date(readTime(der, na)),
    spki: Buffer.from(bytesOf(der, spki)),
    publicKeyBits,
    extensions,
    basicConstraints: bc ? { ...decodeBasicConstraints(bc.value), critical: bc.critical } : undefined,
    keyUsage: ku ? decodeKeyUsage(ku.value) : undefined,
    extKeyUsage,
    subjectKeyId: ski ? decodeSubjectKeyId(ski.value) : undefined,
    authorityKeyId: aki ? decodeAuthorityKeyId(aki.value) : undefined,
    sans: san ? decodeGeneralNames(san.value) : { uris: [], dnsNames: [], ipAddresses: [], emails: [] },
    sanCritical: san?.critical ?? false,
    selfIssued: issuerDer.equals(subjectDer),
  };
}

/** A short human description of a certificate for messages: its subject, or its first SAN when the subject is empty. */
export function describeCertificate(c: CertificateInfo): string {
  if (c.subject) return `"${c.subject}"`;
  const first = c.sans.uris[0] ?? c.sans.dnsNames[0];
  return first ? `"${first}" (empty subject)` : `serial ${c.serialHex} (empty subject)`;
}
