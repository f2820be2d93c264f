// The HTTP side of the echo server, in-process, over real sockets on 127.0.0.1.
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EchoFetchError, fetchEcho, startEcho, type EchoReply, type EchoServer } from "../src/index.js";
import { choppingProxy, get, pingAcked, rawExchange, startRequest } from "./helpers.js";

const identity = { pod: "echo-7d9f-abcde", namespace: "demo", node: "node-2", ip: "10.244.2.7" };
let server: EchoServer;
const logged: Record<string, unknown>[] = [];

beforeAll(async () => {
  server = await startEcho({ host: "127.0.0.1", identity, tcpPort: null, logRequests: true, log: (e) => logged.push(e) });
});
afterAll(() => server.close());

/** Bound of every wait for a condition: generous, for a busy machine. */
const WAIT = { timeout: 15_000, interval: 20 };

const json = (body: Buffer) => JSON.parse(body.toString("utf8")) as EchoReply;

/** One request over HTTP/2 with prior knowledge, with node's own http2 client. */
function h2Request(port: number, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => (head = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("end", () => {
      session.close();
      resolve({ status: Number(head[":status"]), headers: head, body: Buffer.concat(chunks) });
    });
    if (body !== undefined) stream.end(body);
  });
}

describe("HTTP/1.1", () => {
  it("answers any method and path with the identity, peer, protocol, request line and headers", async () => {
    const port = server.httpPort as number;
    const answer = await get(port, "/some/path?x=1&y=2", { method: "PUT", headers: { "x-ambit-test": "yes" } });
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/json");
    const reply = json(answer.body);
    expect(reply).toMatchObject({
      ...identity,
      peer: `127.0.0.1:${answer.localPort}`,
      local: `127.0.0.1:${port}`,
      protocol: "HTTP/1.1",
      method: "PUT",
      path: "/some/path?x=1&y=2",
      authority: `127.0.0.1:${port}`,
      status: 200,
      bodyBytes: 0,
    });
    expect(reply.headers["x-ambit-test"]).toBe("yes");
    expect(reply.headers["host"]).toBe(`127.0.0.1:${port}`);
    expect(reply.body).toBeUndefined();
  });

  it("reads request bodies, reports their length and echoes small ones", async () => {
    const small = json((await get(server.httpPort as number, "/upload", { method: "POST", body: "hello ambit" })).body);
    expect(small).toMatchObject({ bodyBytes: 11, body: "hello ambit" });
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const large = json((await get(server.httpPort as number, "/upload", { method: "POST", body: big })).body);
    expect(large.bodyBytes).toBe(big.length);
    expect(large.body).toBeUndefined();
  });

  it("keeps a connection alive across several requests", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const peers = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const answer = await get(server.httpPort as number, `/req/${i}`, { agent });
      expect(answer.status).toBe(200);
      expect(answer.headers["connection"]).toBe("keep-alive");
      const reply = json(answer.body);
      expect(reply.path).toBe(`/req/${i}`);
      peers.add(reply.peer);
    }
    agent.destroy();
    expect(peers.size).toBe(1);
  });

  it("answers pipelined requests that arrive in the same segment as the first bytes", async () => {
    const req = (p: string, close = false) => `GET ${p} HTTP/1.1\r\nHost: x\r\n${close ? "Connection: close\r\n" : ""}\r\n`;
    const out = (await rawExchange(server.httpPort as number, req("/one") + req("/two") + req("/three", true))).toString();
    expect(out.match(/"path":"\/\w+"/g)).toEqual(['"path":"/one"', '"path":"/two"', '"path":"/three"']);
  });

  it("/status/<code> answers with that status", async () => {
    const answer = await get(server.httpPort as number, "/status/503");
    expect(answer.status).toBe(503);
    expect(json(answer.body)).toMatchObject({ status: 503, path: "/status/503" });
    const noContent = await get(server.httpPort as number, "/status/204");
    expect(noContent.status).toBe(204);
    expect(noContent.body.length).toBe(0);
    const bad = await get(server.httpPort as number, "/status/abc");
    expect(bad.status).toBe(400);
    expect(json(bad.body).error).toMatch(/\/status\/<code> needs a code from 200 to 599/);
  });

  it("/bytes/<n> streams exactly n bytes", async () => {
    const answer = await get(server.httpPort as number, "/bytes/1048576");
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/octet-stream");
    expect(answer.headers["content-length"]).toBe("1048576");
    expect(answer.body.length).toBe(1048576);
    expect((await get(server.httpPort as number, "/bytes/0")).body.length).toBe(0);
    expect((await get(server.httpPort as number, "/bytes/100001")).body.length).toBe(100001);
    expect((await get(server.httpPort as number, `/bytes/${1024 ** 3 + 1}`)).status).toBe(400);
  });

  it("/delay/<ms> answers once its timer of that many ms has fired, not before", async () => {
    // The socket is real; the server's timers are fake, stepped across the delay.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const { handled, answer } = startRequest(server.httpPort as number, "/delay/150");
      await handled; // the handler has the request: its only timer is the delay
      expect(vi.getTimerCount()).toBe(1);
      await vi.advanceTimersByTimeAsync(149);
      expect(vi.getTimerCount()).toBe(1); // still waiting 1 ms before the end
      await vi.advanceTimersByTimeAsync(1);
      expect(vi.getTimerCount()).toBe(0);
      expect((await answer).status).toBe(200);
    } finally {
      vi.useRealTimers();
    }
    expect((await get(server.httpPort as number, "/delay/soon")).status).toBe(400);
  });

  it("/healthz answers ok as text", async () => {
    const answer = await get(server.httpPort as number, "/healthz");
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toMatch(/^text\/plain/);
    expect(answer.body.toString()).toBe("ok");
  });

  it("logs one line per request when asked", async () => {
    await get(server.httpPort as number, "/logged-path");
    expect(logged.find((e) => e["path"] === "/logged-path")).toMatchObject({ msg: "request", method: "GET", status: 200, protocol: "HTTP/1.1" });
  });
});

