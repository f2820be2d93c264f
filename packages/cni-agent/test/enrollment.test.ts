import { describe, expect, it } from "vitest";
import { enrollment, type PodLike } from "../src/enrollment.js";

const excluded = new Set(["istio-system", "kube-system"]);
const pod = (over: Partial<PodLike["metadata"]> = {}, spec: PodLike["spec"] = {}): PodLike => ({ metadata: { name: "p", namespace: "shop", ...over }, spec });
const ns = (labels: Record<string, string> = {}) => ({ metadata: { name: "shop", labels } });
const AMBIENT = { "istio.io/dataplane-mode": "ambient" };

describe("enrollment decision", () => {
  it("follows the namespace label, with the pod label as an override both ways", () => {
    expect(enrollment(pod(), ns(AMBIENT), excluded)).toMatchObject({ enroll: true, reason: expect.stringMatching(/namespace shop is labelled/) });
    expect(enrollment(pod(), ns(), excluded).enroll).toBe(false);
    expect(enrollment(pod({ labels: AMBIENT }), ns(), excluded)).toMatchObject({ enroll: true, reason: expect.stringMatching(/the pod is labelled/) });
    expect(enrollment(pod({ labels: { "istio.io/dataplane-mode": "none" } }), ns(AMBIENT), excluded)).toMatchObject({ enroll: false, reason: expect.stringMatching(/=none/) });
    expect(enrollment(pod(), undefined, excluded).enroll).toBe(false);
  });

  it("never enrolls excluded namespaces, host-network pods or pods with an Istio sidecar", () => {
    expect(enrollment(pod({ namespace: "kube-system", labels: AMBIENT }), ns(AMBIENT), excluded)).toMatchObject({ enroll: false, reason: "namespace kube-system is excluded" });
    expect(enrollment(pod({}, { hostNetwork: true }), ns(AMBIENT), excluded).enroll).toBe(false);
    expect(enrollment(pod({}, { containers: [{ name: "app" }, { name: "istio-proxy" }] }), ns(AMBIENT), excluded).enroll).toBe(false);
    expect(enrollment(pod({}, { initContainers: [{ name: "istio-proxy" }] }), ns(AMBIENT), excluded).enroll).toBe(false);
    expect(enrollment(pod({ annotations: { "sidecar.istio.io/status": "{}" } }), ns(AMBIENT), excluded).enroll).toBe(false);
  });
});
