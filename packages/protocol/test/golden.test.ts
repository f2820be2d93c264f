// Golden-byte tests: each message is written by hand from the field numbers of Istio's schema
// (test/wire.ts), decoded with our generated code, checked field by field, and re-encoded to the same bytes.
import { describe, expect, it } from "vitest";
import { envoy, istio, google } from "../src/index.js";
import { decodeAck, decodeHello, decodeRequest, encodeAck, encodeHello, encodeRequest } from "../src/zds.js";
import { ld, msg, packed, str, vint } from "./wire.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
// Decoded nested messages are typed as optional "properties"; in these tests every field is present.
type Deep<T> = T extends Uint8Array ? Uint8Array : T extends (infer E)[] ? Deep<E>[] : T extends object ? { [K in keyof T]-?: Deep<NonNullable<T[K]>> } : T;
const deep = <T>(v: T) => v as Deep<NonNullable<T>>;
const W = istio.workload;
const S = istio.security;

// Workload: every field kind — strings, bytes, enums, nested messages, a oneof, a map, a wrapper.
const portList = ld(2, ld(1, vint(1, 80), vint(2, 8080), vint(3, W.AppProtocol.HTTP11)));
const workloadBody = [
  str(1, "echo-1"),
  str(2, "default"),
  ld(3, [10, 244, 1, 5]),
  ld(3, [0xfd, 0, ...new Array(13).fill(0), 5]),
  vint(5, W.TunnelProtocol.HBONE),
  str(6, "example.org"),
  str(7, "echo"),
  ld(8, ld(1, str(1, "default"), str(2, "waypoint.default.svc.cluster.local")), vint(3, 15008)),
  str(9, "node-1"),
  str(10, "echo"),
  str(11, "v1"),
  vint(12, W.WorkloadType.POD),
  str(13, "echo"),
  str(16, "default/allow-client"),
  vint(17, W.WorkloadStatus.UNHEALTHY),
  str(18, "Kubernetes"),
  str(20, "Kubernetes//Pod/default/echo-1"),
  ld(22, str(1, "default/echo.default.svc.cluster.local"), portList),
  ld(23, vint(1, W.ApplicationTunnel.Protocol.PROXY), vint(2, 15088)),
  ld(24, str(1, "r1"), str(2, "z1"), str(3, "s1")),
  vint(25, W.NetworkMode.HOST_NETWORK),
  ld(27, vint(1, 3)),
];
const addressWorkload = msg(ld(1, ...workloadBody));

// Service: VIPs with and without a prefix length, ports, SANs, a waypoint by address, load balancing
// with a packed enum list, weighted waypoints and visibility.
const v6Vip = [0xfd, 0, ...new Array(13).fill(0), 0x0a];
const addressService = msg(ld(2,
  str(1, "echo"),
  str(2, "default"),
  str(3, "echo.default.svc.cluster.local"),
  ld(4, ld(2, [10, 96, 0, 10])),
  ld(4, str(1, "net1"), ld(2, v6Vip), vint(3, 120)),
  ld(5, vint(1, 80), vint(2, 8080)),
  ld(5, vint(1, 9000), vint(3, W.AppProtocol.TCP)),
  str(6, "spiffe://cluster.local/ns/default/sa/echo"),
  ld(7, ld(2, ld(2, [10, 96, 0, 20])), vint(3, 15008)),
  ld(8, packed(1, [6, 1, 2]), vint(2, 2), vint(3, 1)),
  vint(9, W.IPFamilies.IPV4_ONLY),
  vint(11, true),
  ld(13, ld(1, ld(1, str(1, "default"), str(2, "canary.default.svc.cluster.local"))), vint(2, 10)),
  vint(14, W.Service.Visibility.NAMESPACE),
));

// Authorization: every Match field, each StringMatch variant, packed ports.
const authorization = msg(
  str(1, "allow-client"),
  str(2, "default"),
  vint(3, S.Scope.WORKLOAD_SELECTOR),
  vint(4, S.Action.DENY),
  ld(5, ld(1,
    ld(2,
      ld(1, str(1, "default")),
      ld(2, str(2, "kube-")),
      ld(3, str(3, "/sa/client")),
      ld(4, ld(4)),
      ld(5, ld(1, [10, 244, 0, 0]), vint(2, 16)),
      ld(6, ld(1, [10, 244, 9, 9]), vint(2, 32)),
      ld(7, ld(1, [10, 96, 0, 0]), vint(2, 12)),
      ld(8, ld(1, [10, 96, 0, 1]), vint(2, 32)),
      packed(9, [8080, 9000]),
      packed(10, [15000]),
      ld(11, str(1, "default"), str(2, "client")),
      ld(12, str(1, "other"), str(2, "bad")),
    ),
  )),
  ld(5, ld(1)), // a rule with one clause that has no matches
  vint(6, true),
);