describe("h2c (HTTP/2 with prior knowledge) on the same port", () => {
  it("answers with protocol HTTP/2 and the request's headers without pseudo-headers", async () => {
    const port = server.httpPort as number;
    const answer = await h2Request(port, { ":method": "POST", ":path": "/h2/path?q=1", "x-ambit-test": "h2" }, Buffer.from("h2 body"));
    expect(answer.status).toBe(200);
    const reply = json(answer.body);
    expect(reply).toMatchObject({
      ...identity, protocol: "HTTP/2", method: "POST", path: "/h2/path?q=1", authority: `127.0.0.1:${port}`, bodyBytes: 7, body: "h2 body",
    });
    expect(reply.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(reply.headers["x-ambit-test"]).toBe("h2");
    expect(Object.keys(reply.headers).some((k) => k.startsWith(":"))).toBe(false);
  });

  it("serves /status, /bytes and /healthz too", async () => {
    const port = server.httpPort as number;
    expect((await h2Request(port, { ":path": "/status/503" })).status).toBe(503);
    const bytes = await h2Request(port, { ":path": "/bytes/1048576" });
    expect(bytes.body.length).toBe(1048576);
    expect((await h2Request(port, { ":path": "/healthz" })).body.toString()).toBe("ok");
  });

  it("works when the connection preface arrives in several small pieces", async () => {
    const proxy = await choppingProxy(server.httpPort as number, 3, 15, 40);
    try {
      const answer = await h2Request(proxy.port, { ":path": "/split" });
      expect(answer.status).toBe(200);
      expect(json(answer.body)).toMatchObject({ protocol: "HTTP/2", path: "/split" });
    } finally {
      await proxy.close();
    }
  });

  it("still treats a request starting like the preface (P…) as HTTP/1.1 when the bytes diverge", async () => {
    const proxy = await choppingProxy(server.httpPort as number, 1, 10, 8);
    try {
      const answer = await get(proxy.port, "/diverges", { method: "PUT", body: "x" });
      expect(answer.status).toBe(200);
      expect(json(answer.body)).toMatchObject({ protocol: "HTTP/1.1", method: "PUT", path: "/diverges", bodyBytes: 1 });
    } finally {
      await proxy.close();
    }
  });

  it("drops a connection that ends before the protocol is known", async () => {
    const out = await rawExchange(server.httpPort as number, "PRI * HTTP/2");
    expect(out.length).toBe(0);
    expect((await get(server.httpPort as number, "/still-up")).status).toBe(200);
  });
});

describe("robustness", () => {
  it("survives HTTP/2 clients that go away mid-request, and logs those requests", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.httpPort}`);
    session.on("error", () => {});
    const stream = session.request({ ":path": "/delay/60000?gone=h2" });
    stream.on("error", () => {});
    await pingAcked(session); // the server has the request
    session.destroy();
    await vi.waitFor(() => expect(logged.find((e) => e["path"] === "/delay/60000?gone=h2")).toMatchObject({ protocol: "HTTP/2" }), WAIT);
    expect((await fetchEcho(`h2c://127.0.0.1:${server.httpPort}/after-reset`)).path).toBe("/after-reset");
  });

  it("survives HTTP/1 clients that go away mid-request and mid-download, and logs those requests", async () => {
    const midRequest = startRequest(server.httpPort as number, "/delay/60000?gone=h1");
    await midRequest.handled;
    midRequest.req.destroy();
    const midDownload = startRequest(server.httpPort as number, "/bytes/50000000?gone=h1");
    midDownload.req.on("response", (res) => res.once("data", () => midDownload.req.destroy()));
    await Promise.all([midRequest.answer, midDownload.answer].map((p) => expect(p).rejects.toThrow()));
    for (const path of ["/delay/60000?gone=h1", "/bytes/50000000?gone=h1"]) {
      await vi.waitFor(() => expect(logged.find((e) => e["path"] === path)).toMatchObject({ protocol: "HTTP/1.1" }), WAIT);
    }
    expect((await get(server.httpPort as number, "/after-abort")).status).toBe(200);
  });

  it("answers a malformed HTTP/1 request with 400 and keeps serving", async () => {
    const out = (await rawExchange(server.httpPort as number, "GARBAGE\r\n\r\n")).toString();
    expect(out).toMatch(/^HTTP\/1\.1 400 Bad Request/);
    expect((await get(server.httpPort as number, "/after-garbage")).status).toBe(200);
  });
});

