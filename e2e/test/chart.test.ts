// The Helm chart (charts/ambit) without a cluster: the real helm binary (scripts/get-helm.sh) lints it, renders it
// with the defaults and with custom values, and rejects bad values with a message naming them. The rendered
// objects have the names, labels, env, mounts, ports, probes, capabilities and RBAC that Istio's tools and our
// programs rely on. An upgrade that changes ztunnel.logLevel must change only ztunnel's pods.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");
const chart = join(repo, "charts/ambit");

// A loose view of Kubernetes objects: just enough typing to read the fields the assertions look at.
interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }
interface Container {
  name: string; image: string; args?: string[]; env?: EnvVar[]; ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string }[]; readinessProbe?: unknown; resources?: unknown;
  securityContext?: { capabilities?: { add?: string[] } };
}
interface PodSpec {
  serviceAccountName?: string; hostNetwork?: boolean; terminationGracePeriodSeconds?: number; priorityClassName?: string; restartPolicy?: string;
  containers: Container[]; volumes?: { name: string }[]; imagePullSecrets?: { name: string }[];
  nodeSelector?: Record<string, string>; tolerations?: unknown[]; affinity?: unknown;
}
interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }
interface Obj {
  apiVersion: string; kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: {
    replicas?: number; selector?: unknown; minAvailable?: number | string; maxUnavailable?: number | string;
    ports?: { name: string; port: number; targetPort?: number }[];
    template?: { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  };
  rules?: Rule[]; subjects?: { kind: string; name: string; namespace?: string }[]; roleRef?: { kind: string; name: string };
}

let helm = "";
let work = "";

beforeAll(() => {
  const out = execFileSync("bash", [join(repo, "scripts/get-helm.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  helm = out.trim().split("\n").pop()!;
  work = mkdtempSync(join(tmpdir(), "ambit-chart-"));
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(helm, args, { encoding: "utf8", cwd: repo, env: { ...process.env, HELM_CACHE_HOME: join(work, "cache"), HELM_CONFIG_HOME: join(work, "config"), HELM_DATA_HOME: join(work, "data") } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `helm template` → the rendered objects; fails the test with helm's message when rendering fails. */
function render(args: string[] = [], namespace = "istio-system"): Obj[] {
  const r = run(["template", "ambit", chart, "--namespace", namespace, ...args]);
  expect(r.stderr, "helm template failed").toBe("");
  expect(r.code).toBe(0);
  return yaml.loadAll(r.stdout).filter((o): o is Obj => o !== null && typeof o === "object");
}

/** Runs `helm template` expecting a schema failure; returns helm's message. */
function reject(args: string[]): string {
  const r = run(["template", "ambit", chart, "--namespace", "istio-system", ...args]);
  expect(r.code, `helm accepted ${args.join(" ")}`).not.toBe(0);
  return r.stderr;
}

function valuesFile(name: string, values: unknown): string {
  const file = join(work, name);
  writeFileSync(file, yaml.dump(values));
  return file;
}

const find = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} rendered (have: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(", ")})`);
  return o;
};
const pod = (o: Obj): PodSpec => o.spec!.template!.spec;
const container = (o: Obj): Container => pod(o).containers[0]!;
const env = (o: Obj): Record<string, EnvVar> => Object.fromEntries((container(o).env ?? []).map((e) => [e.name, e]));
const envValue = (o: Obj, name: string): string | undefined => env(o)[name]?.value;
const fieldRef = (o: Obj, name: string): string | undefined => env(o)[name]?.valueFrom?.fieldRef?.fieldPath;
const byName = <T extends { name: string }>(xs: T[] | undefined): Record<string, T> => Object.fromEntries((xs ?? []).map((x) => [x.name, x]));

describe("helm lint", () => {
  it("passes --strict", () => {
    const r = run(["lint", "--strict", chart]);
    expect(r.stdout + r.stderr).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(r.code).toBe(0);
  });

  it("passes --strict with a non-default namespace and every optional part on", () => {
    const r = run(["lint", "--strict", chart, "--namespace", "mesh", "--set", "controller.pdb.enabled=true,controller.replicas=2,image.pullSecrets[0]=regcred,ztunnel.env.SECRET_TTL=12h"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});

describe("the chart renders the mesh", () => {

  it("renders exactly the expected objects with the defaults", () => {
    const objs = render();
    const names = objs.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(names).toEqual([
      "ClusterRole/ambit-cni", "ClusterRole/ambit-controller",
      "ClusterRoleBinding/ambit-cni", "ClusterRoleBinding/ambit-controller",
      "DaemonSet/istio-cni-node", "DaemonSet/ztunnel",
      "Deployment/istiod",
      "Job/ambit-cni-uninstall",
      "PodDisruptionBudget/istiod",
      "Role/ambit-cni", "Role/ambit-controller",
      "RoleBinding/ambit-cni", "RoleBinding/ambit-controller",
      "Service/istiod",
      "ServiceAccount/istio-cni", "ServiceAccount/istiod", "ServiceAccount/ztunnel",
    ]);
    for (const o of objs) {
      if (!o.kind.startsWith("Cluster")) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe("istio-system");
      expect(o.metadata.labels, `${o.kind}/${o.metadata.name}`).toMatchObject({
        "app.kubernetes.io/name": "ambit", "app.kubernetes.io/instance": "ambit", "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "ambit", "app.kubernetes.io/version": "0.1.0", "helm.sh/chart": "ambit-0.1.0",
      });
    }
  });

  it("gives the controller its labels, env from values, probe and Service ports", () => {
    const objs = render();
    const d = find(objs, "Deployment", "istiod");
    expect(d.spec!.template!.metadata.labels).toMatchObject({ app: "istiod", istio: "pilot" });
    expect(pod(d).serviceAccountName).toBe("istiod");
    expect(fieldRef(d, "POD_NAME")).toBe("metadata.name");
    expect(fieldRef(d, "POD_NAMESPACE")).toBe("metadata.namespace");
    expect(envValue(d, "XDS_PLAINTEXT_PORT")).toBe("15010");
    expect(envValue(d, "CLUSTER_ID")).toBe("Kubernetes");
    expect(envValue(d, "TRUST_DOMAIN")).toBe("cluster.local");
    expect(envValue(d, "LOG_LEVEL")).toBe("info");
    expect(envValue(d, "CA_TRUSTED_NODE_ACCOUNTS")).toBe("istio-system/ztunnel");
    expect(container(d).readinessProbe).toMatchObject({ httpGet: { path: "/ready", port: 15014 } });
    const svc = find(objs, "Service", "istiod");
    expect(svc.spec!.ports!.map((p) => [p.name, p.port])).toEqual([["grpc-xds", 15010], ["https-dns", 15012], ["http-monitoring", 15014]]);
    // One replica: a PodDisruptionBudget that never blocks a drain; none when turned off.
    expect(find(objs, "PodDisruptionBudget", "istiod").spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: { app: "istiod" } } });
    expect(render(["--set", "controller.pdb.enabled=false"]).some((o) => o.kind === "PodDisruptionBudget")).toBe(false);
    // Tokens are reviewed (CA, xDS, /debug) and access to /debug/* is asked of the API server (SubjectAccessReview).
    const rules = find(objs, "ClusterRole", "ambit-controller").rules!;
    expect(rules).toContainEqual({ apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"] });
    expect(rules).toContainEqual({ apiGroups: ["authorization.k8s.io"], resources: ["subjectaccessreviews"], verbs: ["create"] });
  });

  it("gives ztunnel its capabilities, token, root certificate, socket dir, downward-API env and addresses", () => {
    const z = find(render(), "DaemonSet", "ztunnel");
    expect(z.spec!.template!.metadata.labels).toMatchObject({ app: "ztunnel" });
    expect(container(z).securityContext!.capabilities!.add!.sort()).toEqual(["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]);
    expect(pod(z).volumes).toContainEqual({ name: "istio-token", projected: { sources: [{ serviceAccountToken: { path: "istio-token", expirationSeconds: 43200, audience: "istio-ca" } }] } });
    expect(pod(z).volumes).toContainEqual({ name: "istiod-ca-cert", configMap: { name: "istio-ca-root-cert" } });
    expect(pod(z).volumes).toContainEqual({ name: "cni-ztunnel-sock-dir", hostPath: { path: "/var/run/ztunnel", type: "DirectoryOrCreate" } });
    const mounts = Object.fromEntries(container(z).volumeMounts!.map((m) => [m.name, m.mountPath]));
    expect(mounts).toEqual({ "istio-token": "/var/run/secrets/tokens", "istiod-ca-cert": "/var/run/secrets/istio", "cni-ztunnel-sock-dir": "/var/run/ztunnel" });
    expect(Object.fromEntries(["NODE_NAME", "POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "SERVICE_ACCOUNT"].map((n) => [n, fieldRef(z, n)]))).toEqual({
      NODE_NAME: "spec.nodeName", POD_NAME: "metadata.name", POD_NAMESPACE: "metadata.namespace", INSTANCE_IP: "status.podIP", SERVICE_ACCOUNT: "spec.serviceAccountName",
    });
    expect(envValue(z, "CA_ADDRESS")).toBe("istiod.istio-system.svc:15012");
    expect(envValue(z, "XDS_ADDRESS")).toBe("istiod.istio-system.svc:15012");
    expect(envValue(z, "LOG_LEVEL")).toBe("info");
    expect(container(z).readinessProbe).toMatchObject({ httpGet: { path: "/healthz/ready", port: 15021 } });
    expect(pod(z).terminationGracePeriodSeconds).toBe(10);
    expect(envValue(z, "TERMINATION_GRACE_PERIOD_SECONDS")).toBe("10");
  });

  it("gives the CNI agent host network, capabilities, host paths, env (with POD_NAME) and access to its own DaemonSet (uninstall handshake)", () => {
    const objs = render();
    const c = find(objs, "DaemonSet", "istio-cni-node");
    expect(pod(c).serviceAccountName).toBe("istio-cni");
    expect(pod(c).hostNetwork).toBe(true);
    expect(container(c).securityContext!.capabilities!.add!.sort()).toEqual(["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"]);
    const hostPaths = (pod(c).volumes as { hostPath?: { path: string } }[]).map((v) => v.hostPath?.path).sort();
    expect(hostPaths).toEqual(["/etc/cni/net.d", "/opt/cni/bin", "/var/run/ambit", "/var/run/ztunnel"]);
    expect(fieldRef(c, "POD_NAME")).toBe("metadata.name");
    expect(fieldRef(c, "NODE_NAME")).toBe("spec.nodeName");
    expect(envValue(c, "CNI_CONF_DIR")).toBe("/etc/cni/net.d");
    expect(envValue(c, "CNI_BIN_DIR")).toBe("/opt/cni/bin");
    expect(envValue(c, "CNI_AGENT_SOCKET")).toBe("/var/run/ambit/cni.sock");
    expect(envValue(c, "AMBIENT_EXCLUDED_NAMESPACES")).toBe("kube-system");
    expect(envValue(c, "AMBIENT_DNS_CAPTURE")).toBe("false");
    expect(container(c).readinessProbe).toMatchObject({ httpGet: { path: "/readyz", port: 15014 } });
    expect(find(objs, "ClusterRole", "ambit-cni").rules).toEqual([
      { apiGroups: [""], resources: ["pods", "namespaces"], verbs: ["get", "list", "watch"] },
      { apiGroups: [""], resources: ["pods"], verbs: ["patch"] },
    ]);
    const role = find(objs, "Role", "ambit-cni");
    expect(role.metadata.namespace).toBe("istio-system");
    expect(role.rules).toEqual([{ apiGroups: ["apps"], resources: ["daemonsets"], resourceNames: ["istio-cni-node"], verbs: ["get", "list", "watch", "patch"] }]);
    expect(find(objs, "RoleBinding", "ambit-cni").subjects).toEqual([{ kind: "ServiceAccount", name: "istio-cni", namespace: "istio-system" }]);
  });

  it("runs the uninstall handshake as a pre-delete hook Job with the agents' account", () => {
    const job = find(render(["--set", "cni.uninstallTimeoutSeconds=30"]), "Job", "ambit-cni-uninstall");
    expect(job.metadata.annotations).toMatchObject({ "helm.sh/hook": "pre-delete", "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded" });
    expect(pod(job).serviceAccountName).toBe("istio-cni");
    expect(pod(job).restartPolicy).toBe("Never");
    expect(container(job).image).toBe("ambit/cni-agent:0.1.0");
    expect(container(job).args).toEqual(["uninstall-hook"]);
    expect(fieldRef(job, "POD_NAMESPACE")).toBe("metadata.namespace");
    expect(envValue(job, "CNI_DAEMONSET")).toBe("istio-cni-node");
    expect(envValue(job, "UNINSTALL_HOOK_TIMEOUT_SECONDS")).toBe("30");
  });

  it("follows the release namespace everywhere", () => {
    const objs = render([], "mesh");
    for (const o of objs) if (!o.kind.startsWith("Cluster")) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe("mesh");
    for (const o of objs.filter((x) => x.subjects)) expect(o.subjects!.map((s) => s.namespace), `${o.kind}/${o.metadata.name}`).toEqual(["mesh"]);
    expect(envValue(find(objs, "Deployment", "istiod"), "CA_TRUSTED_NODE_ACCOUNTS")).toBe("mesh/ztunnel");
    expect(envValue(find(objs, "DaemonSet", "ztunnel"), "CA_ADDRESS")).toBe("istiod.mesh.svc:15012");
    expect(envValue(find(objs, "DaemonSet", "ztunnel"), "XDS_ADDRESS")).toBe("istiod.mesh.svc:15012");
  });
});

describe("custom values", () => {
  it("renders a custom values file into every component", () => {
    const file = valuesFile("custom.yaml", {
      image: { repository: "registry.example.com:5000/team/ambit", tag: "1.2.3-rc.1", pullPolicy: "Always", pullSecrets: ["regcred"] },
      mesh: { clusterId: "east", trustDomain: "example.org" },
      controller: {
        replicas: 3, logLevel: "debug", xdsPlaintextPort: 0, caTrustedNodeAccounts: ["mesh/ztunnel", "other/node-proxy"],
        env: { PILOT_DEBOUNCE_AFTER: "200ms", XDS_AUTH: true },
        resources: { requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: 2, memory: "1Gi" } },
        nodeSelector: { "kubernetes.io/os": "linux" }, tolerations: [{ key: "dedicated", operator: "Equal", value: "mesh", effect: "NoSchedule" }],
        affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: { app: "istiod" } } } }] } },
        podAnnotations: { "prometheus.io/scrape": "true" },
        pdb: { enabled: true, minAvailable: 2 },
      },
      ztunnel: { logLevel: "trace", terminationGracePeriodSeconds: 30, env: { SECRET_TTL: "12h" }, resources: { requests: { cpu: "200m", memory: "512Mi" } }, priorityClassName: "", nodeSelector: { mesh: "yes" }, tolerations: [] },
      cni: {
        confDir: "/etc/kubernetes/cni/net.d", binDir: "/home/kubernetes/bin", agentSocketDir: "/run/ambit", monitoringPort: 16014,
        excludedNamespaces: ["kube-system", "monitoring"], dnsCapture: true, env: { EXTRA: 1 },
      },
    });
    const objs = render(["-f", file], "mesh");

    const d = find(objs, "Deployment", "istiod");
    expect(d.spec!.replicas).toBe(3);
    expect(container(d).image).toBe("registry.example.com:5000/team/ambit/controller:1.2.3-rc.1");
    expect(container(d)).toMatchObject({ imagePullPolicy: "Always" });
    expect(pod(d).imagePullSecrets).toEqual([{ name: "regcred" }]);
    expect(envValue(d, "LOG_LEVEL")).toBe("debug");
    expect(envValue(d, "XDS_PLAINTEXT_PORT")).toBe("0");
    expect(envValue(d, "CLUSTER_ID")).toBe("east");
    expect(envValue(d, "TRUST_DOMAIN")).toBe("example.org");
    expect(envValue(d, "CA_TRUSTED_NODE_ACCOUNTS")).toBe("mesh/ztunnel,other/node-proxy");
    expect(envValue(d, "PILOT_DEBOUNCE_AFTER")).toBe("200ms");
    expect(envValue(d, "XDS_AUTH")).toBe("true");
    expect(container(d).resources).toEqual({ requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: 2, memory: "1Gi" } });
    expect(pod(d).nodeSelector).toEqual({ "kubernetes.io/os": "linux" });
    expect(pod(d).tolerations).toEqual([{ key: "dedicated", operator: "Equal", value: "mesh", effect: "NoSchedule" }]);
    expect(pod(d).affinity).toMatchObject({ podAntiAffinity: {} });
    expect(d.spec!.template!.metadata.annotations).toEqual({ "prometheus.io/scrape": "true" });
    // Plaintext xDS off: no grpc-xds port on the Service.
    expect(find(objs, "Service", "istiod").spec!.ports!.map((p) => p.name)).toEqual(["https-dns", "http-monitoring"]);
    const pdb = find(objs, "PodDisruptionBudget", "istiod");
    expect(pdb.apiVersion).toBe("policy/v1");
    expect(pdb.spec).toEqual({ minAvailable: 2, selector: { matchLabels: { app: "istiod" } } });

    const z = find(objs, "DaemonSet", "ztunnel");
    expect(container(z).image).toBe("registry.example.com:5000/team/ambit/ztunnel:1.2.3-rc.1");
    expect(envValue(z, "LOG_LEVEL")).toBe("trace");
    expect(envValue(z, "SECRET_TTL")).toBe("12h");
    expect(envValue(z, "CLUSTER_ID")).toBe("east");
    expect(envValue(z, "TRUST_DOMAIN")).toBe("example.org");
    expect(pod(z).terminationGracePeriodSeconds).toBe(30);
    expect(envValue(z, "TERMINATION_GRACE_PERIOD_SECONDS")).toBe("30");
    expect(pod(z).priorityClassName).toBeUndefined();
    expect(pod(z).tolerations).toBeUndefined();
    expect(pod(z).nodeSelector).toEqual({ mesh: "yes" });
    expect(container(z).resources).toEqual({ requests: { cpu: "200m", memory: "512Mi" } });

    const c = find(objs, "DaemonSet", "istio-cni-node");
    expect(container(c).image).toBe("registry.example.com:5000/team/ambit/cni-agent:1.2.3-rc.1");
    expect(envValue(c, "CNI_CONF_DIR")).toBe("/etc/kubernetes/cni/net.d");
    expect(envValue(c, "CNI_BIN_DIR")).toBe("/home/kubernetes/bin");
    expect(envValue(c, "CNI_AGENT_SOCKET")).toBe("/run/ambit/cni.sock");
    expect(envValue(c, "MONITORING_PORT")).toBe("16014");
    expect(envValue(c, "AMBIENT_EXCLUDED_NAMESPACES")).toBe("kube-system,monitoring");
    expect(envValue(c, "AMBIENT_DNS_CAPTURE")).toBe("true");
    expect(envValue(c, "EXTRA")).toBe("1");
    expect(container(c).readinessProbe).toMatchObject({ httpGet: { path: "/readyz", port: 16014 } });
    const mounts = Object.fromEntries(container(c).volumeMounts!.map((m) => [m.name, m.mountPath]));
    expect(mounts).toMatchObject({ "cni-bin": "/home/kubernetes/bin", "cni-conf": "/etc/kubernetes/cni/net.d", "cni-socket": "/run/ambit" });
    expect(byName(pod(c).volumes)["cni-conf"]).toEqual({ name: "cni-conf", hostPath: { path: "/etc/kubernetes/cni/net.d" } });
  });

  it("accepts a percentage for the PodDisruptionBudget", () => {
    const pdb = find(render(["--set", "controller.replicas=2", "--set", "controller.pdb.minAvailable=50%"]), "PodDisruptionBudget", "istiod");
    expect(pdb.spec!.minAvailable).toBe("50%");
  });
});

describe("invalid values are rejected with a message naming the value", () => {
  it.each([
    ["a wrong type", { controller: { replicas: "three" } }, "/controller/replicas", /got string, want integer/],
    ["a wrong type (boolean)", { cni: { dnsCapture: "yes" } }, "/cni/dnsCapture", /got string, want boolean/],
    ["an unknown key", { ztunnel: { logLvl: "debug" } }, "/ztunnel", /'logLvl' not allowed/],
    ["an unknown top-level key", { ztunel: {} }, "at ''", /'ztunel' not allowed/],
    ["a bad log level", { ztunnel: { logLevel: "verbose" } }, "/ztunnel/logLevel", /must be one of 'trace', 'debug', 'info', 'warn', 'error'/],
    ["a bad pull policy", { image: { pullPolicy: "Sometimes" } }, "/image/pullPolicy", /must be one of/],
    ["a port out of range", { cni: { monitoringPort: 70000 } }, "/cni/monitoringPort", /maximum: got 70,000, want 65,535/],
    ["a negative port", { controller: { xdsPlaintextPort: -1 } }, "/controller/xdsPlaintextPort", /minimum/],
    ["a bad image tag", { image: { tag: "v1/latest" } }, "/image/tag", /does not match pattern/],
    ["a bad resource quantity", { ztunnel: { resources: { requests: { memory: "lots" } } } }, "/ztunnel/resources/requests/memory", /does not match pattern/],
    ["a bad trusted node account", { controller: { caTrustedNodeAccounts: ["ztunnel"] } }, "/controller/caTrustedNodeAccounts/0", /does not match pattern/],
    ["a relative host path", { cni: { binDir: "opt/cni/bin" } }, "/cni/binDir", /does not match pattern/],
  ])("%s", (_what, values, path, message) => {
    const err = reject(["-f", valuesFile("bad.yaml", values)]);
    expect(err).toContain("values don't meet the specifications of the schema");
    expect(err).toContain(`at '${path.replace(/^at '|'$/g, "")}'`);
    expect(err).toMatch(message);
  });

  it("rejects a bad --set value too", () => {
    const err = reject(["--set", "ztunnel.logLevel=loud"]);
    expect(err).toContain("at '/ztunnel/logLevel': value must be one of");
  });
});

describe("upgrades", () => {
  /** Objects by kind/name whose rendering differs between two value sets. */
  function changed(a: Obj[], b: Obj[]): string[] {
    const key = (o: Obj) => `${o.kind}/${o.metadata.name}`;
    const before = new Map(a.map((o) => [key(o), JSON.stringify(o)]));
    const after = new Map(b.map((o) => [key(o), JSON.stringify(o)]));
    return [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k)).sort();
  }

  it("ztunnel.logLevel changes only ztunnel's pod template", () => {
    const before = render();
    const after = render(["--set", "ztunnel.logLevel=debug"]);
    expect(changed(before, after)).toEqual(["DaemonSet/ztunnel"]);
    const [zb, za] = [find(before, "DaemonSet", "ztunnel"), find(after, "DaemonSet", "ztunnel")];
    // Only the pod template differs (so the DaemonSet rolls ztunnel and nothing else), and only in LOG_LEVEL.
    expect({ ...za, spec: { ...za.spec, template: undefined } }).toEqual({ ...zb, spec: { ...zb.spec, template: undefined } });
    expect(envValue(za, "LOG_LEVEL")).toBe("debug");
    const strip = (o: Obj) => JSON.stringify(o.spec!.template).replace(/"LOG_LEVEL","value":"[a-z]+"/, "");
    expect(strip(za)).toBe(strip(zb));
  });

  it("a CNI or controller value changes only that component", () => {
    const before = render();
    expect(changed(before, render(["--set", "cni.dnsCapture=true"]))).toEqual(["DaemonSet/istio-cni-node"]);
    expect(changed(before, render(["--set", "controller.logLevel=debug"]))).toEqual(["Deployment/istiod"]);
  });
});

describe("documentation", () => {
  const leaves = (v: unknown, prefix = ""): string[] =>
    v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !["env", "nodeSelector", "affinity", "podAnnotations", "limits"].includes(prefix.split(".").pop() ?? "")
      ? Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => leaves(x, prefix ? `${prefix}.${k}` : k))
      : [prefix];

  it("comments every value in values.yaml", () => {
    const lines = readFileSync(join(chart, "values.yaml"), "utf8").split("\n");
    let listIndent = -1; // inside the items of a default list (e.g. tolerations), keys are data, not values
    const uncommented = lines.flatMap((line, i) => {
      const item = /^(\s*)- /.exec(line);
      if (item) { listIndent = item[1]!.length; return []; }
      const key = /^(\s*)([A-Za-z][\w-]*):/.exec(line);
      if (!key) return [];
      if (listIndent >= 0 && key[1]!.length > listIndent) return [];
      listIndent = -1;
      const previous = lines[i - 1] ?? "";
      return /^\s*#/.test(previous) ? [] : [`line ${i + 1}: ${line.trim()}`];
    });
    expect(uncommented).toEqual([]);
  });

  it("lists every value in the README's values table", () => {
    const values = yaml.load(readFileSync(join(chart, "values.yaml"), "utf8"));
    const readme = readFileSync(join(chart, "README.md"), "utf8");
    const missing = leaves(values).filter((p) => !readme.includes(`| \`${p}\``));
    expect(missing).toEqual([]);
  });
});
