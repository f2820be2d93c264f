// What one unauthenticated HTTP/2 connection can cost the controller's gRPC server (15010/15012, xDS and the CA):
// it may open at most MAX_STREAMS_PER_CONNECTION streams at once, at most `maxInFlight` token reviews run at a
// time (the rest is refused with UNAVAILABLE at once and counted), and review outcomes are cached by token hash.
// The API server is stood in for by a reviewer that holds every review until the test releases it: a stalled API
// server, which the real one cannot be made to be on demand.
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { StaticCollection } from "@ambit/kube";
import { CREATE_CERTIFICATE_PATH } from "@ambit/protocol";
import { DELTA_ADS_PATH, DeltaXdsServer, MAX_STREAMS_PER_CONNECTION, type AuthResult } from "@ambit/xds";
import { afterEach, describe, expect, it } from "vitest";
import { NodeAuthorizer } from "../src/ca/node-authorizer.js";
import type { CaServiceOptions } from "../src/ca/service.js";
import { controllerGrpcServer } from "../src/controller.js";
import { AuthenticationError, AuthenticationUnavailable, TokenAuthenticator, type TokenReviewStatus } from "../src/auth.js";

const MAX_IN_FLIGHT = 4;
const WINDOW = 64 * 1024;
let server: grpc.Server | undefined;
let xds: DeltaXdsServer | undefined;
let session: http2.ClientHttp2Session | undefined;
let release: () => void = () => {};
afterEach(async () => {
  release();
  session?.destroy();
  await xds?.close(100);
  server?.forceShutdown();
  server = xds = session = undefined;
});

