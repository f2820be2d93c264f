// The poller's thread must not keep an idle process alive, and must keep a busy one alive.
import { execFileSync, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, expect, it } from "vitest";

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(pkgDir, "dist", "index.js");

beforeAll(() => {
  // A child Node process cannot load the TypeScript sources: build dist/ from them first.
  const tsc = createRequire(path.join(pkgDir, "package.json")).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
    cwd: pkgDir,
    stdio: "pipe",
  });
}, 60_000);

function runChild(code: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", `import * as sys from ${JSON.stringify(entry)};\n${code}`], {
    encoding: "utf8",
    timeout: 10_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

it("an idle process exits once its seqpacket sockets are closed", () => {
  const r = runChild(`
    const [a, b] = sys.seqpacketPair();
    b.on("message", (m) => { console.log("got", m.data.toString()); a.destroy(); b.destroy(); });
    await a.send(Buffer.from("hi"));
  `);
  expect(r.stderr).toBe("");
  expect(r.stdout).toBe("got hi\n");
  expect(r.status).toBe(0);
});

it("an unref'd socket does not hold the process, a ref'd one does until the peer hangs up", () => {
  const r = runChild(`
    const [a, b] = sys.seqpacketPair();
    a.unref();
    a.on("message", () => {});
    b.on("close", () => console.log("b closed"));
    b.on("message", () => {});
    // An unref'd timer holds nothing: it fires only if b (ref'd, reading) keeps the process up.
    setTimeout(() => a.destroy(), 100).unref();
  `);
  expect(r.stdout).toBe("b closed\n");
  expect(r.status).toBe(0);
});

it("works in a worker thread (own namespace fd and poller), and survives its termination mid-traffic", () => {
  const r = runChild(`
    import { Worker } from "node:worker_threads";
    const worker = new Worker(\`
      (async () => {
        const sys = await import(\${JSON.stringify(${JSON.stringify(entry)})});
        const { parentPort } = await import("node:worker_threads");
        const fd = sys.listenTcp({ netns: "/proc/self/ns/net", host: "127.0.0.1", port: 0 });
        sys.closeFd(fd);
        const [a, b] = sys.seqpacketPair();
        let n = 0;
        b.on("message", () => { if (++n === 10) parentPort.postMessage("flowing"); });
        for (;;) await a.send(Buffer.alloc(1024));
      })();
    \`, { eval: true });
    worker.on("error", (err) => { console.log("worker error", err); process.exitCode = 1; });
    worker.once("message", async (m) => {
      console.log(m);
      await worker.terminate();
      console.log("terminated");
    });
  `);
  expect(r.stderr).toBe("");
  expect(r.stdout).toBe("flowing\nterminated\n");
  expect(r.status).toBe(0);
});
