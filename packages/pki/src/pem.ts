// PEM (RFC 7468) encoding and decoding, strict about what it accepts: matching BEGIN/END labels and
// nothing but base64 (plus line breaks and spaces) between them.
import { PemError } from "./errors.js";

/** One decoded PEM block. */
export interface PemBlock {
  label: string;
  der: Buffer;
  /** The block's text, normalised to LF line endings and ending with exactly one "\n". */
  text: string;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

/** Every PEM block in `text`, in order. Text outside blocks is ignored (as OpenSSL does with comments). */
export function pemBlocks(text: string): PemBlock[] {
  if (typeof text !== "string") throw new PemError("PEM input is not a string");
  const out: PemBlock[] = [];
  const src = text.replace(/\r\n?/g, "\n");
  for (const m of src.matchAll(BLOCK)) {
    const [whole, begin, body, end] = m as unknown as [string, string, string, string];
    if (begin !== end) throw new PemError(`PEM block "BEGIN ${begin}" ends with "END ${end}"`);
    if (!BASE64_BODY.test(body)) throw new PemError(`PEM block "${begin}" has characters that are not base64`);
    const compact = body.replace(/\s+/g, "");
    if (compact.length === 0 || compact.length % 4 !== 0) throw new PemError(`PEM block "${begin}" has a truncated base64 body`);
    out.push({ label: begin, der: Buffer.from(compact, "base64"), text: whole + "\n" });
  }
  if (out.length === 0 && /-----BEGIN /.test(src)) throw new PemError("PEM block is not terminated by an END line");
  return out;
}

/**
 * Splits concatenated PEM text into its blocks, each normalised to end with "\n". With `label`, only blocks
 * with that label (for example "CERTIFICATE") are returned.
 */
export function parsePemBundle(text: string, label?: string): string[] {
  return pemBlocks(text)
    .filter((b) => label === undefined || b.label === label)
    .map((b) => b.text);
}

/** Decodes exactly one block with one of `labels`; `what` names the input in errors. */
export function decodeSinglePem(text: string, labels: readonly string[], what: string): PemBlock {
  const blocks = pemBlocks(text);
  const matching = blocks.filter((b) => labels.includes(b.label));
  if (matching.length === 0) {
    const found = blocks.length ? ` (found ${blocks.map((b) => `"${b.label}"`).join(", ")})` : "";
    throw new PemError(`${what}: no PEM block labelled ${labels.map((l) => `"${l}"`).join(" or ")}${found}`);
  }
  if (matching.length > 1) throw new PemError(`${what}: expected one PEM block, found ${matching.length}`);
  return matching[0]!;
}

/** Encodes DER as PEM with 64-character lines, ending with "\n". */
export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** The text with exactly one trailing "\n" (chain elements must end with a newline). */
export function withTrailingNewline(pem: string): string {
  return pem.replace(/\s+$/, "") + "\n";
}
