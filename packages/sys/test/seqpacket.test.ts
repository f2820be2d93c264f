// SOCK_SEQPACKET with SCM_RIGHTS: boundaries, fd passing, server/connect, hang-ups, limits.
import net from "node:net";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  closeFd,
  connectTcp,
  isNetnsFd,
  listenInNetns,
  listenTcp,
  openNetns,
  SeqpacketServer,
  SeqpacketSocket,
  seqpacketPair,
  type SeqpacketMessage,
} from "../src/index.js";
import { native } from "../src/native.js";
import { createNetns, requireRoot, type TestNetns } from "./netns.js";

requireRoot();

let ns: TestNetns;
let dir: string;
beforeAll(() => {
  ns = createNetns();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ambit-sys-"));
});
afterAll(() => {
  ns?.remove();
  fs.rmSync(dir, { recursive: true, force: true });
});

function nextMessage(socket: SeqpacketSocket): Promise<SeqpacketMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: SeqpacketMessage): void => {
      socket.off("error", reject);
      socket.off("message", onMessage);
      resolve(m);
    };
    socket.on("message", onMessage);
    socket.once("error", reject);
  });
}

describe("seqpacketPair", () => {
  it("preserves message boundaries and order", async () => {
    const [a, b] = seqpacketPair();
    const sizes = [1, 1000, 0, 5, 60_000];
    await Promise.all(sizes.map((n, i) => a.send(Buffer.alloc(n, i + 1))));
    const got: Buffer[] = [];
    for await (const msg of b) {
      expect(msg.fds).toEqual([]);
      got.push(msg.data);
      if (got.length === sizes.length) break; // destroys b
    }
    expect(got.map((d) => d.length)).toEqual(sizes);
    got.forEach((d, i) => expect(d.every((byte) => byte === i + 1)).toBe(true));
    expect(b.destroyed).toBe(true);
    a.destroy();
  });

  it("passes a network namespace fd that stays usable after the sender closed its copy", async () => {
    const [a, b] = seqpacketPair();
    const nsfd = openNetns(ns.path);
    const received = nextMessage(b);
    await a.send(Buffer.from("AddWorkload"), [nsfd]);
    closeFd(nsfd); // the sender's copy goes first
    const msg = await received;
    expect(msg.data.toString()).toBe("AddWorkload");
    expect(msg.fds).toHaveLength(1);
    const [theirs] = msg.fds as [number];
    try {
      expect(isNetnsFd(theirs)).toBe(true);
      const check = openNetns(ns.path);
      const expected = fs.readlinkSync(`/proc/self/fd/${check}`); // "net:[<inode>]"
      closeFd(check);
      expect(fs.readlinkSync(`/proc/self/fd/${theirs}`)).toBe(expected);
      // The received fd works with listenTcp: the listener lives in the test namespace.
      const server = await listenInNetns({ netns: theirs, host: "127.0.0.1", port: 0 });
      const { port } = server.address() as net.AddressInfo;
      const accepted = once(server, "connection");
      const client = await connectTcp({ netns: ns.path, host: "127.0.0.1", port });
      await accepted;
      client.destroy();
      server.close();
    } finally {
      closeFd(theirs);
    }
    a.destroy();
    b.destroy();
  });

  it("passes a connected TCP socket that the receiver can read and write", async () => {
    const server = net.createServer((c) => c.on("data", (d) => c.write(`pong:${String(d)}`)));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as net.AddressInfo;
    const original = await connectTcp({ host: "127.0.0.1", port });
    const originalFd = (original as unknown as { _handle: { fd: number } })._handle.fd;

    const [a, b] = seqpacketPair();
    const received = nextMessage(b);
    await a.send(new Uint8Array([1]), [originalFd]);
    original.destroy(); // sender's copy closed first
    const { fds } = await received;
    const adopted = new net.Socket({ fd: fds[0]!, readable: true, writable: true });
    adopted.write("ping");
    const [reply] = (await once(adopted, "data")) as [Buffer];
    expect(String(reply)).toBe("pong:ping");
    adopted.destroy();
    server.close();
    a.destroy();
    b.destroy();
  });

  it("sends several fds in one message", async () => {
    const [a, b] = seqpacketPair();
    const fds = [openNetns(ns.path), openNetns("/proc/self/ns/net"), fs.openSync("/proc/self/status", "r")];
    const received = nextMessage(b);
    await a.send(Buffer.from("three"), fds);
    fds.forEach((fd) => closeFd(fd));
    const msg = await received;
    expect(msg.fds.map((fd) => isNetnsFd(fd))).toEqual([true, true, false]);
    msg.fds.forEach((fd) => closeFd(fd));
    a.destroy();
    b.destroy();
  });

  it("queues sends while the socket is full and flushes them in order", async () => {
    const [a, b] = seqpacketPair();
    const nsfd = openNetns(ns.path);
    const payload = Buffer.alloc(32 * 1024, 1);
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) sends.push(a.send(Buffer.concat([Buffer.from([i]), payload]), i % 50 === 0 ? [nsfd] : []));
    closeFd(nsfd); // queued messages hold their own duplicates
    const seen: number[] = [];
    let fdCount = 0;
    for await (const msg of b.messages({ destroyOnReturn: false })) {
      seen.push(msg.data[0]!);
      for (const fd of msg.fds) {
        expect(isNetnsFd(fd)).toBe(true);
        closeFd(fd);
        fdCount++;
      }
      if (seen.length === 200) break;
    }
    await Promise.all(sends);
    expect(seen).toEqual([...Array(200).keys()]);
    expect(fdCount).toBe(4);
    a.destroy();
    b.destroy();
  });

  it("reports the peer's hang-up with 'close', after the messages sent before it", async () => {
    const [a, b] = seqpacketPair();
    await a.send(Buffer.from("last words"));
    a.close();
    const messages: string[] = [];
    b.on("message", (m) => messages.push(m.data.toString()));
    const [hadError] = (await once(b, "close")) as [boolean];
    expect(hadError).toBe(false);
    expect(messages).toEqual(["last words"]);
    expect(b.destroyed).toBe(true);
    await expect(b.send(Buffer.from("x"))).rejects.toMatchObject({ code: "ERR_SOCKET_CLOSED" });
  });

  it("rejects a send to a peer that is gone with EPIPE", async () => {
    const [a, b] = seqpacketPair();
    b.destroy();
    await expect(a.send(Buffer.from("x"))).rejects.toMatchObject({ code: "EPIPE", syscall: "sendmsg" });
    a.destroy();
  });

  it("a message longer than maxMessageSize is an EMSGSIZE error and its fds are closed", async () => {
    const [a, b] = seqpacketPair({ maxMessageSize: 16 });
    const nsfd = openNetns(ns.path);
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    await a.send(Buffer.alloc(17), [nsfd]);
    b.on("message", () => expect.unreachable());
    const [err] = (await once(b, "error")) as [NodeJS.ErrnoException];
    expect(err).toMatchObject({ code: "EMSGSIZE", syscall: "recvmsg" });
    expect(b.destroyed).toBe(true);
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore - 1); // b's own fd; no received fd left
    closeFd(nsfd);
    a.destroy();
  });

  it("an async iterator ends on the peer's hang-up", async () => {
    const [a, b] = seqpacketPair();
    await a.send(Buffer.from("1"));
    await a.send(Buffer.from("2"));
    a.destroy();
    const got: string[] = [];
    for await (const msg of b) got.push(msg.data.toString());
    expect(got).toEqual(["1", "2"]);
  });
});

