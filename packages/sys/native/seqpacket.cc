// AF_UNIX SOCK_SEQPACKET sockets carrying fds (SCM_RIGHTS). All sockets are
// non-blocking; JS waits for readiness through the poller and calls these on its thread.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common.h"

namespace ambit {

namespace {

constexpr size_t kMaxFds = 253;  // SCM_MAX_FD: the kernel's limit of fds in one message

sockaddr_un UnixAddr(Napi::Env env, const char* syscall, const std::string& path, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) ThrowErrno(env, syscall, ENAMETOOLONG, path.c_str());
  memcpy(a.sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

UniqueFd NewSeqpacket(Napi::Env env) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  return UniqueFd(fd);
}

// seqpacketListen(path, backlog) -> fd. A socket file nobody listens on (connect
// refused) is stale and replaced; a live socket or any other file gives EADDRINUSE.
Napi::Value SeqpacketListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgPath(info, 0, "path");
  int backlog = static_cast<int>(ArgInt(info, 1, "backlog", 0, INT32_MAX));
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, "bind", path, &len);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    UniqueFd probe = NewSeqpacket(env);
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno == ECONNREFUSED) {
      unlink(path.c_str());
    }
  }
  UniqueFd fd = NewSeqpacket(env);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) ThrowErrno(env, "bind", errno, path.c_str());
  if (listen(fd.get(), backlog) != 0) ThrowErrno(env, "listen", errno);
  return Napi::Number::New(env, fd.release());
}

// seqpacketAccept(fd) -> new fd, or -1 when no connection is pending.
Napi::Value SeqpacketAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  for (;;) {
    int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) return Napi::Number::New(env, c);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, "accept", errno);
  }
}

// seqpacketConnect(path) -> fd (EAGAIN: the listener's backlog is full; retry later).
Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgPath(info, 0, "path");
  socklen_t len;
  sockaddr_un addr = UnixAddr(env, "connect", path, &len);
  UniqueFd fd = NewSeqpacket(env);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    ThrowErrno(env, "connect", errno, path.c_str());
  }
  return Napi::Number::New(env, fd.release());
}

Napi::Value SeqpacketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    ThrowErrno(env, "socketpair", errno);
  }
  UniqueFd a(sv[0]), b(sv[1]);
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, a.get());
  pair.Set(1u, b.get());
  a.release();
  b.release();
  return pair;
}

// seqpacketSend(fd, data, fds) -> true when sent, false when the socket is full (EAGAIN).
// The kernel installs its own copies of fds in the receiver; the caller's stay open.
Napi::Value SeqpacketSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowType(env, "data must be a Uint8Array");
  }
  auto data = info[1].As<Napi::Uint8Array>();
  if (!info[2].IsArray()) ThrowType(env, "fds must be an array");
  auto arr = info[2].As<Napi::Array>();
  if (arr.Length() > kMaxFds) ThrowType(env, "at most 253 fds per message");
  int fds[kMaxFds];
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= INT32_MAX) || static_cast<int>(d) != d) ThrowType(env, "fds must be non-negative integers");
    fds[i] = static_cast<int>(d);
  }

  iovec iov{data.Data(), data.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (arr.Length() > 0) {
    size_t n = arr.Length() * sizeof(int);
    memset(ctrl, 0, sizeof ctrl);
    msg.msg_control = ctrl;
    msg.msg_controllen = CMSG_SPACE(n);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n);
    memcpy(CMSG_DATA(c), fds, n);
  }
  for (;;) {
    if (sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "sendmsg", errno);
  }
}

// seqpacketRecv(fd, maxSize) -> {data, fds} | undefined (nothing to read) | null (peer hung up).
// Received fds are close-on-exec and owned by the caller. A message longer than maxSize,
// or with more fds than fit, throws EMSGSIZE after closing whatever fds did arrive.
Napi::Value SeqpacketRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto maxSize = static_cast<size_t>(ArgInt(info, 1, "maxSize", 1, 1 << 30));
  std::vector<uint8_t>& buf = GetInstance(env).recvBuf;
  if (buf.size() < maxSize) buf.resize(maxSize);

  iovec iov{buf.data(), maxSize};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  for (;;) {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Undefined();
    ThrowErrno(env, "recvmsg", errno);
  }

  std::vector<UniqueFd> fds;  // owned until handed to JS
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int received;
      memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.emplace_back(received);
    }
  }
  if (msg.msg_flags & MSG_TRUNC) {
    ThrowErrno(env, "recvmsg", EMSGSIZE, ("message longer than " + std::to_string(maxSize) + " bytes").c_str());
  }
  if (msg.msg_flags & MSG_CTRUNC) ThrowErrno(env, "recvmsg", EMSGSIZE, "control data truncated, fds lost");

  if (n == 0 && fds.empty()) {
    // End of stream and an empty message both read as 0 bytes: the hang-up flags tell them apart.
    pollfd p{fd, POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP))) return env.Null();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n)));
  Napi::Array jsFds = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < fds.size(); i++) jsFds.Set(i, fds[i].get());
  out.Set("fds", jsFds);
  for (auto& f : fds) f.release();  // now owned by JS
  return out;
}

// dupFd(fd) -> a close-on-exec duplicate.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = fcntl(ArgFd(info, 0, "fd"), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) ThrowErrno(env, "fcntl", errno);
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitSeqpacket(Napi::Env env, Napi::Object exports) {
  exports.Set("seqpacketListen", Napi::Function::New(env, SeqpacketListen, "seqpacketListen"));
  exports.Set("seqpacketAccept", Napi::Function::New(env, SeqpacketAccept, "seqpacketAccept"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, SeqpacketConnect, "seqpacketConnect"));
  exports.Set("seqpacketPair", Napi::Function::New(env, SeqpacketPair, "seqpacketPair"));
  exports.Set("seqpacketSend", Napi::Function::New(env, SeqpacketSend, "seqpacketSend"));
  exports.Set("seqpacketRecv", Napi::Function::New(env, SeqpacketRecv, "seqpacketRecv"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
}

}  // namespace ambit
