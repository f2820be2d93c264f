// A small strict DER reader and writer: just what certificates, CSRs and their extensions need.
// The reader never copies; it returns offsets into the caller's buffer and rejects BER-only forms
// (indefinite lengths, non-minimal lengths, high tag numbers) and anything that overruns its parent.

/** A DER structure could not be decoded. Callers wrap it into their own error type. */
export class DerError extends Error {
  override name = "DerError";
}

/** One tag-length-value: `tag`, where it starts, where its value starts, and where it ends (exclusive). */
export interface Tlv {
  tag: number;
  start: number;
  value: number;
  end: number;
}

/** Universal and context tags used in this package. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Reads one TLV at `pos` that must end at or before `limit`. */
export function readTlv(buf: Uint8Array, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new DerError("truncated data");
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag numbers are not supported");
  let len = buf[pos + 1]!;
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError("indefinite length is not DER");
    if (n > 4) throw new DerError("length field too long");
    if (p + n > limit) throw new DerError("truncated length");
    if (buf[p] === 0) throw new DerError("non-minimal length encoding");
    len = 0;
    for (let k = 0; k < n; k++) len = len * 256 + buf[p++]!;
    if (len < 0x80) throw new DerError("non-minimal length encoding");
  }
  if (p + len > limit) throw new DerError("truncated value");
  return { tag, start: pos, value: p, end: p + len };
}

/** Reads a TLV and checks its tag; `what` names the field in the error. */
export function expectTlv(buf: Uint8Array, pos: number, limit: number, tag: number, what: string): Tlv {
  const t = readTlv(buf, pos, limit);
  if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
  return t;
}

/** The TLVs directly inside a constructed TLV. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = parent.value;
  while (p < parent.end) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

/** The value bytes of a TLV (a view, not a copy). */
export function valueOf(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.value, t.end);
}

/** The whole encoding of a TLV (a view, not a copy). */
export function bytesOf(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.start, t.end);
}

/** Decodes the value of an OBJECT IDENTIFIER to dotted form. */
export function decodeOid(v: Uint8Array): string {
  if (v.length === 0) throw new DerError("empty OID");
  const arcs: number[] = [];
  let acc = 0;
  let first = true;
  for (let i = 0; i < v.length; i++) {
    const b = v[i]!;
    if (acc === 0 && b === 0x80) throw new DerError("non-minimal OID arc");
    acc = acc * 128 + (b & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER) throw new DerError("OID arc too large");
    if (!(b & 0x80)) {
      if (first) {
        if (acc < 80) arcs.push(Math.floor(acc / 40), acc % 40);
        else arcs.push(2, acc - 80);
        first = false;
      } else arcs.push(acc);
      acc = 0;
    } else if (i === v.length - 1) throw new DerError("truncated OID");
  }
  return arcs.join(".");
}

/** Reads an OBJECT IDENTIFIER TLV and returns its dotted form. */
export function readOid(buf: Uint8Array, t: Tlv): string {
  if (t.tag !== Tag.OID) throw new DerError("expected an OBJECT IDENTIFIER");
  return decodeOid(valueOf(buf, t));
}

/** The contents of a BIT STRING that must have no unused bits (signatures, public keys). */
export function bitStringBytes(buf: Uint8Array, t: Tlv): Uint8Array {
  if (t.tag !== Tag.BIT_STRING || t.end - t.value < 1) throw new DerError("expected a BIT STRING");
  if (buf[t.value] !== 0) throw new DerError("BIT STRING has unused bits");
  return buf.subarray(t.value + 1, t.end);
}

