import { describe, expect, it } from "vitest";
import type { z } from "zod";
import {
  AuthorizationPolicySchema,
  EndpointSliceSchema,
  GatewaySchema,
  NamespaceSchema,
  NodeSchema,
  PeerAuthenticationSchema,
  PodSchema,
  ServiceSchema,
  describeZodError,
  formatPath,
  type AuthorizationPolicy,
  type Pod,
} from "../src/index.js";

function errorOf(schema: z.ZodType, value: unknown): string {
  const r = schema.safeParse(value);
  expect(r.success).toBe(false);
  return describeZodError(r.error!);
}

const pod = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: "web-7d4b9c-x2x",
    namespace: "default",
    uid: "8a1c",
    resourceVersion: "123",
    labels: { app: "web" },
    annotations: { "ambient.istio.io/redirection": "enabled" },
    ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-7d4b9c", uid: "r1", controller: true }],
    managedFields: [{ manager: "kubectl" }],
  },
  spec: {
    nodeName: "node-1",
    serviceAccountName: "web",
    containers: [{ name: "app", image: "echo", ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }] }],
    initContainers: [{ name: "sidecar", restartPolicy: "Always", ports: [{ containerPort: 9090 }] }],
    someFutureField: { x: 1 },
  },
  status: {
    phase: "Running",
    podIP: "10.0.0.5",
    podIPs: [{ ip: "10.0.0.5" }, { ip: "fd00::5" }],
    conditions: [{ type: "Ready", status: "True" }],
  },
};

describe("Pod", () => {
  it("accepts a real-looking pod and keeps unknown fields", () => {
    const p: Pod = PodSchema.parse(pod);
    expect(p.spec.initContainers?.[0]?.restartPolicy).toBe("Always");
    expect(p.status?.podIPs?.map((x) => x.ip)).toEqual(["10.0.0.5", "fd00::5"]);
    expect((p.spec as Record<string, unknown>)["someFutureField"]).toEqual({ x: 1 });
    expect(p.metadata.ownerReferences?.[0]?.kind).toBe("ReplicaSet");
  });

  it("null optional fields parse as absent", () => {
    const p = PodSchema.parse({ ...pod, spec: { ...pod.spec, initContainers: null }, status: { ...pod.status, podIPs: null } });
    expect(p.spec.initContainers).toBeUndefined();
    expect(p.status?.podIPs).toBeUndefined();
  });

  it("rejects a pod without a namespace, naming the field", () => {
    expect(errorOf(PodSchema, { ...pod, metadata: { ...pod.metadata, namespace: undefined } })).toMatch(/^metadata\.namespace: /);
  });

  it("rejects a bad container port, naming the field", () => {
    const bad = { ...pod, spec: { ...pod.spec, containers: [{ name: "app", ports: [{ containerPort: "8080" }] }] } };
    expect(errorOf(PodSchema, bad)).toMatch(/spec\.containers\[0\]\.ports\[0\]\.containerPort/);
    const big = { ...pod, spec: { ...pod.spec, containers: [{ name: "app", ports: [{ containerPort: 70000 }] }] } };
    expect(errorOf(PodSchema, big)).toMatch(/spec\.containers\[0\]\.ports\[0\]\.containerPort/);
  });

  it("rejects labels that are not strings", () => {
    expect(errorOf(PodSchema, { ...pod, metadata: { ...pod.metadata, labels: { app: 1 } } })).toMatch(/metadata\.labels\.app/);
  });
});

describe("Service", () => {
  const svc = {
    metadata: { name: "web", namespace: "default" },
    spec: {
      selector: { app: "web" },
      clusterIP: "10.96.0.10",
      clusterIPs: ["10.96.0.10", "fd00:96::10"],
      type: "ClusterIP",
      ipFamilies: ["IPv4", "IPv6"],
      internalTrafficPolicy: "Local",
      trafficDistribution: "PreferClose",
      publishNotReadyAddresses: true,
      ports: [
        { name: "http", port: 80, targetPort: "http", appProtocol: "http" },
        { name: "grpc", port: 9000, targetPort: 9001, protocol: "TCP" },
      ],
    },
  };
  it("accepts numeric and named target ports", () => {
    const s = ServiceSchema.parse(svc);
    expect(s.spec.ports?.map((p) => p.targetPort)).toEqual(["http", 9001]);
  });
  it("rejects a targetPort of another type, naming the field", () => {
    const bad = { ...svc, spec: { ...svc.spec, ports: [{ port: 80, targetPort: true }] } };
    expect(errorOf(ServiceSchema, bad)).toMatch(/spec\.ports\[0\]\.targetPort/);
  });
  it("rejects a missing port number", () => {
    expect(errorOf(ServiceSchema, { ...svc, spec: { ports: [{ name: "x" }] } })).toMatch(/spec\.ports\[0\]\.port/);
  });
});

