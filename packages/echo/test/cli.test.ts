// The ambit-echo process (dist/main.js): modes, validation, signals.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEcho, type EchoServer } from "../src/index.js";
import { freePort, requireBuilt, runCli, spawnServer, startRequest } from "./helpers.js";

let server: EchoServer;
const identity = { pod: "echo-abc", namespace: "demo", node: "node-1", ip: "10.244.1.9" };

beforeAll(async () => {
  requireBuilt();
  server = await startEcho({ host: "127.0.0.1", identity, tcpGreeting: false });
});
afterAll(() => server.close());

const LINE = /^(\S+) 200 pod=echo-abc node=node-1 ip=10\.244\.1\.9 peer=127\.0\.0\.1:(\d+)$/;

describe("client mode", () => {
  it("prints one line per answer and exits 0 after --count answers, a new connection each time", async () => {
    const run = await runCli(["client", `http://127.0.0.1:${server.httpPort}/`, "--count", "2", "--interval", "50"]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    const matches = lines.map((l) => LINE.exec(l));
    expect(matches.every((m) => m !== null)).toBe(true);
    expect(new Date(matches[0]![1]!).toISOString()).toBe(matches[0]![1]);
    expect(matches[0]![2]).not.toBe(matches[1]![2]); // different client ports: new connections
  });

  it("--keepalive reuses one connection; h2c:// URLs speak HTTP/2", async () => {
    const keep = await runCli(["client", `http://localhost:${server.httpPort}/`, "--count=3", "--interval=10", "--keepalive"]);
    expect(keep.code).toBe(0);
    const ports = new Set(keep.stdout.trim().split("\n").map((l) => LINE.exec(l)?.[2]));
    expect(ports.size).toBe(1);
    const h2 = await runCli(["client", `h2c://127.0.0.1:${server.httpPort}/`, "--count", "2", "--interval", "10"]);
    expect(h2.code).toBe(0);
    expect(h2.stdout.trim().split("\n").every((l) => LINE.test(l))).toBe(true);
  });

  it("prints error lines and exits non-zero when every request failed", async () => {
    const port = await freePort();
    const run = await runCli(["client", `http://127.0.0.1:${port}/`, "--count", "2", "--interval", "10", "--timeout", "1000"]);
    expect(run.code).toBe(1);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/^\S+Z error connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
  });

  it("rejects a URL it cannot use", async () => {
    const run = await runCli(["client", "https://example.org/"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/unsupported URL scheme "https:"/);
  });
});

describe("tcp-client mode", () => {
  it("sends the message and prints what comes back", async () => {
    const run = await runCli(["tcp-client", "127.0.0.1", String(server.tcpPort)]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("ping\n");
    const custom = await runCli(["tcp-client", "127.0.0.1", String(server.tcpPort), "--message", "a\\tb\\n"]);
    expect(custom.stdout).toBe("a\tb\n");
  });
});

describe("validation", () => {
  it.each([
    ["HTTP_PORT", "abc"],
    ["HTTP_PORT", "70000"],
    ["TCP_PORT", "-1"],
  ])("%s=%s exits 2 naming the variable and the fix", async (name, value) => {
    const run = await runCli([], { [name]: value });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${name}=${JSON.stringify(value)} is not a valid port`);
    expect(run.stderr).toContain(`Fix: set ${name} to an integer from 1 to 65535`);
  });

  it("an unknown mode prints usage and exits 2", async () => {
    const run = await runCli(["bogus"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown mode "bogus"');
    expect(run.stderr).toContain("Usage:");
  });

  it("other mistakes exit 2 too", async () => {
    expect((await runCli([], { HTTP_PORT: "0", TCP_PORT: "0" })).stderr).toMatch(/nothing to serve/);
    expect((await runCli([], { BIND_ADDRESS: "localhost" })).code).toBe(2);
    expect((await runCli([], { TCP_GREETING: "maybe" })).code).toBe(2);
    expect((await runCli(["client", "http://x/", "--count", "zero"])).code).toBe(2);
    expect((await runCli(["client", "http://x/", "--bogus"])).code).toBe(2);
    expect((await runCli(["tcp-client", "127.0.0.1", "99999"])).code).toBe(2);
  });
});

describe("serve mode", () => {
  it("logs start, serves, and on SIGTERM finishes the in-flight request and exits 0", async () => {
    const [httpPort, tcpPort] = [await freePort(), await freePort()];
    const srv = await spawnServer({ HTTP_PORT: String(httpPort), TCP_PORT: String(tcpPort), POD_NAME: "spawned", ECHO_LOG_REQUESTS: "1" });
    expect(srv.lines[0]).toMatchObject({ msg: "ambit-echo started", pod: "spawned", httpPort, tcpPort, bind: "127.0.0.1" });
    // Signalled while the request waits on its delay (armed before the 1 s grace, so it fires first).
    const inFlight = startRequest(httpPort, "/delay/200");
    await inFlight.handled;
    srv.child.kill("SIGTERM");
    const answer = await inFlight.answer;
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ pod: "spawned", path: "/delay/200" });
    const { code } = await srv.exited;
    expect(code).toBe(0);
    expect(srv.lines.find((l) => l["msg"] === "request")).toMatchObject({ path: "/delay/200", status: 200 });
    expect(srv.lines.at(-1)).toMatchObject({ msg: "ambit-echo stopped", signal: "SIGTERM" });
  });

  it("exits 1 with a JSON error line when a port is taken", async () => {
    const run = await runCli([], { HTTP_PORT: String(server.httpPort), TCP_PORT: "0", BIND_ADDRESS: "127.0.0.1" });
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stderr)).toMatchObject({ level: "error", msg: "ambit-echo failed to start", error: expect.stringMatching(/EADDRINUSE/) });
  });

  it("a port of 0 turns that listener off", async () => {
    const httpPort = await freePort();
    const srv = await spawnServer({ HTTP_PORT: String(httpPort), TCP_PORT: "0" });
    expect(srv.lines[0]).toMatchObject({ httpPort, tcpPort: null });
    srv.child.kill("SIGTERM");
    expect((await srv.exited).code).toBe(0);
  });
});
