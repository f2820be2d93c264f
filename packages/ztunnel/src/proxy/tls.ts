// HBONE's TLS layer: TLS 1.3 only, ALPN h2, no SNI, no resumption. The client presents the source pod's
// certificate and accepts the server only if a URI SAN of its leaf is one of the expected SPIFFE ids; the server
// presents its pod's certificate, requires a client certificate from its own roots, and requires the client's
// trust domain to equal its own. DNS names are never used for identity.
import tls from "node:tls";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { parseSpiffeId, type Identity } from "@ambit/protocol";
import type { WorkloadCertificate } from "../identity/index.js";

const CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
export const ALPN_H2 = "h2";

export class IdentityMismatch extends Error {
  override name = "IdentityMismatch";
}

/** The secure context of one workload certificate: the leaf with its intermediates, and the roots it trusts. */
export function secureContextOf(cert: WorkloadCertificate): tls.SecureContext {
  return tls.createSecureContext({
    key: cert.keyPem,
    cert: [cert.certPem, ...cert.chainPem].join("\n"),
    ca: cert.rootsPem,
    minVersion: "TLSv1.3",
    ciphers: CIPHERS,
  });
}

/** The URI SANs of a peer certificate ("URI:spiffe://…" entries of subjectaltname). */
export function uriSans(peer: PeerCertificate | null | undefined): string[] {
  const alt = peer?.subjectaltname;
  if (!alt) return [];
  return alt.split(", ").filter((s) => s.startsWith("URI:")).map((s) => s.slice(4));
}

type PeerIdentity = { uri: string; id: Identity } | null;
const peers = new WeakMap<TLSSocket, PeerIdentity>();

/** The peer's SPIFFE identity (the first parsable URI SAN), or null; worked out once per TLS connection. */
export function peerIdentity(socket: TLSSocket): PeerIdentity {
  let peer = peers.get(socket);
  if (peer !== undefined) return peer;
  peer = null;
  for (const uri of uriSans(socket.getPeerCertificate())) {
    try {
      peer = { uri, id: parseSpiffeId(uri) };
      break;
    } catch {
      // not a SPIFFE id: try the next SAN
    }
  }
  peers.set(socket, peer);
  return peer;
}

/** tls.connect options for an HBONE client over an already connected TCP socket. */
export function clientTlsOptions(socket: import("node:net").Socket, context: tls.SecureContext, host: string, expected: readonly string[]): tls.ConnectionOptions {
  return {
    socket,
    secureContext: context,
    // An IP host means no SNI is sent.
    host,
    servername: "",
    ALPNProtocols: [ALPN_H2],
    minVersion: "TLSv1.3",
    rejectUnauthorized: true,
    checkServerIdentity: (_host, peer) => {
      const sans = uriSans(peer);
      if (sans.some((s) => expected.includes(s))) return undefined;
      return new IdentityMismatch(`peer identity ${sans.length ? sans.join(", ") : "(none)"} is not the expected ${expected.join(" or ")}`);
    },
  };
}

/** Options of the per-pod HBONE server (added to the http2 secure server's). */
export function serverTlsOptions(cert: WorkloadCertificate): tls.TlsOptions {
  return {
    key: cert.keyPem,
    cert: [cert.certPem, ...cert.chainPem].join("\n"),
    ca: cert.rootsPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
    ciphers: CIPHERS,
    ALPNProtocols: [ALPN_H2],
  };
}
