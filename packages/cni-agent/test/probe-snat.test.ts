// The node-side probe SNAT against real iptables in a real network namespace (standing in for the node's): the
// chain follows the set of enrolled pod IPs exactly (v4 and v6), the jump is never doubled, foreign rules stay,
// removal is complete and idempotent; and a probe-like connection opened from the "node" reaches a "pod" from
// 169.254.7.127 while forwarded (non-local) traffic keeps its source.
import { execFileSync, spawn } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { removeProbeSnat, renderProbeSnat, syncProbeSnat } from "../src/redirect/probe-snat.js";
import { cleanup, createNetns, nsExec } from "./netns-helper.js";

afterAll(() => cleanup());

const save = (ns: string, cmd: string) => nsExec(ns, cmd).split("\n").filter((l) => l.startsWith("-A ") || l.startsWith(":ISTIO_POSTRT"));

describe("probe SNAT on the node", () => {
  it("renders one SNAT rule per pod IP, for locally opened connections only", () => {
    expect(renderProbeSnat("ipv4", ["10.244.1.7", "10.244.1.5", "10.244.1.5"], true)).toBe([
      "*nat", ":ISTIO_POSTRT - [0:0]", "-A POSTROUTING -j ISTIO_POSTRT",
      "-A ISTIO_POSTRT -d 10.244.1.5/32 -p tcp -m owner --socket-exists -j SNAT --to-source 169.254.7.127",
      "-A ISTIO_POSTRT -d 10.244.1.7/32 -p tcp -m owner --socket-exists -j SNAT --to-source 169.254.7.127",
      "COMMIT", "",
    ].join("\n"));
    expect(renderProbeSnat("ipv6", ["fd00::5"], false)).toContain("-A ISTIO_POSTRT -d fd00::5/128 -p tcp -m owner --socket-exists -j SNAT --to-source fd16:9254:7127:1337:ffff:ffff:ffff:ffff");
  });

  it("follows the enrolled IPs exactly, keeps foreign rules, never doubles the jump, and removes everything", async () => {
    const ns = createNetns();
    nsExec(ns, "iptables", ...["-t", "nat", "-A", "POSTROUTING", "-d", "192.0.2.1/32", "-j", "RETURN"]);
    await syncProbeSnat(["10.244.1.5", "10.244.1.6", "fd00::5"], ns);
    await syncProbeSnat(["10.244.1.6", "fd00::5"], ns);
    const v4 = save(ns, "iptables-save");
    expect(v4.filter((l) => l === "-A POSTROUTING -j ISTIO_POSTRT")).toHaveLength(1);
    expect(v4.filter((l) => l.startsWith("-A ISTIO_POSTRT"))).toEqual(["-A ISTIO_POSTRT -d 10.244.1.6/32 -p tcp -m owner --socket-exists -j SNAT --to-source 169.254.7.127"]);
    expect(v4).toContain("-A POSTROUTING -d 192.0.2.1/32 -j RETURN");
    expect(save(ns, "ip6tables-save").filter((l) => l.startsWith("-A ISTIO_POSTRT"))).toEqual(["-A ISTIO_POSTRT -d fd00::5/128 -p tcp -m owner --socket-exists -j SNAT --to-source fd16:9254:7127:1337:ffff:ffff:ffff:ffff"]);
    await removeProbeSnat(ns);
    await removeProbeSnat(ns);
    expect(save(ns, "iptables-save").filter((l) => l.includes("ISTIO_POSTRT"))).toEqual([]);
    expect(save(ns, "ip6tables-save").filter((l) => l.includes("ISTIO_POSTRT"))).toEqual([]);
    expect(save(ns, "iptables-save")).toContain("-A POSTROUTING -d 192.0.2.1/32 -j RETURN");
  });

  it("makes a connection from the node to an enrolled pod arrive from 169.254.7.127", async () => {
    // "node" and "pod" joined by a veth: 10.99.0.1 ↔ 10.99.0.2.
    const node = createNetns();
    const pod = createNetns();
    execFileSync("ip", ["link", "add", "vn", "netns", node, "type", "veth", "peer", "name", "vp", "netns", pod]);
    nsExec(node, "ip", ...["addr", "add", "10.99.0.1/24", "dev", "vn"]);
    nsExec(node, "ip", ...["link", "set", "vn", "up"]);
    nsExec(pod, "ip", ...["addr", "add", "10.99.0.2/24", "dev", "vp"]);
    nsExec(pod, "ip", ...["link", "set", "vp", "up"]);
    nsExec(pod, "ip", ...["route", "add", "default", "via", "10.99.0.1"]);
    await syncProbeSnat(["10.99.0.2"], node, false);
    // The "app": prints the address of whoever connects.
    const app = spawn("ip", ["netns", "exec", pod, process.execPath, "-e",
      "const s=require('net').createServer(c=>{console.log(c.remoteAddress);c.end()}).listen(8080,'10.99.0.2',()=>console.log('up'))"]);
    let out = "";
    app.stdout.on("data", (d: Buffer) => (out += d));
    try {
      // Polls with a generous bound (30 s): node starting on a busy machine.
      for (let i = 0; i < 600 && !out.includes("up"); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain("up");
      nsExec(node, process.execPath, ...["-e", "require('net').connect(8080,'10.99.0.2').on('data',()=>{}).on('close',()=>process.exit(0))"]);
      for (let i = 0; i < 600 && !out.includes("169.254.7.127"); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain("169.254.7.127");
    } finally {
      app.kill();
    }
  });
});