describe("EndpointSlice, Node, Namespace", () => {
  it("EndpointSlice with null endpoints (as Go serialises an empty slice) is valid", () => {
    const s = EndpointSliceSchema.parse({
      metadata: { name: "web-abc", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
      addressType: "IPv4",
      endpoints: null,
      ports: null,
    });
    expect(s.endpoints).toBeUndefined();
  });
  it("EndpointSlice endpoints with targetRef", () => {
    const s = EndpointSliceSchema.parse({
      metadata: { name: "web-abc", namespace: "default" },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.0.0.5"], conditions: { ready: true }, targetRef: { kind: "Pod", name: "p", namespace: "default", uid: "u" } }],
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    });
    expect(s.endpoints?.[0]?.targetRef?.kind).toBe("Pod");
    expect(errorOf(EndpointSliceSchema, { metadata: { name: "x", namespace: "d" }, addressType: "IPv4", endpoints: [{ addresses: "10.0.0.1" }] })).toMatch(
      /endpoints\[0\]\.addresses/,
    );
  });
  it("Node labels and addresses; cluster-scoped (no namespace needed)", () => {
    const n = NodeSchema.parse({
      metadata: { name: "node-1", labels: { "topology.kubernetes.io/zone": "z1" } },
      status: { addresses: [{ type: "InternalIP", address: "192.168.1.10" }] },
    });
    expect(n.status?.addresses?.[0]?.address).toBe("192.168.1.10");
    expect(errorOf(NodeSchema, { metadata: { name: "n" }, status: { addresses: [{ type: "InternalIP" }] } })).toMatch(/status\.addresses\[0\]\.address/);
  });
  it("Namespace requires a name", () => {
    expect(NamespaceSchema.parse({ metadata: { name: "default", labels: { "istio.io/dataplane-mode": "ambient" } } }).metadata.labels).toEqual({
      "istio.io/dataplane-mode": "ambient",
    });
    expect(errorOf(NamespaceSchema, { metadata: { name: "" } })).toMatch(/metadata\.name/);
    expect(errorOf(NamespaceSchema, {})).toMatch(/^metadata: /);
  });
});

describe("AuthorizationPolicy", () => {
  const ap = {
    apiVersion: "security.istio.io/v1",
    kind: "AuthorizationPolicy",
    metadata: { name: "allow-web", namespace: "default" },
    spec: {
      selector: { matchLabels: { app: "web" } },
      action: "ALLOW",
      rules: [
        {
          from: [{ source: { principals: ["cluster.local/ns/default/sa/client"], namespaces: ["default"], ipBlocks: ["10.0.0.0/8"], notRemoteIpBlocks: ["1.2.3.4"] } }],
          to: [{ operation: { ports: ["8080"], methods: ["GET"], paths: ["/api/*"], notHosts: ["x"] } }],
          when: [{ key: "source.ip", values: ["10.1.2.3"], notValues: ["10.1.2.4"] }],
        },
      ],
    },
  };

  it("accepts a full policy", () => {
    const p: AuthorizationPolicy = AuthorizationPolicySchema.parse(ap);
    expect(p.spec?.rules?.[0]?.from?.[0]?.source?.principals).toEqual(["cluster.local/ns/default/sa/client"]);
    expect(p.spec?.rules?.[0]?.when?.[0]?.key).toBe("source.ip");
  });

  it("accepts targetRef/targetRefs, CUSTOM with a provider, and an absent spec", () => {
    AuthorizationPolicySchema.parse({ ...ap, spec: { targetRefs: [{ kind: "Gateway", group: "gateway.networking.k8s.io", name: "waypoint" }] } });
    AuthorizationPolicySchema.parse({ ...ap, spec: { targetRef: { kind: "Service", name: "web" }, action: "CUSTOM", provider: { name: "ext-authz" } } });
    expect(AuthorizationPolicySchema.parse({ metadata: ap.metadata }).spec).toBeUndefined();
  });

  it("keeps unknown fields at every level of the spec so the translator can fail closed on them", () => {
    const spec = {
      selector: { matchLabels: { app: "db" }, matchExpressions: [] },
      rules: [{
        from: [{ source: { principalz: ["typo"] }, sourcez: {} }],
        to: [{ operation: { ports: ["80"], notPort: ["9090"] }, operationz: {} }],
        when: [{ key: "source.ip", values: ["10.0.0.1"], notValue: ["10.0.0.2"] }],
        whenn: [],
      }],
      rulez: [],
    };
    expect(AuthorizationPolicySchema.parse({ ...ap, spec }).spec).toEqual(spec);
  });

  it("is structural only: any string is a principal here", () => {
    expect(AuthorizationPolicySchema.safeParse({ ...ap, spec: { rules: [{ from: [{ source: { principals: ["not a spiffe id!!"] } }] }] } }).success).toBe(true);
  });

  it("rejects a string where a list is expected, naming the field", () => {
    const bad = { ...ap, spec: { rules: [{ from: [{ source: { principals: "cluster.local/ns/default/sa/client" } }] }] } };
    expect(errorOf(AuthorizationPolicySchema, bad)).toBe("spec.rules[0].from[0].source.principals: Invalid input: expected array, received string");
  });

  it("rejects an unknown action and numeric ports, naming the field", () => {
    expect(errorOf(AuthorizationPolicySchema, { ...ap, spec: { action: "ALLOWED" } })).toMatch(/^spec\.action: /);
    expect(errorOf(AuthorizationPolicySchema, { ...ap, spec: { rules: [{ to: [{ operation: { ports: [8080] } }] }] } })).toMatch(
      /spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]/,
    );
    expect(errorOf(AuthorizationPolicySchema, { ...ap, spec: { rules: [{ when: [{ values: ["x"] }] }] } })).toMatch(/spec\.rules\[0\]\.when\[0\]\.key/);
  });
});

