#!/usr/bin/env node
// ztunnel's HBONE data path on the loopback, without a cluster: client → outbound proxy → HTTP/2 CONNECT over mTLS
// → inbound proxy → sink, each proxy its own process. Paths measured in the same run, each adding one layer:
//   - direct:                 client → sink (the floor);
//   - one TLS hop:            client → TLS sink (what Node's TLS alone costs on this machine);
//   - two TCP proxies:        two plain Node proxies, pipe() both ways;
//   - TLS tunnel, no HTTP/2:  the same with TLS between the proxies, one TLS connection per client connection;
//   - minimal:                the reference's simplest Node HBONE pair (pipe(), server-authenticated TLS, 4/16 MiB
//                             windows, NODELAY);
//   - ambit:                  ztunnel's own code (HbonePool, relay(), its TLS options and HTTP/2 settings, mTLS with
//                             @ambit/pki certificates).
// Measured: one-stream throughput with the proxies' CPU-seconds per GB, and 1 KiB ping-pong at one message per ms
// with latency percentiles and the proxies' vCPU. This separates the cost of our code from the cluster's (veths,
// netfilter, load tools) that bench/ztunnel-l4.mjs also includes. Appends a table to bench/RESULTS.md
// (AMBIT_BENCH_RECORD=0: print only).
//   usage: node bench/hbone-pair.mjs [seconds=5] [rounds=3]
import { execFileSync, fork } from "node:child_process";
import { appendFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(import.meta.url);
const root = join(dirname(here), "..");
const zt = (p) => import(join(root, "packages/ztunnel/dist/proxy", p));
const WINDOW = 4 * 1024 * 1024;
const CONN_WINDOW = 16 * 1024 * 1024;

// ---- roles (child processes) ----

async function certs() {
  const { CertificateAuthority, parseCertificate } = await import(join(root, "packages/pki/dist/index.js"));
  const { generateKeyPairSync } = await import("node:crypto");
  const ca = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
  const issue = (uri) => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const certPem = ca.sign({ publicKey, uriSans: [uri], ttlSeconds: 3600 });
    const leaf = parseCertificate(certPem);
    return { identity: uri, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), certPem, chainPem: ca.chainPems(), rootsPem: ca.rootPems(), notBefore: leaf.notBefore, notAfter: leaf.notAfter, serial: leaf.serialHex };
  };
  return { client: issue("spiffe://cluster.local/ns/a/sa/client"), server: issue("spiffe://cluster.local/ns/b/sa/server") };
}

const listen = (server) => new Promise((r) => server.listen(0, "127.0.0.1", () => r(server.address().port)));

/** Discards a bulk stream (its bytes are 7) or echoes a ping-pong (its bytes are 1). */
function sinkConnection(s) {
  s.on("error", () => undefined);
  s.once("data", (first) => {
    if (first[0] !== 1) return s.resume();
    s.write(first);
    s.on("data", (d) => s.write(d));
  });
}

