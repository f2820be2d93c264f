// The CA client: asks istio.v1.auth.IstioCertificateService/CreateCertificate for a workload certificate, as
// ztunnel does. Each request uses a fresh ECDSA P-256 key and a PEM CSR with an empty subject and one URI SAN (the
// SPIFFE id). The channel is server-auth TLS with a bearer JWT and the `clusterid` header; in shared (in-pod) mode
// the identity asked for travels in the request's metadata Struct as `ImpersonatedIdentity`. The response is
// checked before it is trusted: leaf for the requested identity and key, currently valid, chaining to the roots.
import { webcrypto } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { createCsr, exportPrivateKeyPem, generateKeyPair, parseCertificate, parsePemBundle, verifyChain, type CertificateInfo } from "@ambit/pki";
import { CREATE_CERTIFICATE_PATH, IMPERSONATED_IDENTITY_KEY, istio, parseSpiffeId } from "@ambit/protocol";

const Req = istio.v1.auth.IstioCertificateRequest;
const Res = istio.v1.auth.IstioCertificateResponse;

const DEFAULT_TIMEOUT_MS = 10_000;

export interface CaClientOptions {
  /** "host:port" or "https://host:port" (IPv6 hosts in brackets). */
  address: string;
  /** Server-auth TLS roots (PEM). Read before every request; a changed content rebuilds the channel. */
  rootsPem: () => string | Buffer;
  /** Name to verify in the server certificate (default: the address host). */
  servername?: string;
  /** Bearer JWT, re-read on every request; undefined or empty sends no authorization header. */
  token: () => string | undefined;
  /** Value of the "clusterid" metadata header. */
  clusterId: string;
  /** Extra metadata (CA_HEADER_*). */
  headers?: Record<string, string>;
  /** validity_duration sent, in seconds. */
  ttlSeconds: number;
  /** True in shared mode: the request's metadata Struct carries { ImpersonatedIdentity: <spiffe id> }. */
  impersonate: boolean;
  /** Per-call deadline (default 10 s). */
  timeoutMs?: number;
  /** Clock used to check the returned certificate's validity (default Date.now). */
  now?: () => number;
}

/** A certificate with its key, as ztunnel holds it per identity. */
export interface WorkloadCertificate {
  /** The SPIFFE id the certificate was issued for (spiffe://td/ns/x/sa/y). */
  identity: string;
  /** PKCS#8 PEM of the certificate's fresh ECDSA P-256 key. */
  keyPem: string;
  /** The leaf certificate (PEM). */
  certPem: string;
  /** Intermediates between the leaf and the root, nearest to the leaf first; the leaf is excluded. */
  chainPem: string[];
  /** The roots: the last cert_chain entry split into its certificates. */
  rootsPem: string[];
  notBefore: Date;
  notAfter: Date;
  /** The leaf's serial number, lower-case hex. */
  serial: string;
}

/** A certificate could not be obtained. `code` is the gRPC status when the CA (or the channel) answered with one. */
export class CaError extends Error {
  override name = "CaError";
  readonly code?: number;
  constructor(message: string, code?: number, options?: { cause?: unknown }) {
    super(message, options);
    if (code !== undefined) this.code = code;
  }
}

interface Channel {
  client: grpc.Client;
  roots: string;
  active: number;
  retired: boolean;
}

const HEADER_NAME = /^[0-9a-z_.-]+$/;
const RESERVED_HEADERS = new Set(["authorization", "clusterid", "content-type", "te", "user-agent", "grpc-timeout"]);

/** Parses "host:port" / "https://host:port" into a gRPC target and its host. Throws CaError. */
export function parseCaAddress(address: string): { target: string; host: string } {
  let rest = address.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(rest);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== "https") throw new CaError(`CA address "${address}": scheme ${scheme[1]}:// is not supported (use host:port or https://host:port; the CA channel is always TLS)`);
    rest = rest.slice(scheme[0].length);
  }
  rest = rest.replace(/\/+$/, "");
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]\s]+):(\d{1,5})$/.exec(rest);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new CaError(`CA address "${address}" is not host:port or https://host:port`);
  const host = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
  return { target: `${m[1]}:${m[2]}`, host };
}

