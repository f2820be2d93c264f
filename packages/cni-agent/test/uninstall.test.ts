// Uninstall or restart on exit (the decision, against fake API answers: 404, being deleted, present, errors), and
// the uninstall's per-pod cleanup on real network namespaces with real iptables (rules out, foreign rules kept,
// gone netns and gone pods fine, failures logged not thrown, the deadline kept).
import { afterAll, describe, expect, it } from "vitest";
import { applyRules, inspectRules } from "../src/redirect/index.js";
import { cleanupPods, decideOnExit, parseUninstallSetting, type ExitCheckApi } from "../src/uninstall.js";
import { cleanup, createNetns, deleteNetns, nsExec, sh } from "./netns-helper.js";

afterAll(() => cleanup());

class HttpError extends Error {
  constructor(readonly code: number) {
    super(`HTTP-Code: ${code}\nMessage: fake`);
  }
}

const SELF = { podName: "ambit-cni-node-x7k2p", namespace: "istio-system" };
const OWNER = { apiVersion: "apps/v1", kind: "DaemonSet", name: "ambit-cni-node", uid: "ds-uid-1", controller: true };

/** A fake API: the pod's owners, and what GET of the DaemonSet gives (an object or an error to throw). */
function fakeApi(ds: object | Error, owners: object[] | Error = [OWNER]): ExitCheckApi & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    readPod: async (ns, name) => {
      calls.push(`pod ${ns}/${name}`);
      if (owners instanceof Error) throw owners;
      return { metadata: { ownerReferences: owners } };
    },
    readDaemonSet: async (ns, name) => {
      calls.push(`daemonset ${ns}/${name}`);
      if (ds instanceof Error) throw ds;
      return ds;
    },
  };
}

describe("decideOnExit", () => {
  const cases: { name: string; api: ExitCheckApi & { calls: string[] }; uninstall: boolean; reason: RegExp }[] = [
    { name: "DaemonSet gone (404)", api: fakeApi(new HttpError(404)), uninstall: true, reason: /istio-system\/ambit-cni-node is gone \(404\)/ },
    { name: "DaemonSet being deleted", api: fakeApi({ metadata: { uid: "ds-uid-1", deletionTimestamp: "2025-01-01T00:00:00Z" } }), uninstall: true, reason: /being deleted/ },
    { name: "DaemonSet present", api: fakeApi({ metadata: { uid: "ds-uid-1" } }), uninstall: false, reason: /is present: a restart or upgrade/ },
    { name: "DaemonSet replaced by a new one", api: fakeApi({ metadata: { uid: "ds-uid-2" } }), uninstall: false, reason: /replaced/ },
    { name: "GET DaemonSet forbidden (403)", api: fakeApi(new HttpError(403)), uninstall: false, reason: /failed \(HTTP 403\); keeping the node/ },
    { name: "GET DaemonSet server error (500)", api: fakeApi(new HttpError(500)), uninstall: false, reason: /HTTP 500/ },
    { name: "GET DaemonSet network error", api: fakeApi(new Error("connect ECONNREFUSED 10.96.0.1:443")), uninstall: false, reason: /ECONNREFUSED/ },
    { name: "own pod not readable", api: fakeApi({ metadata: {} }, new HttpError(404)), uninstall: false, reason: /own pod istio-system\/ambit-cni-node-x7k2p failed \(HTTP 404\)/ },
    { name: "own pod not owned by a DaemonSet", api: fakeApi({ metadata: {} }, [{ apiVersion: "v1", kind: "Node", name: "n" }]), uninstall: false, reason: /not owned by a DaemonSet/ },
  ];
  for (const c of cases) {
    it(`${c.name} ⇒ ${c.uninstall ? "uninstall" : "restart"}`, async () => {
      const d = await decideOnExit(c.api, SELF);
      expect(d.uninstall).toBe(c.uninstall);
      expect(d.reason).toMatch(c.reason);
    });
  }

  it("reads the pod, then the DaemonSet named by its controller owner reference, in the pod's namespace", async () => {
    const api = fakeApi(new HttpError(404), [{ apiVersion: "v1", kind: "Node", name: "n" }, { ...OWNER, name: "other", controller: false }, OWNER]);
    await decideOnExit(api, SELF);
    expect(api.calls).toEqual(["pod istio-system/ambit-cni-node-x7k2p", "daemonset istio-system/ambit-cni-node"]);
  });

  it("without POD_NAME or POD_NAMESPACE: restart, and no API call", async () => {
    const api = fakeApi(new HttpError(404));
    expect(await decideOnExit(api, { namespace: "istio-system" })).toMatchObject({ uninstall: false, reason: expect.stringMatching(/POD_NAME/) });
    expect(await decideOnExit(api, { podName: "p" })).toMatchObject({ uninstall: false });
    expect(api.calls).toEqual([]);
  });

  it("AMBIT_CNI_UNINSTALL_ON_EXIT=true|false wins without asking the API", async () => {
    const api = fakeApi({ metadata: { uid: "ds-uid-1" } });
    expect(await decideOnExit(api, SELF, "true")).toEqual({ uninstall: true, reason: "AMBIT_CNI_UNINSTALL_ON_EXIT=true" });
    expect(await decideOnExit(fakeApi(new HttpError(404)), SELF, "false")).toEqual({ uninstall: false, reason: "AMBIT_CNI_UNINSTALL_ON_EXIT=false" });
    expect(api.calls).toEqual([]);
  });

  it("parses the setting (default auto), refusing anything else", () => {
    expect(parseUninstallSetting(undefined)).toBe("auto");
    expect(parseUninstallSetting("auto")).toBe("auto");
    expect(parseUninstallSetting("TRUE")).toBe("true");
    expect(parseUninstallSetting("false")).toBe("false");
    expect(parseUninstallSetting("yes")).toBeUndefined();
  });
});

