// The chained plugin's install and uninstall on a temporary CNI config/bin dir: our entry appended to the first
// conflist, and taken out again (atomically, other plugins and fields kept, idempotent, a missing dir fine), with
// the plugin's kubeconfig and executable removed.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, describe, expect, it } from "vitest";
import { PLUGIN_KUBECONFIG, installPlugin, unchainFrom, uninstallPlugin } from "../src/cni-install.js";

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function tempDirs() {
  const root = mkdtempSync(join(tmpdir(), "ambit-cni-install-"));
  dirs.push(root);
  const confDir = join(root, "etc/cni/net.d");
  const binDir = join(root, "opt/cni/bin");
  mkdirSync(confDir, { recursive: true });
  mkdirSync(binDir, { recursive: true });
  return { root, confDir, binDir, socket: join(root, "run/ambit/cni.sock") };
}

const BRIDGE = { type: "bridge", bridge: "cni0", ipam: { type: "host-local", ranges: [[{ subnet: "10.244.0.0/24" }]] } };
const PORTMAP = { type: "portmap", capabilities: { portMappings: true } };
const OURS = { type: "ambit-cni", agent_socket: "/var/run/ambit/cni.sock", kubeconfig: "/etc/cni/net.d/ZZZ-ambit-cni-kubeconfig" };
const conflist = (plugins: object[]) => ({ cniVersion: "1.0.0", name: "k8s-pod-network", plugins });
const read = (file: string) => JSON.parse(readFileSync(file, "utf8")) as { plugins: { type: string }[] };

describe("unchainFrom", () => {
  it("removes only our entry, keeps the other plugins and fields, and the file's mode", () => {
    const { confDir } = tempDirs();
    const file = join(confDir, "10-bridge.conflist");
    writeFileSync(file, JSON.stringify({ ...conflist([BRIDGE, OURS, PORTMAP]), disableCheck: true }));
    chmodSync(file, 0o640);
    expect(unchainFrom(confDir)).toEqual([file]);
    expect(read(file)).toEqual({ ...conflist([BRIDGE, PORTMAP]), disableCheck: true });
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(confDir)).toEqual(["10-bridge.conflist"]); // no temp file left
  });

  it("is idempotent: a second run changes nothing and leaves the file untouched", () => {
    const { confDir } = tempDirs();
    const file = join(confDir, "10-bridge.conflist");
    writeFileSync(file, JSON.stringify(conflist([BRIDGE, OURS])));
    unchainFrom(confDir);
    const after = readFileSync(file, "utf8");
    const mtime = statSync(file).mtimeMs;
    expect(unchainFrom(confDir)).toEqual([]);
    expect(readFileSync(file, "utf8")).toBe(after);
    expect(statSync(file).mtimeMs).toBe(mtime);
  });

  it("takes our entry out of every conflist that has it (one sorted before ours may have appeared since)", () => {
    const { confDir } = tempDirs();
    writeFileSync(join(confDir, "05-new.conflist"), JSON.stringify(conflist([BRIDGE, OURS])));
    writeFileSync(join(confDir, "10-bridge.conflist"), JSON.stringify(conflist([BRIDGE, OURS])));
    writeFileSync(join(confDir, "20-other.conflist"), JSON.stringify(conflist([PORTMAP])));
    writeFileSync(join(confDir, "99-loopback.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "lo", type: "loopback" }));
    expect(unchainFrom(confDir).map((f) => f.slice(confDir.length + 1))).toEqual(["05-new.conflist", "10-bridge.conflist"]);
    for (const f of ["05-new.conflist", "10-bridge.conflist"]) expect(read(join(confDir, f)).plugins.map((p) => p.type)).toEqual(["bridge"]);
    expect(read(join(confDir, "20-other.conflist")).plugins.map((p) => p.type)).toEqual(["portmap"]);
  });

  it("is fine with a missing directory or no conflist", () => {
    const { root, confDir } = tempDirs();
    expect(unchainFrom(join(root, "nowhere"))).toEqual([]);
    expect(unchainFrom(confDir)).toEqual([]);
  });

  it("names a file it cannot parse, after cleaning the others", () => {
    const { confDir } = tempDirs();
    writeFileSync(join(confDir, "05-broken.conflist"), "{ not json");
    writeFileSync(join(confDir, "10-bridge.conflist"), JSON.stringify(conflist([BRIDGE, OURS])));
    expect(() => unchainFrom(confDir)).toThrow(/05-broken\.conflist/);
    expect(read(join(confDir, "10-bridge.conflist")).plugins.map((p) => p.type)).toEqual(["bridge"]);
    expect(readFileSync(join(confDir, "05-broken.conflist"), "utf8")).toBe("{ not json");
  });
});

describe("installPlugin, then uninstallPlugin", () => {
  it("leaves the CNI dirs as they were before the install (other files untouched); a second uninstall is a no-op", async () => {
    const paths = tempDirs();
    const file = join(paths.confDir, "10-bridge.conflist");
    writeFileSync(file, JSON.stringify(conflist([BRIDGE, PORTMAP]), null, 2));
    writeFileSync(join(paths.binDir, "bridge"), "#!/bin/sh\n");
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: "https://127.0.0.1:6443", caData: Buffer.from("ca").toString("base64") }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const plugin = await installPlugin(kc, paths, async () => ({ enrolled: false, reason: "test" }));
    expect(read(file).plugins.map((p) => p.type)).toEqual(["bridge", "portmap", "ambit-cni"]);
    expect(existsSync(join(paths.confDir, PLUGIN_KUBECONFIG))).toBe(true);
    expect(existsSync(join(paths.binDir, "ambit-cni"))).toBe(true);

    const logs: string[] = [];
    expect(uninstallPlugin(paths, (msg) => logs.push(msg))).toEqual({ ok: true });
    await plugin.close();
    expect(read(file)).toEqual(conflist([BRIDGE, PORTMAP]));
    expect(readdirSync(paths.confDir)).toEqual(["10-bridge.conflist"]);
    expect(readdirSync(paths.binDir)).toEqual(["bridge"]);
    expect(existsSync(paths.socket)).toBe(false);
    expect(logs).toEqual(["uninstall: the chained plugin is out of the CNI configuration"]);

    expect(uninstallPlugin(paths, () => undefined)).toEqual({ ok: true });
    expect(uninstallPlugin({ confDir: join(paths.root, "gone"), binDir: join(paths.root, "gone2") }, () => undefined)).toEqual({ ok: true });
  });

  it("logs a failing step and still runs the others", () => {
    const paths = tempDirs();
    writeFileSync(join(paths.confDir, "05-broken.conflist"), "{");
    writeFileSync(join(paths.confDir, PLUGIN_KUBECONFIG), "{}");
    writeFileSync(join(paths.binDir, "ambit-cni"), "#!/bin/sh\n");
    const logs: { msg: string; fields?: object }[] = [];
    expect(uninstallPlugin(paths, (msg, fields) => logs.push({ msg, ...(fields ? { fields } : {}) }))).toEqual({ ok: false });
    expect(logs[0]).toMatchObject({ msg: "uninstall: a cleanup step failed", fields: { step: "conflist" } });
    expect(existsSync(join(paths.confDir, PLUGIN_KUBECONFIG))).toBe(false);
    expect(existsSync(join(paths.binDir, "ambit-cni"))).toBe(false);
  });
});