describe("golden bytes: istio.workload.Address", () => {
  it("decodes a Workload written from the field table", () => {
    const a = W.Address.decode(addressWorkload);
    expect(a.type).toBe("workload");
    const w = deep(a.workload);
    expect(w.uid).toBe("Kubernetes//Pod/default/echo-1");
    expect(w.name).toBe("echo-1");
    expect(w.namespace).toBe("default");
    expect(w.addresses.map((b) => hex(b))).toEqual(["0af40105", "fd000000000000000000000000000005"]);
    expect(w.tunnel_protocol).toBe(W.TunnelProtocol.HBONE);
    expect(w.trust_domain).toBe("example.org");
    expect(w.service_account).toBe("echo");
    expect(w.waypoint?.destination).toBe("hostname");
    expect(w.waypoint?.hostname?.hostname).toBe("waypoint.default.svc.cluster.local");
    expect(w.waypoint?.hbone_mtls_port).toBe(15008);
    expect(w.node).toBe("node-1");
    expect([w.canonical_name, w.canonical_revision, w.workload_name]).toEqual(["echo", "v1", "echo"]);
    expect(w.workload_type).toBe(W.WorkloadType.POD);
    expect(w.authorization_policies).toEqual(["default/allow-client"]);
    expect(w.status).toBe(W.WorkloadStatus.UNHEALTHY);
    expect(w.cluster_id).toBe("Kubernetes");
    const ports = w.services["default/echo.default.svc.cluster.local"]!.ports;
    expect(ports.map((p) => [p.service_port, p.target_port, p.app_protocol])).toEqual([[80, 8080, W.AppProtocol.HTTP11]]);
    expect(w.application_tunnel?.protocol).toBe(W.ApplicationTunnel.Protocol.PROXY);
    expect(w.application_tunnel?.port).toBe(15088);
    expect([w.locality?.region, w.locality?.zone, w.locality?.subzone]).toEqual(["r1", "z1", "s1"]);
    expect(w.network_mode).toBe(W.NetworkMode.HOST_NETWORK);
    expect(w.capacity?.value).toBe(3);
  });

  it("re-encodes the Workload to the same bytes, also when built from a plain object", () => {
    expect(hex(W.Address.encode(W.Address.decode(addressWorkload)).finish())).toBe(hex(addressWorkload));
    const built = W.Address.encode({
      workload: {
        uid: "Kubernetes//Pod/default/echo-1", name: "echo-1", namespace: "default",
        addresses: [Uint8Array.from([10, 244, 1, 5]), Uint8Array.from([0xfd, 0, ...new Array(13).fill(0), 5])],
        tunnel_protocol: W.TunnelProtocol.HBONE, trust_domain: "example.org", service_account: "echo",
        waypoint: { hostname: { namespace: "default", hostname: "waypoint.default.svc.cluster.local" }, hbone_mtls_port: 15008 },
        node: "node-1", canonical_name: "echo", canonical_revision: "v1", workload_type: W.WorkloadType.POD, workload_name: "echo",
        authorization_policies: ["default/allow-client"], status: W.WorkloadStatus.UNHEALTHY, cluster_id: "Kubernetes",
        services: { "default/echo.default.svc.cluster.local": { ports: [{ service_port: 80, target_port: 8080, app_protocol: W.AppProtocol.HTTP11 }] } },
        application_tunnel: { protocol: W.ApplicationTunnel.Protocol.PROXY, port: 15088 },
        locality: { region: "r1", zone: "z1", subzone: "s1" }, network_mode: W.NetworkMode.HOST_NETWORK, capacity: { value: 3 },
      },
    }).finish();
    expect(hex(built)).toBe(hex(addressWorkload));
  });

  it("decodes and re-encodes a Service", () => {
    const a = W.Address.decode(addressService);
    expect(a.type).toBe("service");
    const s = deep(a.service);
    expect([s.name, s.namespace, s.hostname]).toEqual(["echo", "default", "echo.default.svc.cluster.local"]);
    expect(s.addresses.map((x) => [x.network, hex(x.address), x.length ?? null])).toEqual([
      ["", "0a60000a", null],
      ["net1", "fd00000000000000000000000000000a", 120],
    ]);
    expect(s.ports.map((p) => [p.service_port, p.target_port, p.app_protocol])).toEqual([[80, 8080, 0], [9000, 0, W.AppProtocol.TCP]]);
    expect(s.subject_alt_names).toEqual(["spiffe://cluster.local/ns/default/sa/echo"]);
    expect(s.waypoint?.destination).toBe("address");
    expect(hex(s.waypoint!.address!.address)).toBe("0a600014");
    expect(s.load_balancing?.routing_preference).toEqual([W.LoadBalancing.Scope.NETWORK, W.LoadBalancing.Scope.REGION, W.LoadBalancing.Scope.ZONE]);
    expect(s.load_balancing?.mode).toBe(W.LoadBalancing.Mode.FAILOVER);
    expect(s.load_balancing?.health_policy).toBe(W.LoadBalancing.HealthPolicy.ALLOW_ALL);
    expect(s.ip_families).toBe(W.IPFamilies.IPV4_ONLY);
    expect(s.canonical).toBe(true);
    expect(s.weighted_waypoints[0]?.weight).toBe(10);
    expect(s.weighted_waypoints[0]?.destination?.hostname?.hostname).toBe("canary.default.svc.cluster.local");
    expect(s.visibility).toBe(W.Service.Visibility.NAMESPACE);
    expect(hex(W.Address.encode(a).finish())).toBe(hex(addressService));
  });
});

