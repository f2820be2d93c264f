// Installing the chained CNI plugin on the node and serving its requests: the plugin executable in the CNI bin
// dir, its entry appended to the node's conflist (after the network plugin, as a chained plugin), a kubeconfig
// for its fallback check, and the agent's unix socket the plugin calls on ADD/DEL. `uninstallPlugin` undoes the
// files (on an uninstall of the mesh; a restart leaves them in place).
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, watch, writeFileSync, type FSWatcher } from "node:fs";
import { createServer, type Server } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KubeConfig, User } from "@kubernetes/client-node";
import { PLUGIN_TYPE } from "./cni-plugin-type.js";

export interface CniPaths {
  confDir: string;
  binDir: string;
  socket: string;
}

type AddHandler = (req: { namespace: string; name: string; netns: string }) => Promise<{ enrolled: boolean; reason: string }>;

/** The plugin's kubeconfig file, beside the conflist (sorted last, and not a CNI config: no .conf/.conflist suffix). */
export const PLUGIN_KUBECONFIG = "ZZZ-ambit-cni-kubeconfig";

/** The token file of an in-cluster user (@kubernetes/client-node's loadFromCluster, @ambit/kube's loadKubeConfig). */
function tokenFileOf(user: User | null | undefined): string | undefined {
  return user?.authProvider?.name === "tokenFile" ? (user.authProvider.config as { tokenFile?: string } | undefined)?.tokenFile : undefined;
}

/** How often the plugin's kubeconfig is re-rendered even when no file event came (a safety net for fs.watch). */
export const DEFAULT_KUBECONFIG_RECHECK_MS = 60_000;

/**
 * The plugin's kubeconfig (JSON): the agent's API server (in a pod, https://KUBERNETES_SERVICE_HOST:PORT: the agent
 * is a hostNetwork pod, so the address it reaches is reachable from the node, where the runtime runs the plugin),
 * its CA, and the credentials it really has: a static token or client certificate, or the current contents of its
 * token file (in a pod, the projected service-account token, which the kubelet rotates). It is rewritten whenever a
 * file it came from changes (watched, and re-read every `recheckMs`), atomically (a temp file renamed over it) and
 * with mode 0600.
 */
export class PluginKubeconfigWriter {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private written = "";
  private closed = false;

  constructor(
    private readonly kc: KubeConfig,
    readonly file: string,
    private readonly log: (msg: string, fields?: object) => void = () => undefined,
    private readonly recheckMs = DEFAULT_KUBECONFIG_RECHECK_MS,
  ) {}

  /** The files the credentials are read from (each one's directory is watched). */
  private sources(): string[] {
    const user = this.kc.getCurrentUser();
    return [this.kc.getCurrentCluster()?.caFile, tokenFileOf(user), user?.certFile, user?.keyFile].filter((f): f is string => !!f);
  }

