#!/usr/bin/env node
// The L4 data path through two ztunnels against direct pod-to-pod traffic, in one run on the local cluster: a
// client pod on node-1 and a server pod on node-2, once in a plain namespace (direct) and once in an enrolled one
// (client → ztunnel node-1 → HBONE → ztunnel node-2 → server). Measured for both:
//   - iperf3 throughput, one stream and 8 streams;
//   - HTTP request latency p50/p90/p99 at a fixed 1,000 requests/s (hey, 1 KiB POST bodies, 4 persistent connections);
//   - new connections per second (connect, 100 B echo, close; 16 at a time);
// and for the mesh: ztunnel CPU and RSS idle and at 1,000 requests/s, RSS per idle tunnel with N idle tunnels.
// Load tools come from Debian packages (iperf3, hey), installed when missing. Appends a table to bench/RESULTS.md.
//   usage: node bench/ztunnel-l4.mjs [idleTunnels=10000] [seconds=8]
import { execFileSync, spawn } from "node:child_process";
import { appendFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "packages/localcluster/bin/ambit-local.js");
const IDLE = Number(process.argv[2] ?? 10_000);
const SECONDS = Number(process.argv[3] ?? 8);
const { kubectl, waitFor, adminApi, installMesh } = await import(join(root, "packages/localcluster/dist/index.js"));

// ---- tools ----
const missing = ["iperf3", "hey"].filter((t) => { try { execFileSync("sh", ["-c", `command -v ${t}`]); return false; } catch { return true; } });
if (missing.length) {
  console.log(`installing ${missing.join(", ")} (Debian packages)`);
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
}

const run = (args, opts = {}) => new Promise((resolve) => {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
  child.on("close", (code) => { clearTimeout(timer); resolve({ code, out, err }); });
});
const inPod = async (pod, argv, timeoutMs) => {
  const r = await run(["exec", pod, "--", ...argv], { timeoutMs });
  if (r.code !== 0) throw new Error(`${pod}: ${argv.join(" ")} failed (${r.code}): ${r.err || r.out}`);
  return r.out;
};

// ---- cluster and mesh ----
console.log("local cluster: up --nodes 2, mesh installed by its Helm chart");
execFileSync(process.execPath, [cli, "up", "--nodes", "2"], { stdio: ["ignore", "ignore", "inherit"] });
// AMBIT_BENCH_HELM_SET: extra chart values for an experiment, e.g. "ztunnel.nodeOptions=--max-semi-space-size=8".
const helmSet = (process.env["AMBIT_BENCH_HELM_SET"] ?? "").split(";").filter(Boolean);
await installMesh({ set: helmSet });
const api = adminApi();
const ready = async (ns, sel) => (await api.get(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(sel)}`)).items
  .filter((p) => p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"));

const modes = { direct: "bench-direct", mesh: "bench-mesh" };
const objects = Object.entries(modes).flatMap(([mode, ns]) => [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, ...(mode === "mesh" ? { labels: { "istio.io/dataplane-mode": "ambient" } } : {}) } },
  {
    apiVersion: "v1", kind: "Pod", metadata: { name: "server", namespace: ns, labels: { app: "server" } },
    spec: { nodeName: "node-2", containers: [{ name: "echo", image: "ambit/echo" }, { name: "iperf", image: "ambit/host", command: ["iperf3", "-s"] }] },
  },
  { apiVersion: "v1", kind: "Pod", metadata: { name: "client", namespace: ns, labels: { app: "client" } }, spec: { nodeName: "node-1", containers: [{ name: "idle", image: "ambit/host", command: ["sleep", "infinity"] }] } },
  { apiVersion: "v1", kind: "Service", metadata: { name: "server", namespace: ns }, spec: { selector: { app: "server" }, ports: [{ name: "http", port: 8080 }, { name: "tcp", port: 9000 }, { name: "iperf", port: 5201 }] } },
]);
await kubectl(["apply", "-f", "-"], objects.map((o) => JSON.stringify(o)).join("\n"));
await waitFor("bench pods Ready", async () => (await Promise.all(Object.values(modes).map((ns) => ready(ns, "app")))).flat().length === 4, 60_000, 300);

// ---- ztunnel processes (by command line and NODE_NAME) ----
function ztunnelPids() {
  const pids = {};
  for (const d of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (!cmd.includes("packages/ztunnel/dist/main.js")) continue;
      const node = /(?:^|\0)NODE_NAME=([^\0]+)/.exec(readFileSync(`/proc/${d}/environ`, "utf8"))?.[1];
      if (node) pids[node] = Number(d);
    } catch { /* gone */ }
  }
  return pids;
}
const TICK = 100; // USER_HZ
const cpuTicks = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return Number(f[11]) + Number(f[12]); };
const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
/** CPU (vCPU) and RSS of both ztunnels while `during` runs. */
async function ztunnelUsage(during) {
  const pids = ztunnelPids();
  const t0 = performance.now();
  const before = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, cpuTicks(p)]));
  const result = await during();
  const secs = (performance.now() - t0) / 1000;
  const usage = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, { cpu: (cpuTicks(p) - before[n]) / TICK / secs, rss: rssMb(p) }]));
  return { result, usage };
}

// ---- measurements ----
async function iperf(ns, streams) {
  const out = await inPod(`${ns}/client`, ["iperf3", "-c", `server.${ns}`, "-t", String(SECONDS), "-P", String(streams), "-J"], (SECONDS + 30) * 1000);
  return JSON.parse(out).end.sum_received.bits_per_second / 8 / 1e9; // GB/s
}

const BODY = "/tmp/ambit-bench-1k.bin";
writeFileSync(BODY, "x".repeat(1024));
async function latency(ns) {
  const out = await inPod(`${ns}/client`, ["hey", "-z", `${SECONDS}s`, "-c", "4", "-q", "250", "-m", "POST", "-T", "application/octet-stream", "-D", BODY, `http://server.${ns}:8080/`], (SECONDS + 30) * 1000);
  const pct = (p) => Number(new RegExp(`${p}%% in ([\\d.]+) secs`.replace("%%", "%")).exec(out)?.[1]) * 1000;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const errors = /Error distribution:/.test(out);
  return { p50: pct(50), p90: pct(90), p99: pct(99), rps, errors };
}

