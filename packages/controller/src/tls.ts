// The serving certificate of the TLS xDS port until the CA (issue 6) issues it: self-signed ECDSA P-256 with the
// DNS names of the controller's Service, as istiod's own certificate carries them.
import "reflect-metadata"; // @peculiar/x509 needs it loaded first
import { randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export function istiodDnsNames(namespace: string, domainSuffix: string): string[] {
  return ["istiod", "istiod-remote", "istio-pilot"].flatMap((n) => [`${n}.${namespace}.svc`, `${n}.${namespace}.svc.${domainSuffix}`]);
}

export async function selfSignedServingCertificate(dnsNames: string[]): Promise<{ cert: string; key: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString("hex"),
    name: `CN=${dnsNames[0] ?? "istiod"}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * 24 * 3600_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: "dns" as const, value }))),
    ],
  });
  const der = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert: cert.toString("pem"), key: x509.PemConverter.encode(der, "PRIVATE KEY") };
}
