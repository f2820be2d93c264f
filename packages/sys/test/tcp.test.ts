// Original destination behind iptables REDIRECT, socket marks, connect failures.
import net from "node:net";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import { connectTcp, getMark, getOriginalDst, listenInNetns, setMark, setTransparent } from "../src/index.js";
import { createNetns, requireRoot, type TestNetns } from "./netns.js";

requireRoot();

const CAPTURE = 15001; // where REDIRECT sends traffic (ztunnel's outbound port)
const DIRECT = 9080; // the port the application dials
const MARK = 0x539; // ztunnel's own traffic, exempt from redirection

let ns: TestNetns;
let ip6nat: string | undefined; // why IPv6 NAT is unavailable, if it is

beforeAll(() => {
  ns = createNetns();
  // Marked traffic returns early; everything else to DIRECT is redirected to CAPTURE.
  ns.exec("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", String(DIRECT), "-m", "mark", "--mark", `0x${MARK.toString(16)}`, "-j", "RETURN");
  ns.exec("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", String(DIRECT), "-j", "REDIRECT", "--to-ports", String(CAPTURE));
  try {
    ns.exec("ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", String(DIRECT), "-j", "REDIRECT", "--to-ports", String(CAPTURE));
  } catch (err) {
    ip6nat = `ip6tables nat refused by this kernel: ${(err as { stderr?: string }).stderr ?? String(err)}`;
  }
});
afterAll(() => ns?.remove());

/** Resolves with the next accepted socket of server. */
async function nextConnection(server: net.Server): Promise<net.Socket> {
  const [socket] = (await once(server, "connection")) as [net.Socket];
  return socket;
}

describe("getOriginalDst", () => {
  it("reports the IPv4 destination before REDIRECT, for a net.Socket and for its fd", async () => {
    const capture = await listenInNetns({ netns: ns.path, host: "0.0.0.0", port: CAPTURE });
    try {
      const accepted = nextConnection(capture);
      const client = await connectTcp({ netns: ns.path, host: "127.0.0.2", port: DIRECT });
      const inbound = await accepted;
      expect(inbound.localPort).toBe(CAPTURE);
      expect(getOriginalDst(inbound)).toEqual({ address: "127.0.0.2", port: DIRECT, family: 4 });
      const fd = (inbound as unknown as { _handle: { fd: number } })._handle.fd;
      expect(getOriginalDst(fd)).toEqual({ address: "127.0.0.2", port: DIRECT, family: 4 });
      client.destroy();
      inbound.destroy();
    } finally {
      capture.close();
    }
  });

  it("handles IPv4 connections on a dual-stack IPv6 listener (v4-mapped)", async () => {
    const capture = await listenInNetns({ netns: ns.path, host: "::", port: CAPTURE, ipv6Only: false });
    try {
      const accepted = nextConnection(capture);
      const client = await connectTcp({ netns: ns.path, host: "127.0.0.3", port: DIRECT });
      const inbound = await accepted;
      expect(inbound.localAddress).toBe("::ffff:127.0.0.1");
      expect(getOriginalDst(inbound)).toEqual({ address: "127.0.0.3", port: DIRECT, family: 4 });
      client.destroy();
      inbound.destroy();
    } finally {
      capture.close();
    }
  });

  it("reports the IPv6 destination before REDIRECT (ip6tables)", async (ctx) => {
    if (ip6nat) {
      ctx.skip(ip6nat);
      return;
    }
    const capture = await listenInNetns({ netns: ns.path, host: "::1", port: CAPTURE, ipv6Only: true });
    try {
      const accepted = nextConnection(capture);
      const client = await connectTcp({ netns: ns.path, host: "::1", port: DIRECT });
      const inbound = await accepted;
      expect(inbound.localPort).toBe(CAPTURE);
      expect(getOriginalDst(inbound)).toEqual({ address: "::1", port: DIRECT, family: 6 });
      client.destroy();
      inbound.destroy();
    } finally {
      capture.close();
    }
  });

  it("reports the unchanged destination of a connection that was not redirected", async () => {
    const direct = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 7070 });
    try {
      const accepted = nextConnection(direct);
      const client = await connectTcp({ netns: ns.path, host: "127.0.0.1", port: 7070 });
      const inbound = await accepted;
      // Conntrack still tracks it, with an unchanged destination.
      expect(getOriginalDst(inbound)).toEqual({ address: "127.0.0.1", port: 7070, family: 4 });
      client.destroy();
      inbound.destroy();
    } finally {
      direct.close();
    }
  });
});