function statusName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}

/** Requests workload certificates from an IstioCertificateService CA. */
export class CaClient {
  readonly #o: CaClientOptions;
  readonly #target: string;
  readonly #servername: string | undefined;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  #channel: Channel | undefined;
  #closed = false;

  constructor(o: CaClientOptions) {
    const { target } = parseCaAddress(o.address);
    if (!Number.isInteger(o.ttlSeconds) || o.ttlSeconds <= 0) throw new CaError(`certificate TTL ${String(o.ttlSeconds)} s is not a positive whole number of seconds`);
    if (o.timeoutMs !== undefined && !(o.timeoutMs > 0)) throw new CaError(`CA request timeout ${String(o.timeoutMs)} ms is not positive`);
    for (const [name, value] of Object.entries(o.headers ?? {})) {
      const key = name.toLowerCase();
      if (!HEADER_NAME.test(key) || key.startsWith("grpc-") || key.endsWith("-bin")) throw new CaError(`CA header "${name}" is not a valid gRPC metadata name (letters, digits, '-', '_', '.'; not grpc-* or *-bin)`);
      if (RESERVED_HEADERS.has(key)) throw new CaError(`CA header "${name}" would override a header the client sets itself`);
      if (/[^\x20-\x7e]/.test(value)) throw new CaError(`CA header "${name}" has a value with characters outside printable ASCII`);
    }
    this.#o = o;
    this.#target = target;
    this.#servername = o.servername || undefined;
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#now = o.now ?? Date.now;
  }

