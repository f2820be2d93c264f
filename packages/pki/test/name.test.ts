import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { encodeOid, sequence, Tag, tlv } from "../src/der.js";
import { nameToString } from "../src/name.js";
import { parseCertificate, parseCsr } from "../src/index.js";
import { openssl, OpensslPki, Scratch } from "./helpers.js";

const s = new Scratch();
const o = new OpensslPki(s);
afterAll(() => s.cleanup());

type Atv = [oid: string, tag: number, value: string | Uint8Array];
const CN = "2.5.4.3";
const O = "2.5.4.10";
const OU = "2.5.4.11";

function atv([oid, tag, value]: Atv): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, tag === Tag.UTF8_STRING ? "utf8" : "latin1") : value;
  return sequence(encodeOid(oid), tlv(tag, bytes));
}

/** A DER Name from RDNs, each a list of attributes (more than one: a multi-valued RDN). */
function name(...rdns: Atv[][]): Buffer {
  return sequence(...rdns.map((r) => tlv(Tag.SET, ...r.map(atv))));
}

const P = Tag.PRINTABLE_STRING;
const U = Tag.UTF8_STRING;

// [DER, text]. These are also what @peculiar/x509's Name.toString gives (checked below against the library).
const CASES: [Buffer, string][] = [
  [name(), ""],
  [name([[O, P, "Acme"]], [[CN, U, "web"]]), "O=Acme, CN=web"],
  [name([[O, P, "Istio"]], [[CN, P, "Intermediate CA"]], [["2.5.4.7", P, "cluster1"]]), "O=Istio, CN=Intermediate CA, L=cluster1"],
  [
    name([["2.5.4.6", P, "DE"]], [["2.5.4.8", U, "Bayern"]], [["2.5.4.7", U, "München"]], [[O, U, "Ä GmbH"]], [[OU, U, "ops"]], [[CN, U, "x"]]),
    "C=DE, ST=Bayern, L=München, O=Ä GmbH, OU=ops, CN=x",
  ],
  [name([[CN, U, "a"], [OU, U, "b"]]), "CN=a+OU=b"],
  [name([["0.9.2342.19200300.100.1.25", Tag.IA5_STRING, "example"]], [["1.2.840.113549.1.9.1", Tag.IA5_STRING, "a@b.c"]]), "DC=example, E=a@b.c"],
  [name([["2.5.4.5", P, "1234"]], [["1.3.6.1.4.1.99999.1", U, "x"]]), "2.5.4.5=1234, 1.3.6.1.4.1.99999.1=x"],
  // RFC 4514 §2.4 escaping.
  [name([[O, U, "Acme, Inc."]]), "O=Acme\\, Inc."],
  [name([[CN, U, 'a+b"c\\d<e>f;g=h']]), 'CN=a\\+b\\"c\\\\d\\<e\\>f\\;g=h'],
  [name([[CN, U, "#hash"]], [[CN, U, " lead"]], [[CN, U, "trail "]]), "CN=\\#hash, CN=\\ lead, CN=trail\\ "],
  [name([[CN, U, "mid # and  spaces"]]), "CN=mid # and  spaces"],
  [name([[CN, U, "line\nbreak"]]), "CN=line\\0Abreak"],
  // A value that is not a string type: '#' and the hex of its DER.
  [name([["2.5.4.45", Tag.BIT_STRING, Uint8Array.of(0, 0xab)]]), "2.5.4.45=#030200ab"],
  [name([[CN, U, ""]]), "CN="],
];

