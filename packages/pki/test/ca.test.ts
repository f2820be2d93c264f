import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CaError,
  CertificateAuthority,
  createCsr,
  generateKeyPair,
  parseCertificate,
  parseCsr,
  parsePemBundle,
  spiffeIdsOf,
  verifyChain,
  KeyUsage,
} from "../src/index.js";
import { openssl, opensslTry, Scratch } from "./helpers.js";

const s = new Scratch();
afterAll(() => s.cleanup());
const ID = "spiffe://cluster.local/ns/default/sa/reviews";
let ca: CertificateAuthority;

async function csrKey(id = ID) {
  return parseCsr(await createCsr({ keyPair: await generateKeyPair(), uriSans: [id] })).publicKey;
}

beforeAll(async () => {
  ca = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
});

describe("CertificateAuthority.selfSignedRoot", () => {
  it("creates an ECDSA P-256 root: O=<trust domain>, critical CA:TRUE and key usages, SKI, 10 years", () => {
    const root = parseCertificate(ca.caCertPem());
    expect(root.subject).toBe("O=cluster.local");
    expect(root.issuer).toBe("O=cluster.local");
    expect(root.basicConstraints).toEqual({ ca: true, pathLen: undefined, critical: true });
    expect(root.keyUsage).toBe(KeyUsage.keyCertSign | KeyUsage.cRLSign | KeyUsage.digitalSignature);
    expect(root.extensions.get("2.5.29.15")?.critical).toBe(true);
    expect(root.subjectKeyId?.length).toBe(20);
    expect(root.signatureOid).toBe("1.2.840.10045.4.3.2");
    const days = (root.notAfter.getTime() - Date.now()) / 86400e3;
    expect(days).toBeGreaterThan(3649);
    expect(days).toBeLessThan(3651);
    expect(ca.rootsPem()).toBe(ca.caCertPem());
    s.write("root.pem", ca.caCertPem());
    const text = openssl(s.dir, ["x509", "-in", "root.pem", "-noout", "-text"]);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    expect(text).toContain("Subject Key Identifier");
  });

  it("can make an RSA 2048 root like Istio's; its leaves verify with openssl", async () => {
    const rsa = await CertificateAuthority.selfSignedRoot({ trustDomain: "example.org", rsaKeySize: 2048 });
    const root = parseCertificate(rsa.caCertPem());
    expect(root.signatureOid).toBe("1.2.840.113549.1.1.11");
    const leaf = rsa.sign({ publicKey: await csrKey("spiffe://example.org/ns/a/sa/b"), uriSans: ["spiffe://example.org/ns/a/sa/b"], ttlSeconds: 3600 });
    s.write("rsa-root.pem", rsa.rootsPem());
    s.write("rsa-leaf.pem", leaf);
    expect(openssl(s.dir, ["verify", "-x509_strict", "-CAfile", "rsa-root.pem", "rsa-leaf.pem"])).toContain("OK");
  });

  it("rejects a bad trust domain and a small RSA size", async () => {
    await expect(CertificateAuthority.selfSignedRoot({ trustDomain: "Bad Domain" })).rejects.toThrow(CaError);
    await expect(CertificateAuthority.selfSignedRoot({ rsaKeySize: 1024 })).rejects.toThrow(/below 2048/);
  });

  it("round-trips through caCertPem/caKeyPem (the istio-ca-secret Secret)", async () => {
    const again = new CertificateAuthority({ caCert: ca.caCertPem(), caKey: ca.caKeyPem(), roots: [ca.caCertPem()] });
    const leaf = again.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 60 });
    expect(verifyChain(leaf, [], [ca.rootsPem()]).path).toHaveLength(2);
  });
});

