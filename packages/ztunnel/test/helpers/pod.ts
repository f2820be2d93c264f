// Test helper: one enrolled pod on a real network namespace — a PodProxy with its 15001/15006/15008 listeners inside
// it, the xDS workload it serves, certificates from a real CA — an app server inside the same netns that counts
// the connections ztunnel opens to it, and HBONE clients (mTLS over a socket made in the netns).
import net from "node:net";
import tls from "node:tls";
import { Writable } from "node:stream";
import pino from "pino";
import type { CertificateAuthority } from "@ambit/pki";
import { ipToBytes, packAddress } from "@ambit/protocol";
import { connectTcp, listenInNetns, openNetns } from "@ambit/sys";
import { loadConfig } from "../../src/config.js";
import { CertificateManager, type WorkloadCertificate } from "../../src/identity/index.js";
import type { ProxyContext } from "../../src/proxy/context.js";
import { PodProxy } from "../../src/proxy/pod-proxy.js";
import { ProxyState } from "../../src/state.js";
import { Telemetry } from "../../src/telemetry/index.js";
import { issue } from "./certs.js";
import { createNetns, removeNetns, type Netns } from "./netns.js";
import { waitFor } from "./wait.js";

export const POD_IP = "127.0.0.1";
export const APP_PORT = 8080;
export const APP_AUTHORITY = `${POD_IP}:${APP_PORT}`;
export const POD_IDENTITY = "spiffe://cluster.local/ns/shop/sa/sa-app";

/** The app inside the pod: accepts, holds every connection open (never answers a FIN) unless told to echo. */
export class App {
  readonly open = new Set<net.Socket>();
  accepted = 0;
  echo = false;
  server?: net.Server;

  async listen(ns: Netns): Promise<this> {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.accepted++;
      this.open.add(s);
      s.on("error", () => undefined);
      s.once("close", () => this.open.delete(s));
      if (this.echo) s.pipe(s);
    });
    this.server = await listenInNetns({ netns: ns.path, host: POD_IP, port: APP_PORT, server });
    return this;
  }

  close(): Promise<void> {
    for (const s of this.open) s.destroy();
    return new Promise((r) => this.server ? this.server.close(() => r()) : r());
  }
}

export interface Pod {
  ns: Netns;
  ctx: ProxyContext;
  proxy: PodProxy;
  app: App;
  /** ztunnel's log lines at warn and above (parsed). */
  logs: Record<string, unknown>[];
  /** Lines of `ss -Htan <filter…>` inside the pod's netns. */
  ss(...filter: string[]): string[];
  /** TCP sockets this process (ztunnel) still holds in the pod's netns, TIME-WAIT and listeners left out (`ss -p`). */
  held(filter: string): string[];
  /** ztunnel's sockets to the app (the app's own ends are left out). */
  heldToApp(): string[];
  /** mTLS to the pod's 15008 (from inside its netns) with a certificate of `identity`; resolves once TLS is up. */
  hbone(identity?: string): Promise<tls.TLSSocket>;
  /** The value of a metric series, or 0. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

const lines = (out: string) => out.split("\n").filter((l) => l.trim());

export const CLIENT_IDENTITY = "spiffe://cluster.local/ns/shop/sa/client";

export async function startPod(ca: CertificateAuthority, env: Record<string, string> = {}): Promise<Pod> {
  const ns = createNetns();
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: "warn" }, new Writable({ write: (c: Buffer, _e, cb) => { logs.push(JSON.parse(c.toString()) as Record<string, unknown>); cb(); } }));
  const state = new ProxyState();
  state.applyAddresses([{
    name: "c//Pod/shop/app",
    resource: packAddress({ workload: { uid: "c//Pod/shop/app", name: "app", namespace: "shop", node: "node-1", service_account: "sa-app", addresses: [ipToBytes(POD_IP)] } }),
  }], []);
  const ctx: ProxyContext = {
    config: loadConfig({ NODE_NAME: "node-1", CONNECTION_TERMINATION_DEADLINE: "200ms", IPV6_ENABLED: "false", ...env }),
    state,
    certs: new CertificateManager({ source: { createCertificate: (id) => Promise.resolve(issue(ca, id)) } }),
    telemetry: new Telemetry({ logger: log, processMetrics: false }),
    log,
  };
  const app = await new App().listen(ns);
  const proxy = new PodProxy(ctx, "uid-app", { name: "app", namespace: "shop", serviceAccount: "sa-app" }, openNetns(ns.path));
  await proxy.start();
  const certs = new Map<string, WorkloadCertificate>();
  const pod: Pod = {
    ns, ctx, proxy, app, logs,
    ss: (...filter) => lines(ns.exec("ss", "-Htan", ...filter)),
    held: (filter) => lines(ns.exec("ss", "-Htanp", "exclude", "time-wait", "exclude", "listening", filter)).filter((l) => l.includes(`pid=${process.pid},`)),
    heldToApp: () => pod.held(`dport = :${APP_PORT}`),
    async hbone(identity = CLIENT_IDENTITY) {
      let cert = certs.get(identity);
      if (!cert) certs.set(identity, (cert = issue(ca, identity)));
      const tcp = await connectTcp({ netns: ns.path, host: POD_IP, port: 15008, timeout: 10_000 });
      const s = tls.connect({
        socket: tcp, key: cert.keyPem, cert: [cert.certPem, ...cert.chainPem].join("\n"), ca: cert.rootsPem,
        ALPNProtocols: ["h2"], servername: "", minVersion: "TLSv1.3", checkServerIdentity: () => undefined,
      });
      s.on("error", () => undefined);
      await new Promise<void>((resolve, reject) => { s.once("secureConnect", () => resolve()); s.once("close", () => reject(new Error("TLS to 15008 closed before the handshake"))); });
      return s;
    },
    async metric(name, labels = {}) {
      const m = (await ctx.telemetry.registry.getMetricsAsJSON()).find((x) => x.name === name);
      const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => (x.labels as Record<string, unknown>)[k] === val));
      return v?.value ?? 0;
    },
    async close() {
      await proxy.drain(200);
      ctx.certs.stop();
      await app.close();
      removeNetns(ns);
    },
  };
  return pod;
}

/**
 * Waits until ztunnel holds no socket to the app. (The app of these tests never answers a FIN, as the worst app
 * would not: its own ends stay open, which is the app's business; ztunnel's must not.)
 */
export async function appReleased(pod: Pod, what: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(() => pod.heldToApp().length === 0, what, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message} (ztunnel still holds ${pod.heldToApp().length} sockets to the app)`);
  });
}
