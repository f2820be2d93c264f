// The chained plugin's install and uninstall on a temporary CNI config/bin dir: our entry appended to the first
// conflist, and taken out again (atomically, other plugins and fields kept, idempotent, a missing dir fine), with
// the plugin's kubeconfig and executable removed; the plugin's kubeconfig carries the credentials the agent really
// has (in a pod: the projected token file) and follows the kubelet's rotation of that file.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { waitFor } from "@ambit/localcluster";
import { resolveKubeConfig } from "@ambit/kube";
import { afterAll, describe, expect, it } from "vitest";
import { PLUGIN_KUBECONFIG, PluginKubeconfigWriter, installPlugin, unchainFrom, uninstallPlugin } from "../src/cni-install.js";

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

/**
 * A projected service-account volume as the kubelet writes it (its AtomicWriter): the files live in a timestamped
 * directory, `..data` points at it, `token`/`ca.crt`/`namespace` point into `..data`; an update writes a new
 * directory and swaps `..data` with one rename.
 */
class ProjectedVolume {
  private seq = 0;
  constructor(readonly dir: string) {}

  write(files: Record<string, string>): void {
    const gen = `..2025_01_01_00_00_0${this.seq++}`;
    mkdirSync(join(this.dir, gen));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, gen, name), text);
    symlinkSync(gen, join(this.dir, "..data_tmp"));
    const old = existsSync(join(this.dir, "..data")) ? readdirSync(this.dir).filter((f) => f.startsWith("..2025") && f !== gen) : [];
    renameSync(join(this.dir, "..data_tmp"), join(this.dir, "..data"));
    for (const name of Object.keys(files)) if (!existsSync(join(this.dir, name))) symlinkSync(join("..data", name), join(this.dir, name));
    for (const o of old) rmSync(join(this.dir, o), { recursive: true });
  }
}

describe("the plugin's kubeconfig", () => {
  type Written = { clusters: { cluster: { server: string; "certificate-authority-data"?: string } }[]; users: { user: Record<string, string> }[] };
  const readConfig = (file: string) => JSON.parse(readFileSync(file, "utf8")) as Written;
  const inCluster = (saDir: string) => resolveKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: saDir });

  it("in a pod: the service-account token it has (not an empty one), the CA, https://KUBERNETES_SERVICE_HOST:PORT, mode 0600; rewritten atomically when the kubelet rotates the token", async () => {
    const { root, confDir } = tempDirs();
    const sa = new ProjectedVolume(join(root, "serviceaccount"));
    mkdirSync(sa.dir);
    sa.write({ token: "token-1", "ca.crt": "-----BEGIN CERTIFICATE-----\nca-1\n", namespace: "istio-system" });
    const loaded = inCluster(sa.dir);
    expect(loaded.source).toBe("in-cluster");
    const logs: string[] = [];
    const w = new PluginKubeconfigWriter(loaded.kc, join(confDir, PLUGIN_KUBECONFIG), (msg) => logs.push(msg));
    w.start();
    try {
      const first = readConfig(w.file);
      expect(first.users[0]!.user).toEqual({ token: "token-1" });
      expect(first.clusters[0]!.cluster).toEqual({ server: "https://10.96.0.1:443", "certificate-authority-data": Buffer.from("-----BEGIN CERTIFICATE-----\nca-1\n").toString("base64") });
      expect(statSync(w.file).mode & 0o777).toBe(0o600);
      const inode = statSync(w.file).ino;

      sa.write({ token: "token-2", "ca.crt": "-----BEGIN CERTIFICATE-----\nca-1\n", namespace: "istio-system" });
      await waitFor("the rotated token in the plugin's kubeconfig", async () => readConfig(w.file).users[0]!.user["token"] === "token-2", 30_000, 20);
      expect(statSync(w.file).ino).not.toBe(inode); // replaced by a rename, never rewritten in place
      expect(statSync(w.file).mode & 0o777).toBe(0o600);
      expect(readdirSync(confDir)).toEqual([PLUGIN_KUBECONFIG]); // no temp file left
      expect(logs).toContain("the CNI plugin's kubeconfig was rewritten with the agent's current credentials");

      // A token file that cannot be read (mid-swap, gone) leaves the last good kubeconfig.
      rmSync(join(sa.dir, "token"));
      w.refresh();
      expect(readConfig(w.file).users[0]!.user["token"]).toBe("token-2");
      expect(logs).toContain("the CNI plugin's credentials cannot be read; keeping the last ones");
    } finally {
      w.close();
    }
    // Closed: nothing follows the files any more.
    symlinkSync(join("..data", "token"), join(sa.dir, "token"));
    sa.write({ token: "token-3", "ca.crt": "ca", namespace: "istio-system" });
    w.refresh();
    expect(readConfig(w.file).users[0]!.user["token"]).toBe("token-2");
  });

  it("follows a token file by re-reading it too, when no file event comes", async () => {
    const { root, confDir } = tempDirs();
    const saDir = join(root, "sa");
    mkdirSync(saDir);
    writeFileSync(join(saDir, "token"), "token-1");
    writeFileSync(join(saDir, "ca.crt"), "ca");
    const w = new PluginKubeconfigWriter(inCluster(saDir).kc, join(confDir, PLUGIN_KUBECONFIG), undefined, 50);
    w.start();
    try {
      writeFileSync(join(saDir, "token"), "token-2"); // in place (no rename): whichever of the watch and the re-read sees it first
      await waitFor("the new token", async () => readConfig(w.file).users[0]!.user["token"] === "token-2", 30_000, 20);
    } finally {
      w.close();
    }
  });

  it("a kubeconfig with a static token or a client certificate gives the plugin the same", () => {
    const { confDir } = tempDirs();
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: "https://api.example:6443", caData: "Y2E=" }],
      users: [{ name: "t", token: "static" }, { name: "c", certData: "Y2VydA==", keyData: "a2V5" }, { name: "none", username: "u", password: "p" }],
      contexts: [{ name: "t", cluster: "c", user: "t" }, { name: "c", cluster: "c", user: "c" }, { name: "none", cluster: "c", user: "none" }],
      currentContext: "t",
    });
    const file = join(confDir, PLUGIN_KUBECONFIG);
    const write = (context: string, log?: (msg: string) => void) => { kc.setCurrentContext(context); const w = new PluginKubeconfigWriter(kc, file, log); w.start(); w.close(); return readConfig(file); };
    expect(write("t").users[0]!.user).toEqual({ token: "static" });
    expect(write("c").users[0]!.user).toEqual({ "client-certificate-data": "Y2VydA==", "client-key-data": "a2V5" });
    const logs: string[] = [];
    expect(write("none", (m) => logs.push(m)).users[0]!.user).toEqual({});
    expect(logs[0]).toMatch(/the CNI plugin gets no credentials .*it will refuse every pod it cannot check/);
  });
});