describe("CertificateAuthority.sign", () => {
  it("issues a SAN-only leaf with exactly the requested SPIFFE id and Istio's profile", async () => {
    const before = Math.floor(Date.now() / 1000);
    const leafPem = ca.sign({ publicKey: await csrKey("spiffe://ignored/ns/x/sa/y"), uriSans: [ID], ttlSeconds: 86400 });
    const after = Math.ceil(Date.now() / 1000);
    const leaf = parseCertificate(leafPem);
    const root = parseCertificate(ca.caCertPem());
    expect(leaf.version).toBe(3);
    expect(leaf.subjectDer.toString("hex")).toBe("3000");
    expect(leaf.subject).toBe("");
    expect(leaf.issuerDer.equals(root.subjectDer)).toBe(true);
    expect(leaf.sans).toEqual({ uris: [ID], dnsNames: [], ipAddresses: [], emails: [] });
    expect(leaf.sanCritical).toBe(true);
    expect(spiffeIdsOf(leafPem)).toEqual([ID]);
    expect(leaf.keyUsage).toBe(KeyUsage.digitalSignature | KeyUsage.keyEncipherment);
    expect(leaf.extensions.get("2.5.29.15")?.critical).toBe(true);
    expect(leaf.extKeyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    expect(leaf.basicConstraints).toEqual({ ca: false, pathLen: undefined, critical: true });
    expect(leaf.authorityKeyId?.equals(root.subjectKeyId!)).toBe(true);
    // 128-bit random positive serial: 16 bytes, or 17 with a 00 sign octet.
    expect(leaf.serialHex).toMatch(/^(00[89a-f][0-9a-f]{31}|[0-7][0-9a-f]{31})$/);
    expect(leaf.serialHex).not.toBe(parseCertificate(ca.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 60 })).serialHex);
    // Validity: now − 60 s … now + ttl.
    expect(leaf.notBefore.getTime() / 1000).toBeGreaterThanOrEqual(before - 60);
    expect(leaf.notBefore.getTime() / 1000).toBeLessThanOrEqual(after - 60);
    expect(leaf.notAfter.getTime() / 1000 - leaf.notBefore.getTime() / 1000).toBe(86400 + 60);
    // Node's own X.509 parser agrees.
    const x = new X509Certificate(leafPem);
    expect(x.subject ?? "").toBe(""); // node reports no subject at all
    expect(x.subjectAltName).toBe(`URI:${ID}`);
    expect(x.ca).toBe(false);
    expect(x.checkIssued(new X509Certificate(ca.caCertPem()))).toBe(true);
  });

  it("openssl verifies the leaf and shows the SAN and usages", async () => {
    const leafPem = ca.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 86400 });
    s.write("leaf.pem", leafPem);
    s.write("root.pem", ca.rootsPem());
    expect(openssl(s.dir, ["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", "root.pem", "leaf.pem"])).toContain("leaf.pem: OK");
    expect(openssl(s.dir, ["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", "root.pem", "leaf.pem"])).toContain("leaf.pem: OK");
    const text = openssl(s.dir, ["x509", "-in", "leaf.pem", "-noout", "-text"]);
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews\n/);
    expect(text).toMatch(/Subject:\s*\n/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(/Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(opensslTry(s.dir, ["asn1parse", "-in", "leaf.pem"]).ok).toBe(true);
  });

  it("clamps notAfter to the CA certificate's notAfter", async () => {
    const short = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local", ttlDays: 1 });
    const leaf = parseCertificate(short.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 30 * 86400 }));
    expect(leaf.notAfter.getTime()).toBe(short.notAfter.getTime());
    s.write("short-root.pem", short.rootsPem());
    s.write("short-leaf.pem", short.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 30 * 86400 }));
    expect(openssl(s.dir, ["verify", "-CAfile", "short-root.pem", "short-leaf.pem"])).toContain("OK");
  });

  it("honours notBeforeSkewSeconds and DNS SANs", async () => {
    const leaf = parseCertificate(ca.sign({ publicKey: await csrKey(), uriSans: [ID], dnsSans: ["a.example.com"], ttlSeconds: 600, notBeforeSkewSeconds: 0 }));
    expect(leaf.notAfter.getTime() - leaf.notBefore.getTime()).toBe(600_000);
    expect(leaf.sans.dnsNames).toEqual(["a.example.com"]);
  });

  it("accepts KeyObjects and rejects bad requests with CaError", async () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect(spiffeIdsOf(ca.sign({ publicKey, uriSans: [ID], ttlSeconds: 60 }))).toEqual([ID]);
    const weak = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey;
    const key = await csrKey();
    const bad: [Parameters<CertificateAuthority["sign"]>[0], RegExp][] = [
      [{ publicKey: weak, uriSans: [ID], ttlSeconds: 60 }, /1024 bits is too small/],
      [{ publicKey: key, uriSans: [], ttlSeconds: 60 }, /at least one SAN/],
      [{ publicKey: key, uriSans: ["spiffe://x/ns/a b/sa/c"], ttlSeconds: 60 }, /not an absolute URI/],
      [{ publicKey: key, uriSans: ["spiffe://x/ns/é/sa/c"], ttlSeconds: 60 }, /not an absolute URI/],
      [{ publicKey: key, uriSans: [ID], ttlSeconds: 0 }, /TTL/],
      [{ publicKey: key, uriSans: [ID], ttlSeconds: Number.NaN }, /TTL/],
      [{ publicKey: key, uriSans: [ID], ttlSeconds: 60, notBeforeSkewSeconds: -1 }, /skew/],
      [{ publicKey: key, uriSans: [ID], dnsSans: ["-bad-.com/"], ttlSeconds: 60 }, /not a valid DNS name/],
    ];
    for (const [req, re] of bad) expect(() => ca.sign(req), String(re)).toThrow(re);
    expect(() => ca.sign(bad[0]![0])).toThrow(CaError);
  });

  it("constructor rejects a key that does not match, a non-CA certificate and missing roots", async () => {
    const other = await CertificateAuthority.selfSignedRoot({});
    expect(() => new CertificateAuthority({ caCert: ca.caCertPem(), caKey: other.caKeyPem(), roots: [ca.caCertPem()] })).toThrow(/does not match/);
    const leaf = ca.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 60 });
    expect(() => new CertificateAuthority({ caCert: leaf, caKey: ca.caKeyPem(), roots: [ca.caCertPem()] })).toThrow(/is not a CA/);
    expect(() => new CertificateAuthority({ caCert: ca.caCertPem(), caKey: ca.caKeyPem(), roots: [] })).toThrow(/no root/);
    expect(() => new CertificateAuthority({ caCert: ca.caCertPem(), caKey: ca.caKeyPem(), roots: [other.caCertPem()] })).toThrow(/does not chain to the roots/);
  });
});

