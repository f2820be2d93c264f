// The local cluster's own CNI plugin ("ambit-local-bridge"): the first step of each node's chain. It speaks
// the CNI contract (CNI_COMMAND ADD/DEL/CHECK/VERSION, config on stdin, result on stdout, errors as CNI error
// JSON with a non-zero exit) and wires the pod's netns to its node with a routed /32 veth.
import { readFileSync } from "node:fs";
import { attachPod, detachPod } from "../network.js";
import { nodeIndex } from "../layout.js";
import { CNI_VERSION } from "./chain.js";
import { allocate, release } from "./ipam.js";

const SUPPORTED = ["0.4.0", "1.0.0", "1.1.0"];

interface BridgeConfig {
  cniVersion: string;
  name: string;
  type: string;
  /** The node this plugin runs for (node-<i>). */
  node: string;
  ipam: { subnet: string; dataDir: string };
}

function fail(code: number, msg: string, details = ""): never {
  process.stdout.write(JSON.stringify({ cniVersion: CNI_VERSION, code, msg, details }));
  process.exit(1);
}

function need(name: string): string {
  const v = process.env[name];
  if (!v) fail(4, `missing environment variable ${name}`);
  return v;
}

export async function main(): Promise<void> {
  const command = process.env["CNI_COMMAND"];
  if (command === "VERSION") {
    process.stdout.write(JSON.stringify({ cniVersion: CNI_VERSION, supportedVersions: SUPPORTED }));
    return;
  }
  let conf: BridgeConfig;
  try {
    conf = JSON.parse(readFileSync(0, "utf8")) as BridgeConfig;
  } catch (err) {
    fail(6, "cannot decode the network configuration on stdin", (err as Error).message);
  }
  if (!conf.ipam?.subnet || !conf.ipam?.dataDir || !conf.node) fail(7, "configuration needs node, ipam.subnet and ipam.dataDir");
  const containerId = need("CNI_CONTAINERID");
  const ifName = need("CNI_IFNAME");
  const node = nodeIndex(conf.node);
  switch (command) {
    case "ADD": {
      const netnsPath = need("CNI_NETNS");
      const netns = netnsPath.split("/").pop()!;
      const ip = allocate(conf.ipam.dataDir, conf.ipam.subnet, containerId);
      try {
        const wired = await attachPod(node, netns, ip, ifName);
        process.stdout.write(JSON.stringify({
          cniVersion: conf.cniVersion,
          interfaces: [{ name: wired.hostIf }, { name: ifName, sandbox: netnsPath }],
          ips: [{ address: `${ip}/32`, gateway: wired.gateway, interface: 1 }],
          routes: [{ dst: "0.0.0.0/0", gw: wired.gateway }],
          dns: {},
        }));
      } catch (err) {
        release(conf.ipam.dataDir, containerId);
        fail(11, `cannot wire ${netns} to ${conf.node}`, (err as Error).message);
      }
      return;
    }
    case "DEL":
      // Must succeed when things are already gone (CNI spec): both steps are idempotent.
      await detachPod(node, (process.env["CNI_NETNS"] ?? `ambit-pod-${containerId}`).split("/").pop()!);
      release(conf.ipam.dataDir, containerId);
      return;
    case "CHECK":
      return;
    default:
      fail(4, `unknown CNI_COMMAND "${command ?? ""}"`);
  }
}

main().catch((err: Error) => fail(999, err.message));
