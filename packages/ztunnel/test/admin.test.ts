// ztunnel's admin (15000), stats (15020) and readiness (15021) servers, on ephemeral localhost ports.
import { afterEach, describe, expect, it } from "vitest";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import type { Server } from "node:http";
import pino from "pino";
import { Registry } from "prom-client";
import { pinoLogLevels, startAdmin, startReadiness, startStats, wantsOpenMetrics, type LogLevelControl } from "../src/admin/index.js";
import { Telemetry } from "../src/telemetry/index.js";

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function started(p: Promise<Server>) {
  const s = await p;
  servers.push(s);
  const base = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  const call = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(base + path, init);
    return { status: res.status, type: res.headers.get("content-type") ?? "", allow: res.headers.get("allow"), body: await res.text() };
  };
  return { s, base, call };
}

/** Sends raw bytes and returns the raw answer (for requests fetch will not produce). */
function raw(server: Server, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect((server.address() as AddressInfo).port, "127.0.0.1");
    let out = "";
    sock.on("data", (d) => (out += d.toString()));
    sock.on("end", () => resolve(out));
    sock.on("close", () => resolve(out));
    sock.on("error", reject);
    sock.write(bytes);
  });
}

function admin(extra: { configDump?: () => unknown; logLevel?: LogLevelControl } = {}) {
  const quits: number[] = [];
  const root = pino({ level: "info" });
  const access = root.child({ scope: "access" });
  const logLevel = extra.logLevel ?? pinoLogLevels(root, { access });
  const p = startAdmin({
    host: "127.0.0.1",
    port: 0,
    configDump: extra.configDump ?? (() => ({ workloads: [{ uid: "u1", addresses: [new Uint8Array([10, 0, 0, 1])] }], services: new Map([["a", 1]]), big: 2n })),
    onQuit: () => quits.push(Date.now()),
    logLevel,
  });
  return { p, quits, root, access };
}

