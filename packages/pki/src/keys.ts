// Keys: generation (ECDSA P-256, as ztunnel uses for every workload certificate), PEM export, and import of
// the private keys a CA may be given (PKCS#8, SEC1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY").
import { createPrivateKey, createPublicKey, KeyObject, sign as nodeSign, webcrypto } from "node:crypto";
import { encodeOid, Oid, sequence } from "./der.js";
import { KeyError, PemError } from "./errors.js";
import { derToPem, pemBlocks } from "./pem.js";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The WebCrypto parameters of the key pairs this package generates. */
export const EC_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;

/** Generates an extractable ECDSA P-256 key pair (WebCrypto), usable for `createCsr` and exportable as PEM. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** Exports a private key (WebCrypto CryptoKey, node KeyObject or Signer) as a PKCS#8 "PRIVATE KEY" PEM. */
export async function exportPrivateKeyPem(key: CryptoKey | KeyObject | Signer): Promise<string> {
  if (key instanceof Signer) key = key.keyObject;
  if (key instanceof KeyObject) {
    if (key.type !== "private") throw new KeyError("not a private key");
    return derToPem(key.export({ type: "pkcs8", format: "der" }), "PRIVATE KEY");
  }
  if (key.type !== "private") throw new KeyError("not a private key");
  if (!key.extractable) throw new KeyError("the private key is not extractable");
  return derToPem(new Uint8Array(await webcrypto.subtle.exportKey("pkcs8", key)), "PRIVATE KEY");
}

export interface EcCurve {
  /** WebCrypto's name. */
  name: "P-256" | "P-384" | "P-521";
  /** The ECDSA signature algorithm used with it, and its hash (Node's and WebCrypto's names). */
  sigOid: string;
  hash: string;
  webHash: string;
}

/** The EC curves this package signs with, by Node's name (asymmetricKeyDetails.namedCurve). */
export const EC_CURVES: Record<string, EcCurve> = {
  prime256v1: { name: "P-256", sigOid: Oid.ecdsaWithSha256, hash: "sha256", webHash: "SHA-256" },
  secp384r1: { name: "P-384", sigOid: Oid.ecdsaWithSha384, hash: "sha384", webHash: "SHA-384" },
  secp521r1: { name: "P-521", sigOid: Oid.ecdsaWithSha512, hash: "sha512", webHash: "SHA-512" },
};

/** Smallest RSA modulus accepted anywhere in this package. */
export const MIN_RSA_BITS = 2048;

/**
 * A private key ready to sign certificates: the node:crypto KeyObject (used for issuing, synchronously), the
 * signature algorithm that goes with it (ECDSA with the curve's hash, or SHA-256 with RSA PKCS#1 v1.5), and the
 * DER AlgorithmIdentifier written into certificates.
 */
export class Signer {
  /** "ec" or "rsa". */
  readonly keyType: "ec" | "rsa";
  /** EC curve, for EC keys. */
  readonly curve: "P-256" | "P-384" | "P-521" | undefined;
  /** RSA modulus size in bits, for RSA keys. */
  readonly modulusBits: number | undefined;
  /** Signature algorithm OID (for example 1.2.840.10045.4.3.2, ecdsa-with-SHA256). */
  readonly signatureOid: string;
  /** The node:crypto digest name used with `crypto.sign`. */
  readonly hash: string;
  /** WebCrypto parameters of the same algorithm (for @peculiar/x509 generators). */
  readonly webAlgorithm: { name: string; hash: string; namedCurve?: string };
  /** DER AlgorithmIdentifier of the signature algorithm. */
  readonly algorithmIdentifier: Buffer;
  #cryptoKey: CryptoKey | undefined;

