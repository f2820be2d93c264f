// The identity layer: the CA client against a real gRPC server over TLS signing with a real CA, and the
// certificate manager's caching, dedupe, priorities, rotation, back-off and fail-closed behaviour.
import { execFileSync } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { CertificateAuthority, generateKeyPair, parseCertificate, parseCsr, type ParsedCsr } from "@ambit/pki";
import { istio } from "@ambit/protocol";
import {
  CaClient,
  CaError,
  CertificateManager,
  CertificateUnavailableError,
  parseCaAddress,
  type CaClientOptions,
  type CertificateSource,
  type WorkloadCertificate,
} from "../src/identity/index.js";
import { until } from "./helpers/wait.js";

const ID = "spiffe://cluster.local/ns/shop/sa/cart";
const ID2 = "spiffe://cluster.local/ns/shop/sa/web";
const SERVER_NAME = "istiod.istio-system.svc";

// --- no unhandled rejections anywhere in this file ---------------------------------------------------------
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on("unhandledRejection", onUnhandled);
afterAll(() => {
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

// --- a CA server: real gRPC over TLS, a real CertificateAuthority --------------------------------------------
const Req = istio.v1.auth.IstioCertificateRequest;
const Res = istio.v1.auth.IstioCertificateResponse;
// Written from the wire facts (the method path), not from the client under test.
const serviceDefinition: grpc.ServiceDefinition = {
  CreateCertificate: {
    path: "/istio.v1.auth.IstioCertificateService/CreateCertificate",
    requestStream: false,
    responseStream: false,
    requestSerialize: (m: istio.v1.auth.IstioCertificateRequest) => Buffer.from(Req.encode(m).finish()),
    requestDeserialize: (b: Buffer) => Req.decode(b),
    responseSerialize: (m: istio.v1.auth.IstioCertificateResponse.$Properties) => Buffer.from(Res.encode(m).finish()),
    responseDeserialize: (b: Buffer) => Res.decode(b),
  },
};

interface Call {
  req: istio.v1.auth.IstioCertificateRequest;
  md: grpc.Metadata;
  csr: ParsedCsr;
}
type Handler = (call: Call) => Promise<string[]> | string[];
class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

/** The identity a server-side CA would issue: the impersonated one, else the CSR's SAN. */
const requested = (c: Call) => c.req.metadata?.fields?.["ImpersonatedIdentity"]?.string_value || c.csr.uriSans[0]!;

class CaServer {
  readonly server = new grpc.Server();
  readonly calls: Call[] = [];
  port = 0;
  handler: Handler;
  constructor(
    readonly ca: CertificateAuthority,
    tls: { key: string; cert: string },
  ) {
    this.handler = (c) => ca.chainFor(ca.sign({ publicKey: c.csr.publicKey, uriSans: [requested(c)], ttlSeconds: Number(c.req.validity_duration) }));
    this.server.addService(serviceDefinition, {
      CreateCertificate: (call: grpc.ServerUnaryCall<istio.v1.auth.IstioCertificateRequest, unknown>, cb: grpc.sendUnaryData<istio.v1.auth.IstioCertificateResponse.$Properties>) => {
        void (async () => {
          const c: Call = { req: call.request, md: call.metadata, csr: parseCsr(call.request.csr) };
          this.calls.push(c);
          return this.handler(c);
        })().then(
          (chain) => cb(null, { cert_chain: chain }),
          (e: Error) => cb(e instanceof StatusError ? { code: e.code, details: e.details } : { code: grpc.status.INTERNAL, details: e.message }),
        );
      },
    });
    this.#tls = tls;
  }
  readonly #tls: { key: string; cert: string };
  async start(): Promise<this> {
    const creds = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(this.#tls.key), cert_chain: Buffer.from(this.#tls.cert) }], false);
    this.port = await new Promise<number>((resolve, reject) => this.server.bindAsync("127.0.0.1:0", creds, (e, p) => (e ? reject(e) : resolve(p))));
    return this;
  }
  stop(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }
}

// --- openssl: an independent maker of a root and an intermediate ------------------------------------------
const tmp = mkdtempSync(join(tmpdir(), "ambit-ztunnel-identity-"));
const CNF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_int]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;
const openssl = (args: string[], input?: string) => execFileSync("openssl", args, { cwd: tmp, encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });

let controlCa: CertificateAuthority; // signs the CA server's own TLS certificate
let workloadCa: CertificateAuthority; // self-signed root issuing workload certificates
let server: CaServer;
let serverTls: { key: string; cert: string };
const servers: CaServer[] = [];
const clients: CaClient[] = [];

function client(over: Partial<CaClientOptions> = {}, port = server.port): CaClient {
  const c = new CaClient({
    address: `127.0.0.1:${port}`,
    rootsPem: () => controlCa.rootsPem(),
    servername: SERVER_NAME,
    token: () => "token-1",
    clusterId: "Kubernetes",
    ttlSeconds: 3600,
    impersonate: false,
    ...over,
  });
  clients.push(c);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<CaError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CaError);
  return e as CaError;
}

beforeAll(async () => {
  writeFileSync(join(tmp, "openssl.cnf"), CNF);
  controlCa = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
  const serving = await controlCa.issueServingCertificate({ dnsNames: [SERVER_NAME], ttlSeconds: 3600 });
  serverTls = { key: serving.keyPem, cert: serving.tlsCertChainPem };
  workloadCa = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
  server = await new CaServer(workloadCa, serverTls).start();
  servers.push(server);
});

afterEach(() => {
  server.handler = (c) => workloadCa.chainFor(workloadCa.sign({ publicKey: c.csr.publicKey, uriSans: [requested(c)], ttlSeconds: Number(c.req.validity_duration) }));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(tmp, { recursive: true, force: true });
});

// =============================================================================================================
describe("CaClient", () => {
  it("dedicated mode: bearer token, clusterid and extra headers; no metadata Struct; a P-256 CSR with one URI SAN and no subject", async () => {
    const before = server.calls.length;
    const cert = await client({ headers: { "X-Tenant": "blue" }, ttlSeconds: 1234 }).createCertificate(ID);
    const call = server.calls[before]!;
    expect(call.md.get("authorization")).toEqual(["Bearer token-1"]);
    expect(call.md.get("clusterid")).toEqual(["Kubernetes"]);
    expect(call.md.get("x-tenant")).toEqual(["blue"]);
    expect(call.req.metadata ?? undefined).toBeUndefined();
    expect(Number(call.req.validity_duration)).toBe(1234);
    expect(call.csr).toMatchObject({ uriSans: [ID], dnsSans: [], subject: "" });
    expect(call.csr.publicKey.description).toBe("EC P-256");
    // An independent reading of the CSR: SHA-256 signature, empty subject, SAN = the SPIFFE id.
    const text = openssl(["req", "-noout", "-text"], call.req.csr);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    expect(text).toMatch(/Subject:\s*\n/);
    expect(text).toMatch(/NIST CURVE: P-256|prime256v1/);
    expect(text).toContain(`URI:${ID}`);
    expect(text).not.toMatch(/CN\s*=/);

    // The result: the leaf for the identity and our key, no intermediates, the root.
    expect(cert.identity).toBe(ID);
    const leaf = parseCertificate(cert.certPem);
    expect(leaf.sans.uris).toEqual([ID]);
    expect(cert.serial).toBe(leaf.serialHex);
    expect(cert.notBefore).toEqual(leaf.notBefore);
    expect(cert.notAfter).toEqual(leaf.notAfter);
    expect(cert.chainPem).toEqual([]);
    expect(cert.rootsPem).toEqual([workloadCa.rootsPem()]);
    expect(cert.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const key = createPrivateKey(cert.keyPem);
    expect(key.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(createPublicKey(key).export({ type: "spki", format: "der" }).equals(leaf.spki)).toBe(true);
  });

  it("uses a fresh key for every request", async () => {
    const c = client();
    const [a, b] = await Promise.all([c.createCertificate(ID), c.createCertificate(ID)]);
    expect(a.keyPem).not.toBe(b.keyPem);
  });

  it("shared mode: the metadata Struct carries ImpersonatedIdentity; the token and the header values are re-read per request", async () => {
    let token = "first";
    const c = client({ impersonate: true, token: () => token, address: `https://127.0.0.1:${server.port}` });
    const before = server.calls.length;
    await c.createCertificate(ID);
    token = "second";
    await c.createCertificate(ID2);
    const [one, two] = server.calls.slice(before);
    expect(one!.req.metadata?.fields?.["ImpersonatedIdentity"]?.string_value).toBe(ID);
    expect(two!.req.metadata?.fields?.["ImpersonatedIdentity"]?.string_value).toBe(ID2);
    expect(one!.md.get("authorization")).toEqual(["Bearer first"]);
    expect(two!.md.get("authorization")).toEqual(["Bearer second"]);
    // Impersonation is not a header.
    expect(one!.md.get("impersonatedidentity")).toEqual([]);
  });

  it("sends no authorization header when there is no token", async () => {
    const before = server.calls.length;
    await client({ token: () => undefined }).createCertificate(ID);
    expect(server.calls[before]!.md.get("authorization")).toEqual([]);
  });

  it("splits a chain with an intermediate and a last entry holding several roots", async () => {
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root-key.pem"]);
    openssl(["req", "-x509", "-new", "-key", "root-key.pem", "-subj", "/O=Example/CN=Root CA", "-days", "30", "-config", "openssl.cnf", "-extensions", "v3_root", "-out", "root.pem"]);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "int-key.pem"]);
    openssl(["req", "-new", "-key", "int-key.pem", "-subj", "/O=cluster.local/CN=Intermediate CA", "-config", "openssl.cnf", "-out", "int.csr"]);
    openssl(["x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root-key.pem", "-set_serial", "7", "-days", "20", "-extfile", "openssl.cnf", "-extensions", "v3_int", "-out", "int.pem"]);
    const root = openssl(["x509", "-in", "root.pem"]);
    const otherRoot = (await CertificateAuthority.selfSignedRoot({ trustDomain: "other.domain" })).rootsPem();
    const intCa = new CertificateAuthority({ caCert: openssl(["x509", "-in", "int.pem"]), caKey: openssl(["pkey", "-in", "int-key.pem"]), roots: [root + otherRoot] });
    const s = await new CaServer(intCa, serverTls).start();
    servers.push(s);

    const cert = await client({}, s.port).createCertificate(ID);
    expect(cert.chainPem).toHaveLength(1);
    expect(parseCertificate(cert.chainPem[0]!).subject).toBe("O=cluster.local, CN=Intermediate CA");
    expect(cert.rootsPem).toHaveLength(2);
    expect(parseCertificate(cert.rootsPem[0]!).subject).toBe("O=Example, CN=Root CA");
    expect(parseCertificate(cert.rootsPem[1]!).subject).toBe("O=other.domain");
    // openssl agrees the pieces form a valid path.
    writeFileSync(join(tmp, "leaf.pem"), cert.certPem);
    writeFileSync(join(tmp, "chain.pem"), cert.chainPem.join(""));
    writeFileSync(join(tmp, "roots.pem"), cert.rootsPem.join(""));
    expect(openssl(["verify", "-CAfile", "roots.pem", "-untrusted", "chain.pem", "leaf.pem"]).trim()).toBe("leaf.pem: OK");
  });

  it("rejects a leaf whose first URI SAN is not the requested identity", async () => {
    server.handler = (c) => workloadCa.chainFor(workloadCa.sign({ publicKey: c.csr.publicKey, uriSans: ["spiffe://cluster.local/ns/shop/sa/other", ID], ttlSeconds: 600 }));
    const e = await rejection(client({ impersonate: true }).createCertificate(ID));
    expect(e.message).toMatch(/first URI SAN is "spiffe:\/\/cluster.local\/ns\/shop\/sa\/other", not the requested identity/);
    expect(e.code).toBeUndefined();
  });

  it("rejects a leaf without a URI SAN", async () => {
    server.handler = async (c) => {
      const { publicKey } = c.csr;
      return workloadCa.chainFor(workloadCa.sign({ publicKey, uriSans: [], dnsSans: ["cart.shop.svc"], ttlSeconds: 600 }));
    };
    expect((await rejection(client().createCertificate(ID))).message).toMatch(/first URI SAN is absent/);
  });

  it("surfaces a CA error status as CaError with the gRPC code", async () => {
    server.handler = () => {
      throw new StatusError(grpc.status.PERMISSION_DENIED, "impersonation denied: no such pod on this node");
    };
    const e = await rejection(client().createCertificate(ID));
    expect(e.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(e.message).toMatch(/PERMISSION_DENIED: impersonation denied: no such pod on this node/);
  });

  it.each([
    ["an empty chain", () => [], /certificate chain is empty/],
    ["a chain without roots", (c: Call) => [workloadCa.sign({ publicKey: c.csr.publicKey, uriSans: [ID], ttlSeconds: 600 })], /has no root certificate/],
    ["a leaf entry that is not PEM", () => ["hello", workloadCa.rootsPem()], /leaf entry holds no PEM CERTIFICATE block/],
    ["a roots entry with broken base64", (c: Call) => [workloadCa.sign({ publicKey: c.csr.publicKey, uriSans: [ID], ttlSeconds: 600 }), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"], /roots entry: .*not base64/],
    ["a leaf that is not DER X.509", () => ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", workloadCa.rootsPem()], /not valid DER X.509/],
  ])("rejects %s", async (_what, chain: (c: Call) => string[], message: RegExp) => {
    server.handler = chain;
    expect((await rejection(client().createCertificate(ID))).message).toMatch(message);
  });

  it("rejects a leaf for another key than the request's", async () => {
    const other = await generateKeyPair();
    server.handler = () => workloadCa.chainFor(workloadCa.sign({ publicKey: other.publicKey, uriSans: [ID], ttlSeconds: 600 }));
    expect((await rejection(client().createCertificate(ID))).message).toMatch(/does not certify the key of the request/);
  });

  it("rejects a leaf that does not chain to the returned roots", async () => {
    const stranger = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
    server.handler = (c) => [workloadCa.sign({ publicKey: c.csr.publicKey, uriSans: [ID], ttlSeconds: 600 }), stranger.rootsPem()];
    expect((await rejection(client().createCertificate(ID))).message).toMatch(/does not chain to the returned roots/);
  });

  it("rejects an expired or not yet valid leaf", async () => {
    const day = 86_400_000;
    expect((await rejection(client({ now: () => Date.now() + day }).createCertificate(ID))).message).toMatch(/the leaf expired at/);
    expect((await rejection(client({ now: () => Date.now() - day }).createCertificate(ID))).message).toMatch(/the leaf is not valid before/);
  });

  it("fails with DEADLINE_EXCEEDED when the CA does not answer in time", async () => {
    // The CA answers only after the client gave up: the deadline, not an answer, ends the call.
    let answer!: () => void;
    const held = new Promise<void>((r) => (answer = r));
    server.handler = async () => {
      await held;
      return [];
    };
    try {
      const e = await rejection(client({ timeoutMs: 200 }).createCertificate(ID));
      expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    } finally {
      answer(); // lets the server shut down
    }
  });

  it("fails with UNAVAILABLE when the CA is down", async () => {
    const s = await new CaServer(workloadCa, serverTls).start();
    const port = s.port;
    await s.stop();
    const e = await rejection(client({}, port).createCertificate(ID));
    expect(e.code).toBe(grpc.status.UNAVAILABLE);
  });

  it("verifies the server name: the address host by default, else servername", async () => {
    const e = await rejection(client({ servername: undefined }).createCertificate(ID));
    expect(e.code).toBe(grpc.status.UNAVAILABLE);
    await expect(client({ servername: "wrong.example" }).createCertificate(ID)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(client().createCertificate(ID)).resolves.toMatchObject({ identity: ID });
  });

  it("rebuilds the channel when the roots change", async () => {
    const stranger = await CertificateAuthority.selfSignedRoot();
    let roots = stranger.rootsPem();
    const reads = vi.fn(() => Buffer.from(roots));
    const c = client({ rootsPem: reads });
    expect((await rejection(c.createCertificate(ID))).code).toBe(grpc.status.UNAVAILABLE);
    roots = controlCa.rootsPem();
    await expect(c.createCertificate(ID)).resolves.toMatchObject({ identity: ID });
    expect(reads).toHaveBeenCalledTimes(2);
  });

  it("fails without calling the CA for a bad identity, unreadable roots or token, empty roots, or after close()", async () => {
    const before = server.calls.length;
    expect((await rejection(client().createCertificate("spiffe://cluster.local/ns/shop"))).message).toMatch(/cannot request a certificate: .*not of the form/);
    expect((await rejection(client().createCertificate("https://example.com/x"))).message).toMatch(/not a SPIFFE id/);
    const noFile = () => {
      throw new Error("ENOENT: no such file, open './var/run/secrets/istio/root-cert.pem'");
    };
    expect((await rejection(client({ rootsPem: noFile }).createCertificate(ID))).message).toMatch(/cannot read the CA root certificates: ENOENT/);
    expect((await rejection(client({ rootsPem: () => "" }).createCertificate(ID))).message).toMatch(/root certificates are empty/);
    expect((await rejection(client({ token: noFile }).createCertificate(ID))).message).toMatch(/cannot read the CA token: ENOENT/);
    const c = client();
    c.close();
    c.close();
    expect((await rejection(c.createCertificate(ID))).message).toMatch(/closed/);
    expect(server.calls.length).toBe(before);
  });

  it("closing while a request is in flight lets it finish", async () => {
    const c = client();
    const p = c.createCertificate(ID);
    c.close();
    await expect(p).resolves.toMatchObject({ identity: ID });
  });

  it("validates its options", () => {
    expect(parseCaAddress("https://istiod.istio-system.svc:15012/")).toEqual({ target: "istiod.istio-system.svc:15012", host: "istiod.istio-system.svc" });
    expect(parseCaAddress("[fd00::1]:15012")).toEqual({ target: "[fd00::1]:15012", host: "fd00::1" });
    expect(() => parseCaAddress("http://istiod:15012")).toThrow(/scheme http:\/\/ is not supported/);
    expect(() => parseCaAddress("istiod")).toThrow(CaError);
    expect(() => parseCaAddress("istiod:99999")).toThrow(/not host:port/);
    expect(() => client({ ttlSeconds: 0 })).toThrow(/TTL 0 s/);
    expect(() => client({ timeoutMs: -1 })).toThrow(/timeout/);
    expect(() => client({ headers: { "bad header": "x" } })).toThrow(/not a valid gRPC metadata name/);
    expect(() => client({ headers: { Authorization: "x" } })).toThrow(/override a header/);
    expect(() => client({ headers: { "x-ok": "caf\u00e9" } })).toThrow(/printable ASCII/);
  });
});

// =============================================================================================================
// A source issuing real certificates from the workload CA, with controllable failures and blocking.
class TestSource implements CertificateSource {
  readonly calls: { identity: string; at: number }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  ttlSeconds = 3600;
  skewSeconds = 0;
  /** Failures to produce before succeeding again (Infinity: always fail). */
  failures = 0;
  /** When set, requests wait for release(). */
  gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  readonly order: string[] = [];

  block(): void {
    this.gate = new Promise((r) => (this.#open = r));
  }
  release(): void {
    this.gate = undefined;
    this.#open?.();
  }

  async createCertificate(identity: string): Promise<WorkloadCertificate> {
    this.calls.push({ identity, at: Date.now() });
    this.order.push(identity);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.gate) await this.gate;
      else await new Promise((r) => setImmediate(r));
      if (this.failures > 0) {
        this.failures--;
        throw new CaError(`CA request for ${identity} failed: UNAVAILABLE: connection refused`, grpc.status.UNAVAILABLE);
      }
      const { privateKey, publicKey } = await import("node:crypto").then((m) => m.generateKeyPairSync("ec", { namedCurve: "P-256" }));
      const certPem = workloadCa.sign({ publicKey, uriSans: [identity], ttlSeconds: this.ttlSeconds, notBeforeSkewSeconds: this.skewSeconds });
      const leaf = parseCertificate(certPem);
      return {
        identity,
        keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        certPem,
        chainPem: [],
        rootsPem: [workloadCa.rootsPem()],
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        serial: leaf.serialHex,
      };
    } finally {
      this.inFlight--;
    }
  }
}

const managers: CertificateManager[] = [];
function manager(source: CertificateSource, over: Partial<ConstructorParameters<typeof CertificateManager>[0]> = {}): CertificateManager {
  const m = new CertificateManager({ source, backoff: { initialMs: 20, maxMs: 1000 }, ...over });
  managers.push(m);
  return m;
}
afterEach(() => {
  for (const m of managers.splice(0)) m.stop();
});
// The manager's timers run on a fake clock (setTimeout, clearTimeout, Date), so a test checks exactly when a request
// is made, not how long it took on a busy machine. The test source still settles on real setImmediate.
function fakeClock(): void {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
}
afterEach(() => {
  vi.useRealTimers();
});
/** On the fake clock: no new request until `ms` (a delay the manager logged, rounded) has passed, then exactly one. */
async function expectRequestIn(src: TestSource, ms: number): Promise<void> {
  const n = src.calls.length;
  await vi.advanceTimersByTimeAsync(ms - 2);
  expect(src.calls).toHaveLength(n);
  // A millisecond at a time, so the clock stops where the request was made (its outcome is timed from there).
  for (let i = 0; i < 3 && src.calls.length === n; i++) await vi.advanceTimersByTimeAsync(1);
  expect(src.calls).toHaveLength(n + 1);
}
/** How long, from now, until a certificate's half-life. */
const halfLifeIn = (c: WorkloadCertificate) => Math.round(c.notBefore.getTime() + (c.notAfter.getTime() - c.notBefore.getTime()) / 2 - Date.now());
const logger = () => ({ info: vi.fn(), warn: vi.fn(), error: vi.fn(), debug: vi.fn() });

describe("CertificateManager", () => {
  it("caches a valid certificate and dedupes concurrent fetches into one request", async () => {
    const src = new TestSource();
    const m = manager(src);
    const updated = vi.fn();
    m.on("updated", updated);
    expect(m.get(ID)).toBeUndefined();
    const all = await Promise.all([m.fetch(ID), m.fetch(ID), m.fetch(ID), m.fetch(ID)]);
    expect(src.calls).toHaveLength(1);
    expect(new Set(all).size).toBe(1);
    expect(await m.fetch(ID)).toBe(all[0]);
    expect(m.get(ID)).toBe(all[0]);
    expect(src.calls).toHaveLength(1);
    expect(updated).toHaveBeenCalledExactlyOnceWith(ID, all[0]);
    expect(m.identities()).toEqual([ID]);
  });

  it("runs at most `concurrency` requests; fetch() goes before queued prefetches, prefetches before refreshes", async () => {
    const src = new TestSource();
    src.block();
    const m = manager(src, { concurrency: 2 });
    const ids = Array.from({ length: 6 }, (_, i) => `spiffe://cluster.local/ns/shop/sa/p${i}`);
    for (const id of ids) m.prefetch(id);
    m.prefetch(ids[0]!); // already tracked: no second request
    const urgent = m.fetch(ID);
    const upgraded = m.fetch(ids[5]!); // queued as a prefetch, now waited on
    await vi.waitFor(() => expect(src.inFlight).toBe(2));
    src.release();
    await Promise.all([urgent, upgraded]);
    await vi.waitFor(() => expect(m.dump().every((d) => d.state === "Available")).toBe(true));
    expect(src.maxInFlight).toBe(2);
    expect(src.order.slice(0, 4)).toEqual([ids[0], ids[1], ID, ids[5]]);
    expect(src.calls).toHaveLength(7);
  });

  it("refreshes at half of the certificate's lifetime", async () => {
    fakeClock();
    const src = new TestSource();
    const m = manager(src);
    const updates: WorkloadCertificate[] = [];
    m.on("updated", (_id: string, cert: WorkloadCertificate) => updates.push(cert));
    const first = await m.fetch(ID);
    await expectRequestIn(src, halfLifeIn(first));
    await until(() => updates.length === 2, "the refreshed certificate");
    expect(updates[1]!.serial).not.toBe(first.serial);
    expect(m.get(ID)).toBe(updates[1]);
  });

  it("a certificate already past its half-life (backdated notBefore) refreshes halfway through what is left, not in a loop", async () => {
    const src = new TestSource();
    fakeClock();
    src.ttlSeconds = 2;
    src.skewSeconds = 60;
    const m = manager(src);
    const cert = await m.fetch(ID);
    expect(halfLifeIn(cert)).toBeLessThan(0);
    await expectRequestIn(src, Math.round((cert.notAfter.getTime() - Date.now()) / 2));
  });

  it("keeps the still-valid certificate when a refresh fails and retries with exponential back-off", async () => {
    fakeClock();
    const src = new TestSource();
    const log = logger();
    const m = manager(src, { log, backoff: { initialMs: 100, maxMs: 10_000 } });
    const first = await m.fetch(ID);
    src.failures = 2;
    // Half-life → failure → 100 ms ±20 % → failure → 200 ms ±20 % → success.
    await expectRequestIn(src, halfLifeIn(first));
    await until(() => log.warn.mock.calls.length === 1, "the first failure");
    expect(m.get(ID)).toBe(first);
    expect(await m.fetch(ID)).toBe(first);
    expect(m.dump()[0]!.state).toBe("Available");
    const retryIn = (i: number) => (log.warn.mock.calls[i]![0] as { retryInMs: number }).retryInMs;
    expect(retryIn(0)).toBeGreaterThanOrEqual(80);
    expect(retryIn(0)).toBeLessThanOrEqual(120);
    await expectRequestIn(src, retryIn(0));
    await until(() => log.warn.mock.calls.length === 2, "the second failure");
    expect(m.get(ID)).toBe(first);
    expect(retryIn(1)).toBeGreaterThanOrEqual(160);
    expect(retryIn(1)).toBeLessThanOrEqual(240);
    await expectRequestIn(src, retryIn(1));
    await until(() => m.get(ID) !== first, "the renewed certificate");
    expect(log.warn).toHaveBeenCalledTimes(2);
    expect(log.warn.mock.calls[0]![0]).toMatchObject({ identity: ID, attempt: 1, keepingCertUntil: first.notAfter.toISOString() });
  });

  it("caps the back-off", async () => {
    fakeClock();
    const src = new TestSource();
    src.failures = Infinity;
    const log = logger();
    const m = manager(src, { log, backoff: { initialMs: 10, maxMs: 40 } });
    m.prefetch(ID);
    // 10, 20, then 40 (the cap) each time, less up to 20 % jitter and never more than the cap.
    for (let failure = 1; failure <= 8; failure++) {
      await until(() => log.warn.mock.calls.length === failure, `failure ${failure}`);
      const retryInMs = (log.warn.mock.calls[failure - 1]![0] as { retryInMs: number }).retryInMs;
      if (failure >= 3) {
        expect(retryInMs).toBeGreaterThanOrEqual(32);
        expect(retryInMs).toBeLessThanOrEqual(40);
      }
      await expectRequestIn(src, retryInMs);
    }
  });

  it("fails closed: fetch rejects with the CA's error, then with CertificateUnavailableError until the retry succeeds", async () => {
    const src = new TestSource();
    src.failures = 2;
    const m = manager(src, { backoff: { initialMs: 150, maxMs: 1000 } });
    const e = await m.fetch(ID).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(CaError);
    expect((e as CaError).code).toBe(grpc.status.UNAVAILABLE);
    expect(m.get(ID)).toBeUndefined();
    expect(m.dump()).toEqual([{ identity: ID, state: `Unavailable: ${(e as Error).message}`, certChain: [], rootCerts: [] }]);
    const again = await m.fetch(ID).catch((err: unknown) => err);
    expect(again).toBeInstanceOf(CertificateUnavailableError);
    expect((again as Error).message).toMatch(/no certificate for .*UNAVAILABLE.*retrying in \d+ ms/);
    expect((again as Error).cause).toBe(e);
    expect(src.calls).toHaveLength(1);
    // The retries happen on their own; fetch() then succeeds.
    await vi.waitFor(() => expect(m.get(ID)).toBeDefined(), { timeout: 3000, interval: 10 });
    expect(src.calls).toHaveLength(3);
    await expect(m.fetch(ID)).resolves.toBe(m.get(ID));
  });

  it("fails closed end to end: the CA is down, fetch rejects with UNAVAILABLE", async () => {
    const s = await new CaServer(workloadCa, serverTls).start();
    const port = s.port;
    await s.stop();
    const m = manager(client({}, port));
    await expect(m.fetch(ID)).rejects.toMatchObject({ name: "CaError", code: grpc.status.UNAVAILABLE });
    expect(m.get(ID)).toBeUndefined();
  });

  it("works with the real CA client: dump() in Istio's config_dump shape", async () => {
    const m = manager(client({ impersonate: true }));
    m.prefetch(ID);
    expect(m.dump()).toEqual([{ identity: ID, state: "Initializing", certChain: [], rootCerts: [] }]);
    const cert = await m.fetch(ID);
    const [d] = m.dump();
    expect(d!.state).toBe("Available");
    expect(d!.certChain).toHaveLength(1);
    expect(Buffer.from(d!.certChain[0]!.pem, "base64").toString()).toBe(cert.certPem);
    expect(d!.certChain[0]).toMatchObject({ serialNumber: cert.serial, validFrom: cert.notBefore.toISOString(), expirationTime: cert.notAfter.toISOString() });
    expect(d!.rootCerts).toHaveLength(1);
    expect(Buffer.from(d!.rootCerts[0]!.pem, "base64").toString()).toBe(workloadCa.rootsPem());
    expect(d!.rootCerts[0]!.validFrom).toBe(workloadCa.certificate.notBefore.toISOString());
  });

  it("forget() stops refreshing, drops the certificate and rejects callers waiting on a queued request", async () => {
    fakeClock();
    const src = new TestSource();
    src.ttlSeconds = 1;
    const m = manager(src, { concurrency: 1 });
    await m.fetch(ID);
    m.forget(ID);
    m.forget(ID); // unknown: no-op
    expect(m.get(ID)).toBeUndefined();
    expect(m.identities()).toEqual([]);
    await vi.advanceTimersByTimeAsync(10_000); // well past the half-life
    expect(src.calls).toHaveLength(1);

    src.block();
    const running = m.fetch(ID2);
    const queued = m.fetch(ID);
    m.forget(ID);
    await expect(queued).rejects.toThrow(/the identity was forgotten/);
    m.forget(ID2); // running: its caller still gets the certificate, which is not kept
    src.release();
    await expect(running).resolves.toMatchObject({ identity: ID2 });
    expect(m.get(ID2)).toBeUndefined();
    expect(m.identities()).toEqual([]);
  });

  it("a forgotten identity in back-off is not retried", async () => {
    fakeClock();
    const src = new TestSource();
    src.failures = Infinity;
    const m = manager(src, { backoff: { initialMs: 50, maxMs: 50 } });
    m.prefetch(ID);
    await until(() => m.dump()[0]?.state.startsWith("Unavailable") === true, "the first failure (the retry is scheduled)");
    m.forget(ID);
    await vi.advanceTimersByTimeAsync(10_000); // many back-offs
    expect(src.calls).toHaveLength(1);
  });

  it("stop() clears timers, rejects queued requests, and refuses new ones", async () => {
    fakeClock();
    const src = new TestSource();
    src.ttlSeconds = 1;
    const m = manager(src, { concurrency: 1 });
    await m.fetch(ID);
    src.block();
    const running = m.fetch(ID2);
    const queued = m.fetch("spiffe://cluster.local/ns/shop/sa/queued");
    m.stop();
    m.stop();
    await expect(queued).rejects.toBeInstanceOf(CertificateUnavailableError);
    await expect(m.fetch("spiffe://cluster.local/ns/x/sa/y")).rejects.toThrow(/stopped/);
    src.release();
    await expect(running).resolves.toMatchObject({ identity: ID2 });
    m.prefetch(ID); // ignored
    await vi.advanceTimersByTimeAsync(10_000); // well past the half-life of the first certificate
    expect(src.calls).toHaveLength(2);
  });

  it("timers do not keep the process alive", async () => {
    // Every timer the manager arms is seen here (counting the process's timers would count other tests' too).
    const armed: NodeJS.Timeout[] = [];
    const realSetTimeout = globalThis.setTimeout;
    const spy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((...args: Parameters<typeof setTimeout>) => {
      const t = realSetTimeout(...args);
      armed.push(t);
      return t;
    }) as typeof setTimeout);
    try {
      const src = new TestSource();
      const m = manager(src, { backoff: { initialMs: 60_000, maxMs: 60_000 } }); // one retry timer, not many
      await m.fetch(ID); // a refresh timer is now scheduled
      expect(armed).toHaveLength(1);
      src.failures = Infinity;
      m.prefetch(ID2);
      await until(() => m.dump().find((d) => d.identity === ID2)?.state.startsWith("Unavailable") === true, "the failure"); // (vi.waitFor would arm timers)
      expect(armed).toHaveLength(2); // and the retry timer
      expect(armed.map((t) => t.hasRef())).toEqual([false, false]);
    } finally {
      spy.mockRestore();
    }
  });

  it("survives a source that throws synchronously and an 'updated' listener that throws", async () => {
    const log = logger();
    let calls = 0;
    const good = new TestSource();
    const source: CertificateSource = {
      createCertificate(identity) {
        if (++calls === 1) throw new Error("boom");
        return good.createCertificate(identity);
      },
    };
    const m = manager(source, { log });
    m.on("updated", () => {
      throw new Error("listener bug");
    });
    await expect(m.fetch(ID)).rejects.toThrow("boom");
    await vi.waitFor(() => expect(m.get(ID)).toBeDefined(), { timeout: 2000, interval: 10 });
    expect(log.error).toHaveBeenCalledWith(expect.objectContaining({ identity: ID, err: "listener bug" }), expect.any(String));
  });

  it("a certificate outside its validity window is not handed out (injected clock)", async () => {
    const src = new TestSource();
    let offset = 0;
    const m = manager(src, { now: () => Date.now() + offset });
    const cert = await m.fetch(ID);
    offset = cert.notAfter.getTime() - Date.now() + 1000; // the clock jumps past notAfter
    expect(m.get(ID)).toBeUndefined();
    expect(m.dump()[0]!.state).toBe("Initializing");
    const renewed = m.fetch(ID); // the expired certificate is replaced by a new request
    offset = 0;
    await expect(renewed).resolves.not.toBe(cert);
    expect(src.calls).toHaveLength(2);
  });

  it("treats a certificate that is not valid by its clock as a failure", async () => {
    const src = new TestSource();
    const m = manager(src, { now: () => Date.now() + 2 * 86_400_000, backoff: { initialMs: 5000, maxMs: 5000 } });
    await expect(m.fetch(ID)).rejects.toThrow(/the CA returned a certificate that is not currently valid/);
    expect(m.get(ID)).toBeUndefined();
    expect(m.dump()[0]!.state).toMatch(/^Unavailable: .*not currently valid/);
  });

  it("validates its options", () => {
    const src = new TestSource();
    expect(() => new CertificateManager({ source: src, concurrency: 0 })).toThrow(/concurrency 0/);
    expect(() => new CertificateManager({ source: src, backoff: { initialMs: 0 } })).toThrow(/back-off/);
    expect(() => new CertificateManager({ source: src, backoff: { initialMs: 500, maxMs: 100 } })).toThrow(/back-off/);
  });
});
