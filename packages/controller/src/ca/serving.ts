// The controller's own TLS identity on 15012, issued by its CA for the DNS names of its Service, and re-issued
// when the CA changes (a swapped plug-in CA), so clients that trust the newly published root still connect.
// grpc-js takes it through a certificate provider, which it asks again on each new TLS handshake.
import * as grpc from "@grpc/grpc-js";
import type { CertificateAuthority } from "@ambit/pki";

type Listener<T> = (update: T | null) => void;
type Identity = { certificate: Buffer; privateKey: Buffer };

class MemoryCertificateProvider implements grpc.experimental.CertificateProvider {
  private identity: Identity | null = null;
  private ca: { caCertificate: Buffer } | null = null;
  private readonly identityListeners = new Set<Listener<Identity>>();
  private readonly caListeners = new Set<Listener<{ caCertificate: Buffer }>>();

  set(identity: Identity, caCertificate: Buffer): void {
    this.identity = identity;
    this.ca = { caCertificate };
    for (const l of this.identityListeners) l(this.identity);
    for (const l of this.caListeners) l(this.ca);
  }
  addCaCertificateListener(l: Listener<{ caCertificate: Buffer }>): void {
    this.caListeners.add(l);
    // grpc-js expects the current value later, not during the call that registers the listener.
    setImmediate(() => this.caListeners.has(l) && this.ca && l(this.ca));
  }
  removeCaCertificateListener(l: Listener<{ caCertificate: Buffer }>): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: Listener<Identity>): void {
    this.identityListeners.add(l);
    setImmediate(() => this.identityListeners.has(l) && this.identity && l(this.identity));
  }
  removeIdentityCertificateListener(l: Listener<Identity>): void {
    this.identityListeners.delete(l);
  }
}

/** The DNS names of the serving certificate: those of the controller's Service, as istiod's certificate carries them. */
export function istiodDnsNames(namespace: string, domainSuffix: string): string[] {
  return ["istiod", "istiod-remote", "istio-pilot"].flatMap((n) => [`${n}.${namespace}.svc`, `${n}.${namespace}.svc.${domainSuffix}`]);
}

export class ServingIdentity {
  private readonly provider = new MemoryCertificateProvider();

  constructor(private readonly dnsNames: string[], private readonly ttlSeconds = 365 * 24 * 3600) {}

  /** (Re-)issues the serving certificate from `ca`. */
  async issue(ca: CertificateAuthority): Promise<void> {
    const s = await ca.issueServingCertificate({ dnsNames: this.dnsNames, ttlSeconds: this.ttlSeconds });
    this.provider.set({ certificate: Buffer.from(s.tlsCertChainPem), privateKey: Buffer.from(s.keyPem) }, Buffer.from(ca.rootsPem()));
  }

  /** Server credentials that always present the current certificate (no client certificate required). */
  credentials(): grpc.ServerCredentials {
    return grpc.experimental.createCertificateProviderServerCredentials(this.provider, this.provider, false);
  }
}
