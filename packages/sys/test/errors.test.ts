// Bad fds, missing namespaces and bad arguments give errors, never crashes.
import fs from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  closeFd,
  connectTcp,
  getLocalAddress,
  getMark,
  getOriginalDst,
  isNetnsFd,
  listenInNetns,
  listenTcp,
  openNetns,
  SeqpacketServer,
  SeqpacketSocket,
  seqpacketPair,
  setMark,
  setReusePort,
  setTransparent,
} from "../src/index.js";
import { createNetns, requireRoot, type TestNetns } from "./netns.js";

requireRoot();

const BAD_FD = 987654;

let ns: TestNetns;
beforeAll(() => {
  ns = createNetns();
});
afterAll(() => ns?.remove());

const sysErr = (code: string, syscall: string) =>
  expect.objectContaining({ code, syscall, errno: expect.any(Number), message: expect.stringMatching(new RegExp(`^${syscall}: `)) });

describe("system errors", () => {
  it("a bad fd gives EBADF with the failing syscall", async () => {
    expect(() => setMark(BAD_FD, 1)).toThrow(sysErr("EBADF", "setsockopt"));
    expect(() => getMark(BAD_FD)).toThrow(sysErr("EBADF", "getsockopt"));
    expect(() => getOriginalDst(BAD_FD)).toThrow(sysErr("EBADF", "getsockname"));
    expect(() => getLocalAddress(BAD_FD)).toThrow(sysErr("EBADF", "getsockname"));
    expect(() => setTransparent(BAD_FD, true)).toThrow(sysErr("EBADF", "getsockname"));
    expect(() => setReusePort(BAD_FD, true)).toThrow(sysErr("EBADF", "setsockopt"));
    expect(() => isNetnsFd(BAD_FD)).toThrow(sysErr("EBADF", "ioctl"));
    expect(() => closeFd(BAD_FD)).toThrow(sysErr("EBADF", "close"));
    expect(() => listenTcp({ netns: BAD_FD, host: "127.0.0.1", port: 0 })).toThrow(sysErr("EBADF", "setns"));
    await expect(connectTcp({ netns: BAD_FD, host: "127.0.0.1", port: 80 })).rejects.toMatchObject({ code: "EBADF", syscall: "setns" });
    expect(() => new SeqpacketSocket(BAD_FD)).toThrow(sysErr("EBADF", "epoll_ctl"));
  });

  it("the EBADF error reads like Node's", () => {
    try {
      setMark(BAD_FD, 1);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe("setsockopt: Bad file descriptor");
      expect((err as NodeJS.ErrnoException).errno).toBe(-9);
    }
  });

  it("a missing namespace path gives ENOENT", async () => {
    const missing = "/var/run/netns/ambit-test-does-not-exist";
    expect(() => openNetns(missing)).toThrow(sysErr("ENOENT", "open"));
    expect(() => listenTcp({ netns: missing, host: "127.0.0.1", port: 0 })).toThrow(sysErr("ENOENT", "open"));
    await expect(listenInNetns({ netns: missing, host: "127.0.0.1", port: 0 })).rejects.toMatchObject({ code: "ENOENT" });
    await expect(connectTcp({ netns: missing, host: "127.0.0.1", port: 1 })).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("a SeqpacketSocket refuses an fd that cannot be polled (EPERM), leaving it to the caller", () => {
    const file = fs.openSync("/proc/self/status", "r");
    expect(() => new SeqpacketSocket(file)).toThrow(sysErr("EPERM", "epoll_ctl"));
    fs.closeSync(file); // still open: ours to close
  });

  it("an fd that is not a namespace gives EINVAL from setns", () => {
    const [a, b] = seqpacketPair();
    expect(() => listenTcp({ netns: a.fd, host: "127.0.0.1", port: 0 })).toThrow(sysErr("EINVAL", "setns"));
    a.destroy();
    b.destroy();
  });

  it("not a socket: ENOTSOCK; not TCP/IP: EAFNOSUPPORT; bind conflicts: EADDRINUSE", () => {
    const nsfd = openNetns(ns.path);
    expect(() => setMark(nsfd, 1)).toThrow(sysErr("ENOTSOCK", "setsockopt"));
    expect(() => getOriginalDst(nsfd)).toThrow(sysErr("ENOTSOCK", "getsockname"));
    closeFd(nsfd);
    const [a, b] = seqpacketPair();
    expect(() => getOriginalDst(a.fd)).toThrow(sysErr("EAFNOSUPPORT", "getsockopt"));
    a.destroy();
    b.destroy();
    const fd = listenTcp({ netns: ns.path, host: "127.0.0.1", port: 0 });
    const { port } = getLocalAddress(fd);
    expect(() => listenTcp({ netns: ns.path, host: "127.0.0.1", port })).toThrow(sysErr("EADDRINUSE", "bind"));
    closeFd(fd);
  });

  it("getOriginalDst on a listener (no conntrack entry) fails cleanly", () => {
    const fd = listenTcp({ netns: ns.path, host: "127.0.0.1", port: 0 });
    expect(() => getOriginalDst(fd)).toThrow(expect.objectContaining({ syscall: "getsockopt", code: expect.stringMatching(/^E/) }));
    closeFd(fd);
  });
});

describe("bad arguments are TypeErrors", () => {
  const cases: [string, () => unknown][] = [
    ["setMark(string fd)", () => setMark("3" as unknown as number, 1)],
    ["setMark(negative fd)", () => setMark(-1, 1)],
    ["setMark(mark too big)", () => setMark(0, 2 ** 32)],
    ["setMark(fractional mark)", () => setMark(0, 1.5)],
    ["getOriginalDst(object)", () => getOriginalDst({} as unknown as number)],
    ["getOriginalDst(unconnected socket)", () => getOriginalDst(new net.Socket())],
    ["setTransparent(non-boolean)", () => setTransparent(0, 1 as unknown as boolean)],
    ["openNetns(number)", () => openNetns(3 as unknown as string)],
    ["openNetns('')", () => openNetns("")],
    ["openNetns(NUL)", () => openNetns("/proc/self/ns/net\0x")],
    ["closeFd(NaN)", () => closeFd(NaN)],
    ["isNetnsFd(undefined)", () => isNetnsFd(undefined as unknown as number)],
    ["listenTcp(null)", () => listenTcp(null as unknown as { host: string; port: number })],
    ["listenTcp(host name)", () => listenTcp({ host: "localhost", port: 0 })],
    ["listenTcp(port 70000)", () => listenTcp({ host: "127.0.0.1", port: 70000 })],
    ["listenTcp(netns object)", () => listenTcp({ netns: {} as unknown as string, host: "127.0.0.1", port: 0 })],
    ["listenTcp(reusePort string)", () => listenTcp({ host: "127.0.0.1", port: 0, reusePort: "yes" as unknown as boolean })],
    ["SeqpacketSocket(bad fd type)", () => new SeqpacketSocket("x" as unknown as number)],
    ["SeqpacketSocket(bad maxMessageSize)", () => new SeqpacketSocket(0, { maxMessageSize: 0 })],
    ["SeqpacketServer.listen(no path)", () => new SeqpacketServer().listen(undefined as unknown as string)],
    ["seqpacketPair(bad options)", () => seqpacketPair({ maxMessageSize: -1 })],
  ];
  it.each(cases)("%s", (_name, call) => {
    expect(call).toThrow(TypeError);
  });

  it("async APIs reject with TypeErrors", async () => {
    await expect(connectTcp({ host: "example.com", port: 80 })).rejects.toBeInstanceOf(TypeError);
    await expect(connectTcp({ host: "127.0.0.1", port: 0 })).rejects.toBeInstanceOf(TypeError);
    await expect(connectTcp({ host: "127.0.0.1", port: 1, localAddress: "::1" })).rejects.toBeInstanceOf(TypeError);
    await expect(connectTcp({ host: "127.0.0.1", port: 1, timeout: -5 })).rejects.toBeInstanceOf(TypeError);
    await expect(listenInNetns({ host: "127.0.0.1", port: -1 })).rejects.toBeInstanceOf(TypeError);
    await expect(SeqpacketSocket.connect(42 as unknown as string)).rejects.toBeInstanceOf(TypeError);
    const [a, b] = seqpacketPair();
    await expect(a.send("text" as unknown as Uint8Array)).rejects.toBeInstanceOf(TypeError);
    await expect(a.send(Buffer.from("x"), [-1])).rejects.toBeInstanceOf(TypeError);
    await expect(a.send(Buffer.from("x"), new Array(254).fill(0))).rejects.toBeInstanceOf(TypeError);
    await expect(a.send(Buffer.from("x"), [BAD_FD])).rejects.toMatchObject({ code: "EBADF", syscall: "sendmsg" });
    a.destroy();
    b.destroy();
  });
});
