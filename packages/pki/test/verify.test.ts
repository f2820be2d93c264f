import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority, ChainVerificationError, createCsr, derToPem, generateKeyPair, parseCertificate, parseCsr, spiffeIdsOf, verifyChain } from "../src/index.js";
import { OpensslPki, opensslTry, Scratch } from "./helpers.js";

const s = new Scratch();
const o = new OpensslPki(s);
afterAll(() => s.cleanup());
const ID = "spiffe://cluster.local/ns/default/sa/web";
let ca: CertificateAuthority;
let leaf: string;
let root: string;

function fails(f: () => unknown, re: RegExp) {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ChainVerificationError);
  expect((err as Error).message).toMatch(re);
}

beforeAll(async () => {
  ca = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
  const { publicKey } = parseCsr(await createCsr({ keyPair: await generateKeyPair(), uriSans: [ID] }));
  leaf = ca.sign({ publicKey, uriSans: [ID], ttlSeconds: 3600 });
  o.key("root-key.pem", "rsa:2048");
  root = o.root("root.pem", "root-key.pem", "/O=Test/CN=Root");
  o.key("k.pem", "ec-pkcs8");
});

describe("verifyChain", () => {
  it("returns the path leaf → root", () => {
    const v = verifyChain(leaf, [], [ca.rootsPem()]);
    expect(v.path).toEqual([leaf, ca.caCertPem()]);
    expect(v.certificates.map((c) => c.subject)).toEqual(["", "O=cluster.local"]);
  });

  it("finds the path through unordered intermediates given as one bundle", () => {
    o.issue("a.pem", "k.pem", "/CN=A", "root.pem", "root-key.pem", "v3_int");
    const b = o.issue("b.pem", "k.pem", "/CN=B", "a.pem", "k.pem", "v3_int");
    const l = o.issue("l.pem", "k.pem", "/CN=leaf", "b.pem", "k.pem", "v3_leaf");
    const v = verifyChain(l, [b + s.read("a.pem")], [root]);
    expect(v.certificates.map((c) => c.subject)).toEqual(["CN=leaf", "CN=B", "CN=A", "O=Test, CN=Root"]);
  });

  it("fails for an expired or not-yet-valid leaf", () => {
    fails(() => verifyChain(leaf, [], [ca.rootsPem()], new Date(Date.now() + 2 * 3600e3)), /"spiffe:\/\/cluster\.local\/ns\/default\/sa\/web" \(empty subject\) expired at/);
    fails(() => verifyChain(leaf, [], [ca.rootsPem()], new Date(Date.now() - 3600e3)), /is not valid before/);
  });

  it("fails for an expired root", () => {
    const shortRoot = o.root("short-root.pem", "root-key.pem", "/CN=Short Root", 1);
    const l = o.issue("l-short.pem", "k.pem", "/CN=long leaf", "short-root.pem", "root-key.pem", "v3_leaf", 730);
    expect(verifyChain(l, [], [shortRoot]).path).toHaveLength(2);
    fails(() => verifyChain(l, [], [shortRoot], new Date(Date.now() + 2 * 86400e3)), /"CN=Short Root" expired at/);
  });

  it("fails against the wrong root", async () => {
    const other = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
    // Same subject name (O=cluster.local), different key: the key identifiers differ.
    fails(() => verifyChain(leaf, [], [other.rootsPem()]), /different key identifier/);
    fails(() => verifyChain(leaf, [], [root]), /no issuer of "spiffe:.*" \(empty subject\) \(issuer "O=cluster.local"\) among the intermediates or trusted roots/);
  });

  it("fails when the issuer is not a CA, and openssl agrees", () => {
    o.issue("notca.pem", "k.pem", "/CN=NotCA", "root.pem", "root-key.pem", "v3_not_ca");
    const l = o.issue("l2.pem", "k.pem", "/CN=leaf2", "notca.pem", "k.pem", "v3_leaf");
    fails(() => verifyChain(l, [s.read("notca.pem")], [root]), /issuer "CN=NotCA" is not a CA/);
    expect(opensslTry(s.dir, ["verify", "-CAfile", "root.pem", "-untrusted", "notca.pem", "l2.pem"]).ok).toBe(false);
  });

  it("enforces pathLenConstraint and keyCertSign, like openssl", () => {
    o.issue("p0.pem", "k.pem", "/CN=PathLen0", "root.pem", "root-key.pem", "v3_int_pathlen0");
    o.issue("p1.pem", "k.pem", "/CN=Below", "p0.pem", "k.pem", "v3_int");
    const l = o.issue("l3.pem", "k.pem", "/CN=leaf3", "p1.pem", "k.pem", "v3_leaf");
    fails(() => verifyChain(l, [s.read("p1.pem"), s.read("p0.pem")], [root]), /"CN=PathLen0" allows 0 intermediate CA\(s\) below it, the path has 1/);
    expect(opensslTry(s.dir, ["verify", "-CAfile", "root.pem", "-untrusted", "p0.pem", "-untrusted", "p1.pem", "l3.pem"]).ok).toBe(false);

    o.issue("ns.pem", "k.pem", "/CN=NoCertSign", "root.pem", "root-key.pem", "v3_int_no_certsign");
    const l4 = o.issue("l4.pem", "k.pem", "/CN=leaf4", "ns.pem", "k.pem", "v3_leaf");
    fails(() => verifyChain(l4, [s.read("ns.pem")], [root]), /KeyUsage lacks keyCertSign/);
  });

  it("rejects critical extensions it does not enforce (nameConstraints)", () => {
    o.issue("nc.pem", "k.pem", "/CN=Constrained", "root.pem", "root-key.pem", "v3_int_name_constraints");
    const l = o.issue("l5.pem", "k.pem", "/CN=leaf5", "nc.pem", "k.pem", "v3_leaf");
    fails(() => verifyChain(l, [s.read("nc.pem")], [root]), /critical extension nameConstraints/);
  });

  it("fails on a tampered signature", () => {
    const der = Buffer.from(parseCertificate(leaf).der);
    der[der.length - 2]! ^= 0x01;
    fails(() => verifyChain(derToPem(der, "CERTIFICATE"), [], [ca.rootsPem()]), /signature of .* does not verify/);
  });

  it("names the bad input", () => {
    fails(() => verifyChain("junk", [], [ca.rootsPem()]), /^leaf #1: no CERTIFICATE block/);
    fails(() => verifyChain(leaf, ["junk"], [ca.rootsPem()]), /^intermediate #1: no CERTIFICATE block/);
    fails(() => verifyChain(leaf, [], []), /no trust roots/);
    fails(() => verifyChain(leaf, [], ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]), /^root #1: certificate is not valid DER/);
  });
});

describe("spiffeIdsOf", () => {
  it("returns only the SPIFFE URI SANs", () => {
    expect(spiffeIdsOf(leaf)).toEqual([ID]);
    expect(spiffeIdsOf(s.read("l.pem"))).toEqual(["spiffe://cluster.local/ns/test/sa/openssl"]);
    expect(parseCertificate(s.read("l.pem")).sans.dnsNames).toEqual(["openssl.example.com"]);
    expect(spiffeIdsOf(ca.caCertPem())).toEqual([]);
  });
});
