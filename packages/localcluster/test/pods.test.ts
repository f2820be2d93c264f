// Pods on the local cluster, run by the node agents as real processes in their own network namespaces.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Api, targetFromKubeconfig, waitFor } from "../src/api.js";
import { nodeIp, paths } from "../src/layout.js";
import { run } from "../src/run.js";
import { cli, kubectl, podExec } from "./helpers.js";

if (process.getuid?.() !== 0) throw new Error("the local-cluster tests need root (network namespaces, iptables)");

const NS = "pods-test";
let api: Api;

interface Pod {
  metadata: { name: string; uid: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status: {
    phase?: string; podIP?: string; hostIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; ready: boolean; restartCount: number; state: Record<string, { reason?: string; message?: string; exitCode?: number }>; lastState: Record<string, { exitCode?: number }> }[];
  };
}

const pods = async (selector: string) => (await api.get<{ items: Pod[] }>(`/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(selector)}`)).items;
const pod = (name: string) => api.get<Pod>(`/api/v1/namespaces/${NS}/pods/${name}`);
const ready = (p: Pod) => p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
const apply = (yaml: string) => kubectl(["apply", "-n", NS, "-f", "-"], yaml);
const podNetnsNames = async () => (await run("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0]!).filter((n) => n.startsWith("ambit-pod-"));
const echoProcesses = async () => (await run("ps", ["-eo", "args"])).split("\n").filter((l) => l.includes("packages/echo/dist/main.js")).length;

const ECHO_ENV = `
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}`;

beforeAll(async () => {
  const res = await cli("up", "--nodes", "2");
  expect(res.code, res.stderr).toBe(0);
  api = new Api(targetFromKubeconfig(paths.adminKubeconfig()));
  await api.post("/api/v1/namespaces", { metadata: { name: NS } });
  await waitFor("the default ServiceAccount", () => api.get(`/api/v1/namespaces/${NS}/serviceaccounts/default`).then(() => true), 30_000);
});

afterAll(async () => {
  await cli("down");
});

describe("a Deployment of echo servers", () => {
  beforeAll(async () => {
    await apply(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: echo}}}
      containers:
      - name: echo
        image: ambit/echo
        ports: [{containerPort: 8080, name: http}, {containerPort: 9000, name: tcp}]${ECHO_ENV}
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers:
  - {name: client, image: ambit/host, command: [sleep, infinity]}
`);
    await waitFor("3 Ready echo replicas", async () => (await pods("app=echo")).filter(ready).length === 3, 60_000, 250);
    await waitFor("the client pod", async () => ready(await pod("client")), 60_000, 250);
  });

  it("spreads the replicas over both nodes, each with its own pod IP in its node's range", async () => {
    const list = await pods("app=echo");
    expect(new Set(list.map((p) => p.spec.nodeName))).toEqual(new Set(["node-1", "node-2"]));
    for (const p of list) expect(p.status.podIP).toMatch(new RegExp(`^10\\.244\\.${p.spec.nodeName!.slice(5)}\\.\\d+$`));
    expect(new Set(list.map((p) => p.status.podIP)).size).toBe(3);
  });

  it("is reached from a client pod on node 1 by pod IP, by ClusterIP and by DNS name", async () => {
    const client = await pod("client");
    const echoClient = (url: string) => podExec(`${NS}/client`, process.execPath, join(import.meta.dirname, "../../echo/dist/main.js"), "client", url, "--count", "1");
    for (const p of await pods("app=echo")) {
      const out = await echoClient(`http://${p.status.podIP}:8080/`);
      expect(out).toContain(`pod=${p.metadata.name}`);
      expect(out).toContain(`peer=${client.status.podIP}:`); // no NAT between pods
    }
    const svc = await api.get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${NS}/services/echo`);
    expect(await echoClient(`http://${svc.spec.clusterIP}/`)).toMatch(/ 200 pod=echo-/);
    const seen = new Set<string>();
    for (let i = 0; i < 12 && seen.size < 2; i++) {
      const out = await echoClient(`http://echo.${NS}.svc.cluster.local/`);
      expect(out).toMatch(/ 200 pod=echo-/);
      seen.add(/pod=(\S+)/.exec(out)![1]!);
    }
    expect(seen.size).toBeGreaterThan(1); // the Service balances over replicas
    expect(await echoClient("http://echo/")).toMatch(/ 200 pod=echo-/); // the search path of the pod's resolv.conf
  });

  it("runs each container in the pod's own netns, host name and mount namespace", async () => {
    const p = (await pods("app=echo"))[0]!;
    expect((await podExec(`${NS}/${p.metadata.name}`, "hostname")).trim()).toBe(p.metadata.name);
    expect(await podExec(`${NS}/${p.metadata.name}`, "ip", "-4", "-o", "addr", "show", "eth0")).toContain(`${p.status.podIP}/32`);
    expect(await podExec(`${NS}/${p.metadata.name}`, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace")).toBe(NS);
    expect(existsSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace")).toBe(false); // not on the host
  });

  it("removes the processes and namespaces when scaled to 0", async () => {
    const before = await pods("app=echo");
    const netnsBefore = await podNetnsNames();
    for (const p of before) expect(netnsBefore).toContain(`ambit-pod-${p.metadata.uid}`);
    expect(await echoProcesses()).toBeGreaterThanOrEqual(3);
    await kubectl(["scale", "-n", NS, "deployment/echo", "--replicas=0"]);
    await waitFor("no echo pods", async () => (await pods("app=echo")).length === 0, 60_000, 250);
    const netnsAfter = await podNetnsNames();
    for (const p of before) expect(netnsAfter).not.toContain(`ambit-pod-${p.metadata.uid}`);
    expect(await echoProcesses()).toBe(0);
    for (const p of before) expect(existsSync(join(paths.nodeRoot(p.spec.nodeName!), "pods", `${NS}_${p.metadata.name}_${p.metadata.uid}`))).toBe(false);
  });
});

describe("node-level workloads", () => {
  it("gives a DaemonSet one pod per node", async () => {
    await apply(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: per-node}
spec:
  selector: {matchLabels: {app: per-node}}
  template:
    metadata: {labels: {app: per-node}}
    spec:
      containers: [{name: main, image: ambit/host, command: [sleep, infinity]}]
`);
    await waitFor("a Ready pod per node", async () => (await pods("app=per-node")).filter(ready).length === 2, 60_000, 250);
    expect((await pods("app=per-node")).map((p) => p.spec.nodeName).sort()).toEqual(["node-1", "node-2"]);
  });

  it("runs a hostNetwork pod in the node's netns, where it sees the node's address", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  nodeName: node-2
  hostNetwork: true
  containers: [{name: main, image: ambit/host, command: [sleep, infinity]}]
`);
    await waitFor("hostnet Ready", async () => ready(await pod("hostnet")), 60_000, 250);
    const p = await pod("hostnet");
    expect(p.status.podIP).toBe(nodeIp(2));
    expect(p.status.hostIP).toBe(nodeIp(2));
    expect(await podExec(`${NS}/hostnet`, "ip", "-4", "-o", "addr", "show", "eth0")).toContain(`${nodeIp(2)}/24`);
    expect((await podExec(`${NS}/hostnet`, "hostname")).trim()).toBe("node-2");
  });

  it("maps hostPath volumes into each node's own root", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: hostpath}
spec:
  nodeName: node-1
  volumes: [{name: data, hostPath: {path: /var/run/ambit-test, type: DirectoryOrCreate}}]
  containers:
  - {name: main, image: ambit/host, command: [sh, -c, "echo written > /data/file; sleep infinity"], volumeMounts: [{name: data, mountPath: /data}]}
`);
    await waitFor("the file on node-1's host path", async () => existsSync(join(paths.nodeRoot("node-1"), "var/run/ambit-test/file")), 60_000, 250);
    expect(readFileSync(join(paths.nodeRoot("node-1"), "var/run/ambit-test/file"), "utf8")).toBe("written\n");
    expect(existsSync("/var/run/ambit-test")).toBe(false);
    expect(existsSync(join(paths.nodeRoot("node-2"), "var/run/ambit-test/file"))).toBe(false);
  });
});

describe("container lifecycle", () => {
  it("restarts a container that exits, with a growing restart count and its last exit code", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers: [{name: main, image: ambit/host, command: [sh, -c, "sleep 0.2; exit 3"]}]
`);
    await waitFor("two restarts", async () => ((await pod("crasher")).status.containerStatuses?.[0]?.restartCount ?? 0) >= 2, 60_000, 200);
    const s = (await pod("crasher")).status.containerStatuses![0]!;
    expect(s.lastState["terminated"]?.exitCode).toBe(3);
    expect((await pod("crasher")).status.phase).toBe("Running");
  });

  it("finishes a run-to-completion pod as Succeeded or Failed per its exit code", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: once-ok}
