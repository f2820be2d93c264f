// Certificates and credentials of the local control plane: a cluster CA, the API server's serving
// certificate, the service-account signing key, and one bearer token per component user.
import { generateKeyPairSync, randomBytes, webcrypto } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import "reflect-metadata"; // @peculiar/x509 needs it loaded first
import * as x509 from "@peculiar/x509";
import { CLUSTER_GATEWAY_IP, KUBERNETES_SERVICE_IP, paths } from "./layout.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const YEAR = 365 * 24 * 3600 * 1000;

export interface User {
  name: string;
  groups: string[];
}

export interface Pki {
  caCert: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  saKeyFile: string;
  saPubFile: string;
  tokensFile: string;
  tokens: Record<string, string>;
}

async function pemKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/** Writes the cluster's PKI into the state dir and returns where it is. */
export async function createPki(users: User[]): Promise<Pki> {
  const dir = paths.pki();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const caKeys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString("hex"),
    name: "CN=ambit-local-ca",
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 10 * YEAR),
    signingAlgorithm: SIGN,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const serverKeys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"];
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString("hex"),
    subject: "CN=kube-apiserver",
    issuer: ca.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + YEAR),
    signingAlgorithm: SIGN,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...names.map((value) => ({ type: "dns" as const, value })),
        ...["127.0.0.1", CLUSTER_GATEWAY_IP, KUBERNETES_SERVICE_IP].map((value) => ({ type: "ip" as const, value })),
      ]),
    ],
  });
  const pki: Pki = {
    caCert: ca.toString("pem"),
    caFile: join(dir, "ca.crt"),
    serverCertFile: join(dir, "apiserver.crt"),
    serverKeyFile: join(dir, "apiserver.key"),
    saKeyFile: join(dir, "sa.key"),
    saPubFile: join(dir, "sa.pub"),
    tokensFile: join(dir, "tokens.csv"),
    tokens: Object.fromEntries(users.map((u) => [u.name, randomBytes(24).toString("hex")])),
  };
  writeFileSync(pki.caFile, pki.caCert);
  writeFileSync(pki.serverCertFile, server.toString("pem"));
  writeFileSync(pki.serverKeyFile, await pemKey(serverKeys.privateKey), { mode: 0o600 });
  const sa = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  writeFileSync(pki.saKeyFile, sa.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(pki.saPubFile, sa.publicKey.export({ type: "spki", format: "pem" }));
  writeFileSync(pki.tokensFile, users.map((u) => `${pki.tokens[u.name]},${u.name},${u.name},"${u.groups.join(",")}"`).join("\n") + "\n", { mode: 0o600 });
  return pki;
}

/** A kubeconfig (JSON, which is valid YAML) for one token user against one server URL. */
export function writeKubeconfig(file: string, server: string, caCert: string, user: string, token: string): void {
  mkdirSync(join(file, ".."), { recursive: true });
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "ambit-local", cluster: { server, "certificate-authority-data": Buffer.from(caCert).toString("base64") } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: "ambit-local", context: { cluster: "ambit-local", user } }],
    "current-context": "ambit-local",
  };
  writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
}
