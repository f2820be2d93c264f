// A minimal list+watch HTTP endpoint for informer tests: it produces the faults a real API server cannot easily be
// made to produce on demand (expired resourceVersions, dropped watches, failing lists). Plain HTTP on 127.0.0.1.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";

type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };

export class FakeApiServer {
  readonly requests: URL[] = [];
  failLists = 0;
  failWatches = 0;
  private readonly objects = new Map<string, Obj>();
  private readonly watchers = new Set<http.ServerResponse>();
  private rv = 100;
  private server!: http.Server;
  port = 0;

  constructor(readonly path: string) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "fake", server: `http://127.0.0.1:${this.port}`, skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "c", cluster: "fake", user: "u" }],
      currentContext: "c",
    });
    return kc;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /** Creates or replaces an object (new resourceVersion) and tells the watchers. */
  upsert(obj: Obj, opts: { silent?: boolean } = {}): Obj {
    const key = keyOf(obj);
    const type = this.objects.has(key) ? "MODIFIED" : "ADDED";
    const stored = structuredClone(obj);
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, stored);
    if (!opts.silent) this.broadcast({ type, object: stored });
    return stored;
  }

  remove(key: string, opts: { silent?: boolean } = {}): void {
    const obj = this.objects.get(key);
    if (!obj) return;
    this.objects.delete(key);
    ++this.rv;
    if (!opts.silent) this.broadcast({ type: "DELETED", object: obj });
  }

  /** Sends several events in one write (one network chunk). */
  burst(objs: Obj[]): void {
    const lines: string[] = [];
    for (const obj of objs) {
      const key = keyOf(obj);
      const type = this.objects.has(key) ? "MODIFIED" : "ADDED";
      const stored = structuredClone(obj);
      stored.metadata.resourceVersion = String(++this.rv);
      this.objects.set(key, stored);
      lines.push(JSON.stringify({ type, object: stored }));
    }
    for (const w of this.watchers) w.write(lines.join("\n") + "\n");
  }

  /** What the API server does when a watch's resourceVersion is too old: an ERROR 410 event, then the end. */
  expireWatches(): void {
    for (const w of [...this.watchers]) {
      w.end(JSON.stringify({ type: "ERROR", object: { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Expired", code: 410 } }) + "\n");
    }
    this.watchers.clear();
  }

  /** Breaks the watch connections (the client sees a network error). */
  dropWatches(): void {
    for (const w of [...this.watchers]) w.destroy();
    this.watchers.clear();
  }

  private broadcast(event: unknown): void {
    const line = JSON.stringify(event) + "\n";
    for (const w of this.watchers) w.write(line);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://fake");
    this.requests.push(url);
    if (url.pathname !== this.path) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status", code: 404, message: `no such path ${url.pathname}` }));
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      if (this.failWatches > 0) {
        this.failWatches--;
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ kind: "Status", code: 500, message: "watch failed" }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.flushHeaders();
      this.watchers.add(res);
      res.on("close", () => this.watchers.delete(res));
      return;
    }
    if (this.failLists > 0) {
      this.failLists--;
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status", code: 503, message: "list failed" }));
      return;
    }
    const limit = Number(url.searchParams.get("limit") ?? "0");
    const start = Number(url.searchParams.get("continue") ?? "0");
    const all = [...this.objects.values()];
    const items = limit > 0 ? all.slice(start, start + limit) : all;
    const next = limit > 0 && start + limit < all.length ? String(start + limit) : undefined;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "List", apiVersion: "v1", metadata: { resourceVersion: String(this.rv), ...(next ? { continue: next } : {}) }, items }));
  }
}

function keyOf(obj: Obj): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export async function until(cond: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