  /**
   * Requests a certificate for `identity`. Rejects with CaError: invalid identity, unreadable roots or token, a
   * gRPC failure (with its status code), or a response that fails the checks.
   */
  async createCertificate(identity: string): Promise<WorkloadCertificate> {
    if (this.#closed) throw new CaError("the CA client is closed");
    try {
      parseSpiffeId(identity);
    } catch (e) {
      throw new CaError(`cannot request a certificate: ${(e as Error).message}`, undefined, { cause: e });
    }
    const metadata = this.#metadata();
    const channel = this.#acquire();
    try {
      const keyPair = await generateKeyPair();
      const csr = await createCsr({ keyPair, uriSans: [identity] });
      const request: istio.v1.auth.IstioCertificateRequest.$Properties = { csr, validity_duration: this.#o.ttlSeconds };
      if (this.#o.impersonate) request.metadata = { fields: { [IMPERSONATED_IDENTITY_KEY]: { string_value: identity } } };
      const chain = await this.#call(channel, request, metadata, identity);
      const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keyPair.publicKey));
      const keyPem = await exportPrivateKeyPem(keyPair.privateKey);
      return this.#check(identity, chain, spki, keyPem);
    } finally {
      this.#release(channel);
    }
  }

  /** Closes the channel; later requests fail with CaError. Idempotent. */
  close(): void {
    this.#closed = true;
    const ch = this.#channel;
    this.#channel = undefined;
    if (ch) {
      ch.retired = true;
      if (ch.active === 0) ch.client.close();
    }
  }

  #metadata(): grpc.Metadata {
    let token: string | undefined;
    try {
      token = this.#o.token();
    } catch (e) {
      throw new CaError(`cannot read the CA token: ${(e as Error).message}`, undefined, { cause: e });
    }
    const md = new grpc.Metadata();
    for (const [name, value] of Object.entries(this.#o.headers ?? {})) md.set(name.toLowerCase(), value);
    const t = token?.trim();
    if (t) md.set("authorization", `Bearer ${t}`);
    md.set("clusterid", this.#o.clusterId);
    return md;
  }

  /** The channel for the current roots: a change of roots content builds a new one (the old one closes when idle). */
  #acquire(): Channel {
    let roots: string;
    try {
      const raw = this.#o.rootsPem();
      roots = typeof raw === "string" ? raw : raw.toString("utf8");
    } catch (e) {
      throw new CaError(`cannot read the CA root certificates: ${(e as Error).message}`, undefined, { cause: e });
    }
    if (!/-----BEGIN CERTIFICATE-----/.test(roots)) throw new CaError("the CA root certificates are empty (no PEM CERTIFICATE block)");
    let ch = this.#channel;
    if (!ch || ch.roots !== roots) {
      if (ch) {
        ch.retired = true;
        if (ch.active === 0) ch.client.close();
      }
      const options: grpc.ChannelOptions = { "grpc.use_local_subchannel_pool": 1 };
      if (this.#servername) {
        options["grpc.ssl_target_name_override"] = this.#servername;
        options["grpc.default_authority"] = this.#servername;
      }
      let client: grpc.Client;
      try {
        client = new grpc.Client(this.#target, grpc.credentials.createSsl(Buffer.from(roots)), options);
      } catch (e) {
        throw new CaError(`cannot build the CA channel to ${this.#target}: ${(e as Error).message}`, undefined, { cause: e });
      }
      ch = { client, roots, active: 0, retired: false };
      this.#channel = ch;
    }
    ch.active++;
    return ch;
  }

  #release(ch: Channel): void {
    ch.active--;
    if (ch.retired && ch.active === 0) ch.client.close();
  }

  #call(ch: Channel, request: istio.v1.auth.IstioCertificateRequest.$Properties, md: grpc.Metadata, identity: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      ch.client.makeUnaryRequest(
        CREATE_CERTIFICATE_PATH,
        (m: istio.v1.auth.IstioCertificateRequest.$Properties) => Buffer.from(Req.encode(m).finish()),
        (b: Buffer) => Res.decode(b),
        request,
        md,
        { deadline: Date.now() + this.#timeoutMs },
        (err, res) => {
          if (err) {
            reject(new CaError(`CA request for ${identity} to ${this.#target} failed: ${statusName(err.code)}: ${err.details || err.message}`, err.code, { cause: err }));
          } else resolve(res?.cert_chain ?? []);
        },
      );
    });
  }

  #check(identity: string, chain: string[], spki: Buffer, keyPem: string): WorkloadCertificate {
    const fail = (why: string, cause?: unknown) => new CaError(`CA response for ${identity} rejected: ${why}`, undefined, cause === undefined ? undefined : { cause });
    if (chain.length === 0) throw fail("the certificate chain is empty");
    if (chain.length === 1) throw fail("the certificate chain has no root certificate (expected leaf first, roots last)");
    const split = (entry: string, what: string): string[] => {
      let certs: string[];
      try {
        certs = parsePemBundle(entry, "CERTIFICATE");
      } catch (e) {
        throw fail(`${what}: ${(e as Error).message}`, e);
      }
      if (certs.length === 0) throw fail(`${what} holds no PEM CERTIFICATE block`);
      return certs;
    };
    const [leafPem, ...leafExtra] = split(chain[0]!, "the leaf entry");
    const chainPem = [...leafExtra, ...chain.slice(1, -1).flatMap((e, i) => split(e, `intermediate entry #${i + 1}`))];
    const rootsPem = split(chain[chain.length - 1]!, "the roots entry");
    let leaf: CertificateInfo;
    try {
      leaf = parseCertificate(leafPem!);
      for (const c of [...chainPem, ...rootsPem]) parseCertificate(c);
    } catch (e) {
      throw fail((e as Error).message, e);
    }
    const san = leaf.sans.uris[0];
    if (san !== identity) throw fail(`the leaf's first URI SAN is ${san === undefined ? "absent" : `"${san}"`}, not the requested identity`);
    if (!leaf.spki.equals(spki)) throw fail("the leaf does not certify the key of the request");
    const now = this.#now();
    if (now < leaf.notBefore.getTime()) throw fail(`the leaf is not valid before ${leaf.notBefore.toISOString()}`);
    if (now >= leaf.notAfter.getTime()) throw fail(`the leaf expired at ${leaf.notAfter.toISOString()}`);
    try {
      verifyChain(leafPem!, chainPem, rootsPem, new Date(now));
    } catch (e) {
      throw fail(`the leaf does not chain to the returned roots: ${(e as Error).message}`, e);
    }
    return { identity, keyPem, certPem: leaf.pem, chainPem, rootsPem, notBefore: leaf.notBefore, notAfter: leaf.notAfter, serial: leaf.serialHex };
  }
}
