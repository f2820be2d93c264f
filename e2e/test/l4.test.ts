// The L4 suite: the mesh (controller with its CA, the cni-agent and one ztunnel per node), installed by its Helm
// chart on a 2-node local cluster, enrolled and plain namespaces, and real traffic between pods: mTLS by Service
// name same-node and cross-node, only TLS on the wire, L4 authorization, STRICT/PERMISSIVE, mesh ↔ non-mesh, metrics that match the
// traffic, and a data plane that keeps working while the controller is down.
import { randomBytes } from "node:crypto";
import { adminApi, captureNodeLink, down, installMesh, kubectl, podLogs, up, waitFor, waitMeshReady, ztunnelGet, type Api } from "@ambit/localcluster";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accessLog, echo, execInPod, metricSum, metricsText, readyPods, spawnInPod, tcpEcho, waitEnrolled, ztunnelOn } from "../src/mesh.js";

if (process.getuid?.() !== 0) throw new Error("the end-to-end suites need root");

const TD = "spiffe://cluster.local";
let api: Api;
const ip: Record<string, string> = {};

const pod = (ns: string, name: string, node: string, sa?: string, labels: Record<string, string> = { app: name }) => ({
  apiVersion: "v1", kind: "Pod", metadata: { name, namespace: ns, labels },
  spec: {
    nodeName: node, ...(sa ? { serviceAccountName: sa } : {}),
    // The kubelet's HTTP probe must keep passing under policies: the CNI agent SNATs probes to 169.254.7.127.
    // Each request is logged (ECHO_LOG_REQUESTS), so a test can count the probes a pod answered.
    containers: [{ name: "echo", image: "ambit/echo", env: [{ name: "ECHO_LOG_REQUESTS", value: "1" }], readinessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 1, failureThreshold: 1 } }],
  },
});
const service = (ns: string, name: string) => ({
  apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns },
  spec: { selector: { app: name }, ports: [{ name: "tcp", port: 9000 }, { name: "http", port: 80, targetPort: 8080 }] },
});
const apply = (...objs: object[]) => kubectl(["apply", "-f", "-"], objs.map((o) => JSON.stringify(o)).join("\n"));
const remove = (kind: string, ns: string, name: string) => kubectl(["delete", kind, "-n", ns, name, "--ignore-not-found"]);

/** Retries an exchange until it succeeds (or fails, with `expectOk` false): policies take a moment to arrive. */
async function eventually(from: string, host: string, port: number, expectOk: boolean): Promise<void> {
  await waitFor(`${from} → ${host}:${port} ${expectOk ? "works" : "is refused"}`, async () => {
    const msg = `probe-${randomBytes(4).toString("hex")}`;
    const r = await tcpEcho(from, host, port, msg);
    return expectOk ? r.code === 0 && r.stdout === msg : r.code !== 0 && !r.stdout.includes(msg);
  }, 20_000, 300);
}

async function exchange(from: string, host: string, port = 9000, message = `hello-${randomBytes(6).toString("hex")}`) {
  const r = await tcpEcho(from, host, port, message);
  expect(r, `${from} → ${host}:${port}: ${r.stderr}`).toMatchObject({ code: 0, stdout: message });
  return message;
}

async function completed(ztunnel: string, match: (rec: Record<string, unknown>) => boolean) {
  let found: Record<string, unknown> | undefined;
  await waitFor("access log record", async () => !!(found = (await accessLog(ztunnel)).find((r) => r["msg"] === "connection complete" && match(r))), 10_000, 300);
  return found!;
}

/** Readiness probes a pod answered, by whether they came through the probe SNAT and passed (from its request log). */
async function probesAnswered(ref: string): Promise<{ snatOk: number; other: number }> {
  const probes = (await podLogs(ref)).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r["msg"] === "request" && r["path"] === "/healthz");
  const snatOk = probes.filter((r) => r["status"] === 200 && String(r["peer"]).startsWith("169.254.7.127:")).length;
  return { snatOk, other: probes.length - snatOk };
}

/** A connection from shop/client kept open: a line every 100 ms, counting the echoed lines; ends by itself after 60 s. */
async function longLived(host: string) {
  const script = `const s=require("net").connect(9000,"${host}");let n=0;s.on("data",d=>{n+=String(d).split("\\n").length-1;console.log("echoed "+n)});` +
    `const t=setInterval(()=>s.write("tick\\n"),100);s.on("close",()=>{console.log("closed");process.exit(0)});s.on("error",()=>{});setTimeout(()=>process.exit(0),60000);`;
  const child = await spawnInPod("shop/client", [process.execPath, "-e", script]);
  let echoed = 0;
  let closed = false;
  child.stdout!.on("data", (d: Buffer) => {
    const text = String(d);
    const m = /echoed (\d+)\s*$/m.exec(text);
    if (m) echoed = Number(m[1]);
    if (text.includes("closed")) closed = true;
  });
  return { echoed: () => echoed, closed: () => closed, stop: () => child.kill("SIGKILL") };
}

