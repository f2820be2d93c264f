// The certificate authority: signs workload certificates from CSR public keys, and returns chains in the order
// Istio's IstioCertificateService uses. Issuing builds the TBSCertificate from a per-CA template (only serial,
// validity, public key and SANs vary) and signs it with node:crypto, which is several times faster than a generic
// ASN.1 certificate generator (see bench/ca-sign.mjs).
import { createHash, generateKeyPairSync, KeyObject, randomFillSync, webcrypto } from "node:crypto";
import { DEFAULT_TRUST_DOMAIN } from "@ambit/protocol";
import { type CertificateInfo, describeCertificate, parseCertificate } from "./certificate.js";
import { encodeBitString, encodeExtension, encodeTime, encodeUnsignedInteger, Oid, sequence, tlv, encodeOid } from "./der.js";
import { CaError, ChainVerificationError, KeyError } from "./errors.js";
import { dnsSanProblem, encodeGeneralNames, encodeKeyUsage, KeyUsage, uriSanProblem } from "./extensions.js";
import { EC_P256, Signer, toSigner } from "./keys.js";
import { derToPem, parsePemBundle, withTrailingNewline } from "./pem.js";
import { PublicKeyInfo } from "./publickey.js";
import { isCaCertificate, verifyChain } from "./verify.js";

type CryptoKey = webcrypto.CryptoKey;

/** How a CA is built. */
export interface CertificateAuthorityOptions {
  /** PEM of the certificate that signs (a root for a self-signed CA, an intermediate for a plug-in CA). */
  caCert: string;
  /** Its private key: PEM (PKCS#8, SEC1 or PKCS#1), a WebCrypto CryptoKey, a node KeyObject or a Signer. */
  caKey: string | CryptoKey | KeyObject | Signer;
  /** Intermediates between the CA certificate and the root, nearest to the CA certificate first. May be empty. */
  chain?: string[];
  /** Trusted roots (PEM; elements may be bundles). The CA certificate must chain to one of them. */
  roots: string[];
}

/** Input of `CertificateAuthority.sign`. */
export interface SignRequest {
  /** The subject public key: from `parseCsr(...).publicKey`, or a KeyObject / CryptoKey / PEM "PUBLIC KEY". */
  publicKey: PublicKeyInfo | KeyObject | CryptoKey | string;
  /** URI SANs, normally exactly one SPIFFE id. */
  uriSans: string[];
  /** Optional DNS SANs. */
  dnsSans?: string[];
  /** Requested lifetime in seconds (> 0). The certificate never outlives the CA certificate. */
  ttlSeconds: number;
  /** How far notBefore is backdated to tolerate clock skew (default 60 s). */
  notBeforeSkewSeconds?: number;
}

/** Options of `CertificateAuthority.selfSignedRoot`. */
export interface SelfSignedRootOptions {
  /** Trust domain; the root's subject is O=<trustDomain>. Default "cluster.local". */
  trustDomain?: string;
  /** Root lifetime in days (default 3650, Istio's CITADEL_SELF_SIGNED_CA_CERT_TTL). */
  ttlDays?: number;
  /** Generate an RSA root of this many bits (as Istio does, 2048) instead of ECDSA P-256. */
  rsaKeySize?: number;
}

/** A certificate for the controller's own TLS port, with its key. */
export interface ServingCertificate {
  /** The leaf certificate. */
  certPem: string;
  /** Its private key, PKCS#8 PEM. */
  keyPem: string;
  /** Istio-order chain: leaf, intermediates, roots bundle last (see `chainFor`). */
  chain: string[];
  /** Leaf followed by the intermediates (no root): the `cert` option of `tls.createServer`. */
  tlsCertChainPem: string;
}

type Profile = "workload" | "serving";

const DEFAULT_SKEW_SECONDS = 60;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;

// Random serials come from a pool refilled in bulk: one getrandom call per 256 certificates.
const SERIAL_POOL = Buffer.alloc(16 * 256);
let serialOffset = SERIAL_POOL.length;
function randomSerial(): Buffer {
  if (serialOffset >= SERIAL_POOL.length) {
    randomFillSync(SERIAL_POOL);
    serialOffset = 0;
  }
  const s = Buffer.from(SERIAL_POOL.subarray(serialOffset, serialOffset + 16));
  serialOffset += 16;
  if (s.every((b) => b === 0)) s[15] = 1; // a serial must be positive (2^-128 chance)
  return s;
}

