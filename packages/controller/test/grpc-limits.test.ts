// The controller's gRPC server (15010/15012, xDS and the CA on one server) refuses requests over
// ISTIO_GPRC_MAXRECVMSGSIZE from their length prefix and authenticates CA callers before reading their message:
// a client that claims 150 MiB is stopped after a flow-control window, with or without a token.
// (test/grpc-limit-cluster.test.ts measures the real controller process's memory under the same attempts.)
import * as grpc from "@grpc/grpc-js";
import { StaticCollection } from "@ambit/kube";
import { CREATE_CERTIFICATE_PATH } from "@ambit/protocol";
import { DELTA_ADS_PATH, DeltaXdsServer, grpcStatusOf, sendOversizedRequest } from "@ambit/xds";
import { afterEach, describe, expect, it } from "vitest";
import { NodeAuthorizer } from "../src/ca/node-authorizer.js";
import type { CaServiceOptions } from "../src/ca/service.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { controllerGrpcServer } from "../src/controller.js";
import { AuthenticationError, type Caller } from "../src/auth.js";

const MiB = 1024 * 1024;
let server: grpc.Server | undefined;
let xds: DeltaXdsServer | undefined;
afterEach(async () => {
  await xds?.close(100);
  server?.forceShutdown();
  server = xds = undefined;
});

async function start(maxRequestBytes: number) {
  const seen = { authentications: 0, failures: [] as string[] };
  const ca: CaServiceOptions = {
    ca: () => { throw new Error("no CA in this test: nothing may get this far"); },
    authenticate: async (authorization) => {
      seen.authentications++;
      if (authorization !== "Bearer good") throw new AuthenticationError("the token was not accepted");
      return { namespace: "app", serviceAccount: "web", identity: "spiffe://cluster.local/ns/app/sa/web" } satisfies Caller;
    },
    nodeAuthorizer: new NodeAuthorizer(new StaticCollection({ name: "pods" }), new Set(), "cluster.local"),
    defaultTtlSeconds: 3600, maxTtlSeconds: 3600,
    onIssued: (_id, ok, reason) => { if (!ok) seen.failures.push(reason ?? ""); },
  };
  xds = new DeltaXdsServer({ ready: true, authenticate: (md) => {
    if (md.get("authorization")[0] !== "Bearer good") throw new Error("no token");
    return { identity: "good" };
  } });
  server = controllerGrpcServer(xds, ca, maxRequestBytes);
  const port = await new Promise<number>((res, rej) => server!.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { url: `http://127.0.0.1:${port}`, seen };
}

describe("the controller's gRPC request limit", () => {
  it("ISTIO_GPRC_MAXRECVMSGSIZE: 4 MiB by default, a size, refused when it is not one", () => {
    expect(loadConfig({}).ISTIO_GPRC_MAXRECVMSGSIZE).toBe(4 * MiB);
    expect(loadConfig({ ISTIO_GPRC_MAXRECVMSGSIZE: "8Mi" }).ISTIO_GPRC_MAXRECVMSGSIZE).toBe(8 * MiB);
    expect(loadConfig({ ISTIO_GPRC_MAXRECVMSGSIZE: "33554432" }).ISTIO_GPRC_MAXRECVMSGSIZE).toBe(32 * MiB);
    expect(() => loadConfig({ ISTIO_GPRC_MAXRECVMSGSIZE: "huge" })).toThrow(ConfigError);
    expect(() => loadConfig({ ISTIO_GPRC_MAXRECVMSGSIZE: "1Gi" })).toThrow(/ISTIO_GPRC_MAXRECVMSGSIZE="1Gi": is not a size .*\(set it to a size in bytes/);
  });

  it("CA without a token: UNAUTHENTICATED from the metadata alone, the 150 MiB never read", async () => {
    const { url, seen } = await start(4 * MiB);
    const r = await sendOversizedRequest(url, CREATE_CERTIFICATE_PATH, 150 * MiB);
    expect(grpcStatusOf(r)).toBe(grpc.status.UNAUTHENTICATED);
    expect(decodeURIComponent(String(r.headers["grpc-message"]))).toBe("request authenticate failure: the token was not accepted");
    expect(r.bytesOnWire).toBeLessThan(16 * MiB);
    expect(seen).toEqual({ authentications: 1, failures: ["request authenticate failure: the token was not accepted"] });
  });

  it("CA with a token: RESOURCE_EXHAUSTED from the length prefix, the client stopped", async () => {
    const { url, seen } = await start(4 * MiB);
    const r = await sendOversizedRequest(url, CREATE_CERTIFICATE_PATH, 150 * MiB, { headers: { authorization: "Bearer good" } });
    expect(grpcStatusOf(r)).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(r.bytesOnWire).toBeLessThan(16 * MiB);
    expect(seen.authentications).toBe(1);
  });

  it("xDS, with and without a token, and the configured limit applies", async () => {
    const { url } = await start(64 * 1024);
    const anonymous = await sendOversizedRequest(url, DELTA_ADS_PATH, 150 * MiB);
    expect(grpcStatusOf(anonymous)).toBe(grpc.status.UNAUTHENTICATED);
    expect(anonymous.bytesOnWire).toBeLessThan(16 * MiB);
    const authed = await sendOversizedRequest(url, DELTA_ADS_PATH, 100 * 1024, { headers: { authorization: "Bearer good" } });
    expect(grpcStatusOf(authed)).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(decodeURIComponent(String(authed.headers["grpc-message"] ?? authed.trailers["grpc-message"]))).toMatch(/larger than max \(102400 vs 65536\)/);
  });
});
