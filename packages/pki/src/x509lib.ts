// The one place that loads @peculiar/x509. It needs reflect-metadata evaluated first and a WebCrypto
// provider; Node's own webcrypto is used so that keys interoperate with node:crypto KeyObjects.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
