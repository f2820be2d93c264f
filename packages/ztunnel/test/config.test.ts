// loadConfig: Istio's environment variables, their defaults, and a clear message (variable + fix) for every bad value.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "@ambit/protocol";
import { loadConfig } from "../src/config.js";

const tmp = mkdtempSync(join(tmpdir(), "ambit-ztunnel-config-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const BASE = { NODE_NAME: "node-1" };
const load = (env: Record<string, string | undefined> = {}) => loadConfig({ ...BASE, ...env });
/** The ConfigError message of a bad environment. */
function failure(env: Record<string, string | undefined>, fs?: Parameters<typeof loadConfig>[1]): string {
  try {
    if (fs) loadConfig(env, fs);
    else loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("loadConfig accepted a bad environment");
}


describe("loadConfig defaults", () => {
  it("needs only NODE_NAME and fills Istio's defaults", () => {
    const c = loadConfig({ NODE_NAME: "node-1" }, { exists: () => false, read: () => "" });
    expect(c).toMatchObject({
      xdsAddress: "https://localhost:15012",
      caAddress: "https://localhost:15012",
      clusterId: "Kubernetes",
      nodeName: "node-1",
      podName: "",
      podNamespace: "istio-system",
      instanceIp: "",
      serviceAccount: "default",
      trustDomain: "cluster.local",
      network: "",
      secretTtlSeconds: 86_400,
      zdsSocket: "/var/run/ztunnel/ztunnel.sock",
      packetMark: 1337,
      ipv6: true,
      origSrc: "auto",
      h2: { streamWindow: 4 * 1024 * 1024, connectionWindow: 16 * 1024 * 1024, maxFrameSize: 1024 * 1024, maxStreamsPerConnection: 100, idleReleaseMs: 300_000, keepaliveIntervalMs: 10_000, keepaliveTimeoutMs: 20_000 },
      hbone: { handshakeTimeoutMs: 5000, maxStreamsPerConnection: 200, maxConnectionsPerIdentity: 512, maxEarlyResets: 100 },
      halfCloseIdleMs: 300_000,
      tcpKeepaliveMs: 180_000,
      drainDeadlineMs: 5000,
      ports: { admin: 15000, stats: 15020, readiness: 15021 },
      logLevel: "info",
      xdsHeaders: {},
      caHeaders: {},
      nodeMetadata: {},
    });
    expect(c.xdsServername).toBeUndefined();
    expect(c.caServername).toBeUndefined();
    // The default token path does not exist here: no token.
    expect(c.token()).toBeUndefined();
  });

  it("inside Kubernetes defaults to istiod's service; CA_ADDRESS falls back to XDS_ADDRESS; a scheme is added when missing", () => {
    expect(load({ KUBERNETES_SERVICE_HOST: "10.96.0.1" }).xdsAddress).toBe("https://istiod.istio-system.svc:15012");
    const c = load({ XDS_ADDRESS: "istiod.mesh:15012" });
    expect([c.xdsAddress, c.caAddress]).toEqual(["https://istiod.mesh:15012", "https://istiod.mesh:15012"]);
    const d = load({ XDS_ADDRESS: "http://xds:15010", CA_ADDRESS: "ca.example:15012", ALT_XDS_HOSTNAME: "istiod.alt", ALT_CA_HOSTNAME: "ca.alt" });
    expect([d.xdsAddress, d.caAddress, d.xdsServername, d.caServername]).toEqual(["http://xds:15010", "https://ca.example:15012", "istiod.alt", "ca.alt"]);
  });

  it("treats an empty variable as unset", () => {
    const c = load({ TRUST_DOMAIN: "", SECRET_TTL: "", PACKET_MARK: "" });
    expect([c.trustDomain, c.secretTtlSeconds, c.packetMark]).toEqual(["cluster.local", 86_400, 1337]);
  });
});

describe("loadConfig values", () => {
  it("parses durations, sizes, numbers, booleans and enums", () => {
    const c = load({
      SECRET_TTL: "1h30m", POOL_UNUSED_RELEASE_TIMEOUT: "90s", HTTP2_STREAM_WINDOW_SIZE: "1Mi", HTTP2_CONNECTION_WINDOW_SIZE: "65535",
      HTTP2_FRAME_SIZE: "16Ki", POOL_MAX_STREAMS_PER_CONNECTION: "7", PACKET_MARK: "0x10", IPV6_ENABLED: "0", ENABLE_ORIG_SRC: "false",
      ADMIN_PORT: "25000", STATS_PORT: "0", READINESS_PORT: "25021", LOG_LEVEL: "debug", INPOD_UDS: "/tmp/zds.sock", NETWORK: "net-1",
      POD_NAME: "ztunnel-abc", POD_NAMESPACE: "ambit-system", INSTANCE_IP: "10.0.0.7", SERVICE_ACCOUNT: "ztunnel", TRUST_DOMAIN: "example.org",
    });
    expect(c).toMatchObject({
      secretTtlSeconds: 5400,
      h2: { streamWindow: 1024 * 1024, connectionWindow: 65_535, maxFrameSize: 16 * 1024, maxStreamsPerConnection: 7, idleReleaseMs: 90_000 },
      packetMark: 16, ipv6: false, origSrc: "false", ports: { admin: 25000, stats: 0, readiness: 25021 }, logLevel: "debug", zdsSocket: "/tmp/zds.sock",
      network: "net-1", podName: "ztunnel-abc", podNamespace: "ambit-system", instanceIp: "10.0.0.7", serviceAccount: "ztunnel", trustDomain: "example.org",
    });
    expect(load({ IPV6_ENABLED: "true" }).ipv6).toBe(true);
    expect(load({
      HTTP2_KEEPALIVE_INTERVAL: "1s", HTTP2_KEEPALIVE_TIMEOUT: "1500ms", HBONE_HANDSHAKE_TIMEOUT: "2s", HBONE_MAX_STREAMS_PER_CONNECTION: "10",
      HBONE_MAX_CONNECTIONS_PER_IDENTITY: "3", HBONE_MAX_EARLY_RESETS: "4", HALF_CLOSE_IDLE_TIMEOUT: "1m", KEEPALIVE_TIME: "30s",
    })).toMatchObject({
      h2: { keepaliveIntervalMs: 1000, keepaliveTimeoutMs: 1500 },
      hbone: { handshakeTimeoutMs: 2000, maxStreamsPerConnection: 10, maxConnectionsPerIdentity: 3, maxEarlyResets: 4 },
      halfCloseIdleMs: 60_000, tcpKeepaliveMs: 30_000,
    });
    expect(load({ KEEPALIVE_ENABLED: "false" }).tcpKeepaliveMs).toBeNull();
    expect(load({ IPV6_ENABLED: "1" }).ipv6).toBe(true);
    expect(load({ IPV6_ENABLED: "false" }).ipv6).toBe(false);
  });

  it("ISTIO_META_CLUSTER_ID overrides CLUSTER_ID and is not repeated in the node metadata", () => {
    expect(load({ CLUSTER_ID: "east" }).clusterId).toBe("east");
    const c = load({ CLUSTER_ID: "east", ISTIO_META_CLUSTER_ID: "west", ISTIO_META_DNS_CAPTURE: "true" });
    expect(c.clusterId).toBe("west");
    expect(c.nodeMetadata).toEqual({ DNS_CAPTURE: "true" });
  });

  it("ISTIO_META_* are strings, ISTIO_METAJSON_* are parsed JSON (and win over the same ISTIO_META_ key)", () => {
    const c = load({
      ISTIO_META_ENABLE_HBONE: "true", ISTIO_META_MESH_ID: "mesh-1", ISTIO_META_: "ignored (no name)",
      ISTIO_METAJSON_LABELS: '{"app":"ztunnel","n":3}', ISTIO_METAJSON_MESH_ID: '"mesh-2"',
    });
    expect(c.nodeMetadata).toEqual({ ENABLE_HBONE: "true", MESH_ID: "mesh-2", LABELS: { app: "ztunnel", n: 3 } });
  });

  it("XDS_HEADER_* and CA_HEADER_* become extra gRPC headers of their channel only", () => {
    const c = load({ XDS_HEADER_X_TENANT: "blue", CA_HEADER_X_CA: "1", CA_HEADER_TENANT: "red", XDS_HEADER_: "no name" });
    expect(c.xdsHeaders).toEqual({ X_TENANT: "blue" });
    expect(c.caHeaders).toEqual({ X_CA: "1", TENANT: "red" });
  });

  it("reads the roots from a file on every call, accepts SYSTEM (OS roots) and inline PEM", () => {
    const file = join(tmp, "root-cert.pem");
    writeFileSync(file, "-----BEGIN CERTIFICATE-----\nfirst\n-----END CERTIFICATE-----\n");
    const c = load({ XDS_ROOT_CA: file, CA_ROOT_CA: "SYSTEM" });
    expect(c.xdsRoots()).toContain("first");
    writeFileSync(file, "-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n");
    expect(c.xdsRoots()).toContain("rotated");
    expect(c.caRoots()).toBeNull();
    const inline = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    expect(load({ CA_ROOT_CA: inline }).caRoots()).toBe(inline);
  });

  it("a missing roots file fails when read, naming the file and the fix", () => {
    const missing = join(tmp, "nope", "root-cert.pem");
    const c = load({ XDS_ROOT_CA: missing });
    expect(() => c.xdsRoots()).toThrow(ConfigError);
    expect(() => c.xdsRoots()).toThrow(`control-plane root certificate ${missing} does not exist`);
    expect(() => c.caRoots()).toThrow(/root-cert\.pem does not exist \(mount the istio-ca-root-cert ConfigMap/);
  });

  it("AUTH_TOKEN: a file is re-read (trimmed) per call, a missing absolute path means no token, anything else is the token itself", () => {
    const file = join(tmp, "istio-token");
    writeFileSync(file, "jwt-1\n");
    const c = load({ AUTH_TOKEN: file });
    expect(c.token()).toBe("jwt-1");
    writeFileSync(file, "jwt-2");
    expect(c.token()).toBe("jwt-2");
    rmSync(file);
    expect(c.token()).toBeUndefined();
    expect(load({ AUTH_TOKEN: join(tmp, "never") }).token()).toBeUndefined();
    expect(load({ AUTH_TOKEN: "literal-token" }).token()).toBe("literal-token");
  });

  it("uses the injected file system", () => {
    const c = loadConfig({ ...BASE, AUTH_TOKEN: "tok", XDS_ROOT_CA: "/roots.pem" }, { exists: (p) => p === "tok" || p === "/roots.pem", read: (p) => `content of ${p} ` });
    expect(c.token()).toBe("content of tok");
    expect(c.xdsRoots()).toBe("content of /roots.pem ");
  });
});

describe("drain deadline", () => {
  it.each<[Record<string, string>, number]>([
    [{}, 5000],
    [{ CONNECTION_TERMINATION_DEADLINE: "12s" }, 12_000],
    [{ CONNECTION_TERMINATION_DEADLINE: "250ms", TERMINATION_GRACE_PERIOD_SECONDS: "60" }, 250],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: "30" }, 25_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: "11" }, 6000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: "10" }, 9000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: "1" }, 0],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: "0" }, 0],
  ])("%j → %d ms", (env, ms) => expect(load(env).drainDeadlineMs).toBe(ms));

  it("a bad deadline or grace period names the variable", () => {
    expect(failure({ ...BASE, CONNECTION_TERMINATION_DEADLINE: "soon" })).toBe('CONNECTION_TERMINATION_DEADLINE="soon": is not a duration (set it to a duration such as 5s)');
    expect(failure({ ...BASE, TERMINATION_GRACE_PERIOD_SECONDS: "-1" })).toMatch(/^bad configuration:\n {2}TERMINATION_GRACE_PERIOD_SECONDS="-1": /);
    expect(failure({ ...BASE, TERMINATION_GRACE_PERIOD_SECONDS: "2.5" })).toMatch(/TERMINATION_GRACE_PERIOD_SECONDS="2.5": .*int.* \(set it to a whole number of seconds such as 30\)$/);
  });
});