describe("nameToString", () => {
  it("renders names as @peculiar/x509 did (DER order, ', ' between RDNs, '+' inside), with RFC 4514 escaping", () => {
    for (const [der, text] of CASES) expect(nameToString(der), text).toBe(text);
  });

  it("agrees with @peculiar/x509's Name.toString on every case", async () => {
    const { x509 } = await import("../src/x509lib.js");
    for (const [der, text] of CASES) {
      if (der.length === 2) continue; // callers special-case the empty name
      expect(new x509.Name(der).toString(), text).toBe(text);
    }
  });

  it("decodes BMPString and UniversalString values", () => {
    const bmp = Buffer.from("Ωmega ☃", "utf16le").swap16();
    const universal = Buffer.alloc(8);
    universal.writeUInt32BE(0x1f600, 0);
    universal.writeUInt32BE(0x41, 4);
    expect(nameToString(name([[CN, 0x1e, bmp]], [[O, 0x1c, universal]]))).toBe("CN=Ωmega ☃, O=😀A");
  });

  it("escapes where @peculiar/x509 did not: every control character, NUL, a lone space", () => {
    expect(nameToString(name([[CN, U, "a\tb\rc\nd\u0000e\u007f"]]))).toBe("CN=a\\09b\\0Dc\\0Ad\\00e\\7F");
    expect(nameToString(name([[CN, U, " "]]))).toBe("CN=\\ ");
  });

  it("rejects malformed names", () => {
    expect(() => nameToString(Buffer.from("3100", "hex"))).toThrow(/Name/);
    expect(() => nameToString(Buffer.from("30023000", "hex"))).toThrow(/not a SET/);
    expect(() => nameToString(Buffer.from("30023100", "hex"))).toThrow(/empty RelativeDistinguishedName/);
    expect(() => nameToString(Buffer.concat([name([[CN, U, "x"]]), Buffer.from([0])]))).toThrow(/trailing/);
    expect(() => nameToString(sequence(tlv(Tag.SET, sequence(encodeOid(CN)))))).toThrow(/malformed AttributeTypeAndValue/);
  });

  it("renders the subjects and issuers of openssl certificates and CSRs (as @peculiar/x509 does)", async () => {
    const { x509 } = await import("../src/x509lib.js");
    o.key("n-key.pem", "ec-pkcs8");
    o.root("n-root.pem", "n-key.pem", "/C=US/ST=CA/L=SF/O=Acme\\, Inc./OU=Mesh/CN=Root CA");
    const root = parseCertificate(s.read("n-root.pem"));
    expect(root.subject).toBe("C=US, ST=CA, L=SF, O=Acme\\, Inc., OU=Mesh, CN=Root CA");
    expect(root.issuer).toBe(root.subject);
    expect(new x509.Name(root.subjectDer).toString()).toBe(root.subject);
    openssl(s.dir, ["req", "-new", "-key", "n-key.pem", "-utf8", "-multivalue-rdn", "-subj", "/O=Zürich AG/OU=a+CN=b;c", "-config", "openssl.cnf", "-out", "n.csr"]);
    const subject = parseCsr(s.read("n.csr")).subject;
    expect(subject).toBe("O=Zürich AG, OU=a+CN=b\\;c"); // the SET is in DER order
    const csrDer = Buffer.from(s.read("n.csr").replace(/-----[^-]+-----|\s/g, ""), "base64");
    expect(new x509.Pkcs10CertificateRequest(csrDer).subject).toBe(subject);
  });
});

describe("@peculiar/x509 stays out of the import graph", () => {
  it("only ca.ts loads x509lib, and only with a dynamic import", () => {
    const dir = join(import.meta.dirname, "..", "src");
    for (const f of readdirSync(dir).filter((n) => n.endsWith(".ts"))) {
      const text = readFileSync(join(dir, f), "utf8");
      const code = text.replace(/^\s*\/\/.*$/gm, "").replace(/\/\*[\s\S]*?\*\//g, "");
      if (f === "x509lib.ts") continue;
      expect(code, f).not.toMatch(/from\s+["']@peculiar|import\s+["']@peculiar|["']reflect-metadata["']/);
      expect(code, f).not.toMatch(/(from|import)\s+["']\.\/x509lib\.js["']/);
      if (f === "ca.ts") expect(code).toMatch(/await import\("\.\/x509lib\.js"\)/);
      else expect(code, f).not.toMatch(/x509lib/);
    }
  });
});
