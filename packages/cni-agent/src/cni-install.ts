// Installing the chained CNI plugin on the node and serving its requests: the plugin executable in the CNI bin
// dir, its entry appended to the node's conflist (after the network plugin, as a chained plugin), a kubeconfig
// for its fallback check, and the agent's unix socket the plugin calls on ADD/DEL. `uninstallPlugin` undoes the
// files (on an uninstall of the mesh; a restart leaves them in place).
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KubeConfig } from "@kubernetes/client-node";
import { PLUGIN_TYPE } from "./cni-plugin-type.js";

export interface CniPaths {
  confDir: string;
  binDir: string;
  socket: string;
}

type AddHandler = (req: { namespace: string; name: string; netns: string }) => Promise<{ enrolled: boolean; reason: string }>;

/** The plugin's kubeconfig file, beside the conflist (sorted last, and not a CNI config: no .conf/.conflist suffix). */
export const PLUGIN_KUBECONFIG = "ZZZ-ambit-cni-kubeconfig";

/** Writes a kubeconfig (JSON) with the agent's own server, CA and token, for the plugin's fallback check. */
function pluginKubeconfig(kc: KubeConfig, file: string): void {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  const ca = cluster?.caData ?? (cluster?.caFile ? readFileSync(cluster.caFile).toString("base64") : "");
  const token = user?.token ?? "";
  writeFileSync(file, JSON.stringify({
    apiVersion: "v1", kind: "Config", "current-context": "ambit-cni",
    clusters: [{ name: "cluster", cluster: { server: cluster?.server, "certificate-authority-data": ca } }],
    users: [{ name: "ambit-cni", user: { token } }],
    contexts: [{ name: "ambit-cni", context: { cluster: "cluster", user: "ambit-cni" } }],
  }), { mode: 0o600 });
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

export async function installPlugin(kc: KubeConfig, paths: CniPaths, onAdd: AddHandler): Promise<{ close(): Promise<void> }> {
  mkdirSync(paths.binDir, { recursive: true });
  mkdirSync(dirname(paths.socket), { recursive: true });
  // The built plugin (this module may run from src/ under a test runner, or from dist/).
  const script = fileURLToPath(new URL("../dist/cni-plugin.js", import.meta.url));
  writeFileSync(join(paths.binDir, PLUGIN_TYPE), `#!/bin/sh\nexec "${process.execPath}" "${script}" "$@"\n`);
  chmodSync(join(paths.binDir, PLUGIN_TYPE), 0o755);
  const kubeconfig = join(paths.confDir, PLUGIN_KUBECONFIG);
  pluginKubeconfig(kc, kubeconfig);
  chainInto(paths.confDir, { type: PLUGIN_TYPE, agent_socket: paths.socket, kubeconfig });

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
  await new Promise<void>((resolve, reject) => { server.once("error", reject); server.listen(paths.socket, () => resolve()); });
  return { close: () => new Promise<void>((r) => server.close(() => { rmSync(paths.socket, { force: true }); r(); })) };
}
