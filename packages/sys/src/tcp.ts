// TCP inside network namespaces, netfilter's original destination, socket marks.
import net from "node:net";

import { native, type SocketAddress } from "./native.js";
import { EV, FdWatch } from "./poller.js";
import {
  checkBool,
  checkFd,
  checkInt,
  checkIp,
  checkNetns,
  checkOptionalBool,
  checkOptionalInt,
  checkOptions,
  closeQuietly,
  invalidArg,
  systemError,
  type Netns,
} from "./validate.js";

export type { SocketAddress };

/** Options of a listening socket. */
export interface ListenTcpOptions {
  /** Namespace to create the socket in (path or fd); default: the caller's own. */
  netns?: Netns;
  /** Numeric address to bind, e.g. "127.0.0.1", "0.0.0.0", "::". */
  host: string;
  /** Port; 0 picks a free one (see {@link getLocalAddress}). */
  port: number;
  /** listen() backlog; default 511 like Node. */
  backlog?: number;
  /** SO_MARK (needs CAP_NET_ADMIN). */
  mark?: number;
  /** SO_REUSEPORT. */
  reusePort?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: accept connections for non-local addresses (CAP_NET_ADMIN or CAP_NET_RAW). */
  transparent?: boolean;
  /** IP_FREEBIND / IPV6_FREEBIND: bind an address not (yet) configured. */
  freebind?: boolean;
  /** IPV6_V6ONLY for IPv6 hosts; default: the kernel's (dual-stack). */
  ipv6Only?: boolean;
}

/** Options of an outgoing connection. */
export interface ConnectTcpOptions {
  /** Namespace to create the socket in (path or fd); default: the caller's own. */
  netns?: Netns;
  /** Numeric destination address. */
  host: string;
  port: number;
  /** SO_MARK, set before connect() so that netfilter already sees it on the SYN (CAP_NET_ADMIN). */
  mark?: number;
  /** Source address to bind (same family as host). */
  localAddress?: string;
  /** Source port to bind. */
  localPort?: number;
  /** IP_TRANSPARENT: allows a non-local localAddress, e.g. the original client's (CAP_NET_ADMIN or CAP_NET_RAW). */
  transparent?: boolean;
  /** IP_FREEBIND. */
  freebind?: boolean;
  /** Gives up after this many milliseconds with ETIMEDOUT; default: the kernel's SYN retries. */
  timeout?: number;
  /** Aborts the connect with an AbortError. */
  signal?: AbortSignal;
  /** Passed to net.Socket. */
  allowHalfOpen?: boolean;
}

/** Something with a socket fd: a raw fd, a net.Socket or a net.Server. */
export type FdOrSocket = number | net.Socket | net.Server;

const MAX_U32 = 0xffffffff;

function listenOptions(value: unknown): ListenTcpOptions {
  const o = checkOptions(value);
  return {
    netns: checkNetns(o.netns),
    host: checkIp(o.host, "host"),
    port: checkInt(o.port, "port", 0, 65535),
    backlog: checkOptionalInt(o.backlog, "backlog", 0, 0x7fffffff),
    mark: checkOptionalInt(o.mark, "mark", 0, MAX_U32),
    reusePort: checkOptionalBool(o.reusePort, "reusePort"),
    transparent: checkOptionalBool(o.transparent, "transparent"),
    freebind: checkOptionalBool(o.freebind, "freebind"),
    ipv6Only: checkOptionalBool(o.ipv6Only, "ipv6Only"),
  };
}

/**
 * Creates a listening TCP socket inside a network namespace: socket() runs with the
 * calling thread switched into `netns` (and always switched back), then the options are
 * set, and the socket is bound and listening. Returns the fd, owned by the caller:
 * pass it to `net.Server.listen({ fd })` (which then owns it) or close it with closeFd.
 * Needs CAP_SYS_ADMIN when `netns` is given.
 */
export function listenTcp(opts: ListenTcpOptions): number {
  return native.tcpListen(listenOptions(opts));
}

/**
 * {@link listenTcp} wrapped in a listening net.Server (a new one, or `opts.server`,
 * e.g. a tls.Server). The server owns the fd and closes it on close(); if listening
 * fails, the fd is closed and the promise rejects.
 */
export function listenInNetns(opts: ListenTcpOptions & { server?: net.Server }): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = checkOptions(opts).server ?? net.createServer();
    if (!(server instanceof net.Server)) throw invalidArg("server must be a net.Server");
    const fd = listenTcp(opts);
    const onError = (err: Error): void => {
      server.off("listening", onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve(server);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    try {
      server.listen({ fd });
    } catch (err) {
      server.off("error", onError);
      server.off("listening", onListening);
      closeQuietly(fd);
      reject(err as Error);
      return;
    }
    // net.Server wraps the fd synchronously inside listen(). Without a handle now it either
    // never took the fd (still ours: close it) or already closed it (then closing fails quietly).
    if ((server as unknown as { _handle: unknown })._handle == null) closeQuietly(fd);
  });
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error("The operation was aborted", { cause: signal.reason }), {
    name: "AbortError",
    code: "ABORT_ERR",
  });
}

