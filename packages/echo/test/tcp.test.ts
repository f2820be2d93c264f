// The raw TCP echo, in-process, over real sockets on 127.0.0.1.
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEcho, type EchoServer } from "../src/index.js";
import { rawExchange } from "./helpers.js";

let plain: EchoServer;
let greeting: EchoServer;

beforeAll(async () => {
  plain = await startEcho({ host: "127.0.0.1", httpPort: null });
  greeting = await startEcho({ host: "127.0.0.1", httpPort: null, tcpGreeting: true, identity: { pod: "echo-greeter" } });
});
afterAll(() => Promise.all([plain.close(), greeting.close()]));

describe("TCP echo", () => {
  it("returns exactly the bytes sent, then closes after the client half-closes", async () => {
    const data = Buffer.from("ping\n\x00\xff binary too");
    expect((await rawExchange(plain.tcpPort as number, data)).equals(data)).toBe(true);
  });

  it("returns several MB exactly while the client is slow to read (back-pressure)", async () => {
    const data = randomBytes(6 * 1024 * 1024 + 123);
    const echoed = await rawExchange(plain.tcpPort as number, data, { pauseMs: 300 });
    expect(echoed.length).toBe(data.length);
    expect(echoed.equals(data)).toBe(true);
  });

  it("echoes interactively before the client half-closes", async () => {
    const socket = net.connect({ host: "127.0.0.1", port: plain.tcpPort as number });
    await new Promise((r) => socket.once("connect", r));
    for (const word of ["one", "two", "three"]) {
      socket.write(word);
      const got = await new Promise<Buffer>((r) => socket.once("data", r));
      expect(got.toString()).toBe(word);
    }
    socket.destroy();
  });

  it("with the greeting on, first writes `<pod> <peer>` then echoes", async () => {
    const socket = net.connect({ host: "127.0.0.1", port: greeting.tcpPort as number, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    await new Promise((r) => socket.once("connect", r));
    const localPort = socket.localPort;
    socket.end("hello");
    await new Promise((r) => socket.once("close", r));
    expect(Buffer.concat(chunks).toString()).toBe(`echo-greeter 127.0.0.1:${localPort}\nhello`);
  });
});