spec: {restartPolicy: Never, containers: [{name: main, image: ambit/host, command: [sh, -c, "exit 0"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: once-bad}
spec: {restartPolicy: Never, containers: [{name: main, image: ambit/host, command: [sh, -c, "exit 7"]}]}
`);
    await waitFor("Succeeded", async () => (await pod("once-ok")).status.phase === "Succeeded", 60_000, 200);
    await waitFor("Failed", async () => (await pod("once-bad")).status.phase === "Failed", 60_000, 200);
    expect((await pod("once-bad")).status.containerStatuses![0]!.state["terminated"]?.exitCode).toBe(7);
  });

  it("restarts a container whose liveness probe fails", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: main
    image: ambit/host
    command: [sleep, infinity]
    livenessProbe: {tcpSocket: {port: 4999}, periodSeconds: 1, failureThreshold: 2}
`);
    await waitFor("a liveness restart", async () => ((await pod("unhealthy")).status.containerStatuses?.[0]?.restartCount ?? 0) >= 1, 60_000, 250);
  });

  it("stops containers with SIGTERM and the grace period on deletion, then removes the pod", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 5
  volumes: [{name: out, hostPath: {path: /var/run/ambit-grace}}]
  containers:
  - name: main
    image: ambit/host
    command: [sh, -c, "trap 'echo got TERM > /out/signal; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts: [{name: out, mountPath: /out}]
`);
    await waitFor("graceful Ready", async () => ready(await pod("graceful")), 60_000, 250);
    const uid = (await pod("graceful")).metadata.uid;
    await kubectl(["delete", "-n", NS, "pod/graceful", "--wait=true"]);
    expect(readFileSync(join(paths.nodeRoot("node-2"), "var/run/ambit-grace/signal"), "utf8")).toBe("got TERM\n");
    expect(await podNetnsNames()).not.toContain(`ambit-pod-${uid}`);
  });

  it("kills a container that ignores SIGTERM once the grace period is over", async () => {
    // The container notes the SIGTERM and every loop it lives through after it; only SIGKILL can end it.
    const log = join(paths.nodeRoot("node-2"), "var/run/ambit-stubborn/log");
    rmSync(log, { force: true });
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 2
  volumes: [{name: out, hostPath: {path: /var/run/ambit-stubborn}}]
  containers:
  - name: main
    image: ambit/host
    command: [sh, -c, "termed=0; trap 'termed=1; echo TERM >> /out/log' TERM; while true; do [ $termed = 1 ] && echo alive >> /out/log; sleep 0.1; done"]
    volumeMounts: [{name: out, mountPath: /out}]
`);
    await waitFor("stubborn Ready", async () => ready(await pod("stubborn")), 60_000, 250);
    await kubectl(["delete", "-n", NS, "pod/stubborn", "--wait=true"]);
    const lines = readFileSync(log, "utf8").trim().split("\n");
    expect(lines[0]).toBe("TERM"); // SIGTERM came first, and was ignored:
    expect(lines.length).toBeGreaterThan(1); // the container went on running after it,
    expect(new Set(lines.slice(1))).toEqual(new Set(["alive"])); // and only SIGKILL ended it (the pod is gone)
    await expect(pod("stubborn")).rejects.toMatchObject({ status: 404 });
  });

  it("runs init containers in order before the containers, and gates readiness on an exec probe", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: staged}