describe("admin server", () => {
  it("serves the index, HEAD included, on localhost by default", async () => {
    const { call, s } = await started(admin().p);
    const r = await call("/");
    expect(r.status).toBe(200);
    expect(r.type).toContain("text/html");
    expect(r.body).toContain("/config_dump");
    expect((await call("/", { method: "HEAD" })).status).toBe(200);
    expect(s.keepAliveTimeout).toBe(5_000);
    const def = await started(startAdmin({ port: 0, configDump: () => ({}), onQuit: () => {}, logLevel: { get: () => "info", set: () => {} } }));
    expect((def.s.address() as AddressInfo).address).toBe("127.0.0.1");
  });

  it("dumps the config as JSON, with bytes as base64", async () => {
    const { call } = await started(admin().p);
    const r = await call("/config_dump");
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/json");
    expect(JSON.parse(r.body)).toEqual({ workloads: [{ uid: "u1", addresses: ["CgAAAQ=="] }], services: { a: 1 }, big: "2" });
    expect(await call("/config_dump", { method: "POST" })).toMatchObject({ status: 405, allow: "GET, HEAD" });
  });

  it("answers 500 when the config dump cannot be built", async () => {
    const { call } = await started(admin({ configDump: () => { throw new Error("state not loaded"); } }).p);
    const r = await call("/config_dump");
    expect(r.status).toBe(500);
    expect(r.body).toContain("state not loaded");
  });

  it("quits on POST /quitquitquit only", async () => {
    const a = admin();
    const { call } = await started(a.p);
    expect(await call("/quitquitquit")).toMatchObject({ status: 405, allow: "POST" });
    expect(await call("/quitquitquit", { method: "PUT" })).toMatchObject({ status: 405 });
    expect(a.quits).toHaveLength(0);
    const r = await call("/quitquitquit", { method: "POST", body: "ignored" });
    expect(r.status).toBe(200);
    await new Promise((res) => setImmediate(res));
    expect(a.quits).toHaveLength(1);
  });

  it("shows and sets log levels on POST /logging", async () => {
    const a = admin();
    const { call } = await started(a.p);
    expect(await call("/logging", { method: "POST" })).toMatchObject({ status: 200, body: "current log level is info\n" });
    expect(await call("/logging")).toMatchObject({ status: 405, allow: "POST" });

    expect((await call("/logging?level=debug", { method: "POST" })).body).toBe("log level set; current log level is debug\n");
    expect(a.root.level).toBe("debug");
    expect(a.access.level).toBe("debug");

    expect((await call("/logging?level=warn,access:trace", { method: "POST" })).status).toBe(200);
    expect(a.root.level).toBe("warn");
    expect(a.access.level).toBe("trace");
    expect((await call("/logging", { method: "POST" })).body).toBe("current log level is warn,access:trace\n");

    // access keeps its own level when the default changes
    await call("/logging?level=error", { method: "POST" });
    expect([a.root.level, a.access.level]).toEqual(["error", "trace"]);
  });

  it("rejects bad levels with 400 and changes nothing", async () => {
    const a = admin();
    const { call } = await started(a.p);
    const bad = await call("/logging?level=loud", { method: "POST" });
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('invalid log level "loud"');
    expect(bad.body).toContain("levels are trace, debug, info");
    const mod = await call("/logging?level=debug,xds:info", { method: "POST" });
    expect(mod.status).toBe(400);
    expect(mod.body).toContain('unknown module "xds"; modules are access');
    expect((await call("/logging?level=access:nope", { method: "POST" })).status).toBe(400);
    expect((await call("/logging?level=", { method: "POST" })).status).toBe(400);
    expect((await call("/logging?level=%20,", { method: "POST" })).status).toBe(400);
    expect([a.root.level, a.access.level]).toEqual(["info", "info"]);
  });

  it("answers 404 for unknown paths and 400 for malformed requests", async () => {
    const { call, s } = await started(admin().p);
    const r = await call("/stats");
    expect(r.status).toBe(404);
    expect(r.body).toContain("/config_dump");
    expect(await raw(s, "GARBAGE\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
    expect(await raw(s, "GET http://[::1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect((await call("/")).status).toBe(200); // still serving
  });
});

describe("stats server", () => {
  async function stats() {
    const t = new Telemetry({ logger: pino({ level: "silent" }), processMetrics: false, tag: "1.24.0" });
    t.open({ reporter: "source", src: { addr: "10.0.0.1:1" }, dst: { addr: "10.0.0.2:80" }, mtls: false }).close();
    return started(startStats({ host: "127.0.0.1", port: 0, registry: t.registry }));
  }

  it("serves Prometheus text on /metrics and /stats/prometheus", async () => {
    const { call, s } = await stats();
    for (const path of ["/metrics", "/stats/prometheus"]) {
      const r = await call(path);
      expect(r.status).toBe(200);
      expect(r.type).toBe("text/plain; version=0.0.4; charset=utf-8");
      expect(r.body).toContain('istio_build{component="ztunnel",tag="1.24.0"} 1');
      expect(r.body).toMatch(/^istio_tcp_connections_opened_total\{reporter="source",/m);
    }
    expect(s.keepAliveTimeout).toBe(65_000);
  });

  it("serves OpenMetrics when Accept asks, and Prometheus text again afterwards", async () => {
    const { call } = await stats();
    const om = await call("/metrics", { headers: { accept: "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1" } });
    expect(om.status).toBe(200);
    expect(om.type).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8");
    expect(om.body).toContain("# TYPE istio_tcp_connections_opened counter");
    expect(om.body).toMatch(/^istio_tcp_connections_opened_total\{/m);
    expect(om.body.endsWith("# EOF\n")).toBe(true);
    const plain = await call("/metrics", { headers: { accept: "text/plain" } });
    expect(plain.type).toContain("text/plain");
    expect(plain.body).toContain("# TYPE istio_tcp_connections_opened_total counter");
    expect(plain.body).not.toContain("# EOF");
  });

  it("answers 405 and 404", async () => {
    const { call } = await stats();
    expect(await call("/metrics", { method: "POST" })).toMatchObject({ status: 405, allow: "GET, HEAD" });
    expect((await call("/")).status).toBe(404);
    expect((await call("/stats")).status).toBe(404);
  });

  it("answers 500 when collecting fails", async () => {
    const registry = new Registry();
    registry.registerMetric({ name: "broken", get: () => Promise.reject(new Error("collector failed")) } as never);
    const { call } = await started(startStats({ host: "127.0.0.1", port: 0, registry }));
    const r = await call("/metrics");
    expect(r.status).toBe(500);
    expect(r.body).toContain("collector failed");
  });

  it("reads the Accept header", () => {
    expect(wantsOpenMetrics(undefined)).toBe(false);
    expect(wantsOpenMetrics("text/plain")).toBe(false);
    expect(wantsOpenMetrics("application/openmetrics-text")).toBe(true);
    expect(wantsOpenMetrics("Application/OpenMetrics-Text; version=0.0.1; q=0.8")).toBe(true);
    expect(wantsOpenMetrics("application/openmetrics-text;q=0")).toBe(false);
  });
});

describe("readiness server", () => {
  it("answers ready or lists the pending tasks", async () => {
    let state = { ready: false, pending: ["proxy state", "certificates"] };
    const { call, s } = await started(startReadiness({ host: "127.0.0.1", port: 0, status: () => state }));
    expect(await call("/healthz/ready")).toMatchObject({ status: 500, body: "not ready, pending: proxy state, certificates\n" });
    state = { ready: true, pending: [] };
    expect(await call("/healthz/ready")).toMatchObject({ status: 200, body: "ready\n" });
    expect(await call("/healthz/ready", { method: "POST" })).toMatchObject({ status: 405 });
    expect((await call("/healthz/live")).status).toBe(404);
    expect(s.keepAliveTimeout).toBe(5_000);
  });

  it("answers 500 when the status cannot be read", async () => {
    const { call } = await started(startReadiness({ host: "127.0.0.1", port: 0, status: () => { throw new Error("boom"); } }));
    const r = await call("/healthz/ready");
    expect(r.status).toBe(500);
    expect(r.body).toContain("boom");
  });

  it("listens on all addresses by default", async () => {
    const { s } = await started(startReadiness({ port: 0, status: () => ({ ready: true, pending: [] }) }));
    expect(["::", "0.0.0.0"]).toContain((s.address() as AddressInfo).address);
  });
});
