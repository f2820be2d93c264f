// Network namespaces: open/close/identify namespace fds, and create sockets
// inside a namespace by switching only the calling thread, only around socket().
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

#include "common.h"

// From <linux/nsfs.h> and <linux/magic.h>, defined here so that no kernel headers are needed.
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace ambit {

namespace {

int origNetnsError = 0;  // errno of opening the original namespace, if that failed

// Switches the calling thread into a network namespace for the scope's lifetime.
// The destructor always switches back to the namespace the thread had at load time;
// if even that fails the process aborts: continuing with the JS thread in a foreign
// namespace would silently put every later socket of the process there.
class NetnsScope {
 public:
  NetnsScope(Napi::Env env, int nsfd) {
    if (nsfd < 0) return;
    int orig = GetInstance(env).origNetns.get();
    if (orig < 0) ThrowErrno(env, "open", origNetnsError, "/proc/thread-self/ns/net");
    if (setns(nsfd, CLONE_NEWNET) != 0) ThrowErrno(env, "setns", errno);
    restore_ = orig;
  }
  ~NetnsScope() {
    if (restore_ < 0) return;
    int saved = errno;  // keep the errno of the call made inside the scope
    if (setns(restore_, CLONE_NEWNET) != 0) {
      fprintf(stderr, "ambit_sys: cannot return to the original network namespace: %s; aborting\n",
              strerror(errno));
      abort();
    }
    errno = saved;
  }
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int restore_ = -1;
};

UniqueFd OpenNs(Napi::Env env, const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "open", errno, path.c_str());
  return UniqueFd(fd);
}

// True when fd is a network namespace; throws for a bad fd.
bool IsNetns(Napi::Env env, int fd) {
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type >= 0) return type == CLONE_NEWNET;
  if (errno == EBADF) ThrowErrno(env, "ioctl", EBADF);
  // Not an nsfs file, or a kernel before 4.11 without NS_GET_NSTYPE: then any nsfs file passes.
  struct statfs st;
  if (fstatfs(fd, &st) != 0) ThrowErrno(env, "fstatfs", errno);
  return st.f_type == NSFS_MAGIC;
}

Napi::Value OpenNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgPath(info, 0, "path");
  UniqueFd fd = OpenNs(env, path);
  if (!IsNetns(env, fd.get())) ThrowErrno(env, "open", EINVAL, ("not a network namespace: " + path).c_str());
  return Napi::Number::New(env, fd.release());
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  if (IsInternalFd(env, fd)) ThrowType(env, "fd belongs to @ambit/sys itself");
  // On Linux the fd is released even when close() reports EINTR/EIO; only EBADF means "was not open".
  if (close(fd) != 0 && errno == EBADF) ThrowErrno(env, "close", EBADF);
  return env.Undefined();
}

Napi::Value IsNetnsFd(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), IsNetns(info.Env(), ArgFd(info, 0, "fd")));
}

}  // namespace

UniqueFd SocketInNetns(Napi::Env env, Napi::Value netns, int domain, int type) {
  UniqueFd opened;
  int nsfd = -1;
  if (netns.IsString()) {
    std::string path = netns.As<Napi::String>().Utf8Value();
    if (path.empty() || path.find('\0') != std::string::npos) ThrowType(env, "netns must be a non-empty path");
    opened = OpenNs(env, path);
    nsfd = opened.get();
  } else if (netns.IsNumber()) {
    double d = netns.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= INT32_MAX) || static_cast<int>(d) != d) ThrowType(env, "netns fd must be a non-negative integer");
    nsfd = static_cast<int>(d);
  } else if (!netns.IsUndefined() && !netns.IsNull()) {
    ThrowType(env, "netns must be a path (string) or an fd (number)");
  }
  int fd, err;
  {
    NetnsScope scope(env, nsfd);
    fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    err = errno;
  }
  if (fd < 0) ThrowErrno(env, "socket", err);
  return UniqueFd(fd);
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  // The JS thread's own namespace, to return to after every switch. Opened per
  // environment (a worker thread has its own) on the thread that loads the addon.
  Instance& inst = GetInstance(env);
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {  // kernels before 3.17 have no thread-self
    std::string path = "/proc/self/task/" + std::to_string(syscall(SYS_gettid)) + "/ns/net";
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) origNetnsError = errno;
  inst.origNetns.reset(fd);

  exports.Set("openNetns", Napi::Function::New(env, OpenNetns, "openNetns"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("isNetnsFd", Napi::Function::New(env, IsNetnsFd, "isNetnsFd"));
}

}  // namespace ambit