describe("marks", () => {
  it("setMark/getMark round-trip on a socket", async () => {
    const server = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 0 });
    try {
      expect(getMark(server)).toBe(0);
      setMark(server, MARK);
      expect(getMark(server)).toBe(MARK);
      setMark(server, 0xffffffff);
      expect(getMark(server)).toBe(0xffffffff);
      setTransparent(server, true);
      setTransparent(server, false);
    } finally {
      server.close();
    }
  });

  it("a connection marked 0x539 bypasses the REDIRECT, an unmarked one is captured", async () => {
    const capture = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: CAPTURE });
    const direct = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: DIRECT });
    const seen: string[] = [];
    capture.on("connection", (s: net.Socket) => (seen.push("capture"), s.destroy()));
    direct.on("connection", (s: net.Socket) => (seen.push("direct"), s.destroy()));
    try {
      const directHit = once(direct, "connection");
      const marked = await connectTcp({ netns: ns.path, host: "127.0.0.1", port: DIRECT, mark: MARK });
      expect(getMark(marked)).toBe(MARK);
      await directHit;
      const captureHit = once(capture, "connection");
      const plain = await connectTcp({ netns: ns.path, host: "127.0.0.1", port: DIRECT });
      await captureHit;
      expect(seen).toEqual(["direct", "capture"]);
      marked.destroy();
      plain.destroy();
    } finally {
      capture.close();
      direct.close();
    }
  });
});

describe("connectTcp failures", () => {
  it("ECONNREFUSED when nothing listens", async () => {
    await expect(connectTcp({ netns: ns.path, host: "127.0.0.1", port: 1 })).rejects.toMatchObject({
      code: "ECONNREFUSED",
      errno: -111,
      syscall: "connect",
      message: expect.stringMatching(/^connect: Connection refused/),
    });
  });

  it("ENETUNREACH when the namespace has no route", async () => {
    // Only loopback exists in the test namespace: no packet can leave it.
    await expect(connectTcp({ netns: ns.path, host: "198.51.100.1", port: 80 })).rejects.toMatchObject({
      code: "ENETUNREACH",
      syscall: "connect",
    });
  });

  it("ETIMEDOUT once `timeout` has passed when SYNs are dropped, not before", async () => {
    ns.exec("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "9998", "-j", "DROP");
    // The deadline is a JS timer and the dropped SYN keeps the real connect pending for
    // minutes: fake only the timers, and step the clock across the deadline.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      let outcome: unknown;
      const pending = connectTcp({ netns: ns.path, host: "127.0.0.1", port: 9998, timeout: 200 }).then(
        () => (outcome = "connected"),
        (err: unknown) => (outcome = err),
      );
      await vi.advanceTimersByTimeAsync(199);
      expect(outcome).toBeUndefined(); // still connecting 1 ms before the deadline
      await vi.advanceTimersByTimeAsync(1);
      await pending;
      expect(outcome).toMatchObject({ code: "ETIMEDOUT", syscall: "connect" });
    } finally {
      vi.useRealTimers();
    }
  });

  it("AbortError when aborted while connecting, or aborted before", async () => {
    ns.exec("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "9997", "-j", "DROP");
    const ac = new AbortController();
    const pending = connectTcp({ netns: ns.path, host: "127.0.0.1", port: 9997, signal: ac.signal });
    ac.abort(); // the SYN is dropped: the connect is in flight
    await expect(pending).rejects.toMatchObject({ name: "AbortError", code: "ABORT_ERR" });
    await expect(connectTcp({ host: "127.0.0.1", port: 9998, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
  });

  it("the connected socket behaves like any net.Socket (pipe, half-close, destroy)", async () => {
    const server = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 0 });
    server.on("connection", (c: net.Socket) => c.pipe(c)); // echo via pipe
    try {
      const { port } = server.address() as net.AddressInfo;
      const socket = await connectTcp({ netns: ns.path, host: "127.0.0.1", port, localAddress: "127.0.0.5", localPort: 0 });
      expect(socket.localAddress).toBe("127.0.0.5");
      const big = Buffer.alloc(1 << 20, 7);
      socket.end(big);
      const chunks: Buffer[] = [];
      for await (const chunk of socket) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).equals(big)).toBe(true);
      socket.destroy();
      await once(socket, "close");
    } finally {
      server.close();
    }
  });
});
