import { KeyObject, verify, webcrypto } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem, KeyError, parsePemBundle, PemError, Signer } from "../src/index.js";
import { OpensslPki, Scratch } from "./helpers.js";

const s = new Scratch();
const o = new OpensslPki(s);
afterAll(() => s.cleanup());

describe("keys", () => {
  it("generates an extractable ECDSA P-256 pair and round-trips it through PKCS#8 PEM", async () => {
    const kp = await generateKeyPair();
    expect(kp.privateKey.extractable).toBe(true);
    expect(kp.privateKey.algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });
    const pem = await exportPrivateKeyPem(kp.privateKey);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    const signer = await importPrivateKeyPem(pem);
    expect(signer).toMatchObject({ keyType: "ec", curve: "P-256", hash: "sha256" });
    // The imported key signs, and the original public key verifies it.
    const data = Buffer.from("hello");
    const sig = signer.sign(data);
    expect(verify("sha256", data, KeyObject.from(kp.publicKey), sig)).toBe(true);
    expect((await signer.cryptoKey()).type).toBe("private");
    expect(await exportPrivateKeyPem(signer)).toBe(pem);
  });

  it("imports SEC1 'EC PRIVATE KEY' (with an EC PARAMETERS block before it)", async () => {
    const pem = o.key("sec1.pem", "ec");
    expect(parsePemBundle(pem).length).toBe(2);
    const signer = await importPrivateKeyPem(pem);
    expect(signer.keyType).toBe("ec");
    expect(signer.curve).toBe("P-256");
  });

  it("imports PKCS#1 'RSA PRIVATE KEY' and PKCS#8 RSA keys", async () => {
    const pkcs1 = o.key("rsa1.pem", "rsa:2048");
    expect(pkcs1).toContain("BEGIN RSA PRIVATE KEY");
    const a = await importPrivateKeyPem(pkcs1);
    expect(a).toMatchObject({ keyType: "rsa", modulusBits: 2048, signatureOid: "1.2.840.113549.1.1.11" });
    const pkcs8 = o.key("rsa8.pem", "rsa-pkcs8:2048");
    expect(pkcs8).toContain("BEGIN PRIVATE KEY");
    const b = await importPrivateKeyPem(pkcs8);
    expect(b.keyType).toBe("rsa");
    const sig = b.sign(Buffer.from("x"));
    expect(verify("sha256", Buffer.from("x"), b.publicKey(), sig)).toBe(true);
  });

  it("rejects encrypted keys, small RSA keys, unsupported types and garbage with KeyError", async () => {
    await expect(importPrivateKeyPem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")).rejects.toThrow(/encrypted/);
    await expect(importPrivateKeyPem(o.key("rsa1024.pem", "rsa:1024"))).rejects.toThrow(/1024 bits is too small/);
    await expect(importPrivateKeyPem("not a key")).rejects.toBeInstanceOf(KeyError);
    await expect(importPrivateKeyPem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).rejects.toThrow(/no private key/);
    await expect(importPrivateKeyPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")).rejects.toThrow(/cannot be decoded/);
    const ed = (await webcrypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
    await expect(importPrivateKeyPem(await exportPrivateKeyPem(ed.privateKey))).rejects.toThrow(/ed25519 keys are not supported/);
    expect(() => new Signer(KeyObject.from(ed.publicKey))).toThrow(/not a private key/);
  });

  it("parsePemBundle splits concatenated PEM and rejects broken blocks", () => {
    const a = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----";
    const b = "-----BEGIN CERTIFICATE-----\r\nREVG\r\n-----END CERTIFICATE-----\r\n";
    const out = parsePemBundle(`# comment\n${a}\n\n${b}`);
    expect(out).toEqual(["-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\nREVG\n-----END CERTIFICATE-----\n"]);
    expect(parsePemBundle("")).toEqual([]);
    expect(() => parsePemBundle("-----BEGIN CERTIFICATE-----\nQUJD\n-----END X509 CRL-----\n")).toThrow(PemError);
    expect(() => parsePemBundle("-----BEGIN CERTIFICATE-----\nQU*D\n-----END CERTIFICATE-----\n")).toThrow(/not base64/);
    expect(() => parsePemBundle("-----BEGIN CERTIFICATE-----\nQUJD\n")).toThrow(/not terminated/);
  });
});