describe("golden bytes: istio.security.Authorization", () => {
  it("decodes every Match field and re-encodes to the same bytes", () => {
    const decoded = S.Authorization.decode(authorization);
    const p = deep(decoded);
    expect([p.name, p.namespace, p.scope, p.action, p.dry_run]).toEqual(["allow-client", "default", S.Scope.WORKLOAD_SELECTOR, S.Action.DENY, true]);
    expect(p.rules).toHaveLength(2);
    const m = p.rules[0]!.clauses[0]!.matches[0]!;
    expect(m.namespaces[0]?.exact).toBe("default");
    expect(m.not_namespaces[0]?.prefix).toBe("kube-");
    expect(m.principals[0]?.suffix).toBe("/sa/client");
    expect(m.not_principals[0]?.match_type).toBe("presence");
    expect(m.source_ips.map((a) => [hex(a.address), a.length])).toEqual([["0af40000", 16]]);
    expect(m.not_source_ips.map((a) => [hex(a.address), a.length])).toEqual([["0af40909", 32]]);
    expect(m.destination_ips.map((a) => [hex(a.address), a.length])).toEqual([["0a600000", 12]]);
    expect(m.not_destination_ips.map((a) => [hex(a.address), a.length])).toEqual([["0a600001", 32]]);
    expect(m.destination_ports).toEqual([8080, 9000]);
    expect(m.not_destination_ports).toEqual([15000]);
    expect(m.service_accounts.map((s) => [s.namespace, s.serviceAccount])).toEqual([["default", "client"]]);
    expect(m.not_service_accounts.map((s) => [s.namespace, s.serviceAccount])).toEqual([["other", "bad"]]);
    expect(p.rules[1]!.clauses).toHaveLength(1);
    expect(p.rules[1]!.clauses[0]!.matches).toHaveLength(0);
    expect(hex(S.Authorization.encode(decoded).finish())).toBe(hex(authorization));
  });
});

