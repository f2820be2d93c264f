// Who may read /debug/* on the monitoring port, with the real HTTP server and injected reviews: the codes and
// bodies of each refusal, the cache that turns a flood with one token into one review, the cap on reviews in
// progress, and fail-closed on a review that cannot be made. (test/debug-auth-cluster.test.ts runs the same
// against the real API server.)
import type { Server } from "node:http";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { startAdmin } from "../src/admin.js";
import { DebugAccess, type AccessReviewer, type TokenReviewer } from "../src/auth.js";

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

const USERS: Record<string, { username: string; groups: string[] }> = {
  admin: { username: "alice", groups: ["system:authenticated"] },
  pod: { username: "system:serviceaccount:app:web", groups: ["system:serviceaccounts", "system:authenticated"] },
};

function reviewers() {
  const calls = { token: 0, access: 0 };
  const review: TokenReviewer = async (token) => {
    calls.token++;
    const user = USERS[token];
    return user ? { authenticated: true, user } : { authenticated: false, error: "invalid bearer token" };
  };
  const accessReview: AccessReviewer = async (user) => {
    calls.access++;
    return user.username === "alice" ? { allowed: true } : { allowed: false, reason: "no RBAC policy matched" };
  };
  return { calls, review, accessReview };
}

async function start(access: DebugAccess): Promise<string> {
  const registry = new Registry();
  server = await startAdmin(0, "127.0.0.1", {
    registry, ready: () => true, configDump: () => ({ workloads: ["w1"] }), connections: () => [{ id: "1" }],
    debugAccess: (authorization, path) => access.check(authorization, path),
  });
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

const get = async (url: string, token?: string) => {
  const res = await fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text(), headers: res.headers };
};

describe("/debug/* access", () => {
  it("401 without a token or with one the API server refuses, 403 without the permission, 200 with it; /metrics and /ready stay open", async () => {
    const r = reviewers();
    const base = await start(new DebugAccess(r));
    for (const path of ["/debug/config_dump", "/debug/connections"]) {
      const none = await get(base + path);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect(JSON.parse(none.body).error).toMatch(/no token: send "Authorization: Bearer <token>"/);
      const bad = await get(base + path, "forged");
      expect(bad.status).toBe(401);
      expect(JSON.parse(bad.body).error).toBe("the token was not accepted: invalid bearer token");
      const pod = await get(base + path, "pod");
      expect(pod.status).toBe(403);
      expect(JSON.parse(pod.body).error).toMatch(new RegExp(`system:serviceaccount:app:web may not get ${path}: .*nonResourceURLs.*no RBAC policy matched`));
      expect((await get(base + path, "admin")).status).toBe(200);
    }
    expect(JSON.parse((await get(`${base}/debug/config_dump`, "admin")).body)).toEqual({ workloads: ["w1"] });
    const basic = await fetch(`${base}/debug/config_dump`, { headers: { authorization: "Basic YTpi" } });
    expect(basic.status).toBe(401);
    expect((await get(`${base}/metrics`)).status).toBe(200);
    expect((await get(`${base}/ready`)).status).toBe(200);
  });

  it("a flood with one token costs one review", async () => {
    const r = reviewers();
    const base = await start(new DebugAccess({ ...r, cacheTtlMs: 3_600_000 }));
    const results = await Promise.all(Array.from({ length: 200 }, () => get(`${base}/debug/config_dump`, "forged")));
    expect(results.every((x) => x.status === 401)).toBe(true);
    expect(r.calls.token).toBe(1);
    await Promise.all(Array.from({ length: 50 }, () => get(`${base}/debug/config_dump`, "pod")));
    expect(r.calls).toEqual({ token: 2, access: 1 });
  });

  it("decisions expire: after the TTL the review is made again (a revoked permission takes effect)", async () => {
    const r = reviewers();
    const access = new DebugAccess({ ...r, cacheTtlMs: 1 });
    await access.check("Bearer admin", "/debug/config_dump");
    await waitUntil(async () => { await access.check("Bearer admin", "/debug/config_dump"); return r.calls.token > 1; });
    expect(r.calls.access).toBe(r.calls.token);
  });

  it("caps reviews in progress: the rest is refused with 503 at once, and a review that fails is a 503, not cached", async () => {
    const pending: Array<() => void> = [];
    let fail = true;
    const access = new DebugAccess({
      maxInFlight: 2,
      review: (token) => token === "broken"
        ? (fail ? Promise.reject(new Error("connect ECONNREFUSED")) : Promise.resolve({ authenticated: true, user: USERS["admin"]! }))
        : new Promise((resolve) => pending.push(() => resolve({ authenticated: false, error: "slow no" }))),
      accessReview: async () => ({ allowed: true }),
    });
    const base = await start(access);
    const slow = [get(`${base}/debug/config_dump`, "t1"), get(`${base}/debug/config_dump`, "t2")];
    await waitUntil(async () => pending.length === 2);
    const third = await get(`${base}/debug/config_dump`, "t3");
    expect(third.status).toBe(503);
    expect(JSON.parse(third.body).error).toMatch(/too many debug requests are being authenticated/);
    for (const release of pending) release();
    expect((await Promise.all(slow)).map((x) => x.status)).toEqual([401, 401]);
    const broken = await get(`${base}/debug/config_dump`, "broken");
    expect(broken.status).toBe(503);
    expect(JSON.parse(broken.body).error).toBe("token review failed: connect ECONNREFUSED");
    fail = false;
    expect((await get(`${base}/debug/config_dump`, "broken")).status).toBe(200);
  });

  it("keeps at most cacheSize decisions", async () => {
    const r = reviewers();
    const access = new DebugAccess({ ...r, cacheSize: 10 });
    for (let i = 0; i < 50; i++) await access.check(`Bearer junk-${i}`, "/debug/config_dump").catch(() => undefined);
    expect((access as unknown as { cache: Map<string, unknown> }).cache.size).toBe(10);
  });
});

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}
