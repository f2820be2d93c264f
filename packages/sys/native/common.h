// Shared helpers of the ambit_sys addon: owned fds, errno -> JS errors,
// argument checks and the per-environment state.
//
// Built with C++ exceptions (NAPI_CPP_EXCEPTIONS): a thrown Napi::Error becomes
// a JS exception, and RAII (UniqueFd, NetnsScope) releases resources on every path.
#pragma once

#include <napi.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ambit {

// A file descriptor with one owner; closed on destruction unless released.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  int get() const noexcept { return fd_; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);  // close(2) must not be retried on Linux
    fd_ = fd;
  }

 private:
  int fd_;
};

// A JS Error for a failed syscall, shaped like Node's own system errors:
// message "<syscall>: <strerror>", code 'EPERM', errno -1 (negative, as in Node), syscall.
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err, const char* detail = nullptr);
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err, const char* detail = nullptr);
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);

// Argument checks; each throws a TypeError naming the argument.
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min, int64_t max);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgPath(const Napi::CallbackInfo& info, size_t i, const char* name);

// Optional properties of an options object (undefined -> fallback).
int64_t OptInt(Napi::Object obj, const char* key, int64_t min, int64_t max, int64_t fallback);
bool OptBool(Napi::Object obj, const char* key, bool fallback);
std::string OptString(Napi::Object obj, const char* key);  // "" when undefined

struct PollerState;

// State of one Node environment (main thread or worker) using the addon.
struct Instance {
  // The network namespace of the JS thread, opened once at load: setns() returns to it.
  UniqueFd origNetns;
  // The epoll thread (poller.cc), started on first use.
  std::shared_ptr<PollerState> poller;
  // Receive buffer for recvmsg (seqpacket.cc), grown on demand.
  std::vector<uint8_t> recvBuf;
  ~Instance();
};
Instance& GetInstance(Napi::Env env);
// True for the fds the addon keeps for itself (closeFd refuses them).
bool IsInternalFd(Napi::Env env, int fd);

// Module parts; each adds its functions to exports.
void InitNetns(Napi::Env env, Napi::Object exports);
void InitTcp(Napi::Env env, Napi::Object exports);
void InitSeqpacket(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);

// Runs a socket() call inside the network namespace given by a JS value
// (undefined/null: current namespace; string: path; number: fd) and returns the new fd.
UniqueFd SocketInNetns(Napi::Env env, Napi::Value netns, int domain, int type);

}  // namespace ambit