describe("PeerAuthentication", () => {
  const pa = {
    metadata: { name: "default", namespace: "istio-system" },
    spec: { selector: { matchLabels: { app: "web" } }, mtls: { mode: "STRICT" }, portLevelMtls: { "8080": { mode: "PERMISSIVE" } } },
  };
  it("accepts modes and port-level settings", () => {
    const p = PeerAuthenticationSchema.parse(pa);
    expect(p.spec?.portLevelMtls?.["8080"]?.mode).toBe("PERMISSIVE");
  });
  it("rejects an unknown mode and a non-numeric port key, naming the field", () => {
    expect(errorOf(PeerAuthenticationSchema, { ...pa, spec: { mtls: { mode: "strict" } } })).toMatch(/^spec\.mtls\.mode: /);
    expect(errorOf(PeerAuthenticationSchema, { ...pa, spec: { portLevelMtls: { http: { mode: "STRICT" } } } })).toMatch(/spec\.portLevelMtls\.http/);
  });
});

describe("Gateway", () => {
  const gw = {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "Gateway",
    metadata: { name: "waypoint", namespace: "default", labels: { "istio.io/waypoint-for": "service" } },
    spec: { gatewayClassName: "istio-waypoint", listeners: [{ name: "mesh", port: 15008, protocol: "HBONE" }] },
    status: { addresses: [{ type: "IPAddress", value: "10.96.0.20" }, { type: "Hostname", value: "waypoint.default.svc.cluster.local" }] },
  };
  it("accepts a waypoint gateway with status addresses", () => {
    const g = GatewaySchema.parse(gw);
    expect(g.status?.addresses?.map((a) => a.value)).toContain("10.96.0.20");
  });
  it("rejects a missing class and a bad listener port, naming the field", () => {
    expect(errorOf(GatewaySchema, { ...gw, spec: { listeners: gw.spec.listeners } })).toMatch(/^spec\.gatewayClassName: /);
    expect(errorOf(GatewaySchema, { ...gw, spec: { ...gw.spec, listeners: [{ name: "mesh", port: 0, protocol: "HBONE" }] } })).toMatch(/spec\.listeners\[0\]\.port/);
    expect(errorOf(GatewaySchema, { ...gw, status: { addresses: [{ type: "IPAddress" }] } })).toMatch(/status\.addresses\[0\]\.value/);
  });
});

describe("formatPath", () => {
  it("formats dotted, indexed and odd keys", () => {
    expect(formatPath(["spec", "rules", 0, "from"])).toBe("spec.rules[0].from");
    expect(formatPath(["metadata", "labels", "app.kubernetes.io/name"])).toBe('metadata.labels["app.kubernetes.io/name"]');
    expect(formatPath([])).toBe("(root)");
  });
});