  /** Renders the kubeconfig from the agent's configuration and the files as they are now (throws when one is unreadable). */
  render(): string {
    const cluster = this.kc.getCurrentCluster();
    const user = this.kc.getCurrentUser();
    if (!cluster) throw new Error("the agent's kubeconfig has no current cluster");
    const b64 = (data: string | undefined, file: string | undefined) => data ?? (file ? readFileSync(file).toString("base64") : undefined);
    const tokenFile = tokenFileOf(user);
    const token = user?.token ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined);
    const cert = b64(user?.certData, user?.certFile);
    const key = b64(user?.keyData, user?.keyFile);
    const ca = b64(cluster.caData, cluster.caFile);
    return JSON.stringify({
      apiVersion: "v1", kind: "Config", "current-context": "ambit-cni",
      clusters: [{ name: "cluster", cluster: { server: cluster.server, ...(ca ? { "certificate-authority-data": ca } : {}) } }],
      users: [{ name: "ambit-cni", user: { ...(token ? { token } : {}), ...(cert && key ? { "client-certificate-data": cert, "client-key-data": key } : {}) } }],
      contexts: [{ name: "ambit-cni", context: { cluster: "cluster", user: "ambit-cni" } }],
    });
  }

  /** Writes the kubeconfig (throws when it cannot), then keeps it current until close(). */
  start(): void {
    const text = this.render();
    const user = this.kc.getCurrentUser();
    if (!user?.token && !tokenFileOf(user) && !((user?.certData || user?.certFile) && (user.keyData || user.keyFile))) {
      this.log("the CNI plugin gets no credentials from the agent's kubeconfig (neither a token, a token file nor a client certificate): with the agent down it will refuse every pod it cannot check", { file: this.file });
    }
    this.write(text);
    for (const dir of new Set(this.sources().map((f) => dirname(f)))) {
      try {
        this.watchers.push(watch(dir, () => this.refresh()).on("error", () => undefined));
      } catch (err) {
        this.log("cannot watch for credential changes; re-reading periodically", { dir, err: (err as Error).message });
      }
    }
    this.timer = setInterval(() => this.refresh(), this.recheckMs).unref();
  }

  /** Re-renders; rewrites the file when something changed. A file that cannot be read leaves the last good one. */
  refresh(): void {
    if (this.closed) return;
    let text: string;
    try {
      text = this.render();
    } catch (err) {
      this.log("the CNI plugin's credentials cannot be read; keeping the last ones", { err: (err as Error).message });
      return;
    }
    if (text === this.written) return;
    try {
      this.write(text);
      this.log("the CNI plugin's kubeconfig was rewritten with the agent's current credentials", { file: this.file });
    } catch (err) {
      this.log("the CNI plugin's kubeconfig cannot be written", { file: this.file, err: (err as Error).message });
    }
  }

  private write(text: string): void {
    const tmp = `${this.file}.tmp`;
    rmSync(tmp, { force: true });
    writeFileSync(tmp, text, { mode: 0o600, flag: "wx" });
    renameSync(tmp, this.file); // atomic: the plugin never reads half a file
    this.written = text;
  }

  /** Stops following the credentials (the file stays). Idempotent. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const w of this.watchers.splice(0)) w.close();
  }
}

/** Appends our entry to the first conflist (the one the runtime uses), unless it is there already. */
function chainInto(confDir: string, entry: object): void {
  const files = existsSync(confDir) ? readdirSync(confDir).filter((f) => f.endsWith(".conflist")).sort() : [];
  if (!files.length) throw new Error(`no .conflist in ${confDir}: the node's network plugin is not installed yet`);
  const file = join(confDir, files[0]!);
  const list = JSON.parse(readFileSync(file, "utf8")) as { plugins: { type: string }[] };
  const others = list.plugins.filter((p) => p.type !== PLUGIN_TYPE);
  const next = { ...list, plugins: [...others, entry] };
  if (JSON.stringify(next) === JSON.stringify(list)) return;
  writeFileSync(`${file}.tmp`, JSON.stringify(next, null, 2));
  renameSync(`${file}.tmp`, file); // atomic: the runtime never reads half a file
}

/**
 * Removes our entry from every .conflist of `confDir` that has one (a file sorted before ours may have appeared
 * since the install), leaving the other plugins and fields as they are. Each file is replaced atomically and keeps
 * its mode. Idempotent; a missing directory or no conflist is fine. Returns the files changed; a file that cannot
 * be read or parsed does not stop the others, but an error naming it is thrown at the end.
 */
export function unchainFrom(confDir: string): string[] {
  const files = existsSync(confDir) ? readdirSync(confDir).filter((f) => f.endsWith(".conflist")).sort() : [];
  const changed: string[] = [];
  const errors: string[] = [];
  for (const f of files) {
    const file = join(confDir, f);
    try {
      const list = JSON.parse(readFileSync(file, "utf8")) as { plugins?: unknown };
      if (!Array.isArray(list.plugins)) continue;
      const plugins = (list.plugins as unknown[]).filter((p) => (p as { type?: unknown } | null)?.type !== PLUGIN_TYPE);
      if (plugins.length === list.plugins.length) continue;
      writeFileSync(`${file}.tmp`, JSON.stringify({ ...list, plugins }, null, 2), { mode: statSync(file).mode & 0o7777 });
      renameSync(`${file}.tmp`, file); // atomic: the runtime never reads half a file
      changed.push(file);
    } catch (err) {
      rmSync(`${file}.tmp`, { force: true });
      errors.push(`${file}: ${(err as Error).message}`);
    }
  }
  if (errors.length) throw new Error(`could not remove the ${PLUGIN_TYPE} entry from ${errors.join("; ")}`);
  return changed;
}

