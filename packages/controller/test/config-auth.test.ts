import { describe, expect, it } from "vitest";
import { AuthenticationError, authenticate, type TokenReviewStatus } from "../src/auth.js";
import { ConfigError, loadConfig } from "../src/config.js";

describe("configuration", () => {
  it("has Istio's defaults", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ POD_NAMESPACE: "istio-system", CLUSTER_ID: "Kubernetes", TRUST_DOMAIN: "cluster.local", PILOT_DEBOUNCE_AFTER: 100, PILOT_DEBOUNCE_MAX: 10_000,
      TOKEN_AUDIENCES: ["istio-ca"], XDS_AUTH: true, XDS_PLAINTEXT_PORT: 0, XDS_TLS_PORT: 15012, MONITORING_PORT: 15014 });
    expect(loadConfig({ PILOT_DEBOUNCE_AFTER: "250ms", TOKEN_AUDIENCES: "istio-ca, other", XDS_AUTH: "false" })).toMatchObject({ PILOT_DEBOUNCE_AFTER: 250, TOKEN_AUDIENCES: ["istio-ca", "other"], XDS_AUTH: false });
  });

  it("names every bad variable and the fix", () => {
    const bad = () => loadConfig({ PILOT_DEBOUNCE_AFTER: "soon", XDS_TLS_PORT: "99999", XDS_AUTH: "maybe", TRUST_DOMAIN: "Bad_Domain" });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/PILOT_DEBOUNCE_AFTER="soon": is not a duration \(set it to a duration such as 100ms\)/);
    expect(bad).toThrow(/XDS_TLS_PORT="99999".*\(set it to a port number\)/);
    expect(bad).toThrow(/XDS_AUTH="maybe".*\(set it to true or false\)/);
    expect(bad).toThrow(/TRUST_DOMAIN="Bad_Domain": must be a DNS name/);
  });
});

describe("authentication by TokenReview", () => {
  const sa = (extra = {}): TokenReviewStatus => ({ authenticated: true, user: { username: "system:serviceaccount:istio-system:ztunnel", groups: ["system:serviceaccounts", "system:authenticated"], extra } });

  it("returns the caller's SPIFFE identity and bound pod", async () => {
    const seen: unknown[] = [];
    const c = await authenticate(async (t, a) => { seen.push([t, a]); return sa({ "authentication.kubernetes.io/pod-name": ["zt-1"], "authentication.kubernetes.io/pod-uid": ["u1"] }); },
      "Bearer abc.def", ["istio-ca"], "cluster.local");
    expect(c).toEqual({ namespace: "istio-system", serviceAccount: "ztunnel", identity: "spiffe://cluster.local/ns/istio-system/sa/ztunnel", podName: "zt-1", podUid: "u1" });
    expect(seen).toEqual([["abc.def", ["istio-ca"]]]);
  });

  it.each([
    [undefined, sa(), /no authorization metadata/],
    ["Basic x", sa(), /is not "Bearer <token>"/],
    ["Bearer t", { authenticated: false, error: "token audiences [\"x\"] is invalid for the target audiences [\"istio-ca\"]" }, /not accepted: token audiences/],
    ["Bearer t", { authenticated: true, user: { username: "admin", groups: ["system:masters"] } }, /admin is not a service account/],
  ])("refuses %s", async (header, status, message) => {
    await expect(authenticate(async () => status as TokenReviewStatus, header, ["istio-ca"], "cluster.local")).rejects.toThrow(message);
    await expect(authenticate(async () => status as TokenReviewStatus, header, ["istio-ca"], "cluster.local")).rejects.toBeInstanceOf(AuthenticationError);
  });

  it("turns a failing review call into an authentication error", async () => {
    await expect(authenticate(async () => { throw new Error("connection refused"); }, "Bearer t", ["istio-ca"], "cluster.local")).rejects.toThrow(/token review failed: connection refused/);
  });
});