/**
 * Connects to host:port from inside a network namespace. The socket is created in
 * `netns`, gets its options (mark, transparent, freebind, local address) before
 * connect(), and connects without blocking: the addon's poller waits for writability.
 * Resolves with an ordinary connected net.Socket (which owns the fd). On failure the
 * fd is closed and the promise rejects with a system error: code ECONNREFUSED,
 * ENETUNREACH, EHOSTUNREACH, ETIMEDOUT (also for `timeout`), ... and syscall 'connect';
 * bad options reject with a TypeError.
 */
export function connectTcp(opts: ConnectTcpOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const o = checkOptions(opts);
    const timeout = checkOptionalInt(o.timeout, "timeout", 1, 0x7fffffff);
    const allowHalfOpen = checkOptionalBool(o.allowHalfOpen, "allowHalfOpen") ?? false;
    const signal = o.signal as AbortSignal | undefined;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArg("signal must be an AbortSignal");
    const nativeOpts = {
      netns: checkNetns(o.netns),
      host: checkIp(o.host, "host"),
      port: checkInt(o.port, "port", 1, 65535),
      mark: checkOptionalInt(o.mark, "mark", 0, MAX_U32),
      localAddress: o.localAddress === undefined ? undefined : checkIp(o.localAddress, "localAddress"),
      localPort: checkOptionalInt(o.localPort, "localPort", 0, 65535),
      transparent: checkOptionalBool(o.transparent, "transparent"),
      freebind: checkOptionalBool(o.freebind, "freebind"),
    };
    if (signal?.aborted) throw abortError(signal);

    const { fd, pending } = native.tcpConnect(nativeOpts);
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const watch = new FdWatch(fd, () => {
      try {
        if (native.tcpConnectResult(fd)) finish();
        else watch.arm(EV.OUT); // spurious wake-up: still connecting
      } catch (err) {
        finish(err as Error);
      }
    });
    const onAbort = (): void => finish(abortError(signal!));

    function finish(err?: Error): void {
      if (done) return;
      done = true;
      watch.close();
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (err) {
        closeQuietly(fd);
        reject(err);
        return;
      }
      try {
        resolve(new net.Socket({ fd, readable: true, writable: true, allowHalfOpen }));
      } catch (e) {
        closeQuietly(fd); // net.Socket did not take it
        reject(e as Error);
      }
    }

    if (!pending) {
      finish();
      return;
    }
    try {
      watch.arm(EV.OUT);
    } catch (err) {
      finish(err as Error);
      return;
    }
    if (timeout !== undefined) {
      timer = setTimeout(() => finish(systemError("ETIMEDOUT", "connect", "Connection timed out")), timeout);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The fd behind a raw fd, net.Socket (`socket._handle.fd`) or net.Server. */
export function fdOf(target: FdOrSocket): number {
  if (typeof target === "number") return checkFd(target);
  if (target instanceof net.Socket || target instanceof net.Server) {
    const fd = (target as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
    if (typeof fd === "number" && fd >= 0) return fd;
    throw invalidArg("the socket has no open fd (not connected yet, or destroyed)");
  }
  throw invalidArg("expected an fd, a net.Socket or a net.Server");
}

/**
 * The destination a connection had before an iptables REDIRECT/DNAT (conntrack's
 * original tuple): SO_ORIGINAL_DST for IPv4 (also IPv4 on a dual-stack IPv6 socket,
 * reported as family 4), IP6T_SO_ORIGINAL_DST for IPv6. ENOENT when the connection
 * has no conntrack entry (e.g. conntrack not in use in that namespace).
 */
export function getOriginalDst(target: FdOrSocket): SocketAddress {
  return native.getOriginalDst(fdOf(target));
}

/** getsockname(): e.g. the port a `port: 0` listener got. */
export function getLocalAddress(target: FdOrSocket): SocketAddress {
  return native.getLocalAddress(fdOf(target));
}

/** Sets SO_MARK (CAP_NET_ADMIN); affects packets sent from now on. */
export function setMark(target: FdOrSocket, mark: number): void {
  native.setMark(fdOf(target), checkInt(mark, "mark", 0, MAX_U32));
}

/** Reads SO_MARK. */
export function getMark(target: FdOrSocket): number {
  return native.getMark(fdOf(target));
}

/** Sets IP_TRANSPARENT (or IPV6_TRANSPARENT on an IPv6 socket); CAP_NET_ADMIN or CAP_NET_RAW. */
export function setTransparent(target: FdOrSocket, on: boolean): void {
  native.setTransparent(fdOf(target), checkBool(on, "on"));
}

/** Sets SO_REUSEPORT (effective only before bind). */
export function setReusePort(target: FdOrSocket, on: boolean): void {
  native.setReusePort(fdOf(target), checkBool(on, "on"));
}
