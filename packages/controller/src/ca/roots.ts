// The CA's root of trust: a plug-in CA from the Secret "cacerts" (ca-cert.pem, ca-key.pem, cert-chain.pem,
// root-cert.pem) when it is there and complete, else a self-signed root kept in the Secret "istio-ca-secret"
// (created race-free: the first replica to create it wins, the others read it). "cacerts" is read once at start
// (an error there stops the program), then watched: a swapped bundle re-roots new certificates without a restart, a
// removed one brings back the self-signed root, and a broken one is reported and the current CA kept.
import { EventEmitter } from "node:events";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { informerCollection, sources, type InformerCollection, type Secret } from "@ambit/kube";
import { CertificateAuthority, loadPluggedCa } from "@ambit/pki";
import type { Logger } from "pino";

export const PLUGGED_SECRET = "cacerts";
export const SELF_SIGNED_SECRET = "istio-ca-secret";
const PLUGGED_FILES = ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"] as const;

/** What is read of a Secret, from a GET (client-node's V1Secret) or from the watch. */
interface SecretData {
  metadata?: { resourceVersion?: string | undefined } | undefined;
  data?: Record<string, string> | undefined;
}

const code = (err: unknown) => (err as { code?: number }).code;
const decode = (s: SecretData, key: string) => (s.data?.[key] ? Buffer.from(s.data[key], "base64").toString() : undefined);

export class RootOfTrust extends EventEmitter<{ change: [] }> {
  ca!: CertificateAuthority;
  source: "self-signed" | "plugged" = "self-signed";
  private readonly core: CoreV1Api;
  private pluggedVersion = "";
  private watch: InformerCollection<Secret> | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Changes are handled one at a time, in order. */
  private handling = Promise.resolve();

  constructor(private readonly kc: KubeConfig, private readonly namespace: string, private readonly trustDomain: string, private readonly log: Logger) {
    super();
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async start(): Promise<void> {
    const plugged = await this.read(PLUGGED_SECRET);
    if (!(plugged && (await this.usePlugged(plugged)))) await this.useSelfSigned();
    this.watch = informerCollection(this.kc, {
      ...sources.secrets(this.kc, { namespace: this.namespace }),
      fieldSelector: `metadata.name=${PLUGGED_SECRET}`,
      name: `${this.namespace}/${PLUGGED_SECRET}`,
      onError: (err) => this.log.warn({ err: (err as Error).message }, `watching Secret ${this.namespace}/${PLUGGED_SECRET}: retrying`),
    });
    this.unsubscribe = this.watch.subscribe(() => {
      this.handling = this.handling.then(() => this.reconsider());
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.watch?.stop();
    await this.handling;
  }

  private async read(name: string): Promise<SecretData | null> {
    try {
      return await this.core.readNamespacedSecret({ name, namespace: this.namespace });
    } catch (err) {
      if (code(err) === 404) return null;
      throw err;
    }
  }

  private async usePlugged(secret: SecretData): Promise<boolean> {
    this.pluggedVersion = secret.metadata?.resourceVersion ?? "";
    const files = Object.fromEntries(PLUGGED_FILES.map((f) => [f, decode(secret, f)]));
    const missing = PLUGGED_FILES.filter((f) => !files[f]);
    if (missing.length) {
      this.log.warn({ missing }, `Secret ${this.namespace}/${PLUGGED_SECRET} is incomplete: not used`);
      return false;
    }
    try {
      this.ca = await loadPluggedCa(files as Record<(typeof PLUGGED_FILES)[number], string>);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, `Secret ${this.namespace}/${PLUGGED_SECRET} is not a usable CA: keeping the current one`);
      return false;
    }
    this.source = "plugged";
    this.log.info(`signing with the plug-in CA from ${this.namespace}/${PLUGGED_SECRET}`);
    return true;
  }

  private async useSelfSigned(): Promise<void> {
    let secret = await this.read(SELF_SIGNED_SECRET);
    if (!secret) {
      const root = await CertificateAuthority.selfSignedRoot({ trustDomain: this.trustDomain });
      try {
        secret = await this.core.createNamespacedSecret({ namespace: this.namespace, body: {
          metadata: { name: SELF_SIGNED_SECRET, namespace: this.namespace },
          type: "istio.io/ca-root",
          data: { "ca-cert.pem": Buffer.from(root.caCertPem()).toString("base64"), "ca-key.pem": Buffer.from(await root.caKeyPem()).toString("base64") },
        } });
        this.log.info(`created a self-signed root in ${this.namespace}/${SELF_SIGNED_SECRET}`);
      } catch (err) {
        if (code(err) !== 409) throw err;
        secret = await this.read(SELF_SIGNED_SECRET); // another replica was first: use its root
      }
    }
    const cert = decode(secret!, "ca-cert.pem");
    const key = decode(secret!, "ca-key.pem");
    if (!cert || !key) throw new Error(`Secret ${this.namespace}/${SELF_SIGNED_SECRET} lacks ca-cert.pem or ca-key.pem`);
    this.ca = new CertificateAuthority({ caCert: cert, caKey: key, chain: [], roots: [cert] });
    this.source = "self-signed";
  }

  /** The watched "cacerts" changed (or was listed again): switch CAs if its content is new. */
  private async reconsider(): Promise<void> {
    try {
      const plugged = this.watch?.get(`${this.namespace}/${PLUGGED_SECRET}`);
      const version = plugged?.metadata?.resourceVersion ?? "";
      if (version === this.pluggedVersion) return;
      let changed: boolean;
      if (plugged) {
        changed = await this.usePlugged(plugged);
      } else {
        // The plug-in CA was removed: back to the self-signed root.
        this.pluggedVersion = "";
        changed = this.source === "plugged";
        if (changed) await this.useSelfSigned();
      }
      if (changed) this.emit("change");
    } catch (err) {
      this.log.error({ err: (err as Error).message }, `could not apply a change of Secret ${this.namespace}/${PLUGGED_SECRET}`);
    }
  }
}
