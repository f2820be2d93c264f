import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KubeConfigError, loadKubeConfig, resolveKubeConfig } from "../src/index.js";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ambit-kube-client-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const kubeconfigYaml = `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: admin-token
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: team-a
current-context: local
`;

describe("loadKubeConfig", () => {
  it("uses the KUBECONFIG file when set", async () => {
    const file = join(dir, "config");
    writeFileSync(file, kubeconfigYaml);
    const r = resolveKubeConfig({ env: { KUBECONFIG: file, KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" } });
    expect(r.source).toBe("kubeconfig");
    expect(r.from).toBe(file);
    expect(r.namespace).toBe("team-a");
    expect(r.kc.getCurrentCluster()?.server).toBe("https://127.0.0.1:6443");
    const opts: https.RequestOptions = {};
    await r.kc.applyToHTTPSOptions(opts);
    expect((opts.headers as Record<string, string>)["Authorization"]).toBe("Bearer admin-token");
  });

  it("takes the first existing file of a KUBECONFIG list", () => {
    const file = join(dir, "config");
    writeFileSync(file, kubeconfigYaml);
    expect(resolveKubeConfig({ env: { KUBECONFIG: `${join(dir, "missing")}:${file}` } }).from).toBe(file);
  });

  it("names KUBECONFIG when the file does not exist or is not a kubeconfig", () => {
    expect(() => loadKubeConfig({ env: { KUBECONFIG: join(dir, "nope") } })).toThrow(/KUBECONFIG=.*nope: no such file/);
    const junk = join(dir, "junk");
    writeFileSync(junk, "clusters: 42\ncurrent-context: x\n");
    expect(() => loadKubeConfig({ env: { KUBECONFIG: junk } })).toThrow(KubeConfigError);
    expect(() => loadKubeConfig({ env: { KUBECONFIG: junk } })).toThrow(/KUBECONFIG=/);
  });

  it("in-cluster: service-account token and CA, KUBERNETES_SERVICE_HOST/PORT", async () => {
    writeFileSync(join(dir, "token"), "sa-token");
    writeFileSync(join(dir, "ca.crt"), "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    writeFileSync(join(dir, "namespace"), "istio-system");
    const r = resolveKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: dir });
    expect(r.source).toBe("in-cluster");
    expect(r.namespace).toBe("istio-system");
    expect(r.kc.getCurrentCluster()).toMatchObject({ server: "https://10.96.0.1:443", caFile: join(dir, "ca.crt") });
    const opts: https.RequestOptions = {};
    await r.kc.applyToHTTPSOptions(opts);
    expect((opts.headers as Record<string, string>)["Authorization"]).toBe("Bearer sa-token");

    const v6 = resolveKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: dir });
    expect(v6.kc.getCurrentCluster()?.server).toBe("https://[fd00::1]:443");
  });

  it("in-cluster without a mounted token says so", () => {
    expect(() => loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: dir })).toThrow(
      /token does not exist/,
    );
  });

  it("neither: the error names the variables to set", () => {
    expect(() => loadKubeConfig({ env: {} })).toThrow(/set KUBECONFIG .*KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT/);
  });
});
