import { describe, expect, it } from "vitest";
import { decodeOid, DerError, encodeOid, encodeTime, encodeUnsignedInteger, readTime, readTlv } from "../src/der.js";
import { decodeKeyUsage, encodeKeyUsage, KeyUsage } from "../src/extensions.js";

describe("DER primitives", () => {
  it("round-trips OIDs", () => {
    for (const oid of ["1.2.840.10045.4.3.2", "2.5.29.17", "1.3.6.1.5.5.7.3.2", "2.999.1", "1.2.840.113549.1.9.14"]) {
      const enc = encodeOid(oid);
      expect(decodeOid(enc.subarray(2))).toBe(oid);
    }
    expect(encodeOid("1.2.840.10045.3.1.7").toString("hex")).toBe("06082a8648ce3d030107");
  });

  it("writes UTCTime before 2050 and GeneralizedTime from 2050, and reads both back", () => {
    const a = Date.UTC(2049, 11, 31, 23, 59, 59);
    const b = Date.UTC(2050, 0, 1, 0, 0, 0);
    expect(encodeTime(a).toString("latin1", 2)).toBe("491231235959Z");
    expect(encodeTime(a)[0]).toBe(0x17);
    expect(encodeTime(b).toString("latin1", 2)).toBe("20500101000000Z");
    expect(encodeTime(b)[0]).toBe(0x18);
    for (const t of [a, b, Date.UTC(1999, 5, 1, 12, 0, 0)]) {
      const enc = encodeTime(t);
      expect(readTime(enc, readTlv(enc, 0, enc.length))).toBe(t);
    }
  });

  it("encodes positive integers minimally", () => {
    expect(encodeUnsignedInteger(Uint8Array.of(0, 0, 0x7f)).toString("hex")).toBe("02017f");
    expect(encodeUnsignedInteger(Uint8Array.of(0x80, 1)).toString("hex")).toBe("0203008001");
  });

  it("rejects BER-only length forms and overruns", () => {
    expect(() => readTlv(Uint8Array.of(0x30, 0x81, 0x05, 1, 2, 3, 4, 5), 0, 8)).toThrow(/non-minimal/);
    expect(() => readTlv(Uint8Array.of(0x30, 0x80, 0, 0), 0, 4)).toThrow(/indefinite/);
    expect(() => readTlv(Uint8Array.of(0x30, 0x05, 1), 0, 3)).toThrow(DerError);
    expect(() => readTlv(Uint8Array.of(0x1f, 0x01, 0), 0, 3)).toThrow(/high tag/);
  });

  it("encodes KeyUsage with DER's trailing-bit rule", () => {
    expect(encodeKeyUsage(KeyUsage.digitalSignature | KeyUsage.keyEncipherment).toString("hex")).toBe("030205a0");
    expect(encodeKeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign | KeyUsage.digitalSignature).toString("hex")).toBe("03020186");
    expect(encodeKeyUsage(KeyUsage.decipherOnly).toString("hex")).toBe("0303070080");
    for (const f of [1, 5, 0x61, 0x1ff]) expect(decodeKeyUsage(encodeKeyUsage(f))).toBe(f);
  });
});
