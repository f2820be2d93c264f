// Behaviour of the in-pod rules with real traffic: a "pod" netns joined by a veth to an "outside" netns,
// listeners standing in for ztunnel (15001/15006/15008/15053) and the app (8080) in the pod, and a server on
// port 80 outside. Each listener answers with its own name and the connection's original destination.
import type net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTcp, getOriginalDst, listenInNetns, type ConnectTcpOptions } from "@ambit/sys";
import { Marks, PROBE_SNAT_IPV4, Ports } from "@ambit/protocol";
import { applyRules, inspectRules, removeRules } from "../src/redirect/index.js";
import { cleanup, createPair, sh, type Pair } from "./netns-helper.js";

interface Reply {
  name: string;
  dst: { address: string; port: number; family: number } | null;
}

const servers: net.Server[] = [];
let pair: Pair;
const nsPath = (name: string): string => `/var/run/netns/${name}`;

async function serve(netns: string, port: number, name: string): Promise<void> {
  const server = await listenInNetns({ netns: nsPath(netns), host: "::", port, ipv6Only: false });
  server.on("connection", (socket: net.Socket) => {
    // For a connection that was not NATed this is just the local address (or null without conntrack);
    // the listener's name is what tells whether a connection was redirected.
    let dst: Reply["dst"] = null;
    try {
      dst = getOriginalDst(socket);
    } catch {
      dst = null;
    }
    socket.on("error", () => undefined);
    socket.end(JSON.stringify({ name, dst }));
  });
  servers.push(server);
}

async function talk(opts: ConnectTcpOptions): Promise<Reply> {
  const socket = await connectTcp({ timeout: 3000, ...opts });
  return new Promise<Reply>((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("end", () => {
      socket.destroy();
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Reply);
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

const fromPod = (host: string, port: number, extra: Partial<ConnectTcpOptions> = {}): Promise<Reply> =>
  talk({ netns: nsPath(pair.pod), host, port, ...extra });
const fromOutside = (host: string, port: number, extra: Partial<ConnectTcpOptions> = {}): Promise<Reply> =>
  talk({ netns: nsPath(pair.outside), host, port, ...extra });

beforeAll(async () => {
  try {
    pair = createPair();
    sh("ip", ["-n", pair.outside, "addr", "add", `${PROBE_SNAT_IPV4}/32`, "dev", "veth-out"]);
    await serve(pair.pod, Ports.outbound, "outbound");
    await serve(pair.pod, Ports.inboundPlaintext, "inbound");
    await serve(pair.pod, Ports.hbone, "hbone");
    await serve(pair.pod, Ports.dns, "dns");
    await serve(pair.pod, 8080, "app");
    await serve(pair.outside, 80, "outside");
    await serve(pair.outside, 53, "outside-dns");
  } catch (err) {
    cleanup();
    throw err;
  }
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  cleanup();
});

describe("in-pod redirection with real traffic", () => {
  it("without rules, traffic flows directly (baseline)", async () => {
    expect((await fromPod(pair.outsideIp, 80)).name).toBe("outside");
    expect((await fromOutside(pair.podIp, 8080)).name).toBe("app");
  });

  describe("after applyRules (IPv4 + IPv6, no DNS capture)", () => {
    beforeAll(async () => {
      await applyRules(pair.pod, { dnsCapture: false, ipv6: true });
      expect((await inspectRules(pair.pod, { dnsCapture: false, ipv6: true })).clean).toBe(true);
    });

    it("outbound TCP lands on 15001 with the original destination", async () => {
      const r = await fromPod(pair.outsideIp, 80);
      expect(r).toEqual({ name: "outbound", dst: { address: pair.outsideIp, port: 80, family: 4 } });
    });

    it("outbound TCP with ztunnel's mark 0x539 bypasses the redirect", async () => {
      const r = await fromPod(pair.outsideIp, 80, { mark: Marks.ztunnel });
      expect(r.name).toBe("outside");
    });

    it("inbound TCP to the pod lands on 15006 with the original destination", async () => {
      const r = await fromOutside(pair.podIp, 8080);
      expect(r).toEqual({ name: "inbound", dst: { address: pair.podIp, port: 8080, family: 4 } });
    });

    it("inbound TCP to 15008 is not redirected", async () => {
      const r = await fromOutside(pair.podIp, Ports.hbone);
      expect(r.name).toBe("hbone");
    });

    it("connections from the kubelet probe address are not redirected", async () => {
      const r = await fromOutside(pair.podIp, 8080, { localAddress: PROBE_SNAT_IPV4 });
      expect(r.name).toBe("app");
    });

    it("the pod calling its loopback or its own IP is not redirected", async () => {
      expect((await fromPod("127.0.0.1", 8080)).name).toBe("app");
      expect((await fromPod(pair.podIp, 8080)).name).toBe("app");
      expect((await fromPod("::1", 8080)).name).toBe("app");
    });

    it("DNS over TCP is not captured while DNS capture is off", async () => {
      expect((await fromPod(pair.outsideIp, 53)).name).toBe("outbound");
    });

    it("outbound IPv6 TCP lands on 15001 with the IPv6 original destination", async () => {
      const r = await fromPod(pair.outsideIp6, 80);
      expect(r).toEqual({ name: "outbound", dst: { address: pair.outsideIp6, port: 80, family: 6 } });
      expect((await fromPod(pair.outsideIp6, 80, { mark: Marks.ztunnel })).name).toBe("outside");
    });

    it("inbound IPv6 TCP lands on 15006", async () => {
      const r = await fromOutside(pair.podIp6, 8080);
      expect(r).toEqual({ name: "inbound", dst: { address: pair.podIp6, port: 8080, family: 6 } });
    });
  });

  describe("with DNS capture", () => {
    beforeAll(async () => {
      await applyRules(pair.pod, { dnsCapture: true, ipv6: true });
    });

    it("DNS over TCP (port 53) lands on 15053; marked DNS is not captured", async () => {
      expect(await fromPod(pair.outsideIp, 53)).toEqual({ name: "dns", dst: { address: pair.outsideIp, port: 53, family: 4 } });
      expect((await fromPod(pair.outsideIp, 53, { mark: Marks.ztunnel })).name).toBe("outside-dns");
      expect((await fromPod(pair.outsideIp6, 53)).name).toBe("dns");
    });

    it("other outbound TCP still lands on 15001", async () => {
      expect((await fromPod(pair.outsideIp, 80)).name).toBe("outbound");
    });

    it("turning DNS capture off again stops capturing DNS (level-triggered)", async () => {
      await applyRules(pair.pod, { dnsCapture: false, ipv6: true });
      expect((await fromPod(pair.outsideIp, 53)).name).toBe("outbound");
    });
  });

  describe("after removeRules", () => {
    beforeAll(async () => {
      await removeRules(pair.pod);
    });

    it("traffic flows directly again, both ways and both families", async () => {
      expect((await fromPod(pair.outsideIp, 80)).name).toBe("outside");
      expect((await fromPod(pair.outsideIp6, 80)).name).toBe("outside");
      expect((await fromOutside(pair.podIp, 8080)).name).toBe("app");
    });

    it("inspect reports nothing present", async () => {
      const r = await inspectRules(pair.pod, { dnsCapture: false, ipv6: true });
      expect(r.present).toBe(false);
      expect(r.clean).toBe(false);
    });
  });
});
