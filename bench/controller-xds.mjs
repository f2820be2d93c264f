#!/usr/bin/env node
// Controller + delta xDS at scale: 10,000 pods, 1,000 services, 100 policies, 20 connected xDS clients.
// Measures time to first full sync, the latency from one pod change to every client having applied (and ACKed)
// it, bytes pushed per single-pod change, and the controller process's RSS. Baseline in the same run: the
// same at 1/10 of the size (bytes per change must not grow with the cluster), and the size of a full
// state-of-the-world push. The controller pipeline runs in a child process over in-memory inputs (no API
// server), so its RSS is its own. Appends to bench/RESULTS.md.   usage: node bench/controller-xds.mjs [changes=50]
import { fork, execFileSync } from "node:child_process";
import { appendFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const { DeltaXdsClient } = await import(join(root, "packages/xds/dist/index.js"));
const { TypeUrl } = await import(join(root, "packages/protocol/dist/index.js"));
const CHANGES = Number(process.argv[2] ?? 50);
const CLIENTS = 20;
const now = () => performance.timeOrigin + performance.now();
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function run(pods, services, policies) {
  const child = fork(join(here, "lib/controller-xds-server.mjs"), [pods, services, policies].map(String), { execArgv: ["--expose-gc"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const next = (type) => new Promise((r) => { const f = (m) => { if (m.type === type) { child.off("message", f); r(m); } }; child.on("message", f); });
  const ready = await next("ready");
  const received = Array.from({ length: CLIENTS }, () => new Map()); // client → name → last receive time
  const t0 = now();
  const clients = received.map((seen, c) => new DeltaXdsClient({
    address: `http://127.0.0.1:${ready.port}`,
    node: { id: `ztunnel~10.0.0.${c}~zt-${c}.istio-system~istio-system.svc.cluster.local` },
    watches: [TypeUrl.address, TypeUrl.authorization].map((typeUrl) => ({ typeUrl, handler: (added) => { const t = now(); for (const r of added) seen.set(r.name, t); } })),
  }).start());
  await Promise.all(clients.map((c) => c.ready()));
  const fullSync = now() - t0;
  const totalResources = ready.resources.workloads + ready.resources.services + ready.resources.authorizations;
  const fullBytes = (await (child.send({ type: "bytes" }), next("bytes"))).total / CLIENTS;
  const latencies = [];
  const bytes = [];
  for (let k = 0; k < CHANGES; k++) {
    const i = (k * 7919) % pods;
    const name = `Kubernetes//Pod/ns${i % Math.max(1, Math.round(services / 10))}/pod-${i}`;
    child.send({ type: "change", i });
    const { at, before } = await next("changed");
    const deadline = Date.now() + 10_000;
    while (!received.every((s) => (s.get(name) ?? 0) > at) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    latencies.push(Math.max(...received.map((s) => s.get(name) ?? Infinity)) - at);
    await new Promise((r) => setTimeout(r, 150)); // let the ACKs land and the next change start a new debounce
    child.send({ type: "bytes" });
    bytes.push(((await next("bytes")).total - before) / CLIENTS);
  }
  child.send({ type: "stats" });
  const stats = await next("stats");
  await Promise.all(clients.map((c) => c.close()));
  child.send({ type: "exit" });
  return { pods, services, policies, totalResources, built: ready.built, fullSync, fullBytes, p50: pct(latencies, 50), p99: pct(latencies, 99), max: Math.max(...latencies), bytesPerChange: pct(bytes, 50), rss: stats.rss };
}

const small = await run(1000, 100, 10);
const large = await run(10_000, 1000, 100);
const mb = (b) => (b / 1024 / 1024).toFixed(0);
const row = (r) => `| ${r.pods} / ${r.services} / ${r.policies} | ${r.totalResources} | ${(r.built / 1000).toFixed(1)} | ${(r.fullSync / 1000).toFixed(2)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${Math.round(r.bytesPerChange)} | ${(r.fullBytes / 1024 / 1024).toFixed(1)} | ${mb(r.rss)} |`;
const table = [
  `| pods / services / policies | resources | build (s) | first full sync, ${CLIENTS} clients (s) | change → all ACKed p50 (ms) | p99 (ms) | bytes per change per client | full push per client (MB) | controller RSS (MB) |`,
  "|---|---|---|---|---|---|---|---|---|",
  row(small),
  row(large),
].join("\n");
console.log(table);
const commit = (() => { try { return execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"]).toString().trim(); } catch { return "?"; } })();
appendFileSync(join(root, "bench/RESULTS.md"), `
## Controller + delta xDS at scale (${new Date().toISOString().slice(0, 10)}, commit ${commit})

Command: \`node bench/controller-xds.mjs ${CHANGES}\` on ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Node ${process.version}.
${CLIENTS} delta xDS clients (wildcard, like ztunnel) on loopback; ${CHANGES} single-pod changes each (a label that changes the
workload's canonical revision), debounce 100 ms / 10 s as istiod's defaults. Latency is from the change to the last client
having applied it (its ACK follows at once). The controller pipeline runs over in-memory inputs (no API server).
Baseline in the same run: the 1/10-size cluster (bytes per change must not grow with size) and the full push.
Targets: p99 < 200 ms, bytes per change independent of size, RSS < 600 MB.

${table}
`);
process.exit(0);
