// Every fd has an owner that closes it, on success and failure paths alike.
import net from "node:net";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";

import {
  closeFd,
  connectTcp,
  getOriginalDst,
  listenInNetns,
  listenTcp,
  openNetns,
  SeqpacketServer,
  SeqpacketSocket,
  seqpacketPair,
  setMark,
  type SeqpacketMessage,
} from "../src/index.js";
import { createNetns, openFdCount, requireRoot, type TestNetns } from "./netns.js";

requireRoot();

let ns: TestNetns;
let dir: string;
beforeAll(() => {
  ns = createNetns();
  ns.exec("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9080", "-j", "REDIRECT", "--to-ports", "15001");
  ns.exec("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "9998", "-j", "DROP");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ambit-sys-leak-"));
});
afterAll(() => {
  ns?.remove();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function settled(p: Promise<unknown>): Promise<void> {
  await p.then(
    () => undefined,
    () => undefined,
  );
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** One round of everything the package does, including the failure paths. */
async function batch(round: number): Promise<void> {
  // Listen/close, raw and wrapped.
  closeFd(listenTcp({ netns: ns.path, host: "127.0.0.1", port: 0 }));
  const capture = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 15001 });
  const accepted = once(capture, "connection") as Promise<[net.Socket]>;

  // Connect (redirected) / original dst / destroy.
  const client = await connectTcp({ netns: ns.path, host: "127.0.0.1", port: 9080, mark: 7 });
  const [inbound] = await accepted;
  expect(getOriginalDst(inbound).port).toBe(9080);
  client.destroy();
  inbound.destroy();
  await closeServer(capture);

  // Connect failures: refused, timeout, abort, missing netns, bad netns fd, bad args.
  await settled(connectTcp({ netns: ns.path, host: "127.0.0.1", port: 1 }));
  await settled(connectTcp({ netns: ns.path, host: "127.0.0.1", port: 9998, timeout: 20 }));
  await settled(connectTcp({ netns: ns.path, host: "127.0.0.1", port: 9998, signal: AbortSignal.timeout(10) }));
  await settled(connectTcp({ netns: "/var/run/netns/ambit-missing", host: "127.0.0.1", port: 1 }));
  await settled(connectTcp({ netns: 987654, host: "127.0.0.1", port: 1 }));
  await settled(connectTcp({ host: "not-an-ip", port: 1 }));
  await settled(listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 15001 }).then(async (s) => {
    // A second listener on the same port fails after the socket was created: its fd must go.
    await settled(listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 15001 }));
    await closeServer(s);
  }));
  expect(() => listenTcp({ netns: ns.path, host: "192.0.2.1", port: 1 })).toThrow();
  expect(() => setMark(987654, 1)).toThrow();

  // Seqpacket: send fds, receive, close received, truncation, hang-up.
  const [a, b] = seqpacketPair({ maxMessageSize: 1024 });
  const nsfd = openNetns(ns.path);
  // b reads while it has a "message" listener: keep one for the oversized message below.
  const received = new Promise<SeqpacketMessage>((resolve) => b.on("message", resolve));
  await a.send(Buffer.from(`round ${round}`), [nsfd, nsfd]);
  closeFd(nsfd);
  const got = await received;
  got.fds.forEach(closeFd);
  const errored = once(b, "error");
  const sysfd = openNetns("/proc/self/ns/net");
  await a.send(Buffer.alloc(2048), [sysfd]); // too long for b: its fds are closed with the message
  closeFd(sysfd);
  await errored;
  a.destroy();

  // Queued sends with fds, rejected by destroy: their duplicates are closed.
  const [c, d] = seqpacketPair();
  const nsfd2 = openNetns(ns.path);
  const sends: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) sends.push(c.send(Buffer.alloc(16 * 1024), [nsfd2]));
  closeFd(nsfd2);
  d.destroy();
  c.destroy();
  await Promise.all(sends.map(settled));

  // Server, connect, iterator, close.
  const sockPath = path.join(dir, `s${round}.sock`);
  const server = new SeqpacketServer();
  server.listen(sockPath);
  const conn = once(server, "connection") as Promise<[SeqpacketSocket]>;
  const sc = await SeqpacketSocket.connect(sockPath);
  const [ss] = await conn;
  await sc.send(Buffer.from("x"));
  sc.close();
  for await (const m of ss) expect(m.data.toString()).toBe("x");
  await settled(SeqpacketSocket.connect(path.join(dir, "missing.sock")));
  server.close();
}

it("leaves the number of open fds unchanged", async () => {
  await batch(0); // warm-up: the poller's epoll fd and eventfd are opened once, on first use
  const before = openFdCount();
  for (let round = 1; round <= 3; round++) await batch(round);
  // net.Socket handles close their fds asynchronously: wait until the count is back, or fail with it.
  await vi.waitFor(() => expect(openFdCount()).toBe(before), { timeout: 10_000, interval: 20 });
});