beforeAll(async () => {
  await up({ nodes: 2, progress: () => undefined });
  api = adminApi();
  // AMBIT_E2E_HELM_SET="k=v;k2=v2": extra chart values, to try the suite against another configuration.
  await installMesh({ set: (process.env["AMBIT_E2E_HELM_SET"] ?? "").split(";").filter(Boolean) });
  await apply(
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { "istio.io/dataplane-mode": "ambient" } } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "other", labels: { "istio.io/dataplane-mode": "ambient" } } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "plain" } },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "web", namespace: "shop" } },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "client", namespace: "shop" } },
    pod("shop", "web-1", "node-1", "web"), pod("shop", "web-2", "node-2", "web"), pod("shop", "client", "node-1", "client"),
    pod("other", "other-client", "node-1"), pod("plain", "outsider", "node-2"),
    service("shop", "web-1"), service("shop", "web-2"), service("plain", "outsider"),
  );
  await waitFor("app pods Ready", async () => {
    const pods = (await Promise.all(["shop", "other", "plain"].map((ns) => readyPods(api, ns, "app")))).flat();
    for (const p of pods) ip[p.metadata.name] = p.status.podIP!;
    return pods.length === 5;
  }, 60_000, 300);
  for (const ns of ["shop", "other"]) await waitEnrolled(api, ns);
}, 600_000);

// AMBIT_E2E_KEEP=1 leaves the cluster up for a look around (ambit-local down removes it).
afterAll(async () => {
  if (!process.env["AMBIT_E2E_KEEP"]) await down();
}, 120_000);