describe("golden bytes: ZDS messages", () => {
  const addInfo = ld(2, str(1, "echo-1"), str(2, "default"), str(3, "echo"));
  const cases: [string, Uint8Array, Parameters<typeof encodeRequest>[0], number][] = [
    ["AddWorkload", msg(ld(1, str(1, "pod-uid-1"), addInfo)), { kind: "add", uid: "pod-uid-1", info: { name: "echo-1", namespace: "default", serviceAccount: "echo" } }, 1],
    ["DelWorkload (uid is field 2)", msg(ld(2, str(2, "pod-uid-1"))), { kind: "del", uid: "pod-uid-1" }, 0],
    ["SnapshotSent", msg(ld(3)), { kind: "snapshot_sent" }, 0],
    ["KeepWorkload", msg(ld(5, str(1, "pod-uid-2"))), { kind: "keep", uid: "pod-uid-2" }, 0],
  ];
  for (const [name, golden, request, fds] of cases) {
    it(`WorkloadRequest ${name}`, () => {
      expect(decodeRequest(golden, fds)).toEqual(request);
      expect(hex(encodeRequest(request))).toBe(hex(golden));
    });
  }

  it("ZdsHello", () => {
    const golden = msg(vint(1, 1));
    expect(decodeHello(golden)).toEqual({ version: 1 });
    expect(hex(encodeHello())).toBe(hex(golden));
  });

  it("WorkloadResponse ack and nack", () => {
    const ack = msg(ld(1));
    const nack = msg(ld(1, str(1, "failure to start proxy")));
    expect(decodeAck(ack)).toEqual({ error: "" });
    expect(decodeAck(nack)).toEqual({ error: "failure to start proxy" });
    expect(hex(encodeAck())).toBe(hex(ack));
    expect(hex(encodeAck("failure to start proxy"))).toBe(hex(nack));
  });
});

describe("golden bytes: delta ADS and CA envelopes", () => {
  it("DeltaDiscoveryRequest with node, resume versions and a NACK", () => {
    const golden = msg(
      ld(1, str(1, "ztunnel~10.0.0.1~zt-1.istio-system~istio-system.svc.cluster.local"),
        ld(3, ld(1, str(1, "NODE_NAME"), ld(2, str(3, "node-1"))))),
      str(2, "type.googleapis.com/istio.workload.Address"),
      str(3, "*"),
      str(4, "*"),
      ld(5, str(1, "Kubernetes//Pod/default/echo-1"), str(2, "v7")),
      str(6, "nonce-1"),
      ld(7, vint(1, 3), str(2, "default/x: bad")),
    );
    const r = envoy.service.discovery.v3.DeltaDiscoveryRequest.decode(golden);
    expect(r.node?.id).toMatch(/^ztunnel~/);
    expect(r.node?.metadata?.fields?.["NODE_NAME"]?.string_value).toBe("node-1");
    expect(r.initial_resource_versions).toEqual({ "Kubernetes//Pod/default/echo-1": "v7" });
    expect(r.error_detail?.message).toBe("default/x: bad");
    expect(hex(envoy.service.discovery.v3.DeltaDiscoveryRequest.encode(r).finish())).toBe(hex(golden));
  });

  it("DeltaDiscoveryResponse with a resource and a removal", () => {
    const golden = msg(
      str(1, "2026-11-21T00:00:00Z/1"),
      ld(2, str(1, "v1"), ld(2, str(1, "type.googleapis.com/istio.workload.Address"), ld(2, ld(1, str(20, "u")))), str(3, "u"), str(4, "/10.0.0.5")),
      str(4, "type.googleapis.com/istio.workload.Address"),
      str(5, "n1"),
      str(6, "gone"),
    );
    const r = envoy.service.discovery.v3.DeltaDiscoveryResponse.decode(golden);
    expect(r.resources[0]?.aliases).toEqual(["/10.0.0.5"]);
    expect(istio.workload.Address.decode(r.resources[0]!.resource!.value!).workload?.uid).toBe("u");
    expect(r.removed_resources).toEqual(["gone"]);
    expect(hex(envoy.service.discovery.v3.DeltaDiscoveryResponse.encode(r).finish())).toBe(hex(golden));
  });

  it("IstioCertificateRequest with ImpersonatedIdentity metadata", () => {
    const golden = msg(
      str(1, "-----BEGIN CERTIFICATE REQUEST-----\n"),
      vint(3, 86400),
      ld(4, ld(1, str(1, "ImpersonatedIdentity"), ld(2, str(3, "spiffe://cluster.local/ns/default/sa/echo")))),
    );
    const r = istio.v1.auth.IstioCertificateRequest.decode(golden);
    expect(Number(r.validity_duration)).toBe(86400);
    expect(r.metadata?.fields?.["ImpersonatedIdentity"]?.string_value).toBe("spiffe://cluster.local/ns/default/sa/echo");
    expect(hex(istio.v1.auth.IstioCertificateRequest.encode(r).finish())).toBe(hex(golden));
    expect(google.protobuf.Struct).toBeDefined();
  });
});