describe("chainFor", () => {
  it("self-signed: [leaf, root], every element ending with a newline", async () => {
    const leaf = ca.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 60 });
    const chain = ca.chainFor(leaf.trimEnd());
    expect(chain).toEqual([leaf, ca.caCertPem()]);
    for (const e of chain) expect(e.endsWith("-----\n")).toBe(true);
  });

  it("several roots: the last element is all roots concatenated", async () => {
    const other = await CertificateAuthority.selfSignedRoot({ trustDomain: "old.local" });
    const multi = new CertificateAuthority({ caCert: ca.caCertPem(), caKey: ca.caKeyPem(), roots: [ca.caCertPem(), other.caCertPem()] });
    const leaf = multi.sign({ publicKey: await csrKey(), uriSans: [ID], ttlSeconds: 60 });
    const chain = multi.chainFor(leaf);
    expect(chain).toHaveLength(2);
    expect(chain[0]).toBe(leaf);
    expect(parsePemBundle(chain[1]!)).toEqual([ca.caCertPem(), other.caCertPem()]);
    expect(multi.rootsPem()).toBe(chain[1]);
    expect(verifyChain(chain[0]!, chain.slice(1, -1), [chain[chain.length - 1]!]).path).toHaveLength(2);
  });
});

describe("issueServingCertificate", () => {
  it("issues a serverAuth certificate with DNS SANs and its key", async () => {
    const names = ["istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local"];
    const sc = await ca.issueServingCertificate({ dnsNames: names, ttlSeconds: 3600 });
    const c = parseCertificate(sc.certPem);
    expect(c.sans.dnsNames).toEqual(names);
    expect(c.sans.uris).toEqual([]);
    expect(c.extKeyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(sc.keyPem).toContain("BEGIN PRIVATE KEY");
    expect(sc.chain).toEqual(ca.chainFor(sc.certPem));
    expect(sc.tlsCertChainPem).toBe(sc.certPem);
    expect(new X509Certificate(sc.certPem).checkPrivateKey((await import("node:crypto")).createPrivateKey(sc.keyPem))).toBe(true);
    await expect(ca.issueServingCertificate({ dnsNames: [], ttlSeconds: 60 })).rejects.toThrow(/at least one DNS name/);
  });
});