describe("cleanupPods (real netns, real iptables)", () => {
  const OPTS = { dnsCapture: true, ipv6: true };
  const foreign = ["-A OUTPUT -d 192.0.2.1/32 -j RETURN", "-A PREROUTING -s 198.51.100.0/24 -j ACCEPT"];

  it("removes every pod's rules and annotation and tells ztunnel; foreign rules stay; gone netns and gone pods are fine", async () => {
    const a = createNetns();
    const b = createNetns();
    const gone = createNetns();
    for (const ns of [a, b, gone]) await applyRules(ns, OPTS);
    sh("ip", ["netns", "exec", a, "iptables", "-t", "nat", ...foreign[0]!.split(" ")]);
    sh("ip", ["netns", "exec", a, "iptables", "-t", "mangle", ...foreign[1]!.split(" ")]);
    deleteNetns(gone);
    const patched: string[] = [];
    const deleted: string[] = [];
    const logs: string[] = [];
    const report = await cleanupPods({
      targets: [
        { key: "shop/a", netns: a, uid: "uid-a" },
        { key: "shop/b", netns: b, uid: "uid-b" },
        { key: "shop/gone", netns: gone, uid: "uid-gone" }, // its netns went with the pod
        { key: "shop/stray" }, // annotated, netns unknown
      ],
      removeAnnotation: async (ns, name) => {
        patched.push(`${ns}/${name}`);
        return name !== "gone"; // 404: the pod is gone
      },
      delWorkload: async (uid) => void deleted.push(uid),
      log: (msg) => logs.push(msg),
    });
    for (const ns of [a, b]) {
      const r = await inspectRules(ns, OPTS);
      expect(r.present).toBe(false);
      expect(nsExec(ns, "ip", "rule", "show")).not.toMatch(/lookup 100/);
      expect(nsExec(ns, "ip", "-6", "rule", "show")).not.toMatch(/lookup 100/);
      expect(nsExec(ns, "iptables-save")).not.toMatch(/ISTIO_/);
      expect(nsExec(ns, "ip6tables-save")).not.toMatch(/ISTIO_/);
    }
    const saved = nsExec(a, "iptables-save");
    for (const rule of foreign) expect(saved.split("\n")).toContain(rule);
    expect(patched.sort()).toEqual(["shop/a", "shop/b", "shop/gone", "shop/stray"]);
    expect(deleted.sort()).toEqual(["uid-a", "uid-b", "uid-gone"]);
    expect(report).toEqual({ pods: 4, rulesRemoved: 2, annotationsRemoved: 3, failures: 0, unfinished: [] });
    expect(logs).toEqual([]);

    // Idempotent: a second run finds nothing to remove.
    const again = await cleanupPods({ targets: [{ key: "shop/a", netns: a }], removeAnnotation: async () => false, log: () => undefined });
    expect(again).toMatchObject({ rulesRemoved: 0, failures: 0 });
  });

  it("logs a failing step and goes on with the other steps and pods; never throws", async () => {
    const a = createNetns();
    await applyRules(a, OPTS);
    const logs: { msg: string; fields?: object }[] = [];
    const report = await cleanupPods({
      targets: [{ key: "shop/x", netns: "/proc/999999999/ns/net" }, { key: "shop/a", netns: a, uid: "uid-a" }],
      removeAnnotation: async (_ns, name) => {
        if (name === "a") throw new Error("HTTP 500");
        return true;
      },
      delWorkload: async () => { throw new Error("ztunnel went away"); },
      log: (msg, fields) => logs.push({ msg, ...(fields ? { fields } : {}) }),
    });
    expect((await inspectRules(a, OPTS)).present).toBe(false);
    expect(report).toMatchObject({ pods: 2, rulesRemoved: 1, annotationsRemoved: 1, failures: 1, unfinished: [] });
    expect(logs).toContainEqual({ msg: "uninstall: a cleanup step failed", fields: { pod: "shop/a", step: "annotation", err: "HTTP 500" } });
    expect(logs).toContainEqual({ msg: "uninstall: ztunnel was not told", fields: { pod: "shop/a", err: "ztunnel went away" } });
  });

  it("keeps its deadline when a step hangs, and reports what is unfinished", async () => {
    const a = createNetns();
    await applyRules(a, OPTS);
    // A step that never ends: cleanupPods returns at all only because its deadline came.
    const report = await cleanupPods({
      targets: [{ key: "shop/a", netns: a }, { key: "shop/hung", after: new Promise(() => undefined) }],
      removeAnnotation: async () => true,
      deadlineMs: 1500,
      log: () => undefined,
    });
    expect(report.unfinished).toEqual(["shop/hung"]);
    expect((await inspectRules(a, OPTS)).present).toBe(false);
  });
});