/** A CA that issues short-lived SAN-only certificates (the mesh's workload identities). */
export class CertificateAuthority {
  readonly #signer: Signer;
  readonly #ca: CertificateInfo;
  readonly #caPem: string;
  readonly #chainPems: string[];
  readonly #rootPems: string[];
  readonly #rootsBundle: string;
  /** Chain elements after the leaf: the CA cert (unless it is a root), the intermediates, then the roots bundle. */
  readonly #tail: string[];
  readonly #caNotAfterSeconds: number;
  // TBSCertificate template pieces.
  readonly #head: Buffer; // [0] v3
  readonly #issuerAndAlg: Buffer; // signature AlgorithmIdentifier + issuer Name
  readonly #extensionsHead: Record<Profile, Buffer>; // KeyUsage, ExtendedKeyUsage, BasicConstraints, AuthorityKeyIdentifier
  readonly #emptySubject = Buffer.from([0x30, 0x00]);
  static readonly #sanCritical = Buffer.concat([encodeOid(Oid.subjectAltName), Buffer.from([0x01, 0x01, 0xff])]); // extnID, critical TRUE

  /**
   * Builds a CA from its certificate and key. Checks that the certificate is a CA allowed to sign certificates,
   * that the key matches it and can sign, and that it chains to `roots` through `chain` (signatures, CA flags,
   * validity now). Throws CaError.
   */
  constructor(opts: CertificateAuthorityOptions) {
    let signer: Signer;
    try {
      signer = toSigner(opts.caKey);
    } catch (e) {
      throw new CaError(`CA key: ${(e as Error).message}`);
    }
    const bundle = (what: string, texts: readonly string[]): string[] => {
      try {
        return texts.flatMap((p) => parsePemBundle(p, "CERTIFICATE"));
      } catch (e) {
        throw new CaError(`${what}: ${(e as Error).message}`);
      }
    };
    const certs = bundle("CA certificate", [opts.caCert]);
    if (certs.length !== 1) throw new CaError(`CA certificate: expected one CERTIFICATE block, found ${certs.length}`);
    let ca: CertificateInfo;
    try {
      ca = parseCertificate(certs[0]!);
    } catch (e) {
      throw new CaError(`CA certificate: ${(e as Error).message}`);
    }
    if (!isCaCertificate(ca)) throw new CaError(`CA certificate ${describeCertificate(ca)} is not a CA (BasicConstraints cA is not set)`);
    if (ca.keyUsage !== undefined && !(ca.keyUsage & KeyUsage.keyCertSign)) throw new CaError(`CA certificate ${describeCertificate(ca)} lacks the keyCertSign key usage`);
    if (!signer.publicKey().export({ type: "spki", format: "der" }).equals(ca.spki)) {
      throw new CaError("CA key does not match the CA certificate's public key");
    }
    const chainPems = bundle("CA chain", opts.chain ?? []);
    const rootPems = bundle("roots", opts.roots);
    if (rootPems.length === 0) throw new CaError("no root certificates given");
    try {
      verifyChain(ca.pem, chainPems, rootPems);
    } catch (e) {
      if (e instanceof ChainVerificationError) throw new CaError(`CA certificate does not chain to the roots: ${e.message}`);
      throw e;
    }
    this.#signer = signer;
    this.#ca = ca;
    this.#caPem = ca.pem;
    this.#chainPems = chainPems;
    this.#rootPems = rootPems;
    this.#rootsBundle = rootPems.join("");
    const caIsRoot = rootPems.some((r) => parseCertificate(r).der.equals(ca.der));
    this.#tail = [...(caIsRoot ? [] : [ca.pem]), ...chainPems, this.#rootsBundle];
    this.#caNotAfterSeconds = Math.floor(ca.notAfter.getTime() / 1000);

    this.#head = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);
    this.#issuerAndAlg = Buffer.concat([signer.algorithmIdentifier, ca.subjectDer]);
    // RFC 5280 method 1 (SHA-1 of the key bits) when the CA certificate carries no SubjectKeyIdentifier.
    const keyId = ca.subjectKeyId ?? createHash("sha1").update(ca.publicKeyBits).digest();
    const ku = encodeExtension(Oid.keyUsage, true, encodeKeyUsage(KeyUsage.digitalSignature | KeyUsage.keyEncipherment));
    const bc = encodeExtension(Oid.basicConstraints, true, sequence());
    const aki = encodeExtension(Oid.authorityKeyIdentifier, false, sequence(tlv(0x80, keyId)));
    const ekuBoth = encodeExtension(Oid.extKeyUsage, false, sequence(encodeOid(Oid.serverAuth), encodeOid(Oid.clientAuth)));
    const ekuServer = encodeExtension(Oid.extKeyUsage, false, sequence(encodeOid(Oid.serverAuth)));
    this.#extensionsHead = { workload: Buffer.concat([ku, ekuBoth, bc, aki]), serving: Buffer.concat([ku, ekuServer, bc, aki]) };
  }

