// Test helpers: a server on 127.0.0.1 and a bare delta ADS client that shows every response to the test.
import * as grpc from "@grpc/grpc-js";
import type { envoy } from "@ambit/protocol";
import { Registry } from "prom-client";
import { DELTA_ADS_PATH, DeltaXdsServer, deltaAggregatedResources, type DeltaRequestProperties, type DeltaXdsServerOptions } from "../src/index.js";

export const ADDRESS = "type.googleapis.com/istio.workload.Address";
export const AUTHZ = "type.googleapis.com/istio.security.Authorization";
export const NODE_ID = "ztunnel~10.0.0.1~ztunnel-x1.istio-system~istio-system.svc.cluster.local";

export type Response = envoy.service.discovery.v3.DeltaDiscoveryResponse;

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startServer(options: DeltaXdsServerOptions = {}): Promise<{ server: DeltaXdsServer; port: number; registry: Registry }> {
  const registry = options.registry ?? new Registry();
  const server = new DeltaXdsServer({ ready: true, debounceMs: 20, registry, ...options });
  const port = await server.listen({ port: 0, host: "127.0.0.1" });
  return { server, port, registry };
}

/** Polls until `check` returns a truthy value (the bound is generous: it only ends a test that is failing anyway). */
export async function until<T>(check: () => T | undefined | null | false, timeoutMs = 20_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

let markers = 0;

/** A bare client: the test sends requests itself and reads responses one by one. */
export class RawClient {
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<DeltaRequestProperties, Response>;
  readonly responses: Response[] = [];
  private readIndex = 0;
  status: grpc.StatusObject | null = null;
  readonly statusPromise: Promise<grpc.StatusObject>;

  constructor(port: number, metadata: Record<string, string> = {}, channelOptions: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
      "grpc.max_receive_message_length": 200 * 1024 * 1024,
      ...channelOptions,
    });
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    this.call = this.client.makeBidiStreamRequest(
      DELTA_ADS_PATH,
      deltaAggregatedResources.requestSerialize,
      deltaAggregatedResources.responseDeserialize,
      md,
    );
    this.call.on("data", (r: Response) => this.responses.push(r));
    this.call.on("error", () => {});
    this.statusPromise = new Promise((resolve) =>
      this.call.on("status", (s: grpc.StatusObject) => {
        this.status = s;
        resolve(s);
      }),
    );
  }

  send(req: DeltaRequestProperties): void {
    this.call.write(req);
  }

  /** The initial request of a type, with a node. */
  open(typeUrl: string, extra: DeltaRequestProperties = {}, nodeId = NODE_ID): void {
    this.send({ type_url: typeUrl, node: { id: nodeId }, ...extra });
  }

  ack(r: Response, errorMessage?: string): void {
    this.send({ type_url: r.type_url, response_nonce: r.nonce, ...(errorMessage ? { error_detail: { message: errorMessage } } : {}) });
  }

  async next(timeoutMs = 20_000): Promise<Response> {
    await until(() => this.responses.length > this.readIndex || this.status, timeoutMs, "a response");
    const r = this.responses[this.readIndex];
    if (!r) throw new Error(`stream ended: ${this.status?.code} ${this.status?.details}`);
    this.readIndex++;
    return r;
  }

  /** Next response, ACKed. */
  async nextAcked(timeoutMs = 20_000): Promise<Response> {
    const r = await this.next(timeoutMs);
    this.ack(r);
    return r;
  }

  /**
   * Asserts that no response of `typeUrl` is due, without waiting for time: it pushes what the server's debounce
   * holds (`flush()`), then subscribes to a name that does not exist. The server answers that with its removal,
   * after everything this client sent before; a response that was due comes before that answer or in it, so the
   * answer must be the removal alone. The marker is unsubscribed again (which is not answered).
   */
  async nothingDue(server: DeltaXdsServer, typeUrl = ADDRESS): Promise<void> {
    server.flush();
    const marker = `~nothing-due-${++markers}`;
    this.send({ type_url: typeUrl, resource_names_subscribe: [marker] });
    const r = await this.nextAcked();
    if (r.type_url !== typeUrl || r.resources.length !== 0 || removed(r).join() !== marker) {
      throw new Error(`unexpected response: ${JSON.stringify(summary(r))}`);
    }
    this.send({ type_url: typeUrl, resource_names_unsubscribe: [marker] });
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

export function summary(r: Response): { type: string; names: string[]; removed: string[] } {
  return {
    type: r.type_url,
    names: (r.resources ?? []).map((x) => x.name ?? "").sort(),
    removed: [...(r.removed_resources ?? [])].sort(),
  };
}

export const names = (r: Response): string[] => summary(r).names;
export const removed = (r: Response): string[] => summary(r).removed;