/** The controller's gRPC server with one TokenAuthenticator for both services, whose reviews wait for `release`. */
async function start() {
  const reviews = { inFlight: 0, maxInFlight: 0, total: 0, busy: 0 };
  const gate = new Promise<void>((r) => (release = r));
  const tokens = new TokenAuthenticator(async (token): Promise<TokenReviewStatus> => {
    reviews.total++;
    reviews.maxInFlight = Math.max(reviews.maxInFlight, ++reviews.inFlight);
    await gate;
    reviews.inFlight--;
    return token === "good"
      ? { authenticated: true, user: { username: "system:serviceaccount:app:web", groups: ["system:serviceaccounts"] } }
      : { authenticated: false, error: "invalid bearer token" };
  }, ["istio-ca"], "cluster.local", { maxInFlight: MAX_IN_FLIGHT, onBusy: () => reviews.busy++ });
  const ca: CaServiceOptions = {
    ca: () => { throw new Error("no CA in this test: nothing may get this far"); },
    authenticate: (authorization) => tokens.authenticate(authorization),
    nodeAuthorizer: new NodeAuthorizer(new StaticCollection({ name: "pods" }), new Set(), "cluster.local"),
    defaultTtlSeconds: 3600, maxTtlSeconds: 3600,
  };
  xds = new DeltaXdsServer({ ready: true, authenticate: async (md) => ({ ...(await tokens.authenticate(md.get("authorization")[0]?.toString())) }) as AuthResult });
  server = controllerGrpcServer(xds, ca, 4 * 1024 * 1024);
  const port = await new Promise<number>((res, rej) => server!.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { url: `http://127.0.0.1:${port}`, reviews, tokens };
}

async function until(check: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("an unauthenticated flood on one connection", () => {
  for (const path of [CREATE_CERTIFICATE_PATH, DELTA_ADS_PATH]) {
    it(`${path}: ${MAX_STREAMS_PER_CONNECTION} streams at once, ${MAX_IN_FLIGHT} reviews in flight, the rest UNAVAILABLE at once`, async () => {
      const { url, reviews } = await start();
      // The client claims it may open a million streams and buffer a GiB, and opens 2000 with a window of data each.
      session = http2.connect(url, { maxSessionMemory: 1000, peerMaxConcurrentStreams: 1e6 });
      session.on("error", () => {});
      await new Promise<void>((r) => session!.once("remoteSettings", () => r()));
      expect(session.remoteSettings.maxConcurrentStreams).toBe(MAX_STREAMS_PER_CONNECTION);
      const N = 2000;
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(4 * 1024 * 1024 - 16, 1);
      const body = Buffer.concat([prefix, Buffer.alloc(WINDOW, 7)]);
      const streams = Array.from({ length: N }, (_, i) => {
        const s = { status: undefined as string | undefined, closed: false, rstCode: undefined as number | undefined };
        const req = session!.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", authorization: `Bearer bad-${i}` });
        req.on("response", (h) => (s.status ??= h["grpc-status"] as string | undefined));
        req.on("trailers", (h) => (s.status ??= h["grpc-status"] as string | undefined));
        req.on("error", () => {});
        req.on("close", () => {
          s.closed = true;
          s.rstCode = req.rstCode;
        });
        req.resume();
        req.write(body);
        return s;
      });
      // Every stream but those whose review is held ends, refused without a review.
      await until(() => streams.filter((s) => s.closed).length >= N - MAX_IN_FLIGHT, "every stream beyond the reviews in flight refused");
      const open = streams.filter((s) => !s.closed);
      expect(reviews.maxInFlight).toBeLessThanOrEqual(MAX_IN_FLIGHT);
      expect(reviews.total).toBe(MAX_IN_FLIGHT);
      // Refused: by the review cap (UNAVAILABLE, counted), or by HTTP/2 before gRPC saw the stream.
      const refused = streams.filter((s) => s.closed);
      const { NGHTTP2_REFUSED_STREAM, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;
      expect(refused.filter((s) => s.status === undefined && s.rstCode !== NGHTTP2_REFUSED_STREAM && s.rstCode !== NGHTTP2_ENHANCE_YOUR_CALM)).toEqual([]);
      expect(refused.filter((s) => s.status === String(grpc.status.UNAVAILABLE))).toHaveLength(reviews.busy);
      // What the server holds for this connection: the request windows of the streams under review.
      expect(open.length * WINDOW).toBeLessThanOrEqual(MAX_IN_FLIGHT * WINDOW);
      release();
      await until(() => streams.every((s) => s.closed), "the reviewed streams refused");
      expect(streams.filter((s) => s.status === String(grpc.status.UNAUTHENTICATED))).toHaveLength(MAX_IN_FLIGHT);
    }, 120_000);
  }

  it("a review's outcome, accepted or refused, is reused for the same token; a review that fails is not", async () => {
    let calls = 0;
    let fail = false;
    const tokens = new TokenAuthenticator(async (token) => {
      calls++;
      if (fail) throw new Error("connection refused");
      return token === "good"
        ? { authenticated: true, user: { username: "system:serviceaccount:app:web", groups: ["system:serviceaccounts"] } }
        : { authenticated: false, error: "invalid bearer token" };
    }, ["istio-ca"], "cluster.local");
    const callers = await Promise.all(Array.from({ length: 50 }, () => tokens.authenticate("Bearer good")));
    expect(new Set(callers.map((c) => c.identity))).toEqual(new Set(["spiffe://cluster.local/ns/app/sa/web"]));
    for (let i = 0; i < 50; i++) await expect(tokens.authenticate("Bearer bad")).rejects.toThrow(/the token was not accepted: invalid bearer token/);
    expect(calls).toBe(2);
    fail = true;
    await expect(tokens.authenticate("Bearer other")).rejects.toThrow(/token review failed: connection refused/);
    await expect(tokens.authenticate("Bearer other")).rejects.toBeInstanceOf(AuthenticationError);
    expect(calls).toBe(4);
  });

  it("beyond the reviews in flight: AuthenticationUnavailable at once, counted; a cached token still passes", async () => {
    let busy = 0;
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    const tokens = new TokenAuthenticator(async (token) => {
      if (token !== "good") await held;
      return token === "good"
        ? { authenticated: true, user: { username: "system:serviceaccount:app:web", groups: ["system:serviceaccounts"] } }
        : { authenticated: false };
    }, ["istio-ca"], "cluster.local", { maxInFlight: 2, onBusy: () => busy++ });
    await tokens.authenticate("Bearer good");
    const slow = [tokens.authenticate("Bearer a"), tokens.authenticate("Bearer b")];
    await expect(tokens.authenticate("Bearer c")).rejects.toThrow(new AuthenticationUnavailable("too many callers are being authenticated (2); retry later"));
    expect(busy).toBe(1);
    expect((await tokens.authenticate("Bearer good")).serviceAccount).toBe("web");
    open();
    for (const s of slow) await expect(s).rejects.toBeInstanceOf(AuthenticationError);
  });
});
