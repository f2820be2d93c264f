// The one place that loads @peculiar/x509, imported lazily (`await import("./x509lib.js")`) by
// CertificateAuthority.selfSignedRoot only, so that other users of the package never pay for it. It needs
// reflect-metadata evaluated first and a WebCrypto provider set (below).
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