describe("fetchEcho", () => {
  it("returns the parsed reply over HTTP/1.1 and h2c", async () => {
    const port = server.httpPort as number;
    const h1 = await fetchEcho(`http://127.0.0.1:${port}/f1`, { headers: { "x-k": "v" } });
    expect(h1).toMatchObject({ protocol: "HTTP/1.1", path: "/f1", pod: identity.pod });
    expect(h1.headers["x-k"]).toBe("v");
    const h2 = await fetchEcho(`h2c://127.0.0.1:${port}/f2`, { method: "POST", body: "abc" });
    expect(h2).toMatchObject({ protocol: "HTTP/2", path: "/f2", method: "POST", bodyBytes: 3 });
    expect((await fetchEcho(`http://127.0.0.1:${port}/f3`, { http2: true })).protocol).toBe("HTTP/2");
    expect((await fetchEcho(`http://127.0.0.1:${port}/status/503`)).status).toBe(503);
  });

  it("throws EchoFetchError for answers that are not echo replies and for connection failures", async () => {
    const port = server.httpPort as number;
    const notEcho = await fetchEcho(`http://127.0.0.1:${port}/healthz`).catch((e: unknown) => e);
    expect(notEcho).toBeInstanceOf(EchoFetchError);
    expect(notEcho).toMatchObject({ status: 200, body: "ok" });
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await expect(fetchEcho(`http://127.0.0.1:${closed}/`)).rejects.toThrow(/ECONNREFUSED/);
    await expect(fetchEcho(`h2c://127.0.0.1:${closed}/`)).rejects.toThrow(/ECONNREFUSED/);
    await expect(fetchEcho(`http://127.0.0.1:${port}/delay/2000`, { timeoutMs: 100 })).rejects.toThrow(/timeout after 100 ms/);
    await expect(fetchEcho(`h2c://127.0.0.1:${port}/delay/2000`, { timeoutMs: 100 })).rejects.toThrow(/timeout after 100 ms/);
  });
});