  /** Wraps a private KeyObject; throws KeyError for key types a CA cannot sign with. */
  constructor(readonly keyObject: KeyObject, cryptoKey?: CryptoKey) {
    if (keyObject.type !== "private") throw new KeyError("not a private key");
    const t = keyObject.asymmetricKeyType;
    const d = keyObject.asymmetricKeyDetails ?? {};
    if (t === "ec") {
      const c = EC_CURVES[d.namedCurve ?? ""];
      if (!c) throw new KeyError(`EC curve ${d.namedCurve ?? "(unknown)"} is not supported (use P-256, P-384 or P-521)`);
      this.keyType = "ec";
      this.curve = c.name;
      this.modulusBits = undefined;
      this.signatureOid = c.sigOid;
      this.hash = c.hash;
      this.webAlgorithm = { name: "ECDSA", hash: c.webHash, namedCurve: c.name };
      this.algorithmIdentifier = sequence(encodeOid(c.sigOid));
    } else if (t === "rsa") {
      const bits = d.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw new KeyError(`RSA key of ${bits} bits is too small (minimum ${MIN_RSA_BITS})`);
      this.keyType = "rsa";
      this.curve = undefined;
      this.modulusBits = bits;
      this.signatureOid = Oid.sha256WithRsa;
      this.hash = "sha256";
      this.webAlgorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
      this.algorithmIdentifier = sequence(encodeOid(Oid.sha256WithRsa), Uint8Array.of(0x05, 0x00));
    } else {
      throw new KeyError(`${t ?? "unknown"} keys are not supported (use ECDSA or RSA)`);
    }
    this.#cryptoKey = cryptoKey;
  }

  /** Signs `data` (a TBSCertificate, for instance); ECDSA signatures are DER-encoded as X.509 requires. */
  sign(data: Uint8Array): Buffer {
    return nodeSign(this.hash, data, this.keyObject);
  }

  /** The public key as a node KeyObject. */
  publicKey(): KeyObject {
    return createPublicKey(this.keyObject);
  }

  /** The same key as a WebCrypto CryptoKey (imported on first use). */
  async cryptoKey(): Promise<CryptoKey> {
    if (!this.#cryptoKey) {
      const der = this.keyObject.export({ type: "pkcs8", format: "der" });
      const alg = this.keyType === "ec" ? { name: "ECDSA", namedCurve: this.curve! } : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
      this.#cryptoKey = await webcrypto.subtle.importKey("pkcs8", der, alg, true, ["sign"]);
    }
    return this.#cryptoKey;
  }

  /** The private key as PKCS#8 PEM. */
  toPem(): string {
    return derToPem(this.keyObject.export({ type: "pkcs8", format: "der" }), "PRIVATE KEY");
  }
}

const KEY_LABELS = ["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"];

/** Parses a private key PEM synchronously into a node KeyObject (PKCS#8, SEC1 or PKCS#1). Throws KeyError. */
export function privateKeyFromPem(pem: string): KeyObject {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(pem)) {
    throw new KeyError("encrypted private keys are not supported; decrypt it first (openssl pkey -in key.pem -out plain.pem)");
  }
  let blocks;
  try {
    blocks = pemBlocks(pem);
  } catch (e) {
    throw new KeyError(`not a valid PEM private key: ${(e as PemError).message}`);
  }
  const keys = blocks.filter((b) => KEY_LABELS.includes(b.label));
  if (keys.length === 0) {
    const found = blocks.length ? `found ${blocks.map((b) => `"${b.label}"`).join(", ")}` : "no PEM block found";
    throw new KeyError(`no private key (expected "PRIVATE KEY", "EC PRIVATE KEY" or "RSA PRIVATE KEY"; ${found})`);
  }
  if (keys.length > 1) throw new KeyError(`expected one private key, found ${keys.length}`);
  const block = keys[0]!;
  const type = block.label === "PRIVATE KEY" ? "pkcs8" : block.label === "EC PRIVATE KEY" ? "sec1" : "pkcs1";
  try {
    return createPrivateKey({ key: block.der, format: "der", type });
  } catch (e) {
    throw new KeyError(`"${block.label}" block cannot be decoded: ${(e as Error).message}`);
  }
}

/** Turns any accepted private key form (PEM, WebCrypto CryptoKey, node KeyObject, Signer) into a Signer, synchronously. */
export function toSigner(key: string | CryptoKey | KeyObject | Signer): Signer {
  if (key instanceof Signer) return key;
  if (typeof key === "string") return new Signer(privateKeyFromPem(key));
  if (key instanceof KeyObject) return new Signer(key);
  if (key.type !== "private") throw new KeyError("not a private key");
  return new Signer(KeyObject.from(key), key);
}

/**
 * Imports a private key PEM — PKCS#8 "PRIVATE KEY" (EC or RSA), SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY" —
 * and returns a Signer usable for issuing (also as a WebCrypto key). Throws KeyError naming the problem.
 */
export async function importPrivateKeyPem(pem: string): Promise<Signer> {
  const signer = new Signer(privateKeyFromPem(pem));
  await signer.cryptoKey();
  return signer;
}
