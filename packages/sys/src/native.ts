// Loads the native addon (build/Release/ambit_sys.node) and types its raw functions.
// Internal: the public modules validate arguments and own the fds these return.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** A socket address as the addon reports it (IPv4-mapped IPv6 is reported as IPv4). */
export interface SocketAddress {
  address: string;
  port: number;
  family: 4 | 6;
}

/** One received SOCK_SEQPACKET message; the fds are owned by the receiver. */
export interface SeqpacketMessage {
  data: Buffer;
  fds: number[];
}

export interface Native {
  openNetns(path: string): number;
  closeFd(fd: number): void;
  isNetnsFd(fd: number): boolean;

  tcpListen(opts: object): number;
  tcpConnect(opts: object): { fd: number; pending: boolean };
  tcpConnectResult(fd: number): boolean;
  getOriginalDst(fd: number): SocketAddress;
  getLocalAddress(fd: number): SocketAddress;
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
  setTransparent(fd: number, on: boolean): void;
  setReusePort(fd: number, on: boolean): void;

  seqpacketListen(path: string, backlog: number): number;
  seqpacketAccept(fd: number): number;
  seqpacketConnect(path: string): number;
  seqpacketPair(): [number, number];
  seqpacketSend(fd: number, data: Uint8Array, fds: readonly number[]): boolean;
  seqpacketRecv(fd: number, maxSize: number): SeqpacketMessage | null | undefined;
  dupFd(fd: number): number;

  pollStart(dispatch: (batch: number[]) => void): void;
  pollAdd(id: number, fd: number, events: number): void;
  pollArm(id: number, fd: number, events: number): void;
  pollDel(fd: number): void;
  pollRef(on: boolean): void;
  pollEvents: { IN: number; OUT: number; ERR: number; HUP: number; RDHUP: number };
}

function load(): Native {
  // src/ and dist/ are both one level below the package root.
  const file = fileURLToPath(new URL("../build/Release/ambit_sys.node", import.meta.url));
  try {
    return createRequire(import.meta.url)(file) as Native;
  } catch (err) {
    throw new Error(
      `@ambit/sys: cannot load the native addon ${file}: ${(err as Error).message}. ` +
        `Build it with "npm run build -w @ambit/sys" (or "node scripts/build-addon.mjs" in packages/sys).`,
      { cause: err },
    );
  }
}

export const native: Native = load();
