// The real controller process (dist/main.js) against the local cluster, attacked on 15012 (TLS, xDS + CA) and 15010
// (plaintext xDS) with requests that claim 150 MiB, with and without a token: each is refused (UNAUTHENTICATED
// before anything is read, RESOURCE_EXHAUSTED from the length prefix), the client is stopped after a flow-control
// window, and the process's resident memory (VmRSS from /proc/<pid>/status, sampled throughout) stays flat.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { adminApi, down, paths, up, waitFor, type Api } from "@ambit/localcluster";
import { CREATE_CERTIFICATE_PATH } from "@ambit/protocol";
import { DELTA_ADS_PATH, grpcStatusOf, sendOversizedRequest, type OversizedResult } from "@ambit/xds";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

if (process.getuid?.() !== 0) throw new Error("the controller's cluster tests need root (they run the local cluster)");

const main = fileURLToPath(new URL("../dist/main.js", import.meta.url));
if (!existsSync(main)) throw new Error(`${main} is missing: build the controller first (npx turbo run build --filter=@ambit/controller)`);

const MiB = 1024 * 1024;
const CLAIM = 150 * MiB;
/** Growth of the controller's resident memory allowed over the whole attack (each claim is 150 MiB). */
const MAX_GROWTH = 64 * MiB;

let api: Api;
let child: ChildProcess;
let output = "";
const ports = { plaintext: 0, tls: 0, monitoring: 0 };
const freePort = () => new Promise<number>((r) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as { port: number }).port; s.close(() => r(p)); }); });
const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))![1]) * 1024;
const token = async (ns: string, sa: string) =>
  (await api.post<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, { spec: { audiences: ["istio-ca"], expirationSeconds: 3600 } })).status.token;
let root = "";
const tls = () => ({ tls: { ca: root, servername: "istiod.istio-system.svc" } });

/** Runs `attack` while sampling the controller's RSS every few milliseconds; returns its results and the peak. */
async function measured<T>(attack: () => Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = rss();
  const sampler = setInterval(() => { peak = Math.max(peak, rss()); }, 5);
  try {
    const result = await attack();
    peak = Math.max(peak, rss());
    return { result, peak };
  } finally {
    clearInterval(sampler);
  }
}

beforeAll(async () => {
  await up({ nodes: 1, progress: () => undefined });
  api = adminApi();
  for (const ns of ["istio-system", "app"]) await api.post("/api/v1/namespaces", { metadata: { name: ns } });
  await api.post("/api/v1/namespaces/app/serviceaccounts", { metadata: { name: "web" } });
  await api.post("/api/v1/namespaces/istio-system/serviceaccounts", { metadata: { name: "ztunnel" } });
  ports.plaintext = await freePort();
  ports.tls = await freePort();
  ports.monitoring = await freePort();
  child = spawn(process.execPath, [main], {
    env: {
      PATH: process.env["PATH"] ?? "", KUBECONFIG: paths.adminKubeconfig(), POD_NAMESPACE: "istio-system", POD_NAME: "limit-test", LOG_LEVEL: "warn",
      XDS_PLAINTEXT_PORT: String(ports.plaintext), XDS_TLS_PORT: String(ports.tls), MONITORING_PORT: String(ports.monitoring),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d: Buffer) => { output += d.toString(); });
  child.stderr!.on("data", (d: Buffer) => { output += d.toString(); });
  await waitFor("the controller ready", async () => {
    if (child.exitCode !== null) throw new Error(`the controller exited (${child.exitCode}): ${output}`);
    return (await fetch(`http://127.0.0.1:${ports.monitoring}/ready`).catch(() => null))?.status === 200;
  }, 90_000, 100);
  root = await waitFor("the published root", async () =>
    (await api.get<{ data: Record<string, string> }>("/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert").catch(() => null))?.data["root-cert.pem"], 60_000, 100);
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
  await down();
});

const expectStopped = (r: OversizedResult, code: grpc.status) => {
  expect(grpcStatusOf(r), JSON.stringify(r.headers)).toBe(code);
  // The server read the prefix and at most a flow-control window: the client could not push the 150 MiB.
  expect(r.bytesOnWire).toBeLessThan(16 * MiB);
};

describe("the controller under 150 MiB requests", () => {
  it("without a token, two at once on the CA (15012) and one on xDS (15010): UNAUTHENTICATED, memory flat", async () => {
    const before = rss();
    const { result, peak } = await measured(() => Promise.all([
      sendOversizedRequest(`https://127.0.0.1:${ports.tls}`, CREATE_CERTIFICATE_PATH, CLAIM, tls()),
      sendOversizedRequest(`https://127.0.0.1:${ports.tls}`, CREATE_CERTIFICATE_PATH, CLAIM, tls()),
      sendOversizedRequest(`http://127.0.0.1:${ports.plaintext}`, DELTA_ADS_PATH, CLAIM),
    ]));
    for (const r of result) expectStopped(r, grpc.status.UNAUTHENTICATED);
    expect(peak - before, `RSS ${before} → peak ${peak}`).toBeLessThan(MAX_GROWTH);
  });

  it("with valid tokens, on the CA and on xDS over TLS and plaintext: RESOURCE_EXHAUSTED, memory flat", async () => {
    const web = { authorization: `Bearer ${await token("app", "web")}` };
    const ztunnel = { authorization: `Bearer ${await token("istio-system", "ztunnel")}` };
    const before = rss();
    const { result, peak } = await measured(() => Promise.all([
      sendOversizedRequest(`https://127.0.0.1:${ports.tls}`, CREATE_CERTIFICATE_PATH, CLAIM, { ...tls(), headers: web }),
      sendOversizedRequest(`https://127.0.0.1:${ports.tls}`, DELTA_ADS_PATH, CLAIM, { ...tls(), headers: ztunnel }),
      sendOversizedRequest(`http://127.0.0.1:${ports.plaintext}`, DELTA_ADS_PATH, CLAIM, { headers: ztunnel }),
      sendOversizedRequest(`http://127.0.0.1:${ports.plaintext}`, CREATE_CERTIFICATE_PATH, 4 * MiB + 1, { headers: web }),
    ]));
    for (const r of result) expectStopped(r, grpc.status.RESOURCE_EXHAUSTED);
    expect(peak - before, `RSS ${before} → peak ${peak}`).toBeLessThan(MAX_GROWTH);
  });

  it("is still serving afterwards", async () => {
    expect((await fetch(`http://127.0.0.1:${ports.monitoring}/ready`)).status).toBe(200);
    expect(child.exitCode).toBeNull();
  });
});
