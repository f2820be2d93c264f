// A tiny hand-written protobuf writer for golden bytes: tags, varints and length-delimited fields written
// directly from field numbers, independent of the generated encoder under test.
export type Bytes = number[];

export function varint(n: number): Bytes {
  const out: Bytes = [];
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // negative int32/int64 are sign-extended to 10 bytes
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? b | 0x80 : b);
  } while (v);
  return out;
}

const tag = (field: number, wireType: number) => varint((field << 3) | wireType);

/** Varint field (int32/uint32/int64/bool/enum). */
export const vint = (field: number, n: number | boolean): Bytes => [...tag(field, 0), ...varint(Number(n))];
/** Length-delimited field holding raw bytes or an embedded message. */
export const ld = (field: number, ...parts: Bytes[]): Bytes => {
  const body = parts.flat();
  return [...tag(field, 2), ...varint(body.length), ...body];
};
/** String field (UTF-8). */
export const str = (field: number, s: string): Bytes => ld(field, [...Buffer.from(s, "utf8")]);
/** Packed repeated varints (proto3 default for repeated scalars and enums). */
export const packed = (field: number, values: number[]): Bytes => ld(field, values.flatMap(varint));
/** Concatenates fields into a message body. */
export const msg = (...fields: Bytes[]): Uint8Array => Uint8Array.from(fields.flat());