const roles = {
  async sink() {
    return listen(net.createServer({ noDelay: true }, sinkConnection));
  },
  /** One TLS hop (the cipher HBONE prefers): what Node's TLS alone costs on this machine. */
  async tlsSink({ cert }) {
    const server = tls.createServer({ key: cert.keyPem, cert: cert.certPem, ciphers: "TLS_AES_128_GCM_SHA256" }, sinkConnection);
    server.on("connection", (s) => s.setNoDelay(true));
    return listen(server);
  },
  /** The decomposition pairs: "tcp" (two plain TCP proxies) and "tls" (a TLS tunnel per connection, no HTTP/2). */
  async inbound({ mode, sinkPort, cert }) {
    if (mode === "tcp" || mode === "tls") {
      const toSink = (down) => {
        down.on("error", () => undefined);
        const up = net.connect({ port: sinkPort, host: "127.0.0.1", noDelay: true }, () => { down.pipe(up); up.pipe(down); });
        up.on("error", () => down.destroy());
      };
      const server = mode === "tcp" ? net.createServer({ noDelay: true }, toSink) : tls.createServer({ key: cert.keyPem, cert: cert.certPem, ciphers: "TLS_AES_128_GCM_SHA256" }, toSink);
      server.on("connection", (s) => s.setNoDelay(true));
      return listen(server);
    }
    const settings = { initialWindowSize: WINDOW, maxFrameSize: 16_384, maxConcurrentStreams: 200, enablePush: false };
    const opts = mode === "ambit"
      ? { ...(await zt("tls.js")).serverTlsOptions(cert), allowHTTP1: false, maxSessionMemory: 64, settings }
      : { key: cert.keyPem, cert: cert.certPem, ALPNProtocols: ["h2"], allowHTTP1: false, settings };
    const { relay } = await zt("relay.js");
    const server = http2.createSecureServer(opts);
    server.on("connection", (s) => s.setNoDelay(true));
    server.on("session", (s) => { s.on("error", () => undefined); s.setLocalWindowSize(CONN_WINDOW); });
    server.on("stream", (stream) => {
      stream.on("error", () => undefined);
      const up = net.connect({ port: sinkPort, host: "127.0.0.1", noDelay: true }, () => {
        stream.respond({ ":status": 200 });
        if (mode === "ambit") relay(stream, up);
        else { stream.pipe(up); up.pipe(stream); }
      });
      up.on("error", () => stream.destroy());
    });
    return listen(server);
  },
  async outbound({ mode, inPort, cert, serverId }) {
    const { relay } = await zt("relay.js");
    let connectTunnel;
    if (mode === "tcp" || mode === "tls") {
      const dial = mode === "tcp" ? net.connect : tls.connect;
      connectTunnel = () => new Promise((r) => { const s = dial({ port: inPort, host: "127.0.0.1", rejectUnauthorized: false }, () => r(s)); s.setNoDelay(true); });
    } else if (mode === "ambit") {
      const { HbonePool } = await zt("pool.js");
      const pool = new HbonePool({ streamWindow: WINDOW, connectionWindow: CONN_WINDOW, maxFrameSize: 16_384, maxStreamsPerConnection: 100, idleReleaseMs: 60_000 },
        (ip, port) => new Promise((res, rej) => { const s = net.connect({ host: ip, port }, () => res(s)); s.once("error", rej); }));
      connectTunnel = async (authority) => (await pool.connect({ cert, expected: [serverId], ip: "127.0.0.1", port: inPort }, { ":authority": authority })).stream;
    } else {
      const session = http2.connect(`https://127.0.0.1:${inPort}`, {
        createConnection: () => { const s = tls.connect({ host: "127.0.0.1", port: inPort, ALPNProtocols: ["h2"], rejectUnauthorized: false }); s.setNoDelay(true); return s; },
        settings: { initialWindowSize: WINDOW },
      });
      await new Promise((r) => session.once("connect", r));
      session.setLocalWindowSize(CONN_WINDOW);
      connectTunnel = async (authority) => {
        const stream = session.request({ ":method": "CONNECT", ":authority": authority });
        await new Promise((r, j) => { stream.once("response", r); stream.once("error", j); });
        return stream;
      };
    }
    return listen(net.createServer({ noDelay: true, pauseOnConnect: true }, async (down) => {
      down.on("error", () => undefined);
      const stream = await connectTunnel("127.0.0.1:1");
      if (mode === "ambit") relay(down, stream);
      else { down.pipe(stream); stream.pipe(down); }
      down.resume();
    }));
  },
};

// ---- driver ----

function start(role, args) {
  const child = fork(here, ["--role", role, JSON.stringify(args)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve) => child.once("message", (m) => resolve({ child, port: m.port })));
}
const ask = (child) => new Promise((r) => { child.once("message", r); child.send("cpu"); });
/** CPU-seconds and RSS of [outbound, inbound] (null where the path has no such process). */
const cpuOf = async (procs) => Promise.all(procs.map((p) => (p ? ask(p.child) : { cpu: NaN, rss: NaN })));

async function pair(mode, sinkPort, c) {
  const inbound = await start("inbound", { mode, sinkPort, cert: c.server });
  const outbound = await start("outbound", { mode, inPort: inbound.port, cert: c.client, serverId: c.server.identity });
  return { port: outbound.port, procs: [outbound, inbound] };
}

const connect = (port, secure) => new Promise((r) => {
  const s = secure ? tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false }, () => r(s)) : net.connect({ port, host: "127.0.0.1" }, () => r(s));
  s.setNoDelay(true);
});

async function bulk({ port, secure, procs }, seconds) {
  const s = await connect(port, secure);
  const buf = Buffer.alloc(64 * 1024, 7);
  const before = await cpuOf(procs);
  const t0 = process.hrtime.bigint();
  let sent = 0;
  const end = Date.now() + seconds * 1000;
  await new Promise((resolve) => {
    const pump = () => {
      while (Date.now() < end) { sent += buf.length; if (!s.write(buf)) return s.once("drain", pump); }
      resolve();
    };
    pump();
  });
  await new Promise((r) => s.end(r));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = await cpuOf(procs);
  s.destroy();
  const gb = sent / 1e9;
  return { gbps: gb / secs, cpuPerGb: after.map((a, i) => (a.cpu - before[i].cpu) / gb) };
}

