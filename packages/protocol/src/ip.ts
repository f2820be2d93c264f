// IP addresses as the wire carries them: raw 4- or 16-byte strings.
import { isIPv4, isIPv6 } from "node:net";

export class AddressError extends Error {
  override name = "AddressError";
}

/** "10.0.0.5" → 4 bytes; "fd00::1" → 16 bytes. Throws AddressError on anything else. */
export function ipToBytes(ip: string): Uint8Array {
  if (isIPv4(ip)) return Uint8Array.from(ip.split(".").map(Number));
  if (!isIPv6(ip)) throw new AddressError(`"${ip}" is not an IP address`);
  let text = ip.split("%")[0]!;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes two hex groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const hex = (s: string) => (s ? s.split(":").map((h) => parseInt(h, 16)) : []);
  const gap = text.indexOf("::");
  const groups = gap < 0 ? hex(text) : (() => {
    const head = hex(text.slice(0, gap)), tail = hex(text.slice(gap + 2));
    return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  })();
  const out = new Uint8Array(16);
  groups.forEach((g, i) => { out[2 * i] = g >> 8; out[2 * i + 1] = g & 0xff; });
  return out;
}

/** 4 or 16 raw bytes → canonical text (RFC 5952 for IPv6). Throws AddressError on other lengths. */
export function bytesToIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  if (bytes.length !== 16) throw new AddressError(`an IP address has 4 or 16 bytes, got ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // Longest run (length ≥ 2) of zero groups becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Whether ip (bytes) lies inside the CIDR given by base bytes and prefix length. Families must match. */
export function cidrContains(base: Uint8Array, prefix: number, ip: Uint8Array): boolean {
  if (base.length !== ip.length) return false;
  if (prefix < 0 || prefix > base.length * 8) return false;
  let bits = prefix;
  for (let i = 0; i < base.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((base[i]! & mask) !== (ip[i]! & mask)) return false;
  }
  return true;
}
