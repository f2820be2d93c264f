// Where the Kubernetes connection comes from: the KUBECONFIG file when that variable is set, else the pod's
// service account (in-cluster). Anything else is an error that says which variable to set.

import { existsSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface LoadKubeConfigOptions {
  /** Environment to read (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Service-account directory for in-cluster config (default {@link SERVICE_ACCOUNT_DIR}). */
  serviceAccountDir?: string;
}

export interface LoadedKubeConfig {
  kc: KubeConfig;
  /** "kubeconfig" (from KUBECONFIG) or "in-cluster". */
  source: "kubeconfig" | "in-cluster";
  /** The file used (kubeconfig) or the service-account directory (in-cluster). */
  from: string;
  /** The pod's namespace when in-cluster (service-account `namespace` file), else the context's namespace if any. */
  namespace?: string;
}

export class KubeConfigError extends Error {
  override name = "KubeConfigError";
}

/**
 * Loads the Kubernetes client configuration:
 * 1. `KUBECONFIG` set → that file (the first existing one of a `:`-separated list), its current context;
 * 2. else `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` set and a service-account token present →
 *    in-cluster (token + CA from the service-account directory; the token file is re-read, so rotation works);
 * 3. else a KubeConfigError naming the variables to set.
 */
export function loadKubeConfig(options: LoadKubeConfigOptions = {}): KubeConfig {
  return resolveKubeConfig(options).kc;
}

/** {@link loadKubeConfig}, also saying where the configuration came from (for start-up logs). */
export function resolveKubeConfig(options: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  const env = options.env ?? process.env;
  const saDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;

  const kubeconfig = env["KUBECONFIG"];
  if (kubeconfig !== undefined && kubeconfig.trim() !== "") {
    const files = kubeconfig.split(delimiter).filter((f) => f !== "");
    const file = files.find((f) => existsSync(f));
    if (!file) throw new KubeConfigError(`KUBECONFIG=${kubeconfig}: no such file; set KUBECONFIG to the path of a kubeconfig file`);
    const kc = new KubeConfig();
    try {
      kc.loadFromFile(file);
    } catch (error) {
      throw new KubeConfigError(`KUBECONFIG=${file}: cannot be read as a kubeconfig: ${error instanceof Error ? error.message : String(error)}`);
    }
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new KubeConfigError(`KUBECONFIG=${file}: the current context ${JSON.stringify(kc.getCurrentContext())} names no cluster; fix current-context in that file`);
    const context = kc.getContextObject(kc.getCurrentContext());
    return { kc, source: "kubeconfig", from: file, ...(context?.namespace ? { namespace: context.namespace } : {}) };
  }

  const host = env["KUBERNETES_SERVICE_HOST"];
  const port = env["KUBERNETES_SERVICE_PORT"];
  if (host && port) {
    const tokenFile = join(saDir, "token");
    const caFile = join(saDir, "ca.crt");
    if (!existsSync(tokenFile)) {
      throw new KubeConfigError(`in-cluster configuration: KUBERNETES_SERVICE_HOST is set but ${tokenFile} does not exist (is a service-account token mounted?); or set KUBECONFIG`);
    }
    if (!existsSync(caFile)) {
      throw new KubeConfigError(`in-cluster configuration: ${caFile} does not exist; or set KUBECONFIG`);
    }
    const kc = new KubeConfig();
    // loadFromCluster reads KUBERNETES_SERVICE_HOST/PORT from process.env; pass ours explicitly.
    const scheme = port === "80" || port === "8080" || port === "8001" ? "http" : "https";
    const server = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
    kc.loadFromClusterAndUser(
      { name: "inCluster", server, caFile, skipTLSVerify: false },
      { name: "inClusterUser", authProvider: { name: "tokenFile", config: { tokenFile } } },
    );
    const nsFile = join(saDir, "namespace");
    const namespace = existsSync(nsFile) ? readFileSync(nsFile, "utf8").trim() : undefined;
    return { kc, source: "in-cluster", from: saDir, ...(namespace ? { namespace } : {}) };
  }

  throw new KubeConfigError(
    "no Kubernetes configuration: set KUBECONFIG to a kubeconfig file, or run in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set, service-account token mounted)",
  );
}