describe("L4 mesh on the local cluster", () => {
  it("enrolled pods get redirection and talk by Service name, same node and across nodes, over mTLS", async () => {
    const same = await exchange("shop/client", "web-1", 9000);
    const cross = await exchange("shop/client", "web-2.shop.svc.cluster.local", 9000);
    const z1 = await ztunnelOn("node-1");
    const z2 = await ztunnelOn("node-2");
    // The server side logs both SPIFFE identities and the bytes.
    const inbound = await completed(z2, (r) => r["direction"] === "inbound" && r["dst.hbone_addr"] === `${ip["web-2"]}:9000`);
    expect(inbound).toMatchObject({ "src.identity": `${TD}/ns/shop/sa/client`, "dst.identity": `${TD}/ns/shop/sa/web`, "src.workload": "client", "dst.workload": "web-2", bytes_recv: cross.length, bytes_sent: cross.length });
    const sameNode = await completed(z1, (r) => r["direction"] === "inbound" && r["dst.hbone_addr"] === `${ip["web-1"]}:9000`);
    expect(sameNode).toMatchObject({ "src.identity": `${TD}/ns/shop/sa/client`, "dst.identity": `${TD}/ns/shop/sa/web`, bytes_recv: same.length });
    const outbound = await completed(z1, (r) => r["direction"] === "outbound" && r["dst.hbone_addr"] === `${ip["web-2"]}:9000`);
    expect(outbound).toMatchObject({ "src.identity": `${TD}/ns/shop/sa/client`, "dst.identity": `${TD}/ns/shop/sa/web`, "dst.addr": `${ip["web-2"]}:15008` });
    // The app sees the client's own address (the original source is kept).
    const http = await execInPod("shop/client", [process.execPath, echo, "client", "http://web-2/", "--count", "1"]);
    expect(http.stdout).toContain(`peer=${ip["client"]}:`);
  });

  it("carries only TLS to port 15008 on the node link, while plain traffic to a non-mesh pod is visible", async () => {
    const marker = `AMBIT-SECRET-${randomBytes(8).toString("hex")}`;
    const payload = marker.repeat(50);
    const mesh = await captureNodeLink("node-1", `tcp and host ${ip["client"]} and host ${ip["web-2"]}`, async () => {
      await exchange("shop/client", "web-2", 9000, payload);
    });
    expect(mesh.data.length).toBeGreaterThan(2 * payload.length); // the exchange was captured, both ways
    expect(mesh.ports.has(15008)).toBe(true);
    expect(mesh.ports.has(9000)).toBe(false);
    expect(mesh.data.includes(marker)).toBe(false);
    // Control: the same capture does see a plaintext payload (to a pod outside the mesh).
    const plain = await captureNodeLink("node-1", `tcp and host ${ip["client"]} and host ${ip["outsider"]}`, async () => {
      await exchange("shop/client", "outsider.plain", 9000, marker);
    });
    expect([...plain.ports], `${plain.data.length} bytes captured`).toContain(9000);
    expect(plain.data.includes(marker)).toBe(true);
  });

  it("denies by principal with an L4 DENY policy, and only the selected workload; open connections are closed", async () => {
    const open = await longLived("web-2");
    await waitFor("the long-lived connection echoes", async () => open.echoed() > 3, 20_000, 100);
    await apply({
      apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "deny-client", namespace: "shop" },
      spec: { selector: { matchLabels: { app: "web-2" } }, action: "DENY", rules: [{ from: [{ source: { principals: ["cluster.local/ns/shop/sa/client"] } }] }] },
    });
    try {
      await eventually("shop/client", "web-2", 9000, false);
      // The connection opened before the policy is closed by the policy change.
      await waitFor("the open connection is closed", async () => open.closed(), 20_000, 100);
      await exchange("shop/client", "web-1", 9000);
      await exchange("other/other-client", "web-2.shop", 9000);
      const z2 = await ztunnelOn("node-2");
      await waitFor("the denial in ztunnel's access log", async () =>
        (await accessLog(z2)).some((r) => r["msg"] === "connection failed" && String(r["error"]).includes("explicitly denied by: shop/deny-client")), 30_000, 300);
    } finally {
      open.stop();
      await remove("authorizationpolicy", "shop", "deny-client");
    }
    await eventually("shop/client", "web-2", 9000, true);
  });

  it("enforces a DENY rule without its HTTP attributes when an L4 part remains, and not at all when none does", async () => {
    const policy = (rule: object) => ({ apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "deny-http", namespace: "shop" },
      spec: { selector: { matchLabels: { app: "web-2" } }, action: "DENY", rules: [rule] } });
    const status = async (pattern: RegExp) => waitFor(`the ZtunnelAccepted condition ${pattern}`, async () => {
      const p = await api.get<{ status?: { conditions?: { type: string; message: string }[] } }>("/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/deny-http");
      return p.status?.conditions?.some((c) => c.type === "ZtunnelAccepted" && pattern.test(c.message));
    }, 20_000, 300);
    try {
      // Only HTTP attributes: nothing for ztunnel to check, so nothing is denied (not everything).
      await apply(policy({ to: [{ operation: { methods: ["GET"] } }] }));
      await status(/has no effect there; deploy a waypoint/);
      const z2 = await ztunnelOn("node-2");
      await waitFor("web-2's ztunnel holds the rule-less DENY policy", async () => {
        const dump = JSON.parse(await ztunnelGet(z2, 15000, "/config_dump")) as { policies?: { name?: string; namespace?: string; rules?: unknown[] }[] };
        const p = dump.policies?.find((x) => x.namespace === "shop" && x.name === "deny-http");
        return p !== undefined && !p.rules?.length;
      }, 20_000, 300);
      await exchange("shop/client", "web-2", 9000);
      // With a port, the rule denies every connection to that port, whatever the request.
      await apply(policy({ to: [{ operation: { methods: ["GET"], ports: ["9000"] } }] }));
      await status(/enforced without its HTTP attributes \(to\.operation\.methods\)/);
      await eventually("shop/client", "web-2", 9000, false);
    } finally {
      await remove("authorizationpolicy", "shop", "deny-http");
    }
    await eventually("shop/client", "web-2", 9000, true);
  });

  it("admits only the allowed namespace with an ALLOW policy", async () => {
    await apply({
      apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "only-other", namespace: "shop" },
      spec: { selector: { matchLabels: { app: "web-1" } }, action: "ALLOW", rules: [{ from: [{ source: { namespaces: ["other"] } }] }] },
    });
    try {
      await eventually("shop/client", "web-1", 9000, false);
      await exchange("other/other-client", "web-1.shop", 9000);
      // The kubelet's probes are not callers the policy admits, yet they pass and web-1 stays Ready (probe SNAT):
      // three more probe runs while the policy holds, every one successful.
      const before = await probesAnswered("shop/web-1");
      await waitFor("three readiness probes under the policy", async () => (await probesAnswered("shop/web-1")).snatOk >= before.snatOk + 3, 60_000, 300);
      expect((await probesAnswered("shop/web-1")).other).toBe(before.other);
      expect((await readyPods(api, "shop", "app=web-1")).length).toBe(1);
      // Not selected: web-2 has no ALLOW policy.
      await exchange("shop/client", "web-2", 9000);
    } finally {
      await remove("authorizationpolicy", "shop", "only-other");
    }
    await eventually("shop/client", "web-1", 9000, true);
  });

  it("STRICT rejects plaintext from an unenrolled pod, PERMISSIVE admits it", async () => {
    const pa = (mode: string) => ({ apiVersion: "security.istio.io/v1", kind: "PeerAuthentication", metadata: { name: "default", namespace: "shop" }, spec: { mtls: { mode } } });
    await apply(pa("STRICT"));
    try {
      await eventually("plain/outsider", "web-1.shop", 9000, false);
      await exchange("shop/client", "web-1", 9000);
      await apply(pa("PERMISSIVE"));
      await eventually("plain/outsider", "web-1.shop", 9000, true);
    } finally {
      await remove("peerauthentication", "shop", "default");
    }
  });

  it("lets a non-mesh pod reach an enrolled one (plaintext inbound) and an enrolled pod reach a non-mesh one (passthrough)", async () => {
    const inMsg = await exchange("plain/outsider", "web-2.shop", 9000);
    const z2 = await ztunnelOn("node-2");
    const inbound = await completed(z2, (r) => r["direction"] === "inbound" && r["dst.addr"] === `${ip["web-2"]}:9000` && r["src.addr"]?.toString().startsWith(`${ip["outsider"]}:`) === true);
    expect(inbound["src.identity"]).toBeUndefined();
    expect(inbound["bytes_recv"]).toBe(inMsg.length);
    await exchange("shop/client", "outsider.plain", 9000);
    const z1 = await ztunnelOn("node-1");
    const outbound = await completed(z1, (r) => r["direction"] === "outbound" && r["dst.addr"] === `${ip["outsider"]}:9000`);
    expect(outbound["dst.identity"]).toBeUndefined();
  });

  it("counts connections and bytes in Istio's TCP metrics on both ztunnels", async () => {
    const [z1, z2] = [await ztunnelOn("node-1"), await ztunnelOn("node-2")];
    const labels = (reporter: string) => ({ reporter, source_principal: `${TD}/ns/shop/sa/client`, destination_workload: "web-2", connection_security_policy: "mutual_tls" });
    const read = async () => {
      const [t1, t2] = [await metricsText(z1), await metricsText(z2)];
      const of = (t: string, reporter: string) => ({
        opened: metricSum(t, "istio_tcp_connections_opened_total", labels(reporter)),
        closed: metricSum(t, "istio_tcp_connections_closed_total", labels(reporter)),
        received: metricSum(t, "istio_tcp_received_bytes_total", labels(reporter)),
        sent: metricSum(t, "istio_tcp_sent_bytes_total", labels(reporter)),
      });
      return { source: of(t1, "source"), destination: of(t2, "destination") };
    };
    const before = await read();
    const n = 3;
    const msg = "m".repeat(1000);
    for (let i = 0; i < n; i++) await exchange("shop/client", "web-2", 9000, msg);
    const want = (b: typeof before.source) => ({ opened: b.opened + n, closed: b.closed + n, received: b.received + n * msg.length, sent: b.sent + n * msg.length });
    let after = before;
    await waitFor("metrics reflect the exchanges", async () => {
      after = await read();
      return after.destination.closed >= before.destination.closed + n && after.source.closed >= before.source.closed + n;
    }, 10_000, 300);
    expect(after.source).toEqual(want(before.source));
    expect(after.destination).toEqual(want(before.destination));
  });

  it("keeps established and new connections to known workloads working while the controller is down", async () => {
    const open = await longLived("web-2");
    try {
      await waitFor("the long-lived connection echoes", async () => open.echoed() > 3, 20_000, 100);
      await kubectl(["scale", "-n", "istio-system", "deployment/istiod", "--replicas=0"]);
      await waitFor("controller gone", async () => (await api.get<{ items: unknown[] }>("/api/v1/namespaces/istio-system/pods?labelSelector=app%3Distiod")).items.length === 0, 60_000, 300);
      const mark = open.echoed();
      await waitFor("the long-lived connection goes on echoing", async () => open.echoed() > mark + 5 || open.closed(), 30_000, 100);
      expect(open.closed()).toBe(false);
      await exchange("shop/client", "web-2", 9000);
      await exchange("shop/client", "web-1", 9000);
      await exchange("other/other-client", "web-2.shop", 9000);
    } finally {
      open.stop();
      await kubectl(["scale", "-n", "istio-system", "deployment/istiod", "--replicas=1"]);
    }
    await waitMeshReady();
  });
});
