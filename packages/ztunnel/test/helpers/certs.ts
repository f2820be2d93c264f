// Test helper: workload certificates issued by a real @ambit/pki CertificateAuthority, in the shape ztunnel's
// identity layer hands out (WorkloadCertificate).
import { generateKeyPairSync } from "node:crypto";
import { CertificateAuthority, parseCertificate } from "@ambit/pki";
import type { WorkloadCertificate } from "../../src/identity/index.js";

export function newCa(trustDomain = "cluster.local"): Promise<CertificateAuthority> {
  return CertificateAuthority.selfSignedRoot({ trustDomain });
}

/** A fresh P-256 key and a leaf for `uriSans` (the first one is the identity), signed by `ca`. */
export function issue(ca: CertificateAuthority, uriSans: string | string[], ttlSeconds = 3600): WorkloadCertificate {
  const sans = Array.isArray(uriSans) ? uriSans : [uriSans];
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const certPem = ca.sign({ publicKey, uriSans: sans, ttlSeconds });
  const leaf = parseCertificate(certPem);
  return {
    identity: sans[0]!,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    certPem,
    chainPem: ca.chainPems(),
    rootsPem: ca.rootPems(),
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    serial: leaf.serialHex,
  };
}
