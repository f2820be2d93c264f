import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCsr, generateKeyPair, loadPluggedCa, parseCertificate, parseCsr, parsePemBundle, PluggedCaError, verifyChain, type PluggedCaFiles } from "../src/index.js";
import { openssl, OpensslPki, Scratch } from "./helpers.js";

const s = new Scratch();
const o = new OpensslPki(s);
afterAll(() => s.cleanup());
const ID = "spiffe://cluster.local/ns/shop/sa/cart";

let rsaRoot: string;
let rsaRootKey: string;
let ecInt: { cert: string; key: string };
let rsaInt: { cert: string; key: string };
let twoLevel: { int1: string; cert: string; key: string };

beforeAll(() => {
  // Root RSA 2048 (Istio's tooling makes RSA roots), then intermediates signed by it.
  rsaRootKey = o.key("root-key.pem", "rsa:2048");
  rsaRoot = o.root("root-cert.pem", "root-key.pem", "/O=Istio/CN=Root CA");
  const ecKey = o.key("ec-int-key.pem", "ec"); // SEC1 with an EC PARAMETERS block
  ecInt = { cert: o.issue("ec-int.pem", "ec-int-key.pem", "/O=Istio/CN=Intermediate CA/L=cluster1", "root-cert.pem", "root-key.pem", "v3_int"), key: ecKey };
  const rsaKey = o.key("rsa-int-key.pem", "rsa:2048"); // PKCS#1
  rsaInt = { cert: o.issue("rsa-int.pem", "rsa-int-key.pem", "/O=Istio/CN=RSA Intermediate CA", "root-cert.pem", "root-key.pem", "v3_int"), key: rsaKey };
  o.key("int1-key.pem", "ec-pkcs8");
  const int1 = o.issue("int1.pem", "int1-key.pem", "/O=Istio/CN=Level 1", "root-cert.pem", "root-key.pem", "v3_int");
  const key2 = o.key("int2-key.pem", "ec-pkcs8");
  twoLevel = { int1, cert: o.issue("int2.pem", "int2-key.pem", "/O=Istio/CN=Level 2", "int1.pem", "int1-key.pem", "v3_int_pathlen0"), key: key2 };
  void rsaRootKey;
});

function bundle(cert: string, key: string, chain: string, root = rsaRoot): PluggedCaFiles {
  return { "ca-cert.pem": cert, "ca-key.pem": key, "cert-chain.pem": chain, "root-cert.pem": root };
}

async function leafFrom(ca: ReturnType<typeof loadPluggedCa>) {
  const { publicKey } = parseCsr(await createCsr({ keyPair: await generateKeyPair(), uriSans: [ID] }));
  return ca.sign({ publicKey, uriSans: [ID], ttlSeconds: 86400 });
}

/** openssl verify -CAfile root -untrusted <intermediates from the response> leaf */
function opensslVerifies(name: string, chain: string[]): string {
  s.write(`${name}-leaf.pem`, chain[0]!);
  s.write(`${name}-untrusted.pem`, chain.slice(1, -1).join(""));
  s.write(`${name}-roots.pem`, chain[chain.length - 1]!);
  return openssl(s.dir, ["verify", "-x509_strict", "-CAfile", `${name}-roots.pem`, "-untrusted", `${name}-untrusted.pem`, `${name}-leaf.pem`]);
}

