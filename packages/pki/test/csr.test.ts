import { webcrypto } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { createCsr, CsrError, derToPem, generateKeyPair, parseCsr, parsePemBundle } from "../src/index.js";
import { openssl, OpensslPki, Scratch } from "./helpers.js";

const s = new Scratch();
const o = new OpensslPki(s);
afterAll(() => s.cleanup());

const ID = "spiffe://cluster.local/ns/default/sa/bookinfo-ratings";

function der(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
}

describe("createCsr / parseCsr", () => {
  it("creates a ztunnel-style CSR (empty subject, one critical URI SAN, SHA-256) that parses back", async () => {
    const kp = await generateKeyPair();
    const pem = await createCsr({ keyPair: kp, uriSans: [ID] });
    expect(pem.startsWith("-----BEGIN CERTIFICATE REQUEST-----\n")).toBe(true);
    const parsed = parseCsr(pem);
    expect(parsed.subject).toBe("");
    expect(parsed.uriSans).toEqual([ID]);
    expect(parsed.dnsSans).toEqual([]);
    expect(parsed.publicKey.description).toBe("EC P-256");
    const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", kp.publicKey));
    expect(parsed.publicKey.spki.equals(spki)).toBe(true);
    // openssl agrees: signature OK, empty subject, critical SAN.
    s.write("z.csr", pem);
    const text = openssl(s.dir, ["req", "-in", "z.csr", "-noout", "-verify", "-text"]);
    expect(text).toMatch(/Subject:\s*\n/);
    expect(text).toContain("X509v3 Subject Alternative Name: critical");
    expect(text).toContain(`URI:${ID}`);
    expect(text).toContain("ecdsa-with-SHA256");
  });

  it("parses DNS SANs and a non-empty subject from an openssl CSR", () => {
    o.key("k1.pem", "ec-pkcs8");
    openssl(s.dir, ["req", "-new", "-key", "k1.pem", "-subj", "/O=Acme/CN=web", "-addext", `subjectAltName=URI:${ID},DNS:web.example.com`, "-config", "openssl.cnf", "-out", "o.csr"]);
    const parsed = parseCsr(s.read("o.csr"));
    expect(parsed.subject).toBe("O=Acme, CN=web");
    expect(parsed.uriSans).toEqual([ID]);
    expect(parsed.dnsSans).toEqual(["web.example.com"]);
  });

  it("accepts P-384 and RSA 2048 keys", async () => {
    const p384 = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
    expect(parseCsr(await createCsr({ keyPair: p384, uriSans: [ID] })).publicKey.description).toBe("EC P-384");
    const rsa = (await webcrypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    )) as webcrypto.CryptoKeyPair;
    expect(parseCsr(await createCsr({ keyPair: rsa, uriSans: [ID] })).publicKey.description).toBe("RSA 2048");
  });

  it("rejects an RSA 1024 CSR", () => {
    o.key("rsa1024.pem", "rsa:1024");
    openssl(s.dir, ["req", "-new", "-key", "rsa1024.pem", "-subj", "/CN=weak", "-config", "openssl.cnf", "-out", "weak.csr"]);
    expect(() => parseCsr(s.read("weak.csr"))).toThrow(CsrError);
    expect(() => parseCsr(s.read("weak.csr"))).toThrow(/RSA key of 1024 bits is too small/);
  });

  it("rejects keys outside the policy (Ed25519, P-521)", async () => {
    openssl(s.dir, ["req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", "ed.key", "-subj", "/CN=ed", "-config", "openssl.cnf", "-out", "ed.csr"]);
    expect(() => parseCsr(s.read("ed.csr"))).toThrow(/ed25519 keys are not accepted/);
    const p521 = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-521" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
    const pem = await createCsr({ keyPair: p521, uriSans: [ID] });
    expect(() => parseCsr(pem)).toThrow(/curve secp521r1 is not accepted/);
    o.key("rsa2048.pem", "rsa:2048");
    openssl(s.dir, ["req", "-new", "-key", "rsa2048.pem", "-subj", "/CN=pss", "-sigopt", "rsa_padding_mode:pss", "-config", "openssl.cnf", "-out", "pss.csr"]);
    expect(() => parseCsr(s.read("pss.csr"))).toThrow(/RSASSA-PSS is not supported/);
  });

  it("rejects a tampered CSR: changed SAN or changed signature", async () => {
    const pem = await createCsr({ keyPair: await generateKeyPair(), uriSans: [ID] });
    const d = der(pem);
    const at = d.indexOf(Buffer.from("bookinfo"));
    expect(at).toBeGreaterThan(0);
    const san = Buffer.from(d);
    san[at] = "c".charCodeAt(0); // "cookinfo": still valid DER, wrong signature
    expect(() => parseCsr(derToPem(san, "CERTIFICATE REQUEST"))).toThrow(/signature does not verify/);
    const sig = Buffer.from(d);
    sig[sig.length - 3]! ^= 0x01;
    expect(() => parseCsr(derToPem(sig, "CERTIFICATE REQUEST"))).toThrow(CsrError);
  });

  it("rejects a CSR whose key is not on the curve", async () => {
    const pem = await createCsr({ keyPair: await generateKeyPair(), uriSans: [ID] });
    const d = der(pem);
    const at = d.indexOf(Buffer.from("03420004", "hex"));
    d[at + 4 + 63]! ^= 0x01; // last byte of y
    expect(() => parseCsr(derToPem(d, "CERTIFICATE REQUEST"))).toThrow(/not a valid P-256 point/);
  });

  it("rejects malformed input with a clear CsrError", async () => {
    const good = await createCsr({ keyPair: await generateKeyPair(), uriSans: [ID] });
    const d = der(good);
    const cases: [string, RegExp][] = [
      ["", /empty/],
      ["hello", /no PEM block labelled "CERTIFICATE REQUEST"/],
      [good.replace(/CERTIFICATE REQUEST/g, "CERTIFICATE"), /no PEM block labelled/],
      [good + good, /expected one PEM block, found 2/],
      [good.replace(/^(.{40})./m, "$1!"), /not base64/],
      [derToPem(d.subarray(0, d.length - 10), "CERTIFICATE REQUEST"), /not valid DER/],
      [derToPem(Buffer.concat([d, Buffer.from([0])]), "CERTIFICATE REQUEST"), /trailing bytes/],
      [derToPem(Buffer.from([0x30, 0x80, 0, 0]), "CERTIFICATE REQUEST"), /indefinite length/],
      ["-----BEGIN CERTIFICATE REQUEST-----\n" + "A".repeat(70000) + "\n-----END CERTIFICATE REQUEST-----\n", /larger than/],
    ];
    for (const [input, re] of cases) {
      let err: unknown;
      try {
        parseCsr(input);
      } catch (e) {
        err = e;
      }
      expect(err, String(re)).toBeInstanceOf(CsrError);
      expect((err as Error).message).toMatch(re);
    }
    expect(parsePemBundle(good).length).toBe(1);
  });

  it("createCsr refuses a CSR without SANs or with a bad SAN", async () => {
    const keyPair = await generateKeyPair();
    await expect(createCsr({ keyPair, uriSans: [] })).rejects.toThrow(/at least one SAN/);
    await expect(createCsr({ keyPair, uriSans: ["spiffe://a b"] })).rejects.toThrow(/not an absolute URI/);
    await expect(createCsr({ keyPair, uriSans: [ID], dnsSans: ["bad name"] })).rejects.toThrow(/not a valid DNS name/);
  });
});