describe("bad values stop the program with the variable and the fix", () => {
  it("a missing NODE_NAME", () => {
    expect(failure({})).toMatch(/^bad configuration:\n {2}NODE_NAME is not set: .* \(set it to the node's name \(downward API spec\.nodeName\)\)$/);
    expect(failure({ NODE_NAME: "" })).toMatch(/^bad configuration:\n {2}NODE_NAME is not set: /);
  });

  it.each<[string, string, RegExp]>([
    ["SECRET_TTL", "1 day", /SECRET_TTL="1 day": is not a duration \(set it to a duration such as 24h\)/],
    ["POOL_UNUSED_RELEASE_TIMEOUT", "300", /POOL_UNUSED_RELEASE_TIMEOUT="300": is not a duration \(set it to a duration such as 5m\)/],
    ["HTTP2_STREAM_WINDOW_SIZE", "4MB", /HTTP2_STREAM_WINDOW_SIZE="4MB": is not a size between 65535 and 2147483647 bytes \(set it to a size such as 4Mi\)/],
    ["HTTP2_CONNECTION_WINDOW_SIZE", "1Ki", /HTTP2_CONNECTION_WINDOW_SIZE="1Ki": is not a size between 65535 .* \(set it to a size such as 16Mi\)/],
    ["HTTP2_FRAME_SIZE", "16Mi", /HTTP2_FRAME_SIZE="16Mi": is not a size between 16384 and 16777215 bytes \(set it to a size such as 1Mi\)/],
    ["HTTP2_FRAME_SIZE", "2Gi", /HTTP2_FRAME_SIZE="2Gi": is not a size/],
    ["PACKET_MARK", "0", /PACKET_MARK="0": .* \(set it to a number such as 1337\)/],
    ["PACKET_MARK", "mark", /PACKET_MARK="mark": .* \(set it to a number such as 1337\)/],
    ["PACKET_MARK", "4294967296", /PACKET_MARK="4294967296": .* \(set it to a number such as 1337\)/],
    ["IPV6_ENABLED", "yes", /IPV6_ENABLED="yes": .* \(set it to true or false\)/],
    ["ENABLE_ORIG_SRC", "maybe", /ENABLE_ORIG_SRC="maybe": .* \(set it to true, false or auto\)/],
    ["ADMIN_PORT", "65536", /ADMIN_PORT="65536": .* \(set it to a port number\)/],
    ["STATS_PORT", "http", /STATS_PORT="http": .* \(set it to a port number\)/],
    ["READINESS_PORT", "15021.5", /READINESS_PORT="15021.5": .* \(set it to a port number\)/],
    ["POOL_MAX_STREAMS_PER_CONNECTION", "0", /POOL_MAX_STREAMS_PER_CONNECTION="0": .* \(set it to a number of streams from 1 to 10000, such as 100\)/],
    ["HTTP2_KEEPALIVE_INTERVAL", "0s", /HTTP2_KEEPALIVE_INTERVAL="0s": must be more than 0 \(set it to a duration above 0 such as 10s\)/],
    ["HTTP2_KEEPALIVE_TIMEOUT", "soon", /HTTP2_KEEPALIVE_TIMEOUT="soon": is not a duration \(set it to a duration above 0 such as 20s\)/],
    ["HBONE_HANDSHAKE_TIMEOUT", "0ms", /HBONE_HANDSHAKE_TIMEOUT="0ms": must be more than 0/],
    ["HBONE_MAX_STREAMS_PER_CONNECTION", "0", /HBONE_MAX_STREAMS_PER_CONNECTION="0": .* \(set it to a number of streams from 1 to 10000, such as 200\)/],
    ["HBONE_MAX_CONNECTIONS_PER_IDENTITY", "-1", /HBONE_MAX_CONNECTIONS_PER_IDENTITY="-1": .* \(set it to a number of connections from 1, such as 512\)/],
    ["HBONE_MAX_EARLY_RESETS", "many", /HBONE_MAX_EARLY_RESETS="many": .* \(set it to a number of streams from 1, such as 100\)/],
    ["HALF_CLOSE_IDLE_TIMEOUT", "0s", /HALF_CLOSE_IDLE_TIMEOUT="0s": must be more than 0/],
    ["KEEPALIVE_ENABLED", "on", /KEEPALIVE_ENABLED="on": .* \(set it to true or false\)/],
    ["KEEPALIVE_TIME", "3 min", /KEEPALIVE_TIME="3 min": is not a duration/],
    ["LOG_LEVEL", "verbose", /LOG_LEVEL="verbose": .*"info"/],
    ["TRUST_DOMAIN", "Cluster.Local", /TRUST_DOMAIN="Cluster.Local": must be a DNS name/],
    ["SERVICE_ACCOUNT", "-bad", /SERVICE_ACCOUNT="-bad": must be a DNS name/],
    ["POD_NAMESPACE", "Istio_System", /POD_NAMESPACE="Istio_System": must be a DNS name/],
  ])("%s=%s", (key, value, message) => {
    const m = failure({ ...BASE, [key]: value });
    expect(m).toMatch(/^bad configuration:\n {2}/);
    expect(m).toMatch(message);
  });

  it("lists every bad variable, one per line", () => {
    const m = failure({ SECRET_TTL: "x", PACKET_MARK: "y" });
    const lines = m.split("\n").slice(1).map((l) => l.trim().split(/[=: ]/)[0]);
    expect(lines.sort()).toEqual(["NODE_NAME", "PACKET_MARK", "SECRET_TTL"]);
  });

  it("ISTIO_METAJSON_* that is not JSON", () => {
    expect(failure({ ...BASE, ISTIO_METAJSON_LABELS: "{app: ztunnel}" })).toBe("ISTIO_METAJSON_LABELS: is not JSON");
  });
});