describe("loadPluggedCa", () => {
  it("RSA root → EC intermediate (SEC1 key): leaves verify with openssl; chain is leaf, intermediate, root", async () => {
    // Istio's Makefile writes cert-chain.pem = ca-cert.pem + root-cert.pem.
    const ca = loadPluggedCa(bundle(ecInt.cert, ecInt.key, ecInt.cert + rsaRoot));
    const leaf = await leafFrom(ca);
    const chain = ca.chainFor(leaf);
    expect(chain).toHaveLength(3);
    expect(parseCertificate(chain[1]!).subject).toBe("O=Istio, CN=Intermediate CA, L=cluster1");
    expect(parseCertificate(chain[2]!).subject).toBe("O=Istio, CN=Root CA");
    expect(opensslVerifies("ec", chain)).toContain("OK");
    expect(verifyChain(leaf, [chain[1]!], [rsaRoot]).path).toHaveLength(3);
    expect(ca.rootsPem()).toBe(parsePemBundle(rsaRoot)[0]);
  });

  it("RSA root → RSA intermediate (PKCS#1 key), cert-chain.pem holding only the intermediate", async () => {
    const ca = loadPluggedCa(bundle(rsaInt.cert, rsaInt.key, rsaInt.cert));
    const leaf = await leafFrom(ca);
    expect(parseCertificate(leaf).signatureOid).toBe("1.2.840.113549.1.1.11");
    expect(opensslVerifies("rsa", ca.chainFor(leaf))).toContain("OK");
  });

  it("root → level 1 → level 2 (ca-cert): each intermediate is its own element, in order, whatever the file order", async () => {
    const ca = loadPluggedCa(bundle(twoLevel.cert, twoLevel.key, rsaRoot + twoLevel.int1 + twoLevel.cert));
    const leaf = await leafFrom(ca);
    const chain = ca.chainFor(leaf);
    expect(chain.map((c) => parseCertificate(c).subject)).toEqual(["", "O=Istio, CN=Level 2", "O=Istio, CN=Level 1", "O=Istio, CN=Root CA"]);
    expect(ca.chainPems()).toEqual([parsePemBundle(twoLevel.int1)[0]]);
    expect(opensslVerifies("two", chain)).toContain("OK");
  });

  it("accepts the kubernetes.io/tls layout", async () => {
    const ca = loadPluggedCa({ "tls.crt": twoLevel.cert + twoLevel.int1, "tls.key": twoLevel.key, "ca.crt": rsaRoot });
    expect(ca.chainFor(await leafFrom(ca))).toHaveLength(4);
  });

  it("names ca-key.pem when the key does not match the certificate", () => {
    const err = catchErr(() => loadPluggedCa(bundle(ecInt.cert, rsaInt.key, ecInt.cert)));
    expect(err).toBeInstanceOf(PluggedCaError);
    expect(err.file).toBe("ca-key.pem");
    expect(err.message).toMatch(/^ca-key\.pem: the private key does not match the certificate in ca-cert\.pem/);
  });

  it("names ca-cert.pem when it is not a CA", () => {
    const key = o.key("notca-key.pem", "ec-pkcs8");
    const cert = o.issue("notca.pem", "notca-key.pem", "/CN=Not a CA", "root-cert.pem", "root-key.pem", "v3_not_ca");
    const err = catchErr(() => loadPluggedCa(bundle(cert, key, cert)));
    expect(err.file).toBe("ca-cert.pem");
    expect(err.message).toMatch(/is not a CA certificate/);
  });

  it("names cert-chain.pem when ca-cert.pem does not verify to the root", () => {
    o.key("other-root-key.pem", "rsa:2048");
    const otherRoot = o.root("other-root.pem", "other-root-key.pem", "/O=Other/CN=Other Root");
    const wrongRoot = catchErr(() => loadPluggedCa(bundle(ecInt.cert, ecInt.key, ecInt.cert, otherRoot)));
    expect(wrongRoot.file).toBe("cert-chain.pem");
    expect(wrongRoot.message).toMatch(/ca-cert\.pem does not verify through cert-chain\.pem to root-cert\.pem: no issuer/);
    // The level-1 intermediate is missing from cert-chain.pem.
    const missing = catchErr(() => loadPluggedCa(bundle(twoLevel.cert, twoLevel.key, twoLevel.cert)));
    expect(missing.file).toBe("cert-chain.pem");
    expect(missing.message).toMatch(/no issuer of "O=Istio, CN=Level 2"/);
    // An unrelated certificate in cert-chain.pem.
    const extra = catchErr(() => loadPluggedCa(bundle(ecInt.cert, ecInt.key, ecInt.cert + rsaInt.cert)));
    expect(extra.file).toBe("cert-chain.pem");
    expect(extra.message).toMatch(/RSA Intermediate CA.* is not on the path/);
  });

  it("names the file for missing, empty or garbage content", () => {
    expect(catchErr(() => loadPluggedCa(bundle(ecInt.cert, "", ecInt.cert))).file).toBe("ca-key.pem");
    expect(catchErr(() => loadPluggedCa(bundle(ecInt.cert, "junk", ecInt.cert))).message).toMatch(/^ca-key\.pem: no private key/);
    expect(catchErr(() => loadPluggedCa(bundle("junk", ecInt.key, ecInt.cert))).file).toBe("ca-cert.pem");
    expect(catchErr(() => loadPluggedCa(bundle(ecInt.cert + rsaInt.cert, ecInt.key, ecInt.cert))).message).toMatch(/^ca-cert\.pem: expected one certificate, found 2/);
    expect(catchErr(() => loadPluggedCa(bundle(ecInt.cert, ecInt.key, ecInt.cert, ""))).file).toBe("root-cert.pem");
    expect(catchErr(() => loadPluggedCa(bundle(ecInt.cert, ecInt.key, ecInt.cert, ecInt.cert.replace("MII", "MIX")))).file).toBe("root-cert.pem");
    expect(catchErr(() => loadPluggedCa({ "ca-cert.pem": ecInt.cert } as PluggedCaFiles)).file).toBe("root-cert.pem");
    // A root that is not a CA.
    const leafAsRoot = s.read("notca.pem");
    expect(catchErr(() => loadPluggedCa(bundle(ecInt.cert, ecInt.key, ecInt.cert, leafAsRoot))).message).toMatch(/^root-cert\.pem: certificate #1 .* is not a CA/);
  });
});

function catchErr(f: () => unknown): PluggedCaError {
  try {
    f();
  } catch (e) {
    return e as PluggedCaError;
  }
  throw new Error("expected an error");
}
