#!/usr/bin/env node
// Warm start time of the local cluster: `ambit-local up --nodes 2` with cached binaries, from nothing to
// Ready nodes and answering cluster DNS, measured RUNS times. The baseline measured in the same run is the
// bare control-plane floor: etcd + kube-apiserver alone until /readyz (what any harness must wait for).
// Appends a table to bench/RESULTS.md.   usage: node bench/localcluster-start.mjs [runs=3]
import { execFileSync } from "node:child_process";
import { appendFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "packages/localcluster/bin/ambit-local.js");
const runs = Number(process.argv[2] ?? 3);
const { ensureBinaries, down } = await import(join(root, "packages/localcluster/dist/index.js"));
const { startEtcd, startApiserver, clusterUsers } = await import(join(root, "packages/localcluster/dist/controlplane.js"));
const { createPki } = await import(join(root, "packages/localcluster/dist/pki.js"));
const { StateLog, newState } = await import(join(root, "packages/localcluster/dist/state.js"));

await ensureBinaries();
const sh = (...args) => execFileSync(process.execPath, [cli, ...args], { stdio: ["ignore", "ignore", "pipe"] });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const full = [];
const floor = [];
for (let i = 0; i < runs; i++) {
  sh("down");
  let t = performance.now();
  sh("up", "--nodes", "2");
  full.push((performance.now() - t) / 1000);
  sh("down");
  // Baseline: the control-plane floor with the same binaries and flags.
  const bin = await ensureBinaries();
  const log = new StateLog(newState(0));
  t = performance.now();
  const pki = await createPki(clusterUsers(0));
  const etcd = await startEtcd(bin, log);
  await startApiserver(bin, etcd, pki, log);
  floor.push((performance.now() - t) / 1000);
  await down();
}

const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(", ");
const table = [
  "| measure | runs (s) | median (s) |",
  "|---|---|---|",
  `| \`ambit-local up --nodes 2\` (warm: nodes Ready, DNS answering) | ${fmt(full)} | ${median(full).toFixed(1)} |`,
  `| baseline: etcd + kube-apiserver to /readyz, same binaries | ${fmt(floor)} | ${median(floor).toFixed(1)} |`,
].join("\n");
console.log(table);
const commit = (() => { try { return execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"]).toString().trim(); } catch { return "?"; } })();
appendFileSync(join(root, "bench/RESULTS.md"), `
## Local cluster warm start (${new Date().toISOString().slice(0, 10)}, commit ${commit})

Command: \`node bench/localcluster-start.mjs ${runs}\` on ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Node ${process.version}.
Target: under 15 s for \`up --nodes 2\`. The rest of \`up\` over the baseline is the network, the controllers,
kube-proxy, the node agents and CoreDNS, and the wait for Ready nodes and a DNS answer.

${table}
`);
