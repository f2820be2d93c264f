// The in-pod rule programming against real iptables (nf_tables backend) in real network namespaces:
// idempotence, drift detection and repair, removal that leaves foreign rules alone, DNS capture, IPv6, errors.
// Traffic behaviour is in redirect-traffic.test.ts.
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyRules, desiredRules, inspectRules, RedirectError, removeRules, type RedirectOptions } from "../src/redirect/index.js";
import { cleanup, createNetns, nsExec, sh } from "./netns-helper.js";

afterAll(() => cleanup());

/** iptables-save without its timestamp comments. */
const save = (ns: string, cmd = "iptables-save"): string =>
  nsExec(ns, cmd)
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join("\n");

const count = (haystack: string, line: string): number => haystack.split("\n").filter((l) => l === line).length;

/** One table's block of iptables-save output ("" when absent). */
const tableBlock = (s: string, table: string): string => s.match(new RegExp(`\\*${table}\\n[\\s\\S]*?COMMIT`))?.[0] ?? "";

/** The tables that hold rules, sorted (iptables-save orders tables by creation, and empty ones are noise). */
const nonEmptyTables = (s: string): string[] =>
  (s.match(/\*\S+\n[\s\S]*?COMMIT/g) ?? []).filter((b) => b.includes("\n-A ")).sort();

const ruleLines = (restore: string): string[] => restore.split("\n").filter((l) => l.startsWith("-A "));

const V4: RedirectOptions = { dnsCapture: false, ipv6: false };