const churnScript = (host, seconds) => `
const net=require("net");let done=0,fail=0;const end=Date.now()+${seconds * 1000};const msg=Buffer.alloc(100,120);
function one(){if(Date.now()>end)return;const s=net.connect(9000,"${host}");let got=0;s.setNoDelay(true);
s.on("connect",()=>s.end(msg));s.on("data",d=>got+=d.length);s.on("error",()=>{fail++;one()});s.on("close",e=>{if(!e){got===100?done++:fail++;one()}})}
for(let i=0;i<16;i++)one();setTimeout(()=>{console.log(JSON.stringify({done,fail}));process.exit(0)},${seconds * 1000 + 2000});`;
async function churn(ns) {
  const out = await inPod(`${ns}/client`, [process.execPath, "-e", churnScript(`server.${ns}`, SECONDS)], (SECONDS + 30) * 1000);
  const r = JSON.parse(out.trim().split("\n").pop());
  return { perSecond: r.done / SECONDS, failed: r.fail };
}

/** Opens `n` idle connections from the mesh client and measures the ztunnels' RSS growth per connection. */
async function idleTunnels(n) {
  const pids = ztunnelPids();

  const base = Object.fromEntries(Object.entries(pids).map(([node, p]) => [node, rssMb(p)]));
  const script = `const net=require("net");let open=0,fail=0;const socks=[];function go(i){if(i>=${n})return;const s=net.connect(9000,"server.${modes.mesh}");socks.push(s);
s.on("connect",()=>{s.write("x");});s.once("data",()=>{open++;if(open+fail===${n})console.log("OPEN "+open+" "+fail);go(i+64)});s.on("error",()=>{fail++;if(open+fail===${n})console.log("OPEN "+open+" "+fail);go(i+64)});}
for(let i=0;i<64;i++)go(i);setTimeout(()=>process.exit(0),120000);`;
  const child = spawn(process.execPath, [cli, "exec", `${modes.mesh}/client`, "--", process.execPath, "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  await waitFor(`${n} idle tunnels open`, async () => /OPEN \d+ \d+/.test(out), 110_000, 500);
  const [, open, failed] = /OPEN (\d+) (\d+)/.exec(out).map(Number);
  await new Promise((r) => setTimeout(r, 3000)); // let the heaps settle
  const grown = Object.fromEntries(Object.entries(pids).map(([node, p]) => [node, rssMb(p)]));
  child.kill("SIGKILL");
  return { open, failed, perTunnelKb: Object.fromEntries(Object.keys(pids).map((node) => [node, ((grown[node] - base[node]) * 1024) / Math.max(open, 1)])), base, grown };
}

const results = {};
const idle = await ztunnelUsage(() => new Promise((r) => setTimeout(r, 5000)));
// Latency and CPU/RSS at 1000 req/s first, before bulk transfers grow the proxies' heaps. On 2 shared cores one
// run is noisy: ROUNDS rounds alternate direct and mesh, and the medians are reported.
const ROUNDS = 3;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const latRuns = { direct: [], mesh: [] };
for (let i = 0; i < ROUNDS; i++) {
  for (const [mode, ns] of Object.entries(modes)) {
    console.log(`${mode}: latency at 1000 requests/s (round ${i + 1} of ${ROUNDS})`);
    latRuns[mode].push(await ztunnelUsage(() => latency(ns)));
  }
}
const medianOf = (runs) => ({
  lat: Object.fromEntries(["p50", "p90", "p99", "rps"].map((k) => [k, median(runs.map((r) => r.result[k]))])),
  usage: Object.fromEntries(Object.keys(runs[0].usage).map((n) => [n, { cpu: median(runs.map((r) => r.usage[n].cpu)), rss: median(runs.map((r) => r.usage[n].rss)) }])),
});
for (const [mode, ns] of Object.entries(modes)) {
  const lat = medianOf(latRuns[mode]);
  console.log(`${mode}: new connections per second`);
  const ch = await churn(ns);
  console.log(`${mode}: iperf3 1 stream`);
  const one = await iperf(ns, 1);
  console.log(`${mode}: iperf3 8 streams`);
  const eight = await iperf(ns, 8);
  results[mode] = { one, eight, lat: lat.lat, load: lat.usage, churn: ch };
}
console.log(`mesh: ${IDLE} idle tunnels`);
const tunnels = await idleTunnels(IDLE);

// ---- report ----
const d = results.direct, m = results.mesh;
const f = (x, n = 2) => (Number.isFinite(x) ? x.toFixed(n) : "n/a");
const ratio = (a, b) => (b ? `${(a / b).toFixed(2)}×` : "n/a");
const added = (a, b) => `${a - b >= 0 ? "+" : "−"}${f(Math.abs(a - b))} ms`;
const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim();
const date = new Date().toISOString().slice(0, 10);
const z = (u) => Object.entries(u).map(([n, x]) => `${n}: ${f(x.cpu, 3)} vCPU, ${f(x.rss, 0)} MB`).join("; ");
const table = [
  `## ztunnel L4 data path vs direct pod-to-pod (${date}, commit ${commit})`,
  "",
  `Command: \`${helmSet.length ? `AMBIT_BENCH_HELM_SET=\x27${helmSet.join(";")}\x27 ` : ""}node bench/ztunnel-l4.mjs ${IDLE} ${SECONDS}\` on ${cpus().length} cores (${cpus()[0]?.model.trim()}), Node ${process.version}; ` +
  "local cluster with 2 nodes, client pod on node-1, server pod on node-2; load tools and proxies share the cores. " +
  "direct = plain namespace; mesh = enrolled namespace (two ztunnel hops, HBONE mTLS).",
  "",
  "| measure | direct | mesh (2 ztunnels) | mesh / direct | target |",
  "|---|---|---|---|---|",
  `| iperf3 1 stream (GB/s) | ${f(d.one)} | ${f(m.one)} | ${ratio(m.one, d.one)} | ≥ 0.5 GB/s |`,
  `| iperf3 8 streams (GB/s) | ${f(d.eight)} | ${f(m.eight)} | ${ratio(m.eight, d.eight)} | — |`,
  `| HTTP at 1000 req/s, 1 KiB: achieved req/s | ${f(d.lat.rps, 0)} | ${f(m.lat.rps, 0)} | — | 1000 |`,
  `| latency p50 (ms), median of ${ROUNDS} runs | ${f(d.lat.p50)} | ${f(m.lat.p50)} | ${added(m.lat.p50, d.lat.p50)} | — |`,
  `| latency p90 (ms), median of ${ROUNDS} runs | ${f(d.lat.p90)} | ${f(m.lat.p90)} | ${added(m.lat.p90, d.lat.p90)} | ≤ +0.5 ms |`,
  `| latency p99 (ms), median of ${ROUNDS} runs | ${f(d.lat.p99)} | ${f(m.lat.p99)} | ${added(m.lat.p99, d.lat.p99)} | ≤ +1 ms |`,
  `| new connections per second (16 concurrent, 100 B echo) | ${f(d.churn.perSecond, 0)} | ${f(m.churn.perSecond, 0)} | ${ratio(m.churn.perSecond, d.churn.perSecond)} | — |`,
  "",
  `ztunnel idle: ${z(idle.usage)}. At 1000 req/s (median of the mesh runs): ${z(m.load)} (target ≤ 0.15 vCPU and ≤ 80 MB per ztunnel).`,
  `Idle tunnels: ${tunnels.open} open (${tunnels.failed} failed); RSS per idle tunnel: ${Object.entries(tunnels.perTunnelKb).map(([n, kb]) => `${n} ${f(kb, 1)} KB`).join(", ")} ` +
  `(RSS ${Object.keys(tunnels.base).map((n) => `${n} ${f(tunnels.base[n], 0)} → ${f(tunnels.grown[n], 0)} MB`).join(", ")}; target ≤ 16 KB).`,
  "",
].join("\n");
console.log(`\n${table}`);
appendFileSync(join(root, "bench/RESULTS.md"), `\n${table}`);
execFileSync(process.execPath, [cli, "down"], { stdio: "ignore" });