/** Decodes a small non-negative INTEGER (pathLenConstraint, version). */
export function readSmallUnsigned(buf: Uint8Array, t: Tlv): number {
  if (t.tag !== Tag.INTEGER || t.end === t.value) throw new DerError("expected an INTEGER");
  const v = valueOf(buf, t);
  if (v[0]! & 0x80) throw new DerError("negative INTEGER");
  if (v.length > 1 && v[0] === 0 && !(v[1]! & 0x80)) throw new DerError("non-minimal INTEGER");
  if (v.length > 6) throw new DerError("INTEGER too large");
  let n = 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

/** Decodes UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSS[.f]Z) to milliseconds since the epoch. */
export function readTime(buf: Uint8Array, t: Tlv): number {
  const s = Buffer.from(valueOf(buf, t)).toString("latin1");
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === Tag.UTC_TIME) {
    m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
    if (!m) throw new DerError(`bad UTCTime "${s}"`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (t.tag === Tag.GENERALIZED_TIME) {
    m = /^(\d\d\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.\d+)?Z$/.exec(s);
    if (!m) throw new DerError(`bad GeneralizedTime "${s}"`);
    year = Number(m[1]);
  } else throw new DerError("expected a time");
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (Number.isNaN(ms)) throw new DerError(`bad time "${s}"`);
  return ms;
}

// ---------------------------------------------------------------------------------------------------
// Writer

/** DER length octets. */
export function encodeLength(len: number): Uint8Array {
  if (len < 0x80) return Uint8Array.of(len);
  if (len < 0x100) return Uint8Array.of(0x81, len);
  if (len < 0x10000) return Uint8Array.of(0x82, len >> 8, len & 0xff);
  if (len < 0x1000000) return Uint8Array.of(0x83, len >> 16, (len >> 8) & 0xff, len & 0xff);
  throw new DerError("value too long");
}

/** One TLV whose value is the concatenation of `parts`. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const hdr = encodeLength(len);
  const out = Buffer.allocUnsafe(1 + hdr.length + len);
  out[0] = tag;
  out.set(hdr, 1);
  let o = 1 + hdr.length;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** SEQUENCE of the given encodings. */
export function sequence(...parts: Uint8Array[]): Buffer {
  return tlv(Tag.SEQUENCE, ...parts);
}

/** OBJECT IDENTIFIER from dotted form. */
export function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split(".").map((a) => {
    if (!/^\d+$/.test(a)) throw new DerError(`bad OID "${dotted}"`);
    return Number(a);
  });
  if (arcs.length < 2 || arcs[0]! > 2 || (arcs[0]! < 2 && arcs[1]! >= 40)) throw new DerError(`bad OID "${dotted}"`);
  const out: number[] = [];
  const push = (n: number) => {
    const tmp = [n & 0x7f];
    n = Math.floor(n / 128);
    while (n > 0) {
      tmp.unshift((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    out.push(...tmp);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(Tag.OID, Uint8Array.from(out));
}

/** A positive INTEGER from big-endian unsigned bytes (leading zeros stripped, a 0x00 added if the top bit is set). */
export function encodeUnsignedInteger(bytes: Uint8Array): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.subarray(i);
  if (v.length === 0) return tlv(Tag.INTEGER, Uint8Array.of(0));
  return v[0]! & 0x80 ? tlv(Tag.INTEGER, Uint8Array.of(0), v) : tlv(Tag.INTEGER, v);
}

const pad2 = (n: number) => (n < 10 ? "0" : "") + n;

/** Certificate validity time (RFC 5280 §4.1.2.5): UTCTime for 1950–2049, GeneralizedTime otherwise; whole seconds. */
export function encodeTime(ms: number): Buffer {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const rest = pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) + pad2(d.getUTCHours()) + pad2(d.getUTCMinutes()) + pad2(d.getUTCSeconds()) + "Z";
  if (y >= 1950 && y < 2050) return tlv(Tag.UTC_TIME, Buffer.from(pad2(y % 100) + rest, "latin1"));
  if (y < 0 || y > 9999) throw new DerError("year out of range");
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, "0") + rest, "latin1"));
}

/** BIT STRING with no unused bits. */
export function encodeBitString(bytes: Uint8Array): Buffer {
  return tlv(Tag.BIT_STRING, Uint8Array.of(0), bytes);
}

/** One Extension (RFC 5280 §4.1): extnID, critical (only when true, DER omits the default), extnValue. */
export function encodeExtension(oid: string, critical: boolean, value: Uint8Array): Buffer {
  return critical
    ? sequence(encodeOid(oid), Uint8Array.of(Tag.BOOLEAN, 1, 0xff), tlv(Tag.OCTET_STRING, value))
    : sequence(encodeOid(oid), tlv(Tag.OCTET_STRING, value));
}

/** Object identifiers used in this package. */
export const Oid = {
  ecPublicKey: "1.2.840.10045.2.1",
  prime256v1: "1.2.840.10045.3.1.7",
  secp384r1: "1.3.132.0.34",
  secp521r1: "1.3.132.0.35",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsaPss: "1.2.840.113549.1.1.10",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  ecdsaWithSha384: "1.2.840.10045.4.3.3",
  ecdsaWithSha512: "1.2.840.10045.4.3.4",
  sha256WithRsa: "1.2.840.113549.1.1.11",
  sha384WithRsa: "1.2.840.113549.1.1.12",
  sha512WithRsa: "1.2.840.113549.1.1.13",
  extensionRequest: "1.2.840.113549.1.9.14",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  nameConstraints: "2.5.29.30",
  certificatePolicies: "2.5.29.32",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** Signature algorithms we verify or produce: the hash node:crypto needs and the key type it belongs to. */
export const SignatureAlgorithms: Record<string, { name: string; hash: string; keyType: "ec" | "rsa" }> = {
  [Oid.ecdsaWithSha256]: { name: "ecdsa-with-SHA256", hash: "sha256", keyType: "ec" },
  [Oid.ecdsaWithSha384]: { name: "ecdsa-with-SHA384", hash: "sha384", keyType: "ec" },
  [Oid.ecdsaWithSha512]: { name: "ecdsa-with-SHA512", hash: "sha512", keyType: "ec" },
  [Oid.sha256WithRsa]: { name: "sha256WithRSAEncryption", hash: "sha256", keyType: "rsa" },
  [Oid.sha384WithRsa]: { name: "sha384WithRSAEncryption", hash: "sha384", keyType: "rsa" },
  [Oid.sha512WithRsa]: { name: "sha512WithRSAEncryption", hash: "sha512", keyType: "rsa" },
};

/** Reads an AlgorithmIdentifier: the OID and whether parameters are absent or NULL (anything else is returned as "other"). */
export function readAlgorithmIdentifier(buf: Uint8Array, t: Tlv): { oid: string; params: "absent" | "null" | "other"; paramsTlv?: Tlv } {
  if (t.tag !== Tag.SEQUENCE) throw new DerError("expected an AlgorithmIdentifier");
  const kids = children(buf, t);
  if (kids.length < 1 || kids.length > 2) throw new DerError("malformed AlgorithmIdentifier");
  const oid = readOid(buf, kids[0]!);
  const p = kids[1];
  if (!p) return { oid, params: "absent" };
  if (p.tag === Tag.NULL && p.end === p.value) return { oid, params: "null" };
  return { oid, params: "other", paramsTlv: p };
}
