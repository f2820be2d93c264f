#!/usr/bin/env node
// ambit-controller: configuration from the environment (Istio's names), Kubernetes access in-cluster or from
// KUBECONFIG. A bad setting stops it with a message naming the variable and the fix.
import { loadKubeConfig } from "@ambit/kube";
import { ConfigError, loadConfig } from "./config.js";
import { Controller } from "./controller.js";

async function main(): Promise<void> {
  const config = loadConfig();
  const kc = loadKubeConfig();
  const controller = new Controller({ config, kc });
  const stop = () => {
    controller.log.info("shutting down");
    controller.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on("SIGTERM", stop).on("SIGINT", stop);
  await controller.start();
}

main().catch((err: Error) => {
  process.stderr.write(`ambit-controller: ${err instanceof ConfigError ? err.message : err.stack ?? err.message}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
