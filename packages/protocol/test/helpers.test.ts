import { describe, expect, it } from "vitest";
import {
  AddressError, SpiffeIdError, TypeUrl, UnpackError, ZdsProtocolError, bytesToIp, cidrContains, decodeAck, decodeHello,
  decodeRequest, encodeRequest, formatAuthority, formatBaggage, formatForwarded, formatSpiffeId, formatTraceparent,
  google, ipToBytes, isKnownTypeUrl, networkAddressKey, packAddress, packAuthorization, parseAuthority, parseNodeId,
  parseSpiffeId, podUid, serviceHostname, serviceResourceName, splitNamespacedName, unpackAddress, unpackAuthorization,
  workloadIdentity, ztunnelNodeId, ZDS_MAX_MESSAGE, istio,
} from "../src/index.js";

describe("SPIFFE ids", () => {
  it("formats and parses the Istio form", () => {
    const id = { trustDomain: "cluster.local", namespace: "default", serviceAccount: "echo" };
    expect(formatSpiffeId(id)).toBe("spiffe://cluster.local/ns/default/sa/echo");
    expect(parseSpiffeId("spiffe://cluster.local/ns/default/sa/echo")).toEqual(id);
  });
  it.each([
    ["http://cluster.local/ns/a/sa/b", /must start with spiffe:\/\//],
    ["spiffe://cluster.local/ns/a", /is not of the form/],
    ["spiffe://cluster.local/ns/a/sa/b/extra", /is not of the form/],
    ["spiffe://cluster.local/namespace/a/sa/b", /is not of the form/],
    ["spiffe://Cluster.Local/ns/a/sa/b", /trust domain "Cluster.Local" has characters/],
    ["spiffe://cluster.local/ns//sa/b", /namespace is empty/],
    ["spiffe://cluster.local/ns/a/sa/B_ad", /service account "B_ad"/],
  ])("rejects %s with a message naming the problem", (uri, message) => {
    expect(() => parseSpiffeId(uri)).toThrow(SpiffeIdError);
    expect(() => parseSpiffeId(uri)).toThrow(message);
  });
  it("applies Istio's defaults to a workload's identity", () => {
    expect(workloadIdentity({ namespace: "ns1" })).toEqual({ trustDomain: "cluster.local", namespace: "ns1", serviceAccount: "default" });
    expect(workloadIdentity({ namespace: "ns1", trust_domain: "td", service_account: "sa" })).toEqual({ trustDomain: "td", namespace: "ns1", serviceAccount: "sa" });
  });
});

describe("IP bytes", () => {
  it.each([
    ["10.244.1.5", "0af40105"],
    ["::", "00000000000000000000000000000000"],
    ["::1", "00000000000000000000000000000001"],
    ["fd00::a", "fd00000000000000000000000000000a"],
    ["2001:db8:0:1:0:0:0:1", "20010db8000000010000000000000001"],
    ["::ffff:10.0.0.1", "00000000000000000000ffff0a000001"],
    ["fe80::1%eth0", "fe800000000000000000000000000001"],
  ])("%s ⇄ %s", (ip, hex) => {
    expect(Buffer.from(ipToBytes(ip)).toString("hex")).toBe(hex);
    expect(ipToBytes(bytesToIp(Buffer.from(hex, "hex")))).toEqual(ipToBytes(ip));
  });
  it("prints canonical IPv6", () => {
    expect(bytesToIp(ipToBytes("2001:db8:0:1:0:0:0:1"))).toBe("2001:db8:0:1::1");
    expect(bytesToIp(ipToBytes("2001:db8:0:0:1:0:0:1"))).toBe("2001:db8::1:0:0:1");
    expect(bytesToIp(ipToBytes("1:2:3:4:5:6:7:8"))).toBe("1:2:3:4:5:6:7:8");
  });
  it("rejects bad input with AddressError", () => {
    expect(() => ipToBytes("10.0.0.256")).toThrow(AddressError);
    expect(() => ipToBytes("example.com")).toThrow(/not an IP address/);
    expect(() => bytesToIp(new Uint8Array(5))).toThrow(/4 or 16 bytes, got 5/);
  });
  it("matches CIDRs", () => {
    expect(cidrContains(ipToBytes("10.244.0.0"), 16, ipToBytes("10.244.9.1"))).toBe(true);
    expect(cidrContains(ipToBytes("10.244.0.0"), 16, ipToBytes("10.245.0.1"))).toBe(false);
    expect(cidrContains(ipToBytes("10.244.1.0"), 23, ipToBytes("10.244.0.255"))).toBe(true);
    expect(cidrContains(ipToBytes("0.0.0.0"), 0, ipToBytes("1.2.3.4"))).toBe(true);
    expect(cidrContains(ipToBytes("fd00::"), 8, ipToBytes("fd12::1"))).toBe(true);
    expect(cidrContains(ipToBytes("10.0.0.0"), 8, ipToBytes("::ffff:10.0.0.1"))).toBe(false);
    expect(cidrContains(ipToBytes("10.0.0.0"), 33, ipToBytes("10.0.0.1"))).toBe(false);
  });
});

describe("names", () => {
  it("uses istiod's formats", () => {
    expect(podUid("default", "echo-1")).toBe("Kubernetes//Pod/default/echo-1");
    expect(podUid("default", "echo-1", "c2")).toBe("c2//Pod/default/echo-1");
    expect(serviceHostname("echo", "default")).toBe("echo.default.svc.cluster.local");
    expect(serviceResourceName("default", "echo.default.svc.cluster.local")).toBe("default/echo.default.svc.cluster.local");
    expect(networkAddressKey("", "10.0.0.5")).toBe("/10.0.0.5");
    expect(splitNamespacedName("ns/a/b")).toEqual({ namespace: "ns", name: "a/b" });
    expect(splitNamespacedName("nonamespace")).toBeNull();
    expect(splitNamespacedName("/x")).toBeNull();
  });
  it("builds and parses node ids", () => {
    const id = ztunnelNodeId("10.0.0.1", "ztunnel-abc", "istio-system");
    expect(id).toBe("ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local");
    expect(parseNodeId(id)).toEqual({ type: "ztunnel", ip: "10.0.0.1", id: "ztunnel-abc.istio-system", domain: "istio-system.svc.cluster.local" });
    expect(ztunnelNodeId("", "z", "ns")).toMatch(/^ztunnel~1\.1\.1\.1~/);
    expect(parseNodeId("ztunnel~a~b")).toBeNull();
    expect(parseNodeId("ztunnel~~b~c")).toBeNull();
  });
});

describe("Any packing", () => {
  it("round-trips both resource types", () => {
    const any = packAddress({ workload: { uid: "u1", name: "p" } });
    expect(any.type_url).toBe(TypeUrl.address);
    expect(unpackAddress(any).workload?.uid).toBe("u1");
    const pol = packAuthorization({ name: "p", namespace: "n", action: istio.security.Action.DENY });
    expect(unpackAuthorization(pol).action).toBe(istio.security.Action.DENY);
    expect(isKnownTypeUrl(TypeUrl.authorization)).toBe(true);
    expect(isKnownTypeUrl("type.googleapis.com/istio.workload.Workload")).toBe(false);
  });
  it("rejects the wrong type and malformed bytes", () => {
    expect(() => unpackAddress(packAuthorization({ name: "p" }))).toThrow(UnpackError);
    expect(() => unpackAddress(packAuthorization({ name: "p" }))).toThrow(/expected type.googleapis.com\/istio.workload.Address/);
    const bad = google.protobuf.Any.create({ type_url: TypeUrl.address, value: Uint8Array.from([0x0a, 0x05, 0x01]) });
    expect(() => unpackAddress(bad)).toThrow(/malformed/);
  });
});

describe("HBONE header values", () => {
  it("formats and parses authorities", () => {
    expect(formatAuthority("10.0.0.1", 8080)).toBe("10.0.0.1:8080");
    expect(formatAuthority("fd00::1", 80)).toBe("[fd00::1]:80");
    expect(parseAuthority("10.0.0.1:8080")).toEqual({ host: "10.0.0.1", port: 8080 });
    expect(parseAuthority("[fd00::1]:80")).toEqual({ host: "fd00::1", port: 80 });
    expect(parseAuthority("echo.default.svc.cluster.local:80")).toEqual({ host: "echo.default.svc.cluster.local", port: 80 });
    for (const bad of ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", "fd00::1:80", ":80", "a:b"]) expect(parseAuthority(bad)).toBeNull();
  });
  it("formats forwarded, traceparent and baggage", () => {
    expect(formatForwarded("10.0.0.1", 4321)).toBe('for="10.0.0.1:4321"');
    expect(formatForwarded("10.0.0.1", 4321, "echo.default.svc.cluster.local")).toBe('for="10.0.0.1:4321";host=echo.default.svc.cluster.local');
    expect(formatTraceparent(new Uint8Array(16).fill(0xab), new Uint8Array(8).fill(1))).toBe(`00-${"ab".repeat(16)}-${"01".repeat(8)}-00`);
    expect(() => formatTraceparent(new Uint8Array(3), new Uint8Array(8))).toThrow(RangeError);
    expect(formatBaggage({ clusterName: "Kubernetes", namespace: "default", workloadType: "deployment", workloadName: "client", serviceName: "client", serviceVersion: "" }))
      .toBe("k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=client,service.name=client");
  });
});

describe("ZDS framing errors", () => {
  it("requires exactly one fd on AddWorkload and none elsewhere", () => {
    const add = encodeRequest({ kind: "add", uid: "u", info: { name: "p", namespace: "n", serviceAccount: "sa" } });
    expect(() => decodeRequest(add, 0)).toThrow(/add must carry 1 fd\(s\), got 0/);
    expect(() => decodeRequest(add, 2)).toThrow(ZdsProtocolError);
    expect(() => decodeRequest(encodeRequest({ kind: "del", uid: "u" }), 1)).toThrow(/del must carry 0 fd/);
  });
  it("rejects AddWorkload without workload_info, empty requests, garbage and bad versions", () => {
    const noInfo = istio.workload.zds.WorkloadRequest.encode({ add: { uid: "u" } }).finish();
    expect(() => decodeRequest(noInfo, 1)).toThrow(/without workload_info/);
    expect(() => decodeRequest(new Uint8Array(), 0)).toThrow(/no payload/);
    expect(() => decodeRequest(Uint8Array.from([0x0a, 0x10, 0x01]), 0)).toThrow(/malformed WorkloadRequest/);
    expect(() => decodeHello(Uint8Array.from([0x08, 0x02]))).toThrow(/unsupported ZDS version 2/);
    expect(() => decodeAck(new Uint8Array())).toThrow(/no ack/);
  });
  it("refuses messages over the datagram limit", () => {
    expect(() => encodeRequest({ kind: "add", uid: "u", info: { name: "x".repeat(ZDS_MAX_MESSAGE), namespace: "n", serviceAccount: "s" } }))
      .toThrow(/exceeds the 1024-byte ZDS limit/);
  });
});
