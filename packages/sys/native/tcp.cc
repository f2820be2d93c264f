// TCP sockets: listeners and non-blocking connects inside a network namespace,
// socket options (SO_MARK, IP_TRANSPARENT, ...) and SO_ORIGINAL_DST.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"

// Netfilter's getsockopt numbers (<linux/netfilter_ipv4.h>, <linux/netfilter_ipv6/ip6_tables.h>).
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

namespace ambit {

namespace {

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&ss); }
};

// Parses a numeric IPv4/IPv6 address (no names, no scope ids).
Addr ParseAddr(Napi::Env env, const std::string& host, int port, const char* name) {
  Addr a;
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in6);
  } else {
    ThrowType(env, std::string(name) + " must be a numeric IPv4 or IPv6 address, got '" + host + "'");
  }
  a.family = a.ss.ss_family;
  return a;
}

// {address, port, family} of a socket address; IPv4-mapped IPv6 becomes plain IPv4.
Napi::Object AddrToJs(Napi::Env env, const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = "";
  int port = 0, family = 0;
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
    family = 4;
  } else if (ss.ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], text, sizeof text);
      family = 4;
    } else {
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
      family = 6;
    }
    port = ntohs(sin6->sin6_port);
  } else {
    ThrowErrno(env, "getsockname", EAFNOSUPPORT);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", text);
  o.Set("port", port);
  o.Set("family", family);
  return o;
}

void SetInt(Napi::Env env, int fd, int level, int opt, int value) {
  if (setsockopt(fd, level, opt, &value, sizeof value) != 0) ThrowErrno(env, "setsockopt", errno);
}

sockaddr_storage LocalAddr(Napi::Env env, int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) ThrowErrno(env, "getsockname", errno);
  return ss;
}

void SetTransparentOn(Napi::Env env, int fd, int family, bool on) {
  if (family == AF_INET6) {
    SetInt(env, fd, SOL_IPV6, IPV6_TRANSPARENT, on);
  } else {
    SetInt(env, fd, SOL_IP, IP_TRANSPARENT, on);
  }
}

// Options shared by listeners and connecting sockets, applied before bind/connect.
void ApplyOptions(Napi::Env env, int fd, int family, Napi::Object o) {
  int64_t mark = OptInt(o, "mark", 0, UINT32_MAX, -1);
  if (mark >= 0) SetInt(env, fd, SOL_SOCKET, SO_MARK, static_cast<int>(static_cast<uint32_t>(mark)));
  if (OptBool(o, "transparent", false)) SetTransparentOn(env, fd, family, true);
  if (OptBool(o, "freebind", false)) {
    if (family == AF_INET6) {
      SetInt(env, fd, SOL_IPV6, IPV6_FREEBIND, 1);
    } else {
      SetInt(env, fd, SOL_IP, IP_FREEBIND, 1);
    }
  }
  if (OptBool(o, "reusePort", false)) SetInt(env, fd, SOL_SOCKET, SO_REUSEPORT, 1);
  Napi::Value v6only = o.Get("ipv6Only");
  if (!v6only.IsUndefined() && family == AF_INET6) {
    SetInt(env, fd, IPPROTO_IPV6, IPV6_V6ONLY, OptBool(o, "ipv6Only", false));
  }
}

std::string HostPort(const std::string& host, int64_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Napi::Object ArgOptions(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) ThrowType(info.Env(), "options must be an object");
  return info[0].As<Napi::Object>();
}

// tcpListen({netns?, host, port, backlog?, mark?, reusePort?, transparent?, freebind?, ipv6Only?}) -> fd
Napi::Value TcpListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgOptions(info);
  std::string host = OptString(o, "host");
  int64_t port = OptInt(o, "port", 0, 65535, -1);
  if (port < 0) ThrowType(env, "port is required");
  int backlog = static_cast<int>(OptInt(o, "backlog", 0, INT32_MAX, 511));
  Addr addr = ParseAddr(env, host, static_cast<int>(port), "host");

  UniqueFd fd = SocketInNetns(env, o.Get("netns"), addr.family, SOCK_STREAM);
  SetInt(env, fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);  // as libuv does for listeners
  ApplyOptions(env, fd.get(), addr.family, o);
  if (bind(fd.get(), addr.sa(), addr.len) != 0) ThrowErrno(env, "bind", errno, HostPort(host, port).c_str());
  if (listen(fd.get(), backlog) != 0) ThrowErrno(env, "listen", errno);
  return Napi::Number::New(env, fd.release());
}

