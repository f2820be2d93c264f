#!/usr/bin/env node
// ambit-ztunnel: the node proxy. Configuration from Istio's environment variables (see config.ts); a bad value stops
// it with a message naming the variable. SIGTERM/SIGINT drain and exit.
import { ConfigError } from "@ambit/protocol";
import { loadConfig } from "./config.js";
import { Ztunnel } from "./app.js";

function fail(message: string, code: number): never {
  process.stderr.write(`ambit-ztunnel: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  const ztunnel = new Ztunnel({ config: loadConfig() });
  process.on("SIGTERM", () => void ztunnel.stop()).on("SIGINT", () => void ztunnel.stop());
  void ztunnel.done.then(() => process.exit(0));
  await ztunnel.start();
}

main().catch((err: Error) => fail(err instanceof ConfigError ? err.message : err.stack ?? err.message, err instanceof ConfigError ? 2 : 1));
