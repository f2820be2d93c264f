// Sockets created inside a real network namespace.
import net from "node:net";
import { once } from "node:events";
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { closeFd, connectTcp, getLocalAddress, isNetnsFd, listenInNetns, listenTcp, openNetns } from "../src/index.js";
import { createNetns, freeHostPort, requireRoot, type TestNetns } from "./netns.js";

requireRoot();

let ns: TestNetns;
beforeAll(() => {
  ns = createNetns();
});
afterAll(() => ns?.remove());

/** Echo server: replies "echo:<data>". */
function echo(server: net.Server): net.Server {
  return server.on("connection", (c) => c.on("data", (d) => c.end(`echo:${String(d)}`)));
}

async function roundTrip(socket: net.Socket, text: string): Promise<string> {
  socket.end(text);
  let reply = "";
  for await (const chunk of socket) reply += String(chunk);
  return reply;
}

describe("network namespaces", () => {
  it("openNetns/isNetnsFd recognise namespace fds", () => {
    const fd = openNetns(ns.path);
    try {
      expect(isNetnsFd(fd)).toBe(true);
    } finally {
      closeFd(fd);
    }
    const self = openNetns("/proc/self/ns/net");
    expect(isNetnsFd(self)).toBe(true);
    closeFd(self);
    const file = fs.openSync("/proc/self/status", "r");
    try {
      expect(isNetnsFd(file)).toBe(false);
    } finally {
      fs.closeSync(file);
    }
  });

  it("openNetns refuses a file that is not a network namespace", () => {
    expect(() => openNetns("/proc/self/ns/uts")).toThrow(expect.objectContaining({ code: "EINVAL", syscall: "open" }));
    expect(() => openNetns("/etc/hostname")).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });

  it("a listener inside the namespace is reachable there and not from the host", async () => {
    const port = await freeHostPort(); // free on the host, so a host connect can only be refused
    const server = echo(await listenInNetns({ netns: ns.path, host: "127.0.0.1", port }));
    let accepted = 0;
    server.on("connection", () => accepted++);
    try {
      expect(server.address()).toMatchObject({ address: "127.0.0.1", port });

      const inside = await connectTcp({ netns: ns.path, host: "127.0.0.1", port });
      expect(inside.remotePort).toBe(port);
      expect(await roundTrip(inside, "hi")).toBe("echo:hi");
      expect(accepted).toBe(1);

      await expect(connectTcp({ host: "127.0.0.1", port })).rejects.toMatchObject({
        code: "ECONNREFUSED",
        syscall: "connect",
      });
      expect(accepted).toBe(1);
    } finally {
      server.close();
    }
  });

  it("takes the namespace as an fd too, and listens on IPv6 with port 0", async () => {
    const nsfd = openNetns(ns.path);
    try {
      const server = echo(await listenInNetns({ netns: nsfd, host: "::1", port: 0, ipv6Only: true }));
      const { port } = server.address() as net.AddressInfo;
      expect(port).toBeGreaterThan(0);
      const socket = await connectTcp({ netns: nsfd, host: "::1", port });
      expect(socket.remoteFamily).toBe("IPv6");
      expect(await roundTrip(socket, "v6")).toBe("echo:v6");
      server.close();
      await once(server, "close");
    } finally {
      closeFd(nsfd);
    }
  });

  it("listenTcp returns a raw listening fd that net.Server can adopt", async () => {
    const fd = listenTcp({ netns: ns.path, host: "0.0.0.0", port: 0, backlog: 16, reusePort: true });
    const { port, family } = getLocalAddress(fd);
    expect(family).toBe(4);
    const server = echo(net.createServer());
    server.listen({ fd });
    await once(server, "listening");
    const socket = await connectTcp({ netns: ns.path, host: "127.0.0.1", port });
    expect(await roundTrip(socket, "raw")).toBe("echo:raw");
    server.close();
  });

  it("the JS thread is back in its own namespace after every call, including failed ones", async () => {
    const before = fs.readlinkSync("/proc/thread-self/ns/net");
    const server = await listenInNetns({ netns: ns.path, host: "127.0.0.1", port: 0 });
    expect(() => listenTcp({ netns: ns.path, host: "192.0.2.1", port: 1 })).toThrow(
      expect.objectContaining({ code: "EADDRNOTAVAIL", syscall: "bind" }),
    );
    await expect(connectTcp({ netns: ns.path, host: "127.0.0.1", port: 1 })).rejects.toMatchObject({ code: "ECONNREFUSED" });
    expect(fs.readlinkSync("/proc/thread-self/ns/net")).toBe(before);
    server.close();
  });

  it("can listen on a non-local address with transparent/freebind", async () => {
    // 192.0.2.0/24 (TEST-NET-1) is configured nowhere: binding needs IP_TRANSPARENT or IP_FREEBIND.
    expect(() => listenTcp({ netns: ns.path, host: "192.0.2.7", port: 15001 })).toThrow(/EADDRNOTAVAIL|Cannot assign/);
    const a = listenTcp({ netns: ns.path, host: "192.0.2.7", port: 15001, transparent: true });
    const b = listenTcp({ netns: ns.path, host: "192.0.2.8", port: 15001, freebind: true });
    expect(getLocalAddress(a)).toEqual({ address: "192.0.2.7", port: 15001, family: 4 });
    expect(getLocalAddress(b)).toEqual({ address: "192.0.2.8", port: 15001, family: 4 });
    closeFd(a);
    closeFd(b);
  });
});