/**
 * Undoes the install's files, each step on its own (a failure is logged and the next step still runs; never
 * throws): our entry out of the conflist first, so no new pod calls the plugin (which fails closed without the
 * agent), then the plugin's kubeconfig and executable. The socket is removed when the server closes.
 */
export function uninstallPlugin(paths: Pick<CniPaths, "confDir" | "binDir">, log: (msg: string, fields?: object) => void): { ok: boolean } {
  let ok = true;
  const step = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      ok = false;
      log("uninstall: a cleanup step failed", { step: what, err: (err as Error).message });
    }
  };
  step("conflist", () => {
    const changed = unchainFrom(paths.confDir);
    log("uninstall: the chained plugin is out of the CNI configuration", { files: changed });
  });
  step("kubeconfig", () => rmSync(join(paths.confDir, PLUGIN_KUBECONFIG), { force: true }));
  step("binary", () => rmSync(join(paths.binDir, PLUGIN_TYPE), { force: true }));
  return { ok };
}

export interface InstallOptions {
  /** Namespaces the agent never enrolls: the plugin passes their pods without asking anyone. */
  excludedNamespaces?: string[];
  log?: (msg: string, fields?: object) => void;
  /** See PluginKubeconfigWriter. */
  kubeconfigRecheckMs?: number;
}

export interface InstalledPlugin {
  /** Keeps the plugin's kubeconfig in step with the agent's credentials. */
  readonly kubeconfig: PluginKubeconfigWriter;
  /** Stops following the credentials and closes the agent's socket (the files stay; see uninstallPlugin). */
  close(): Promise<void>;
}

export async function installPlugin(kc: KubeConfig, paths: CniPaths, onAdd: AddHandler, opts: InstallOptions = {}): Promise<InstalledPlugin> {
  mkdirSync(paths.binDir, { recursive: true });
  mkdirSync(dirname(paths.socket), { recursive: true });
  // The built plugin (this module may run from src/ under a test runner, or from dist/).
  const script = fileURLToPath(new URL("../dist/cni-plugin.js", import.meta.url));
  writeFileSync(join(paths.binDir, PLUGIN_TYPE), `#!/bin/sh\nexec "${process.execPath}" "${script}" "$@"\n`);
  chmodSync(join(paths.binDir, PLUGIN_TYPE), 0o755);
  const kubeconfig = new PluginKubeconfigWriter(kc, join(paths.confDir, PLUGIN_KUBECONFIG), opts.log, opts.kubeconfigRecheckMs);
  kubeconfig.start();
  chainInto(paths.confDir, { type: PLUGIN_TYPE, agent_socket: paths.socket, kubeconfig: kubeconfig.file, exclude_namespaces: opts.excludedNamespaces ?? [] });

  rmSync(paths.socket, { force: true });
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c));
    req.on("end", () => {
      const reply = (status: number, obj: object) => { res.writeHead(status, { "content-type": "application/json" }); res.end(JSON.stringify(obj)); };
      let parsed: { namespace?: string; name?: string; netns?: string };
      try {
        parsed = JSON.parse(body);
      } catch {
        return reply(400, { error: "the body is not JSON" });
      }
      if (req.url === "/cmd-del") return reply(200, {});
      if (req.url !== "/cmd-add" || !parsed.namespace || !parsed.name || !parsed.netns) return reply(400, { error: "POST /cmd-add needs namespace, name and netns" });
      onAdd({ namespace: parsed.namespace, name: parsed.name, netns: parsed.netns }).then((r) => reply(200, r), (err: Error) => reply(500, { error: err.message }));
    });
  });
  await new Promise<void>((resolve, reject) => { server.once("error", reject); server.listen(paths.socket, () => resolve()); }).catch((err: unknown) => {
    kubeconfig.close();
    throw err;
  });
  return {
    kubeconfig,
    close: () => {
      kubeconfig.close();
      return new Promise<void>((r) => server.close(() => { rmSync(paths.socket, { force: true }); r(); }));
    },
  };
}