describe("startEcho and close()", () => {
  it("reports null for a listener that is off and ephemeral ports for 0", async () => {
    const s = await startEcho({ host: "127.0.0.1", httpPort: null, tcpPort: 0 });
    expect(s.httpPort).toBeNull();
    expect(s.tcpPort).toBeGreaterThan(0);
    await s.close();
    await s.close(); // idempotent
  });

  it("lets in-flight requests finish, closes idle connections, and stops accepting", async () => {
    // A grace period longer than the test: close() must end by itself, not by destroying what is left.
    const s = await startEcho({ host: "127.0.0.1", tcpPort: null, shutdownGraceMs: 600_000 });
    const port = s.httpPort as number;
    const idleAgent = new http.Agent({ keepAlive: true });
    const idleClosed = new Promise((resolve) => idleAgent.once("free", (socket: net.Socket) => socket.once("close", resolve)));
    await get(port, "/warm", { agent: idleAgent }); // leaves an idle keep-alive connection
    // Two requests whose bodies are still open: in flight until the test ends them.
    const h1 = startRequest(port, "/h1", { method: "POST", openBody: true });
    await h1.handled;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const h2 = session.request({ ":method": "POST", ":path": "/h2" });
    const h2Answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      let status = 0;
      let body = "";
      h2.on("response", (h) => (status = Number(h[":status"])));
      h2.on("data", (c: Buffer) => (body += c.toString()));
      h2.on("end", () => resolve({ status, body }));
      h2.on("error", reject);
    });
    await pingAcked(session);

    let closed = false;
    const closing = s.close().then(() => (closed = true));
    await idleClosed; // the idle connection goes at once
    await expect(get(port, "/after")).rejects.toThrow(/ECONNREFUSED/);
    expect(closed).toBe(false); // waits for the two in flight
    h1.req.end("a");
    h2.end("bc");
    const [a1, a2] = await Promise.all([h1.answer, h2Answer]);
    expect(a1.status).toBe(200);
    expect(a1.headers["connection"]).toBe("close");
    expect(json(a1.body)).toMatchObject({ path: "/h1", bodyBytes: 1 });
    expect(a2.status).toBe(200);
    expect(JSON.parse(a2.body)).toMatchObject({ path: "/h2", bodyBytes: 2 });
    await closing;
    session.destroy();
    idleAgent.destroy();
  });

  it("destroys what is still running once the grace period has passed, not before", async () => {
    const s = await startEcho({ host: "127.0.0.1", tcpPort: null, shutdownGraceMs: 200 });
    const stuck = startRequest(s.httpPort as number, "/stuck", { method: "POST", openBody: true }); // never ends
    const cut = stuck.answer.catch((err: unknown) => err);
    await stuck.handled;
    // Sockets stay real; the grace timer is fake, stepped across its end.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const closing = s.close();
      expect(vi.getTimerCount()).toBe(1);
      await vi.advanceTimersByTimeAsync(199);
      expect(vi.getTimerCount()).toBe(1); // nothing destroyed 1 ms before the end
      await vi.advanceTimersByTimeAsync(1);
      await closing;
    } finally {
      vi.useRealTimers();
    }
    expect(await cut).toMatchObject({ code: "ECONNRESET" }); // "socket hang up": no answer, the server cut it
  });
});
