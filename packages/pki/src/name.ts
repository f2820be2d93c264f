// Rendering a DER X.501 Name as text, RFC 4514 style: `type=value` pairs with RFC 4514 escaping, multi-valued RDNs
// joined with "+", and RDNs joined with ", " in the order they appear in the DER (not reversed). That layout is what
// @peculiar/x509's Name.toString produced, which this replaces so that reading certificates and CSRs does not load it.
import { children, DerError, expectTlv, readOid, Tag, type Tlv } from "./der.js";

/** Short names of attribute types (the same table @peculiar/x509 uses); other types are shown as dotted OIDs. */
const SHORT_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.6": "C",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.2.840.113549.1.9.1": "E",
  "2.5.4.42": "G",
  "2.5.4.43": "I",
  "2.5.4.4": "SN",
  "2.5.4.12": "T",
};

const BMP_STRING = 0x1e;
const UNIVERSAL_STRING = 0x1c;
const TELETEX_STRING = 0x14;

/** Decodes a directory string value, or returns undefined for a type that is rendered as `#<hex of the DER>`. */
function stringValue(v: Uint8Array, tag: number): string | undefined {
  switch (tag) {
    case Tag.UTF8_STRING:
      return Buffer.from(v).toString("utf8");
    case Tag.PRINTABLE_STRING:
    case Tag.IA5_STRING:
    case TELETEX_STRING:
      return Buffer.from(v).toString("latin1");
    case BMP_STRING: {
      if (v.length % 2) throw new DerError("BMPString of odd length");
      const swapped = Buffer.from(v).swap16();
      return swapped.toString("utf16le");
    }
    case UNIVERSAL_STRING: {
      if (v.length % 4) throw new DerError("UniversalString of bad length");
      let s = "";
      for (let i = 0; i < v.length; i += 4) {
        const cp = ((v[i]! << 24) | (v[i + 1]! << 16) | (v[i + 2]! << 8) | v[i + 3]!) >>> 0;
        if (cp > 0x10ffff) throw new DerError("UniversalString code point out of range");
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default:
      return undefined;
  }
}

/**
 * Escapes an attribute value string per RFC 4514 §2.4: `"`, `+`, `,`, `;`, `<`, `>` and `\` get a backslash, as do
 * a leading space or `#` and a trailing space; NUL and other control characters become `\XX` (hex of their UTF-8).
 */
export function escapeDnValue(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    const code = c.charCodeAt(0);
    if (c === '"' || c === "+" || c === "," || c === ";" || c === "<" || c === ">" || c === "\\") out += "\\" + c;
    else if ((c === " " || c === "#") && i === 0) out += "\\" + c;
    else if (c === " " && i === s.length - 1) out += "\\ ";
    else if (code < 0x20 || code === 0x7f) out += "\\" + code.toString(16).toUpperCase().padStart(2, "0");
    else out += c;
  }
  return out;
}

function attributeString(buf: Uint8Array, atv: Tlv): string {
  if (atv.tag !== Tag.SEQUENCE) throw new DerError("AttributeTypeAndValue is not a SEQUENCE");
  const [type, value, ...rest] = children(buf, atv);
  if (!type || !value || rest.length) throw new DerError("malformed AttributeTypeAndValue");
  const oid = readOid(buf, type);
  const name = SHORT_NAMES[oid] ?? oid;
  const s = stringValue(buf.subarray(value.value, value.end), value.tag);
  const rendered = s === undefined ? "#" + Buffer.from(buf.subarray(value.start, value.end)).toString("hex") : escapeDnValue(s);
  return `${name}=${rendered}`;
}

/**
 * Renders a DER Name (the whole SEQUENCE) as text, for example "O=Istio, CN=Root CA"; "" for the empty Name.
 * Values of string types are shown escaped; values of other types as `#` and the hex of their DER (RFC 4514 §2.4).
 * Throws DerError for a malformed Name.
 */
export function nameToString(der: Uint8Array): string {
  const seq = expectTlv(der, 0, der.length, Tag.SEQUENCE, "Name");
  if (seq.end !== der.length) throw new DerError("trailing bytes after the Name");
  const rdns: string[] = [];
  for (const rdn of children(der, seq)) {
    if (rdn.tag !== Tag.SET) throw new DerError("RelativeDistinguishedName is not a SET");
    const atvs = children(der, rdn);
    if (atvs.length === 0) throw new DerError("empty RelativeDistinguishedName");
    rdns.push(atvs.map((a) => attributeString(der, a)).join("+"));
  }
  return rdns.join(", ");
}
