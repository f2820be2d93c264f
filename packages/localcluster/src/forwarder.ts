// A TCP forwarder from a listening address inside a network namespace to an address of the host netns.
// It is how pods and node components reach the API server, which listens on host loopback only.
import { connect, type Socket } from "node:net";
import { listenInNetns } from "@ambit/sys";
import { netnsPath } from "./layout.js";

export interface ForwardOptions {
  netns: string;
  listenHost: string;
  listenPort: number;
  targetHost: string;
  targetPort: number;
}

function pipe(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => { a.destroy(); b.destroy(); };
  a.on("error", close).on("close", close);
  b.on("error", close).on("close", close);
}

export async function runForwarder(o: ForwardOptions): Promise<void> {
  const server = await listenInNetns({ netns: netnsPath(o.netns), host: o.listenHost, port: o.listenPort });
  server.on("connection", (client: Socket) => {
    client.setNoDelay(true);
    const upstream = connect({ host: o.targetHost, port: o.targetPort, noDelay: true });
    pipe(client, upstream);
  });
  console.log(`forwarding ${o.netns}/${o.listenHost}:${o.listenPort} -> ${o.targetHost}:${o.targetPort}`);
  // Exit at once: clients (kube-proxy, CoreDNS, pods) reconnect on their own.
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop).on("SIGINT", stop);
}