spec:
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: first, image: ambit/host, command: [sh, -c, "echo first >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: second, image: ambit/host, command: [sh, -c, "echo second >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - name: main
    image: ambit/host
    command: [sh, -c, "cat /work/order; sleep infinity"]
    volumeMounts: [{name: work, mountPath: /work}]
    readinessProbe: {exec: {command: [sh, -c, "echo probed >> /work/probes; test -f /work/ready"]}, periodSeconds: 1, timeoutSeconds: 10}
`);
    await waitFor("main running", async () => (await pod("staged")).status.containerStatuses?.[0]?.state["running"] !== undefined, 60_000, 250);
    expect((await cli("logs", `${NS}/staged`, "-c", "main")).stdout).toBe("first\nsecond\n");
    // The probe notes each run: after two failed ones the pod is still not Ready.
    const probes = async () => (await podExec(`${NS}/staged`, "-c", "main", "cat", "/work/probes").catch(() => "")).split("\n").filter(Boolean).length;
    await waitFor("two readiness probes", async () => (await probes()) >= 2, 60_000, 250);
    expect(ready(await pod("staged"))).toBe(false);
    await podExec(`${NS}/staged`, "-c", "main", "touch", "/work/ready");
    await waitFor("staged Ready", async () => ready(await pod("staged")), 30_000, 250);
  });

  it("reports an unknown image as ErrImagePull, with an Event", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: badimage}
spec: {containers: [{name: main, image: example.com/nope:1.0}]}
`);
    await waitFor("ErrImagePull", async () => (await pod("badimage")).status.containerStatuses?.[0]?.state["waiting"]?.reason === "ErrImagePull", 60_000, 250);
    expect((await pod("badimage")).status.containerStatuses![0]!.state["waiting"]!.message).toMatch(/not in ambit-local's image table/);
    const events = await api.get<{ items: { reason: string; involvedObject: { name: string } }[] }>(`/api/v1/namespaces/${NS}/events`);
    expect(events.items.some((e) => e.involvedObject.name === "badimage" && e.reason === "Failed")).toBe(true);
  });

  it("grants the capabilities of securityContext and no others", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: caps}
