import { webcrypto } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { createCsr, CsrError, derToPem, generateKeyPair, parseCsr, parsePemBundle } from "../src/index.js";
import { readTlv, children, Tag } from "../src/der.js";
import { openssl, OpensslPki, opensslTry, Scratch } from "./helpers.js";

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

  it("writes the PKCS#10 DER by hand: version 0, empty subject, the key, one extensionRequest with a critical SAN", async () => {
    const kp = await generateKeyPair();
    const uris = [ID, "spiffe://cluster.local/ns/default/sa/other"];
    const pem = await createCsr({ keyPair: kp, uriSans: uris, dnsSans: ["a.example.com", "*.b.example"] });
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n(?:[A-Za-z0-9+/]{64}\n)*[A-Za-z0-9+/=]{1,64}\n-----END CERTIFICATE REQUEST-----\n$/);
    const d = der(pem);
    const outer = readTlv(d, 0, d.length);
    const [cri, alg, sig] = children(d, outer);
    const [version, subject, spki, attrs, ...rest] = children(d, cri!);
    expect(rest).toEqual([]);
    expect(d.subarray(version!.start, version!.end).toString("hex")).toBe("020100");
    expect(d.subarray(subject!.start, subject!.end).toString("hex")).toBe("3000");
    expect(d.subarray(spki!.start, spki!.end).equals(Buffer.from(await webcrypto.subtle.exportKey("spki", kp.publicKey)))).toBe(true);
    expect(attrs!.tag).toBe(0xa0);
    expect(children(d, attrs!).length).toBe(1);
    expect(d.subarray(alg!.start, alg!.end).toString("hex")).toBe("300a06082a8648ce3d040302"); // ecdsa-with-SHA256, no parameters
    expect(sig!.tag).toBe(Tag.BIT_STRING);
    // openssl verifies the signature and sees what we meant.
    s.write("h.csr", pem);
    const r = opensslTry(s.dir, ["req", "-in", "h.csr", "-verify", "-noout", "-text"]);
    expect(r.ok, r.out).toBe(true);
    expect(r.out).toMatch(/verify OK/);
    expect(r.out).toMatch(/Version: 1 \(0x0\)/);
    expect(r.out).toMatch(/Subject:\s*\n/);
    expect(r.out).toContain("Requested Extensions:");
    expect(r.out).toContain("X509v3 Subject Alternative Name: critical");
    expect(r.out).toContain(`URI:${uris[0]}, URI:${uris[1]}, DNS:a.example.com, DNS:*.b.example`);
    expect(r.out).toContain("Signature Algorithm: ecdsa-with-SHA256");
    // …and so does our own parser.
    const parsed = parseCsr(pem);
    expect(parsed).toMatchObject({ subject: "", uriSans: uris, dnsSans: ["a.example.com", "*.b.example"] });
  });

  it("signs with the key's algorithm: ECDSA P-384 with SHA-384, RSA with the key's hash; openssl verifies each", async () => {
    const rsaAlg = (hash: string) => ({ name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash });
    const cases: [webcrypto.CryptoKeyPair, string][] = [
      [(await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair, "ecdsa-with-SHA384"],
      [(await webcrypto.subtle.generateKey(rsaAlg("SHA-256"), true, ["sign", "verify"])) as webcrypto.CryptoKeyPair, "sha256WithRSAEncryption"],
      [(await webcrypto.subtle.generateKey(rsaAlg("SHA-384"), true, ["sign", "verify"])) as webcrypto.CryptoKeyPair, "sha384WithRSAEncryption"],
    ];
    for (const [keyPair, algName] of cases) {
      const pem = await createCsr({ keyPair, uriSans: [ID] });
      s.write("alg.csr", pem);
      const r = opensslTry(s.dir, ["req", "-in", "alg.csr", "-verify", "-noout", "-text"]);
      expect(r.ok, r.out).toBe(true);
      expect(r.out).toMatch(/verify OK/);
      expect(r.out).toContain(`Signature Algorithm: ${algName}`);
      expect(r.out).toContain("X509v3 Subject Alternative Name: critical");
      expect(parseCsr(pem).uriSans).toEqual([ID]);
    }
  });

  it("produces what @peculiar/x509's generator produced (byte for byte for deterministic RSA signatures)", async () => {
    const { x509 } = await import("../src/x509lib.js");
    const rsa = (await webcrypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    )) as webcrypto.CryptoKeyPair;
    const names = [
      { type: "url" as const, value: ID },
      { type: "dns" as const, value: "a.example.com" },
    ];
    const theirs = await x509.Pkcs10CertificateRequestGenerator.create({
      keys: rsa,
      signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      extensions: [new x509.SubjectAlternativeNameExtension(names, true)],
    });
    const ours = await createCsr({ keyPair: rsa, uriSans: [ID], dnsSans: ["a.example.com"] });
    expect(der(ours).equals(Buffer.from(theirs.rawData))).toBe(true);
    // ECDSA signatures are randomized: compare the signed part, and let the library verify ours.
    const ec = await generateKeyPair();
    const ecTheirs = await x509.Pkcs10CertificateRequestGenerator.create({
      keys: ec,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: ID }], true)],
    });
    const ecOursDer = der(await createCsr({ keyPair: ec, uriSans: [ID] }));
    const signedPart = (d: Buffer) => {
      const cri = children(d, readTlv(d, 0, d.length))[0]!;
      return d.subarray(cri.start, cri.end);
    };
    expect(signedPart(ecOursDer).equals(signedPart(Buffer.from(ecTheirs.rawData)))).toBe(true);
    const ecOurs = new x509.Pkcs10CertificateRequest(ecOursDer);
    expect(await ecOurs.verify()).toBe(true);
    expect(ecOurs.subject).toBe("");
    expect(ecOurs.extensions.map((e) => e.type)).toEqual(["2.5.29.17"]);
    const san = new x509.SubjectAlternativeNameExtension(ecOurs.extensions[0]!.rawData);
    expect(san.critical).toBe(true);
    expect(san.names.items.map((n) => `${n.type}:${n.value}`)).toEqual([`url:${ID}`]);
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