  /**
   * Creates a new self-signed root CA: ECDSA P-256 by default (fast to sign with; Istio's own default is RSA 2048,
   * and clients accept either), subject O=<trustDomain>, BasicConstraints cA critical, KeyUsage
   * keyCertSign|cRLSign|digitalSignature critical, SubjectKeyIdentifier; notBefore backdated by 60 s.
   */
  static async selfSignedRoot(opts: SelfSignedRootOptions = {}): Promise<CertificateAuthority> {
    const trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    if (!TRUST_DOMAIN.test(trustDomain) || trustDomain.length > 255) throw new CaError(`trust domain "${trustDomain}" is not valid (lower-case letters, digits, '.', '-', '_')`);
    const ttlDays = opts.ttlDays ?? 3650;
    if (!(ttlDays > 0) || !Number.isFinite(ttlDays)) throw new CaError(`root lifetime ${ttlDays} days is not a positive number`);
    let keys: webcrypto.CryptoKeyPair;
    let signingAlgorithm: { name: string; hash: string };
    if (opts.rsaKeySize !== undefined) {
      if (!Number.isInteger(opts.rsaKeySize) || opts.rsaKeySize < 2048) throw new CaError(`RSA root key size ${opts.rsaKeySize} is below 2048 bits`);
      const alg = { name: "RSASSA-PKCS1-v1_5", modulusLength: opts.rsaKeySize, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" };
      keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
      signingAlgorithm = { name: alg.name, hash: "SHA-256" };
    } else {
      keys = (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
      signingAlgorithm = { name: "ECDSA", hash: "SHA-256" };
    }
    const now = Date.now();
    const serial = randomSerial();
    serial[0] = serial[0]! & 0x7f || 0x01; // positive without a sign octet, no leading zero
    // @peculiar/x509 (with reflect-metadata) is loaded here only, on first use: nothing else in this package needs it,
    // and a process that only requests and verifies certificates (ztunnel) saves ~20 MB by never loading it.
    const { x509 } = await import("./x509lib.js");
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial.toString("hex"),
      name: [{ O: [trustDomain] }],
      notBefore: new Date(Math.floor(now / 1000) * 1000 - DEFAULT_SKEW_SECONDS * 1000),
      notAfter: new Date(Math.floor(now / 1000) * 1000 + Math.round(ttlDays * 86400) * 1000),
      signingAlgorithm,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pem = derToPem(new Uint8Array(cert.rawData), "CERTIFICATE");
    return new CertificateAuthority({ caCert: pem, caKey: keys.privateKey, chain: [], roots: [pem] });
  }

  /**
   * Issues a leaf certificate and returns its PEM. Serial: 128 random bits, positive. Subject: empty, so the
   * SubjectAltName is critical (RFC 5280 §4.2.1.6). KeyUsage digitalSignature|keyEncipherment (critical),
   * ExtendedKeyUsage serverAuth+clientAuth, BasicConstraints cA=false (critical), AuthorityKeyIdentifier = the CA's
   * key id. Validity: now − skew … now + ttl, clamped to the CA certificate's notAfter. Throws CaError for bad SANs,
   * a bad TTL or an expired CA; the key is validated when it is not already a PublicKeyInfo.
   */
  sign(req: SignRequest): string {
    return this.#issue(req, "workload");
  }

  #issue(req: SignRequest, profile: Profile): string {
    const uris = req.uriSans ?? [];
    const dns = req.dnsSans ?? [];
    if (uris.length + dns.length === 0) throw new CaError("a certificate with an empty subject needs at least one SAN");
    for (const u of uris) {
      const p = uriSanProblem(u);
      if (p) throw new CaError(p);
    }
    for (const d of dns) {
      const p = dnsSanProblem(d);
      if (p) throw new CaError(p);
    }
    const ttl = req.ttlSeconds;
    if (typeof ttl !== "number" || !Number.isFinite(ttl) || ttl <= 0) throw new CaError(`TTL ${String(ttl)} s is not a positive number of seconds`);
    const skew = req.notBeforeSkewSeconds ?? DEFAULT_SKEW_SECONDS;
    if (typeof skew !== "number" || !Number.isFinite(skew) || skew < 0) throw new CaError(`notBefore skew ${String(skew)} s is not a non-negative number`);
    let key: PublicKeyInfo;
    if (req.publicKey instanceof PublicKeyInfo) key = req.publicKey;
    else {
      try {
        key = PublicKeyInfo.from(req.publicKey);
      } catch (e) {
        if (e instanceof KeyError) throw new CaError(`public key rejected: ${e.message}`);
        throw e;
      }
    }

    const now = Math.floor(Date.now() / 1000);
    const notAfter = Math.min(now + Math.ceil(ttl), this.#caNotAfterSeconds);
    if (notAfter <= now) throw new CaError(`the CA certificate expired at ${this.#ca.notAfter.toISOString()}`);
    const notBefore = now - Math.floor(skew);

    const san = sequence(CertificateAuthority.#sanCritical, tlv(0x04, encodeGeneralNames(uris, dns)));
    const tbs = sequence(
      this.#head,
      encodeUnsignedInteger(randomSerial()),
      this.#issuerAndAlg,
      sequence(encodeTime(notBefore * 1000), encodeTime(notAfter * 1000)),
      this.#emptySubject,
      key.spki,
      tlv(0xa3, tlv(0x30, this.#extensionsHead[profile], san)),
    );
    const signature = this.#signer.sign(tbs);
    return derToPem(sequence(tbs, this.#signer.algorithmIdentifier, encodeBitString(signature)), "CERTIFICATE");
  }

  /**
   * The chain to return for a leaf, in Istio's order: the leaf, each intermediate as its own element (the CA
   * certificate first when it is not itself a root), and the roots last — several roots concatenated into one
   * final element, which ztunnel reads as a trust bundle. Every element ends with "\n".
   */
  chainFor(leafPem: string): string[] {
    return [withTrailingNewline(leafPem), ...this.#tail];
  }

  /** All trusted roots, concatenated PEM (the content of `root-cert.pem` / the istio-ca-root-cert ConfigMap). */
  rootsPem(): string {
    return this.#rootsBundle;
  }

  /** The roots as separate PEMs. */
  rootPems(): string[] {
    return [...this.#rootPems];
  }

  /** The intermediates between the CA certificate and the root, nearest first. */
  chainPems(): string[] {
    return [...this.#chainPems];
  }

  /** The signing certificate's PEM. */
  caCertPem(): string {
    return this.#caPem;
  }

  /** The signing key as PKCS#8 PEM (for persisting a self-signed root, as istiod does in the istio-ca-secret Secret). */
  caKeyPem(): string {
    return this.#signer.toPem();
  }

  /** When the CA certificate expires; no issued certificate outlives it. */
  get notAfter(): Date {
    return this.#ca.notAfter;
  }

  /** The decoded CA certificate. */
  get certificate(): CertificateInfo {
    return this.#ca;
  }

  /**
   * Issues a server certificate for the controller's own TLS port (15012): a fresh ECDSA P-256 key, DNS SANs,
   * ExtendedKeyUsage serverAuth, otherwise the same profile as workload certificates.
   */
  async issueServingCertificate(opts: { dnsNames: string[]; ttlSeconds: number }): Promise<ServingCertificate> {
    if (!opts.dnsNames.length) throw new CaError("a serving certificate needs at least one DNS name");
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const certPem = this.#issue({ publicKey, uriSans: [], dnsSans: opts.dnsNames, ttlSeconds: opts.ttlSeconds }, "serving");
    const chain = this.chainFor(certPem);
    return {
      certPem,
      keyPem: derToPem(privateKey.export({ type: "pkcs8", format: "der" }), "PRIVATE KEY"),
      chain,
      tlsCertChainPem: chain.slice(0, -1).join(""),
    };
  }
}
