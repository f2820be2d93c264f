// Encoders and decoders of the X.509 extensions this package writes or checks.
import { children, DerError, readSmallUnsigned, Tag, tlv, valueOf, readTlv, sequence, type Tlv } from "./der.js";

/** KeyUsage bits (RFC 5280 §4.2.1.3) as flags: bit n of the BIT STRING is `1 << n`. */
export const KeyUsage = {
  digitalSignature: 1 << 0,
  nonRepudiation: 1 << 1,
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8,
} as const;

/** SubjectAltName entries this package understands. */
export interface GeneralNames {
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
  emails: string[];
}

function ia5(buf: Uint8Array, t: Tlv, what: string): string {
  const v = valueOf(buf, t);
  for (const b of v) if (b > 0x7e || b < 0x20) throw new DerError(`${what} has characters outside IA5 printable ASCII`);
  return Buffer.from(v).toString("latin1");
}

function ip(v: Uint8Array): string {
  if (v.length === 4) return Array.from(v).join(".");
  if (v.length === 16) {
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(((v[i]! << 8) | v[i + 1]!).toString(16));
    return parts.join(":");
  }
  throw new DerError("iPAddress of bad length");
}

/** Decodes GeneralNames (the SubjectAltName value), given the encoded SEQUENCE. */
export function decodeGeneralNames(buf: Uint8Array, start = 0, end = buf.length): GeneralNames {
  const seq = readTlv(buf, start, end);
  if (seq.tag !== Tag.SEQUENCE || seq.end !== end) throw new DerError("GeneralNames must be one SEQUENCE");
  const out: GeneralNames = { uris: [], dnsNames: [], ipAddresses: [], emails: [] };
  for (const n of children(buf, seq)) {
    switch (n.tag) {
      case 0x86:
        out.uris.push(ia5(buf, n, "URI SAN"));
        break;
      case 0x82:
        out.dnsNames.push(ia5(buf, n, "DNS SAN"));
        break;
      case 0x81:
        out.emails.push(ia5(buf, n, "email SAN"));
        break;
      case 0x87:
        out.ipAddresses.push(ip(valueOf(buf, n)));
        break;
      default:
        break; // otherName, directoryName, registeredID …: not used by the mesh
    }
  }
  return out;
}

const URI_SAN = /^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+$/;
const DNS_LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?";
const DNS_SAN = new RegExp(`^(?:\\*\\.)?(?:${DNS_LABEL}\\.)*${DNS_LABEL}$`);

/** Checks a URI SAN for issuing: an absolute URI of printable ASCII without spaces. Returns an error text or undefined. */
export function uriSanProblem(uri: string): string | undefined {
  if (typeof uri !== "string" || uri.length === 0) return "URI SAN is empty";
  if (uri.length > 2048) return "URI SAN is longer than 2048 characters";
  if (!URI_SAN.test(uri)) return `URI SAN "${uri}" is not an absolute URI of printable ASCII`;
  return undefined;
}

/** Checks a DNS SAN for issuing (letters, digits, '-', '_', optional leading "*."). Returns an error text or undefined. */
export function dnsSanProblem(name: string): string | undefined {
  if (typeof name !== "string" || name.length === 0) return "DNS SAN is empty";
  if (name.length > 253 || !DNS_SAN.test(name)) return `DNS SAN "${name}" is not a valid DNS name`;
  return undefined;
}

/** Encodes GeneralNames with URIs first, then DNS names. Callers validate the strings first. */
export function encodeGeneralNames(uris: readonly string[], dnsNames: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const u of uris) parts.push(tlv(0x86, Buffer.from(u, "latin1")));
  for (const d of dnsNames) parts.push(tlv(0x82, Buffer.from(d, "latin1")));
  return sequence(...parts);
}

/** Decodes BasicConstraints: `{ ca, pathLen }`. */
export function decodeBasicConstraints(v: Uint8Array): { ca: boolean; pathLen: number | undefined } {
  const seq = readTlv(v, 0, v.length);
  if (seq.tag !== Tag.SEQUENCE || seq.end !== v.length) throw new DerError("BasicConstraints must be one SEQUENCE");
  let ca = false;
  let pathLen: number | undefined;
  for (const k of children(v, seq)) {
    if (k.tag === Tag.BOOLEAN) {
      if (k.end - k.value !== 1) throw new DerError("bad BOOLEAN");
      ca = v[k.value] !== 0;
    } else if (k.tag === Tag.INTEGER) pathLen = readSmallUnsigned(v, k);
    else throw new DerError("unexpected field in BasicConstraints");
  }
  return { ca, pathLen };
}

/** Decodes KeyUsage into KeyUsage flags. */
export function decodeKeyUsage(v: Uint8Array): number {
  const t = readTlv(v, 0, v.length);
  if (t.tag !== Tag.BIT_STRING || t.end !== v.length || t.end - t.value < 1) throw new DerError("KeyUsage must be a BIT STRING");
  let flags = 0;
  const bytes = v.subarray(t.value + 1, t.end);
  for (let i = 0; i < bytes.length * 8 && i < 9; i++) if (bytes[i >> 3]! & (0x80 >> (i & 7))) flags |= 1 << i;
  return flags;
}

/** Encodes KeyUsage flags as a DER BIT STRING (trailing zero bits removed, as DER requires). */
export function encodeKeyUsage(flags: number): Buffer {
  let last = -1;
  for (let i = 0; i < 9; i++) if (flags & (1 << i)) last = i;
  if (last < 0) throw new DerError("empty KeyUsage");
  const nbytes = (last >> 3) + 1;
  const bytes = new Uint8Array(nbytes);
  for (let i = 0; i <= last; i++) if (flags & (1 << i)) bytes[i >> 3]! |= 0x80 >> (i & 7);
  const unused = nbytes * 8 - (last + 1);
  return tlv(Tag.BIT_STRING, Uint8Array.of(unused), bytes);
}

/** Decodes the keyIdentifier of an AuthorityKeyIdentifier, if present. */
export function decodeAuthorityKeyId(v: Uint8Array): Buffer | undefined {
  const seq = readTlv(v, 0, v.length);
  if (seq.tag !== Tag.SEQUENCE || seq.end !== v.length) throw new DerError("AuthorityKeyIdentifier must be one SEQUENCE");
  for (const k of children(v, seq)) if (k.tag === 0x80) return Buffer.from(valueOf(v, k));
  return undefined;
}

/** Decodes a SubjectKeyIdentifier (an OCTET STRING). */
export function decodeSubjectKeyId(v: Uint8Array): Buffer {
  const t = readTlv(v, 0, v.length);
  if (t.tag !== Tag.OCTET_STRING || t.end !== v.length) throw new DerError("SubjectKeyIdentifier must be an OCTET STRING");
  return Buffer.from(valueOf(v, t));
}
