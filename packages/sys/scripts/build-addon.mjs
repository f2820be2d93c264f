#!/usr/bin/env node
// Builds build/Release/ambit_sys.node. Never downloads anything:
//   - local Node headers found (npm_config_nodedir, the running node's prefix, or /usr):
//     node-gyp rebuild --nodedir=<dir>  (the package's node-gyp, else npm's bundled one);
//   - otherwise, or with AMBIT_SYS_PLAIN_BUILD=1, or when node-gyp fails (e.g. no Python):
//     one plain `g++ -shared` against the node-api-headers and node-addon-api packages.
// Skips the build when the output matches the current inputs (build/Release/ambit_sys.stamp);
// --force or AMBIT_SYS_FORCE_BUILD=1 rebuilds anyway.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// Resolves from the package directory: finds hoisted packages in the workspace root too.
const require = createRequire(path.join(pkgDir, "package.json"));
const outDir = path.join(pkgDir, "build", "Release");
const output = path.join(outDir, "ambit_sys.node");
const stampFile = path.join(outDir, "ambit_sys.stamp");
const gypFile = path.join(pkgDir, "binding.gyp");

const log = (message) => console.log(`[@ambit/sys] ${message}`);
const fail = (message) => {
  console.error(`[@ambit/sys] addon build failed: ${message}`);
  process.exit(1);
};

/** A directory with include/node/node_api.h, as node-gyp's --nodedir expects, or undefined. */
function localNodeDir() {
  const candidates = [
    process.env.npm_config_nodedir,
    path.resolve(path.dirname(process.execPath), ".."), // official tarballs, nvm, distro packages
    "/usr",
  ];
  return candidates.find((dir) => dir && fs.existsSync(path.join(dir, "include", "node", "node_api.h")));
}

function packageDir(name) {
  try {
    return path.dirname(require.resolve(`${name}/package.json`));
  } catch {
    return fail(`the npm package ${name} is missing (run npm install)`);
  }
}

function nodeGypScript() {
  const candidates = [];
  try {
    candidates.push(require.resolve("node-gyp/bin/node-gyp.js"));
  } catch {
    // not installed next to us: use npm's bundled copy
  }
  if (process.env.npm_execpath) {
    candidates.push(path.join(path.dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  }
  candidates.push(path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  return candidates.find((file) => fs.existsSync(file));
}

const sources = JSON.parse(fs.readFileSync(gypFile, "utf8")).targets[0].sources;

/** Identity of the inputs and the requested way of building. */
function inputKey(mode, nodeDir) {
  const hash = createHash("sha256");
  hash.update(`${mode}\0${nodeDir ?? ""}\0${process.platform}-${process.arch}\0`);
  const nativeDir = path.join(pkgDir, "native");
  const files = [gypFile, fileURLToPath(import.meta.url), ...fs.readdirSync(nativeDir).sort().map((f) => path.join(nativeDir, f))];
  for (const file of files) hash.update(fs.readFileSync(file));
  return hash.digest("hex");
}

function run(command, args) {
  log(`$ ${[command, ...args].join(" ")}`);
  const result = spawnSync(command, args, { cwd: pkgDir, stdio: "inherit" });
  if (result.error) log(`${command}: ${result.error.message}`);
  return result.status === 0;
}

function buildWithNodeGyp(nodeDir) {
  const script = nodeGypScript();
  if (!script) {
    log("node-gyp not found");
    return false;
  }
  return run(process.execPath, [script, "rebuild", `--nodedir=${nodeDir}`, "--jobs=max"]);
}

function buildPlain() {
  const napiInclude = path.join(packageDir("node-api-headers"), "include");
  const addonApiInclude = packageDir("node-addon-api");
  const cxx = process.env.CXX || "g++";
  fs.mkdirSync(outDir, { recursive: true });
  const tmp = `${output}.tmp`;
  const ok = run(cxx, [
    "-shared", "-fPIC", "-std=c++17", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-pthread",
    "-DNAPI_VERSION=8", "-DNAPI_CPP_EXCEPTIONS", "-DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
    `-I${napiInclude}`, `-I${addonApiInclude}`,
    ...sources.map((s) => path.join(pkgDir, s)),
    "-o", tmp,
  ]);
  if (ok) fs.renameSync(tmp, output);
  else fs.rmSync(tmp, { force: true });
  return ok;
}

const forcePlain = process.env.AMBIT_SYS_PLAIN_BUILD === "1";
const force = process.argv.includes("--force") || process.env.AMBIT_SYS_FORCE_BUILD === "1";
const nodeDir = forcePlain ? undefined : localNodeDir();
const mode = nodeDir ? "node-gyp" : "plain";
const key = inputKey(mode, nodeDir);

if (!force && fs.existsSync(output) && fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8").trim() === key) {
  log(`addon up to date (${path.relative(pkgDir, output)}, ${mode} build)`);
  process.exit(0);
}

if (nodeDir) {
  log(`building the addon with node-gyp against local Node headers in ${nodeDir}/include/node`);
  if (!buildWithNodeGyp(nodeDir)) {
    log("node-gyp failed; falling back to the plain compiler build");
    if (!buildPlain()) fail("both node-gyp and the plain build failed (see the output above)");
  }
} else {
  log(forcePlain ? "AMBIT_SYS_PLAIN_BUILD=1: plain compiler build" : "no local Node headers: plain compiler build against node-api-headers");
  if (!buildPlain()) fail(`${process.env.CXX || "g++"} failed (see the output above)`);
}
if (!fs.existsSync(output)) fail(`${output} was not produced`);
fs.writeFileSync(stampFile, `${key}\n`);
log(`built ${path.relative(pkgDir, output)}`);