describe("desiredRules", () => {
  it("follows the reference table (IPv4, DNS capture off)", () => {
    const d = desiredRules(V4);
    expect(d.ipv6).toBeUndefined();
    expect(d.ipv4.tables.map((t) => t.table)).toEqual(["mangle", "nat"]);
    expect(d.ipv4.restore).toBe(
      [
        "*mangle",
        ":ISTIO_PRERT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        "-A PREROUTING -j ISTIO_PRERT",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff",
        "-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        "COMMIT",
        "*nat",
        ":ISTIO_PRERT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        "-A PREROUTING -j ISTIO_PRERT",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT",
        "-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006",
        "-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT",
        "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001",
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("adds the 15053 redirects and the raw-table conntrack zones only with DNS capture", () => {
    const off = desiredRules({ dnsCapture: false, ipv6: true });
    const on = desiredRules({ dnsCapture: true, ipv6: true });
    for (const fr of [off.ipv4, off.ipv6]) {
      expect(fr?.restore).not.toContain("15053");
      expect(fr?.restore).not.toContain("*raw");
    }
    for (const fr of [on.ipv4, on.ipv6]) {
      expect(fr?.tables.map((t) => t.table)).toEqual(["mangle", "nat", "raw"]);
      expect(fr?.restore.match(/--to-ports 15053/g)).toHaveLength(2);
      expect(fr?.restore).toContain("-A ISTIO_OUTPUT ! -o lo -p udp -m udp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053");
      expect(fr?.restore).toContain("-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1");
      expect(fr?.restore).toContain("-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT --zone 1");
    }
    // DNS rules come before the outbound capture in nat ISTIO_OUTPUT, or they would never match.
    const nat = on.ipv4.tables.find((t) => t.table === "nat")?.chains.ISTIO_OUTPUT ?? [];
    expect(nat.findIndex((r) => r.includes("15053"))).toBeLessThan(nat.findIndex((r) => r.includes("15001")));
  });

  it("uses the IPv6 probe address and ::1 for ip6tables", () => {
    const v6 = desiredRules({ dnsCapture: false, ipv6: true }).ipv6?.restore ?? "";
    expect(v6).toContain("-A ISTIO_PRERT -s fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128 -p tcp -m tcp -j ACCEPT");
    expect(v6).toContain("-A ISTIO_OUTPUT ! -d ::1/128 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001");
    expect(v6).not.toContain("127.0.0.1");
  });
});

describe("applyRules / inspectRules", () => {
  it("is idempotent: applying twice leaves identical iptables-save output with each rule once", async () => {
    const ns = createNetns();
    const first = await applyRules(ns, V4);
    expect(first.changed).toBe(true);
    const s1 = save(ns);
    const second = await applyRules(ns, V4);
    expect(second).toEqual({ changed: false, repaired: [] });
    expect(save(ns)).toBe(s1);
    for (const line of ruleLines(desiredRules(V4).ipv4.restore)) expect(count(s1, line), line).toBe(line.includes(" -j ISTIO_") ? 2 : 1);
    // the jumps exist once per table (mangle and nat)
    expect(count(s1, "-A PREROUTING -j ISTIO_PRERT")).toBe(2);
    expect(count(s1, "-A OUTPUT -j ISTIO_OUTPUT")).toBe(2);
    expect(await inspectRules(ns, V4)).toMatchObject({ present: true, clean: true, drift: [] });
    // policy routing, once
    expect(nsExec(ns, "ip", "rule", "show", "pref", "32764").trim().split("\n")).toEqual(["32764:\tfrom all fwmark 0x111/0xfff lookup 100"]);
    expect(nsExec(ns, "ip", "route", "show", "table", "100").trim()).toBe("local default dev lo scope host");
  });

  it("applies exactly what desiredRules renders (the restore text is the real input)", async () => {
    const a = createNetns();
    const b = createNetns();
    sh("ip", ["netns", "exec", a, "iptables-restore", "--noflush"], desiredRules(V4).ipv4.restore);
    await applyRules(b, V4);
    expect(save(b)).toBe(save(a));
  });

  it("detects a deleted rule, repairs only that table, and ends clean", async () => {
    const ns = createNetns();
    await applyRules(ns, V4);
    const clean = save(ns);
    nsExec(ns, "iptables", "-t", "nat", "-D", "ISTIO_OUTPUT", "!", "-d", "127.0.0.1/32", "-p", "tcp", "-m", "mark", "!", "--mark", "0x539/0xfff", "-j", "REDIRECT", "--to-ports", "15001");
    const drifted = await inspectRules(ns, V4);
    expect(drifted.clean).toBe(false);
    expect(drifted.present).toBe(true);
    expect(drifted.drift).toEqual([
      "ipv4 nat: missing rule `-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001`",
    ]);
    expect(drifted.repair).toEqual({ tables: [{ family: "ipv4", table: "nat" }], routing: [] });
    const repaired = await applyRules(ns, V4);
    expect(repaired.changed).toBe(true);
    expect(save(ns)).toBe(clean);
    expect((await inspectRules(ns, V4)).clean).toBe(true);
  });

  it("repairs a missing jump, a duplicated jump, a foreign rule in our chain and a missing ip rule", async () => {
    const ns = createNetns();
    await applyRules(ns, V4);
    const clean = save(ns);
    nsExec(ns, "iptables", "-t", "mangle", "-D", "PREROUTING", "-j", "ISTIO_PRERT");
    nsExec(ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-j", "ISTIO_OUTPUT");
    nsExec(ns, "iptables", "-t", "nat", "-I", "ISTIO_PRERT", "1", "-p", "tcp", "-j", "RETURN");
    nsExec(ns, "ip", "rule", "del", "pref", "32764");
    const drifted = await inspectRules(ns, V4);
    expect(drifted.drift).toEqual(
      expect.arrayContaining([
        "ipv4 mangle: missing jump `-A PREROUTING -j ISTIO_PRERT`",
        "ipv4 nat: jump `-A OUTPUT -j ISTIO_OUTPUT` present 2 times",
        "ipv4 nat: unexpected rule `-A ISTIO_PRERT -p tcp -j RETURN`",
        'ipv4 routing: missing rule "fwmark 0x111/0xfff pref 32764 lookup 100"',
      ]),
    );
    expect(drifted.repair.routing).toEqual(["ipv4"]);
    await applyRules(ns, V4);
    expect(save(ns)).toBe(clean);
    expect((await inspectRules(ns, V4)).clean).toBe(true);
    expect(nsExec(ns, "ip", "rule", "show", "pref", "32764").trim().split("\n")).toHaveLength(1);
  });

  it("reports reordered rules as drift", async () => {
    const ns = createNetns();
    await applyRules(ns, V4);
    nsExec(ns, "iptables", "-t", "nat", "-D", "ISTIO_PRERT", "-s", "169.254.7.127/32", "-p", "tcp", "-m", "tcp", "-j", "ACCEPT");
    nsExec(ns, "iptables", "-t", "nat", "-A", "ISTIO_PRERT", "-s", "169.254.7.127/32", "-p", "tcp", "-m", "tcp", "-j", "ACCEPT");
    expect((await inspectRules(ns, V4)).drift).toEqual(["ipv4 nat: chain ISTIO_PRERT rules out of order or duplicated"]);
    await applyRules(ns, V4);
    expect((await inspectRules(ns, V4)).clean).toBe(true);
  });

  it("reports a never-enrolled netns as not present", async () => {
    const ns = createNetns();
    const r = await inspectRules(ns, V4);
    expect(r.present).toBe(false);
    expect(r.clean).toBe(false);
    expect(r.repair.tables).toEqual([
      { family: "ipv4", table: "mangle" },
      { family: "ipv4", table: "nat" },
    ]);
  });

  it("accepts a netns path as well as a name (nsenter)", async () => {
    const ns = createNetns();
    await applyRules(`/var/run/netns/${ns}`, V4);
    expect((await inspectRules(ns, V4)).clean).toBe(true);
    expect((await inspectRules(`/var/run/netns/${ns}`, V4)).clean).toBe(true);
  });

  it("serializes concurrent applies on one netns (no duplicated jumps)", async () => {
    const ns = createNetns();
    await Promise.all([applyRules(ns, V4), applyRules(ns, V4), applyRules(ns, V4)]);
    const s = save(ns);
    expect(count(s, "-A PREROUTING -j ISTIO_PRERT")).toBe(2);
    expect((await inspectRules(ns, V4)).clean).toBe(true);
  });
});

describe("DNS capture", () => {
  it("installs the 15053 and raw-table rules only when on, and removes them when turned off", async () => {
    const ns = createNetns();
    const on: RedirectOptions = { dnsCapture: true, ipv6: true };
    const off: RedirectOptions = { dnsCapture: false, ipv6: true };
    await applyRules(ns, off);
    expect(save(ns)).not.toContain("15053");
    expect(save(ns)).not.toMatch(/\*raw[\s\S]*ISTIO_/);

    await applyRules(ns, on);
    for (const cmd of ["iptables-save", "ip6tables-save"]) {
      const s = save(ns, cmd);
      expect(s.match(/--to-ports 15053/g)).toHaveLength(2);
      const raw = tableBlock(s, "raw");
      expect(raw).toContain(":ISTIO_PRERT - [0:0]");
      expect(raw).toContain("-A PREROUTING -j ISTIO_PRERT");
      expect(raw).toContain("-A OUTPUT -j ISTIO_OUTPUT");
      expect(raw).toContain("-j CT --zone 1");
    }
    expect((await inspectRules(ns, on)).clean).toBe(true);
    // with DNS capture wanted off, the raw chains are drift
    expect((await inspectRules(ns, off)).drift).toContain("ipv4 raw: chains present but not wanted (DNS capture off)");

    await applyRules(ns, off);
    for (const cmd of ["iptables-save", "ip6tables-save"]) {
      const s = save(ns, cmd);
      expect(s).not.toContain("15053");
      expect(s).not.toContain("CT --zone");
      expect(tableBlock(s, "raw")).not.toBe("");
      expect(tableBlock(s, "raw")).not.toContain("ISTIO");
    }
    expect((await inspectRules(ns, off)).clean).toBe(true);
  });
});

describe("IPv6", () => {
  it("programs ip6tables and the IPv6 policy routing idempotently", async () => {
    const ns = createNetns();
    const opts: RedirectOptions = { dnsCapture: false, ipv6: true };
    await applyRules(ns, opts);
    const s6 = save(ns, "ip6tables-save");
    await applyRules(ns, opts);
    expect(save(ns, "ip6tables-save")).toBe(s6);
    for (const line of ruleLines(desiredRules(opts).ipv6?.restore ?? "")) {
      expect(count(s6, line), line).toBe(line.includes(" -j ISTIO_") ? 2 : 1);
    }
    expect(nsExec(ns, "ip", "-6", "rule", "show", "pref", "32764").trim()).toBe("32764:\tfrom all fwmark 0x111/0xfff lookup 100");
    expect(nsExec(ns, "ip", "-6", "route", "show", "table", "100")).toContain("local default dev lo");
    expect((await inspectRules(ns, opts)).clean).toBe(true);
  });
});

describe("removeRules", () => {
  it("removes our chains, jumps and routing, keeps foreign rules, and is idempotent", async () => {
    const ns = createNetns();
    const opts: RedirectOptions = { dnsCapture: true, ipv6: true };
    const foreign = [
      ["iptables", "-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.1/32", "-p", "tcp", "-j", "RETURN"],
      ["iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "-m", "udp", "--dport", "9999", "-j", "MARK", "--set-xmark", "0x7/0xff"],
      ["iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "9", "-j", "DROP"],
      ["ip6tables", "-t", "nat", "-A", "OUTPUT", "-d", "2001:db8::1/128", "-p", "tcp", "-j", "RETURN"],
    ];
    for (const argv of foreign) nsExec(ns, argv[0] as string, ...argv.slice(1));
    const before4 = save(ns);
    const before6 = save(ns, "ip6tables-save");

    await applyRules(ns, opts);
    const applied = save(ns);
    expect(applied).toContain("-A OUTPUT -d 192.0.2.1/32 -p tcp -j RETURN");
    expect(applied).toContain("-A PREROUTING -p udp -m udp --dport 9999 -j MARK --set-xmark 0x7/0xff");
    expect(applied).toContain("-A INPUT -p tcp -m tcp --dport 9 -j DROP");
    expect((await inspectRules(ns, opts)).clean).toBe(true);

    expect(await removeRules(ns)).toEqual({ changed: true });
    const after4 = save(ns);
    const after6 = save(ns, "ip6tables-save");
    expect(after4).not.toContain("ISTIO");
    expect(after6).not.toContain("ISTIO");
    // the same foreign rules, nothing else (tables that applying created stay behind, empty)
    expect(nonEmptyTables(after4)).toEqual(nonEmptyTables(before4));
    expect(nonEmptyTables(after6)).toEqual(nonEmptyTables(before6));
    expect(nonEmptyTables(before4)).toHaveLength(3);
    expect(nsExec(ns, "ip", "rule", "show", "pref", "32764").trim()).toBe("");
    expect(nsExec(ns, "ip", "-6", "rule", "show", "pref", "32764").trim()).toBe("");
    expect(nsExec(ns, "ip", "route", "show", "table", "all")).not.toMatch(/table 100/);
    expect(nsExec(ns, "ip", "-6", "route", "show", "table", "all")).not.toMatch(/table 100/);
    expect((await inspectRules(ns, opts)).present).toBe(false);

    // twice
    expect(await removeRules(ns)).toEqual({ changed: false });
    expect(save(ns)).toBe(after4);
  });

  it("is a no-op on a never-enrolled netns", async () => {
    const ns = createNetns();
    const before = save(ns);
    expect(await removeRules(ns)).toEqual({ changed: false });
    expect(save(ns)).toBe(before);
  });

  it("also removes rules that jump into our chains from elsewhere", async () => {
    const ns = createNetns();
    await applyRules(ns, V4);
    nsExec(ns, "iptables", "-t", "nat", "-I", "OUTPUT", "1", "-p", "tcp", "-j", "ISTIO_OUTPUT");
    await removeRules(ns);
    expect(save(ns)).not.toContain("ISTIO");
  });
});

describe("errors", () => {
  it("applying to a missing netns names it", async () => {
    const name = "ambit-cni-test-doesnotexist";
    const err = await applyRules(name, V4).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedirectError);
    expect(err).toMatchObject({ code: "NETNS_NOT_FOUND", netns: name });
    expect((err as Error).message).toContain(`"${name}"`);
    await expect(removeRules(name)).rejects.toMatchObject({ code: "NETNS_NOT_FOUND", netns: name });
    await expect(inspectRules(name, V4)).rejects.toMatchObject({ code: "NETNS_NOT_FOUND" });
    await expect(applyRules("/proc/999999999/ns/net", V4)).rejects.toMatchObject({ code: "NETNS_NOT_FOUND" });
  });

  it("a failing command reports the command line, the netns and stderr", async () => {
    const notNetns = join(tmpdir(), `ambit-cni-test-file-${process.pid}`);
    writeFileSync(notNetns, "");
    const err = (await applyRules(notNetns, V4).catch((e: unknown) => e)) as RedirectError;
    rmSync(notNetns, { force: true });
    expect(err).toBeInstanceOf(RedirectError);
    expect(err.code).toBe("COMMAND_FAILED");
    expect(err.netns).toBe(notNetns);
    expect(err.command).toContain(`nsenter --net=${notNetns}`);
    expect(err.stderr).not.toBe("");
    expect(err.message).toContain(err.stderr);
  });

  it("rejects a netns name that is not a plain name", async () => {
    await expect(applyRules("bad name;", V4)).rejects.toBeInstanceOf(TypeError);
  });
});