describe("SeqpacketServer", () => {
  it("accepts connections on a path; both sides exchange messages with fds; peer close is reported", async () => {
    const sockPath = path.join(dir, "zds.sock");
    const server = new SeqpacketServer();
    server.listen(sockPath);
    expect(fs.statSync(sockPath).isSocket()).toBe(true);
    const accepted = once(server, "connection") as Promise<[SeqpacketSocket]>;
    const client = await SeqpacketSocket.connect(sockPath);
    const [conn] = await accepted;

    const nsfd = openNetns(ns.path);
    const request = nextMessage(conn);
    await client.send(Buffer.from("hello"), [nsfd]);
    closeFd(nsfd);
    const msg = await request;
    expect(msg.data.toString()).toBe("hello");
    expect(isNetnsFd(msg.fds[0]!)).toBe(true);
    closeFd(msg.fds[0]!);

    const reply = nextMessage(client);
    await conn.send(Buffer.from("ack"));
    expect((await reply).data.toString()).toBe("ack");

    const closed = once(conn, "close");
    conn.resume();
    client.close();
    await closed;

    server.close();
    await once(server, "close");
    expect(fs.existsSync(sockPath)).toBe(false);
  });

  it("replaces a stale socket file, refuses a live one and leaves other files alone", async () => {
    const sockPath = path.join(dir, "stale.sock");
    closeFd(native.seqpacketListen(sockPath, 1)); // a listener that died without unlinking
    expect(fs.existsSync(sockPath)).toBe(true);
    await expect(SeqpacketSocket.connect(sockPath)).rejects.toMatchObject({ code: "ECONNREFUSED" });

    const server = new SeqpacketServer(() => {}).listen(sockPath);
    expect(() => new SeqpacketServer().listen(sockPath)).toThrow(expect.objectContaining({ code: "EADDRINUSE", syscall: "bind" }));
    const client = await SeqpacketSocket.connect(sockPath);
    client.destroy();
    server.close();

    const filePath = path.join(dir, "not-a-socket");
    fs.writeFileSync(filePath, "keep me");
    expect(() => new SeqpacketServer().listen(filePath)).toThrow(expect.objectContaining({ code: "EADDRINUSE" }));
    expect(fs.readFileSync(filePath, "utf8")).toBe("keep me");
  });

  it("connect to a missing path fails with ENOENT", async () => {
    await expect(SeqpacketSocket.connect(path.join(dir, "missing.sock"))).rejects.toMatchObject({
      code: "ENOENT",
      syscall: "connect",
    });
  });

  it("wraps a received seqpacket fd with new SeqpacketSocket(fd)", async () => {
    const [a, b] = seqpacketPair();
    const [x, y] = seqpacketPair();
    const received = nextMessage(b);
    await a.send(Buffer.from("take this"), [x.fd]);
    x.destroy();
    const inner = new SeqpacketSocket((await received).fds[0]!);
    const got = nextMessage(y);
    await inner.send(Buffer.from("through the passed fd"));
    expect((await got).data.toString()).toBe("through the passed fd");
    for (const s of [a, b, y, inner]) s.destroy();
  });

  it("a raw listener fd can be passed and adopted too", async () => {
    const fd = listenTcp({ netns: ns.path, host: "127.0.0.1", port: 0 });
    const [a, b] = seqpacketPair();
    const received = nextMessage(b);
    await a.send(new Uint8Array(0), [fd]);
    closeFd(fd);
    const { data, fds } = await received;
    expect(data.length).toBe(0);
    const server = net.createServer().listen({ fd: fds[0]! });
    await once(server, "listening");
    server.close();
    a.destroy();
    b.destroy();
  });
});
