// @ambit/sys: the native layer of Ambit (see README.md).
export type { Netns } from "./validate.js";
export { openNetns, closeFd, isNetnsFd } from "./netns.js";
export { closeQuietly } from "./validate.js";
export {
  listenTcp,
  listenInNetns,
  connectTcp,
  getOriginalDst,
  getLocalAddress,
  setMark,
  getMark,
  setTransparent,
  setReusePort,
  fdOf,
  type ListenTcpOptions,
  type ConnectTcpOptions,
  type FdOrSocket,
  type SocketAddress,
} from "./tcp.js";
export {
  SeqpacketSocket,
  SeqpacketServer,
  seqpacketPair,
  type SeqpacketMessage,
  type SeqpacketSocketOptions,
} from "./seqpacket.js";