async function pingPong({ port, secure, procs }, seconds) {
  const s = await connect(port, secure);
  const msg = Buffer.alloc(1024, 1);
  const samples = [];
  // warm-up
  for (let i = 0; i < 200; i++) await new Promise((r) => { s.once("data", r); s.write(msg); });
  const before = await cpuOf(procs);
  const t0 = performance.now();
  const n = seconds * 1000;
  for (let i = 0; i < n; i++) {
    const due = t0 + i; // one message per millisecond
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t = performance.now();
    let got = 0;
    await new Promise((r) => { const on = (d) => { got += d.length; if (got >= msg.length) { s.off("data", on); r(); } }; s.on("data", on); s.write(msg); });
    samples.push(performance.now() - t);
  }
  const secs = (performance.now() - t0) / 1000;
  const after = await cpuOf(procs);
  s.destroy();
  samples.sort((a, b) => a - b);
  const pct = (p) => samples[Math.min(samples.length - 1, Math.floor(samples.length * p))];
  return { rate: n / secs, p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), vcpu: after.map((a, i) => (a.cpu - before[i].cpu) / secs), rss: after.map((a) => a.rss / 1e6) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const seconds = Number(process.argv[2] ?? 5);
  const rounds = Number(process.argv[3] ?? 3);
  const c = await certs();
  const sink = await start("sink", {});
  const tlsSink = await start("tlsSink", { cert: c.server });
  const paths = {
    direct: { port: sink.port, procs: [null, null] },
    "one TLS hop": { port: tlsSink.port, secure: true, procs: [null, tlsSink] },
    "two TCP proxies": await pair("tcp", sink.port, c),
    "TLS tunnel, no HTTP/2": await pair("tls", sink.port, c),
    minimal: await pair("minimal", sink.port, c),
    ambit: await pair("ambit", sink.port, c),
  };
  const names = Object.keys(paths);
  const results = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (const name of names) {
      const b = await bulk(paths[name], seconds);
      const l = await pingPong(paths[name], seconds);
      results[name].push({ b, l });
      console.log(name, JSON.stringify({ gbps: b.gbps.toFixed(3), cpuPerGb: b.cpuPerGb.map((x) => x.toFixed(2)), ...Object.fromEntries(["rate", "p50", "p90", "p99"].map((k) => [k, l[k].toFixed(3)])), vcpu: l.vcpu.map((x) => x.toFixed(3)), rss: l.rss.map((x) => x.toFixed(0)) }));
    }
  }
  for (const p of [sink, tlsSink, ...Object.values(paths).flatMap((x) => x.procs)]) p?.child.kill();

  const row = (name) => {
    const rs = results[name];
    const m = (f) => median(rs.map(f));
    const side = (f, i) => (Number.isNaN(f(rs[0])[i]) ? undefined : m((x) => f(x)[i]));
    return {
      gbps: m((x) => x.b.gbps), p50: m((x) => x.l.p50), p90: m((x) => x.l.p90), p99: m((x) => x.l.p99), rate: m((x) => x.l.rate),
      outGb: side((x) => x.b.cpuPerGb, 0), inGb: side((x) => x.b.cpuPerGb, 1), outCpu: side((x) => x.l.vcpu, 0), inCpu: side((x) => x.l.vcpu, 1),
      outRss: side((x) => x.l.rss, 0), inRss: side((x) => x.l.rss, 1),
      // added latency: against direct in the same round (the machine's noise comes in spells), then the median
      add90: median(rs.map((x, i) => x.l.p90 - results.direct[i].l.p90)), add99: median(rs.map((x, i) => x.l.p99 - results.direct[i].l.p99)),
    };
  };
  const f = (x, n = 2) => (x === undefined ? "—" : x.toFixed(n));
  const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
  const lines = [
    `## HBONE pair on the loopback: ztunnel's code vs the minimal Node pair (${new Date().toISOString().slice(0, 10)}, commit ${commit})`,
    "",
    `Command: \`node bench/hbone-pair.mjs ${seconds} ${rounds}\` on ${cpus().length} cores, Node ${process.version}; medians of ${rounds} alternating rounds (added latency: against direct in the same round).`,
    "client → outbound → HTTP/2 CONNECT over TLS 1.3 → inbound → sink, each proxy its own process; ping-pong is 1 KiB each way at one message per ms.",
    "",
    "| path | 1 stream GB/s | outbound CPU-s/GB | inbound CPU-s/GB | msg/s | p50 ms | p90 ms | p99 ms | added p90 / p99 ms | outbound vCPU | inbound vCPU | RSS out / in MB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const name of names) {
    const x = row(name);
    const signed = (v) => `${v >= 0 ? "+" : "−"}${f(Math.abs(v))}`;
    const added = name === "direct" ? "—" : `${signed(x.add90)} / ${signed(x.add99)}`;
    lines.push(`| ${name} | ${f(x.gbps)} | ${f(x.outGb)} | ${f(x.inGb)} | ${f(x.rate, 0)} | ${f(x.p50)} | ${f(x.p90)} | ${f(x.p99)} | ${added} | ${f(x.outCpu, 3)} | ${f(x.inCpu, 3)} | ${f(x.outRss, 0)} / ${f(x.inRss, 0)} |`);
  }
  console.log(lines.join("\n"));
  if (process.env["AMBIT_BENCH_RECORD"] !== "0") appendFileSync(join(root, "bench/RESULTS.md"), `\n${lines.join("\n")}\n`);
}

if (process.argv[2] === "--role") {
  const port = await roles[process.argv[3]](JSON.parse(process.argv[4]));
  process.send({ port });
  process.on("disconnect", () => process.exit(0)); // the driver is gone: stop by ourselves
  process.on("message", (m) => {
    if (m === "cpu") { const c = process.cpuUsage(); process.send({ cpu: (c.user + c.system) / 1e6, rss: process.memoryUsage.rss() }); }
  });
} else {
  await main();
}
