// Real mutual TLS between Node's tls client and server with two leaves from the CA, verified to the root and
// checked by SPIFFE id the way ztunnel does (no SNI, no DNS names: the peer's URI SAN must be the expected id).
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { afterAll, describe, expect, it } from "vitest";
import { CertificateAuthority, createCsr, exportPrivateKeyPem, generateKeyPair, loadPluggedCa, parseCsr } from "../src/index.js";
import { OpensslPki, Scratch } from "./helpers.js";

const s = new Scratch();
afterAll(() => s.cleanup());

async function identity(ca: CertificateAuthority, id: string) {
  const keyPair = await generateKeyPair();
  const { publicKey } = parseCsr(await createCsr({ keyPair, uriSans: [id] }));
  const chain = ca.chainFor(ca.sign({ publicKey, uriSans: [id], ttlSeconds: 86400 }));
  // A TLS peer sends its leaf and the intermediates; the root comes from the trust bundle.
  return { key: await exportPrivateKeyPem(keyPair.privateKey), cert: chain.slice(0, -1).join(""), roots: chain[chain.length - 1]! };
}

async function handshake(serverCa: CertificateAuthority, clientCa: CertificateAuthority, clientTrusts = clientCa.rootsPem()) {
  const serverId = "spiffe://cluster.local/ns/shop/sa/backend";
  const clientId = "spiffe://cluster.local/ns/shop/sa/frontend";
  const srv = await identity(serverCa, serverId);
  const cli = await identity(clientCa, clientId);
  let seenClient: string | undefined;
  const server = tls.createServer(
    { key: srv.key, cert: srv.cert, ca: srv.roots, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", ALPNProtocols: ["h2"] },
    (sock) => {
      seenClient = sock.getPeerCertificate().subjectaltname;
      sock.end(`hello ${sock.authorized}`);
    },
  );
  const clientErrors: Error[] = [];
  server.on("tlsClientError", (e) => clientErrors.push(e));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  try {
    const sock = tls.connect({
      host: "127.0.0.1",
      port,
      key: cli.key,
      cert: cli.cert,
      ca: clientTrusts,
      ALPNProtocols: ["h2"],
      minVersion: "TLSv1.3",
      checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${serverId}` ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`)),
    });
    let data = "";
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => (data += d));
    const result = await new Promise<{ ok: boolean; error?: string }>((resolve) => {
      sock.on("end", () => resolve({ ok: true }));
      sock.on("error", (e) => resolve({ ok: false, error: e.message }));
    });
    return { ...result, data, authorized: sock.authorized, alpn: sock.alpnProtocol, seenClient, clientErrors };
  } finally {
    server.close();
  }
}

describe("mutual TLS with issued certificates", () => {
  it("works with a self-signed root", async () => {
    const ca = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
    const r = await handshake(ca, ca);
    expect(r).toMatchObject({ ok: true, data: "hello true", authorized: true, alpn: "h2", seenClient: "URI:spiffe://cluster.local/ns/shop/sa/frontend" });
  });

  it("works with a plug-in CA (RSA root → EC intermediate), intermediates sent by both peers", async () => {
    const o = new OpensslPki(s);
    o.key("root-key.pem", "rsa:2048");
    const root = o.root("root.pem", "root-key.pem", "/O=Istio/CN=Root CA");
    const key = o.key("int-key.pem", "ec");
    const cert = o.issue("int.pem", "int-key.pem", "/O=Istio/CN=Intermediate", "root.pem", "root-key.pem", "v3_int");
    const ca = loadPluggedCa({ "ca-cert.pem": cert, "ca-key.pem": key, "cert-chain.pem": cert + root, "root-cert.pem": root });
    const r = await handshake(ca, ca);
    expect(r).toMatchObject({ ok: true, data: "hello true", authorized: true });
  });

  it("the server rejects a client whose certificate comes from another CA", async () => {
    const ca = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
    const rogue = await CertificateAuthority.selfSignedRoot({ trustDomain: "cluster.local" });
    const r = await handshake(ca, rogue, ca.rootsPem()); // the client trusts the server; its own cert is rogue
    expect(r.data).toBe("");
    expect(r.seenClient).toBeUndefined();
    expect(r.clientErrors.length).toBeGreaterThan(0); // the handshake failed on the server side
  });
});