// tcpConnect({netns?, host, port, mark?, localAddress?, localPort?, transparent?, freebind?})
//   -> {fd, pending}; pending: the connect is in progress (wait for writability, then tcpConnectResult).
Napi::Value TcpConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgOptions(info);
  std::string host = OptString(o, "host");
  int64_t port = OptInt(o, "port", 1, 65535, -1);
  if (port < 0) ThrowType(env, "port is required");
  Addr dst = ParseAddr(env, host, static_cast<int>(port), "host");
  std::string localHost = OptString(o, "localAddress");
  int64_t localPort = OptInt(o, "localPort", 0, 65535, 0);
  bool bindLocal = !localHost.empty() || localPort != 0;
  Addr local;
  if (bindLocal) {
    if (localHost.empty()) localHost = dst.family == AF_INET6 ? "::" : "0.0.0.0";
    local = ParseAddr(env, localHost, static_cast<int>(localPort), "localAddress");
    if (local.family != dst.family) ThrowType(env, "localAddress and host must be of the same address family");
  }

  UniqueFd fd = SocketInNetns(env, o.Get("netns"), dst.family, SOCK_STREAM);
  ApplyOptions(env, fd.get(), dst.family, o);  // before connect: the SYN already carries the mark
  if (bindLocal && bind(fd.get(), local.sa(), local.len) != 0) {
    ThrowErrno(env, "bind", errno, HostPort(localHost, localPort).c_str());
  }
  bool pending = false;
  if (connect(fd.get(), dst.sa(), dst.len) != 0) {
    if (errno != EINPROGRESS) ThrowErrno(env, "connect", errno, HostPort(host, port).c_str());
    pending = true;
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pending", pending);
  result.Set("fd", fd.release());
  return result;
}

// tcpConnectResult(fd) -> true once connected, false while in progress; throws the connect error.
Napi::Value TcpConnectResult(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) ThrowErrno(env, "getsockopt", errno);
  if (soerr != 0) ThrowErrno(env, "connect", soerr);
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) return Napi::Boolean::New(env, true);
  if (errno == ENOTCONN) return Napi::Boolean::New(env, false);
  ThrowErrno(env, "getpeername", errno);
}

// getOriginalDst(fd) -> {address, port, family}: the destination before a netfilter REDIRECT/DNAT.
Napi::Value GetOriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  sockaddr_storage local = LocalAddr(env, fd);
  sockaddr_storage orig{};
  socklen_t len;
  int rc;
  auto* local6 = reinterpret_cast<sockaddr_in6*>(&local);
  if (local.ss_family == AF_INET ||
      (local.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&local6->sin6_addr))) {
    // IPv4 connection (also on a dual-stack IPv6 socket): the IPv4 conntrack entry answers.
    len = sizeof(sockaddr_in);
    rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &len);
  } else if (local.ss_family == AF_INET6) {
    len = sizeof(sockaddr_in6);
    rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig, &len);
  } else {
    ThrowErrno(env, "getsockopt", EAFNOSUPPORT, "not an IPv4/IPv6 socket");
  }
  if (rc != 0) ThrowErrno(env, "getsockopt", errno, "SO_ORIGINAL_DST");
  return AddrToJs(env, orig);
}

Napi::Value GetLocalAddress(const Napi::CallbackInfo& info) {
  return AddrToJs(info.Env(), LocalAddr(info.Env(), ArgFd(info, 0, "fd")));
}

Napi::Value SetMark(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  auto mark = static_cast<uint32_t>(ArgInt(info, 1, "mark", 0, UINT32_MAX));
  SetInt(info.Env(), fd, SOL_SOCKET, SO_MARK, static_cast<int>(mark));
  return info.Env().Undefined();
}

Napi::Value GetMark(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  uint32_t mark = 0;
  socklen_t len = sizeof mark;
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) != 0) ThrowErrno(info.Env(), "getsockopt", errno);
  return Napi::Number::New(info.Env(), mark);
}

Napi::Value SetTransparent(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  bool on = ArgBool(info, 1, "on");
  SetTransparentOn(info.Env(), fd, LocalAddr(info.Env(), fd).ss_family, on);
  return info.Env().Undefined();
}

Napi::Value SetReusePort(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  bool on = ArgBool(info, 1, "on");
  SetInt(info.Env(), fd, SOL_SOCKET, SO_REUSEPORT, on);
  return info.Env().Undefined();
}

}  // namespace

void InitTcp(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpListen", Napi::Function::New(env, TcpListen, "tcpListen"));
  exports.Set("tcpConnect", Napi::Function::New(env, TcpConnect, "tcpConnect"));
  exports.Set("tcpConnectResult", Napi::Function::New(env, TcpConnectResult, "tcpConnectResult"));
  exports.Set("getOriginalDst", Napi::Function::New(env, GetOriginalDst, "getOriginalDst"));
  exports.Set("getLocalAddress", Napi::Function::New(env, GetLocalAddress, "getLocalAddress"));
  exports.Set("setMark", Napi::Function::New(env, SetMark, "setMark"));
  exports.Set("getMark", Napi::Function::New(env, GetMark, "getMark"));
  exports.Set("setTransparent", Napi::Function::New(env, SetTransparent, "setTransparent"));
  exports.Set("setReusePort", Napi::Function::New(env, SetReusePort, "setReusePort"));
}

}  // namespace ambit