spec:
  containers:
  - name: plain
    image: ambit/host
    command: [sh, -c, "ip addr add 127.0.0.9/8 dev lo && echo ALLOWED || echo DENIED; sleep infinity"]
  - name: netadmin
    image: ambit/host
    command: [sh, -c, "ip addr add 127.0.0.9/8 dev lo && echo ALLOWED || echo DENIED; sleep infinity"]
    securityContext: {capabilities: {add: [NET_ADMIN], drop: [ALL]}}
`);
    await waitFor("caps Ready", async () => ready(await pod("caps")), 60_000, 250);
    const [plain, netadmin] = await waitFor("both verdicts", async () => {
      const [a, b] = await Promise.all([cli("logs", `${NS}/caps`, "-c", "plain"), cli("logs", `${NS}/caps`, "-c", "netadmin")]);
      return /ALLOWED|DENIED/.test(a.stdout) && /ALLOWED|DENIED/.test(b.stdout) && [a.stdout, b.stdout];
    }, 30_000, 250);
    expect(plain).toMatch(/Operation not permitted\nDENIED\n$/);
    expect(netadmin).toBe("ALLOWED\n");
    // What the kernel holds for the process: exactly CAP_NET_ADMIN (bit 12) in the bounding set.
    const p = await pod("caps");
    const pid = readFileSync(join(paths.nodeRoot(p.spec.nodeName!), "pods", `${NS}_caps_${p.metadata.uid}`, "netadmin.pid"), "utf8").trim();
    expect(/CapBnd:\s+([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]).toBe((1 << 12).toString(16).padStart(16, "0"));
  });
});

describe("volumes", () => {
  it("projects a service-account token for the requested audience, which passes TokenReview", async () => {
    await api.post(`/api/v1/namespaces/${NS}/serviceaccounts`, { metadata: { name: "app" } });
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: token}
spec:
  serviceAccountName: app
  volumes:
  - name: istio-token
    projected: {sources: [{serviceAccountToken: {audience: istio-ca, expirationSeconds: 43200, path: istio-token}}]}
  containers:
  - {name: main, image: ambit/host, command: [sleep, infinity], volumeMounts: [{name: istio-token, mountPath: /var/run/secrets/tokens}]}
`);
    await waitFor("token Ready", async () => ready(await pod("token")), 60_000, 250);
    const token = (await podExec(`${NS}/token`, "cat", "/var/run/secrets/tokens/istio-token")).trim();
    const review = (audiences: string[]) => api.post<{ status: { authenticated?: boolean; user?: { username: string; extra?: Record<string, string[]> } } }>(
      "/apis/authentication.k8s.io/v1/tokenreviews", { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences } });
    const ok = await review(["istio-ca"]);
    expect(ok.status.authenticated).toBe(true);
    expect(ok.status.user?.username).toBe(`system:serviceaccount:${NS}:app`);
    expect(ok.status.user?.extra?.["authentication.kubernetes.io/pod-name"]).toEqual(["token"]);
    expect((await review(["another"])).status.authenticated).toBeFalsy();
  });

  it("updates a mounted ConfigMap file when the ConfigMap changes, and passes downward-API env", async () => {
    await apply(`
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: config, labels: {tier: web}}
spec:
  volumes: [{name: settings, configMap: {name: settings}}]
  containers:
  - name: main
    image: ambit/host
    command: [sh, -c, "echo node=$NODE tier=$TIER greeting=$GREETING; sleep infinity"]
    env:
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    volumeMounts: [{name: settings, mountPath: /etc/settings}]
`);
    await waitFor("config Ready", async () => ready(await pod("config")), 60_000, 250);
    expect(await podExec(`${NS}/config`, "cat", "/etc/settings/greeting")).toBe("hello");
    const p = await pod("config");
    expect((await cli("logs", `${NS}/config`)).stdout).toBe(`node=${p.spec.nodeName} tier=web greeting=hello\n`);
    await api.patch(`/api/v1/namespaces/${NS}/configmaps/settings`, { data: { greeting: "bonjour" } });
    await waitFor("the new value in the mounted file", async () => (await podExec(`${NS}/config`, "cat", "/etc/settings/greeting")) === "bonjour", 30_000, 250);
  });
});
