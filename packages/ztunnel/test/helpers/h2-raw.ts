// Test helper: a raw HTTP/2 client written from RFC 9113 (frames) and RFC 7541 (HPACK literals only), for the
// peers Node's own client will not play: one that ignores SETTINGS, bursts HEADERS + RST_STREAM (rapid reset),
// or stops answering PINGs. It records what the server sent per stream.
import type { Duplex } from "node:stream";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const Frame = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 3;

/** HPACK "literal header field without indexing — new name", no Huffman (RFC 7541 §6.2.2); short strings only. */
function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  if (n.length > 126 || v.length > 126) throw new Error("header too long for this helper");
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

export class RawH2Client {
  /** Streams the server answered with HEADERS: the :status when it is the static-table 200, else -1. */
  readonly responses = new Map<number, number>();
  /** RST_STREAM codes the server sent, per stream. */
  readonly resets = new Map<number, number>();
  readonly data = new Map<number, Buffer>();
  /** Streams the server ended (END_STREAM). */
  readonly ended = new Set<number>();
  readonly remoteSettings = new Map<number, number>();
  /** Every GOAWAY received, in order. */
  readonly goaways: { lastStreamId: number; code: number }[] = [];
  pingsReceived = 0;
  /** Answer the server's PINGs (a live peer) or not (a peer that hangs). */
  answerPings = true;
  closed = false;
  private buf = Buffer.alloc(0);
  private nextId = 1;

  constructor(readonly socket: Duplex) {
    socket.on("error", () => undefined);
    socket.once("close", () => (this.closed = true));
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    socket.write(PREFACE);
    this.frame(Frame.SETTINGS, 0, 0, Buffer.alloc(0));
  }

  /** Opens a CONNECT stream to `authority`; returns its id. */
  connect(authority: string, endStream = false): number {
    const id = this.nextId;
    this.nextId += 2;
    const block = Buffer.concat([literal(":method", "CONNECT"), literal(":authority", authority)]);
    this.frame(Frame.HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), id, block);
    return id;
  }

  reset(id: number, code = 8 /* CANCEL */): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code);
    this.frame(Frame.RST_STREAM, 0, id, p);
  }

  send(id: number, data: Buffer | string, endStream = false): void {
    this.frame(Frame.DATA, endStream ? END_STREAM : 0, id, Buffer.from(data));
  }

  /** Sends GOAWAY (NO_ERROR by default): "I open no more streams", the existing ones may go on. */
  sendGoaway(code = 0, lastStreamId = 0): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(lastStreamId);
    p.writeUInt32BE(code, 4);
    this.frame(Frame.GOAWAY, 0, 0, p);
  }

  /** The first GOAWAY. */
  get goaway(): { lastStreamId: number; code: number } | undefined {
    return this.goaways[0];
  }

  text(id: number): string {
    return this.data.get(id)?.toString() ?? "";
  }

  private frame(type: number, flags: number, stream: number, payload: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream & 0x7fffffff, 5);
    this.socket.write(Buffer.concat([h, payload]));
  }

  private read(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) return;
      const type = this.buf[3]!;
      const flags = this.buf[4]!;
      const stream = this.buf.readUInt32BE(5) & 0x7fffffff;
      const p = this.buf.subarray(9, 9 + len);
      this.buf = this.buf.subarray(9 + len);
      this.onFrame(type, flags, stream, Buffer.from(p));
    }
  }

  private onFrame(type: number, flags: number, stream: number, p: Buffer): void {
    switch (type) {
      case Frame.SETTINGS:
        if (flags & ACK) return;
        for (let i = 0; i + 6 <= p.length; i += 6) this.remoteSettings.set(p.readUInt16BE(i), p.readUInt32BE(i + 2));
        this.frame(Frame.SETTINGS, ACK, 0, Buffer.alloc(0));
        return;
      case Frame.PING:
        if (flags & ACK) return;
        this.pingsReceived++;
        if (this.answerPings) this.frame(Frame.PING, ACK, 0, p);
        return;
      case Frame.GOAWAY:
        this.goaways.push({ lastStreamId: p.readUInt32BE(0) & 0x7fffffff, code: p.readUInt32BE(4) });
        return;
      case Frame.RST_STREAM:
        this.resets.set(stream, p.readUInt32BE(0));
        return;
      case Frame.HEADERS:
        // :status 200 is HPACK static-table entry 8, sent as the single byte 0x88.
        this.responses.set(stream, p[0] === 0x88 ? 200 : -1);
        if (flags & END_STREAM) this.ended.add(stream);
        return;
      case Frame.DATA: {
        this.data.set(stream, Buffer.concat([this.data.get(stream) ?? Buffer.alloc(0), p]));
        if (flags & END_STREAM) this.ended.add(stream);
        if (p.length) {
          // Give the window back at once (connection and stream), so the server never stalls on us.
          const inc = Buffer.alloc(4);
          inc.writeUInt32BE(p.length);
          this.frame(Frame.WINDOW_UPDATE, 0, 0, inc);
          this.frame(Frame.WINDOW_UPDATE, 0, stream, inc);
        }
        return;
      }
      default:
    }
  }
}
