// Public keys that may appear in a certificate we issue: ECDSA P-256 / P-384 and RSA of at least 2048 bits.
// Canonical uncompressed EC keys take a fast import path (JWK coordinates, about half the cost of OpenSSL's
// DER decoder); everything else goes through node:crypto's SPKI decoder. Both reject points off the curve.
import { createPublicKey, KeyObject, webcrypto } from "node:crypto";
import { KeyError } from "./errors.js";
import { EC_CURVES, MIN_RSA_BITS } from "./keys.js";
import { decodeSinglePem } from "./pem.js";

/** Largest RSA modulus accepted (bigger keys only cost CPU). */
export const MAX_RSA_BITS = 16384;

const P256_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex");
const P384_PREFIX = Buffer.from("3076301006072a8648ce3d020106052b8104002203620004", "hex");

/** A validated subject public key: its DER SubjectPublicKeyInfo (copied into issued certificates) and a KeyObject. */
export class PublicKeyInfo {
  private constructor(
    /** DER SubjectPublicKeyInfo. */
    readonly spki: Buffer,
    /** The key as a node:crypto KeyObject. */
    readonly keyObject: KeyObject,
    /** "ec" or "rsa". */
    readonly keyType: "ec" | "rsa",
    /** Curve of an EC key. */
    readonly curve: "P-256" | "P-384" | undefined,
    /** Modulus size of an RSA key. */
    readonly modulusBits: number | undefined,
  ) {}

  /** For messages: "EC P-256", "RSA 2048". */
  get description(): string {
    return this.keyType === "ec" ? `EC ${this.curve}` : `RSA ${this.modulusBits}`;
  }

  /**
   * Validates a DER SubjectPublicKeyInfo against the key policy (EC P-256/P-384, RSA 2048–16384 bits).
   * Throws KeyError naming the problem. The bytes are copied.
   */
  static fromSpki(spkiDer: Uint8Array): PublicKeyInfo {
    const spki = Buffer.from(spkiDer);
    if (spki.length === 91 && spki.compare(P256_PREFIX, 0, P256_PREFIX.length, 0, P256_PREFIX.length) === 0) {
      return new PublicKeyInfo(spki, importEcPoint(spki, P256_PREFIX.length, 32, "P-256"), "ec", "P-256", undefined);
    }
    if (spki.length === 120 && spki.compare(P384_PREFIX, 0, P384_PREFIX.length, 0, P384_PREFIX.length) === 0) {
      return new PublicKeyInfo(spki, importEcPoint(spki, P384_PREFIX.length, 48, "P-384"), "ec", "P-384", undefined);
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: spki, format: "der", type: "spki" });
    } catch (e) {
      throw new KeyError(`public key cannot be decoded: ${(e as Error).message}`);
    }
    return PublicKeyInfo.check(spki, key);
  }

  /** Validates a public (or private: its public half is used) KeyObject, CryptoKey or PEM against the key policy. */
  static from(key: KeyObject | webcrypto.CryptoKey | string): PublicKeyInfo {
    let ko: KeyObject;
    if (typeof key === "string") {
      const block = decodeSinglePem(key, ["PUBLIC KEY"], "public key");
      return PublicKeyInfo.fromSpki(block.der);
    } else if (key instanceof KeyObject) ko = key;
    else ko = KeyObject.from(key);
    if (ko.type === "private") ko = createPublicKey(ko);
    if (ko.type !== "public") throw new KeyError("not an asymmetric key");
    return PublicKeyInfo.check(ko.export({ type: "spki", format: "der" }), ko);
  }

  private static check(spki: Buffer, key: KeyObject): PublicKeyInfo {
    const t = key.asymmetricKeyType;
    const d = key.asymmetricKeyDetails ?? {};
    if (t === "ec") {
      const curve = EC_CURVES[d.namedCurve ?? ""]?.name;
      if (curve !== "P-256" && curve !== "P-384") throw new KeyError(`EC curve ${d.namedCurve ?? "(unknown)"} is not accepted (only P-256 and P-384)`);
      return new PublicKeyInfo(spki, key, "ec", curve, undefined);
    }
    if (t === "rsa") {
      const bits = d.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw new KeyError(`RSA key of ${bits} bits is too small (minimum ${MIN_RSA_BITS})`);
      if (bits > MAX_RSA_BITS) throw new KeyError(`RSA key of ${bits} bits is too large (maximum ${MAX_RSA_BITS})`);
      return new PublicKeyInfo(spki, key, "rsa", undefined, bits);
    }
    throw new KeyError(`${t ?? "unknown"} keys are not accepted (only EC P-256/P-384 and RSA ≥ ${MIN_RSA_BITS} bits)`);
  }
}

function importEcPoint(spki: Buffer, at: number, size: number, crv: "P-256" | "P-384"): KeyObject {
  try {
    const x = spki.toString("base64url", at, at + size);
    const y = spki.toString("base64url", at + size, at + 2 * size);
    return createPublicKey({ key: { kty: "EC", crv, x, y }, format: "jwk" });
  } catch {
    throw new KeyError(`public key is not a valid ${crv} point`);
  }
}
