#include "common.h"

#include <errno.h>
#include <string.h>

#include <cmath>

namespace ambit {

namespace {

// errno -> symbolic name, for the errors this addon can meet (others: "UNKNOWN").
const char* ErrnoName(int err) {
  switch (err) {
#define AMBIT_ERRNO(name) \
  case name:              \
    return #name;
    AMBIT_ERRNO(EPERM) AMBIT_ERRNO(ENOENT) AMBIT_ERRNO(ESRCH) AMBIT_ERRNO(EINTR)
    AMBIT_ERRNO(EIO) AMBIT_ERRNO(ENXIO) AMBIT_ERRNO(E2BIG) AMBIT_ERRNO(EBADF)
    AMBIT_ERRNO(EAGAIN) AMBIT_ERRNO(ENOMEM) AMBIT_ERRNO(EACCES) AMBIT_ERRNO(EFAULT)
    AMBIT_ERRNO(EBUSY) AMBIT_ERRNO(EEXIST) AMBIT_ERRNO(ENODEV) AMBIT_ERRNO(ENOTDIR)
    AMBIT_ERRNO(EISDIR) AMBIT_ERRNO(EINVAL) AMBIT_ERRNO(ENFILE) AMBIT_ERRNO(EMFILE)
    AMBIT_ERRNO(ENOTTY) AMBIT_ERRNO(ENOSPC) AMBIT_ERRNO(EROFS) AMBIT_ERRNO(EPIPE)
    AMBIT_ERRNO(ENAMETOOLONG) AMBIT_ERRNO(ENOSYS) AMBIT_ERRNO(ELOOP) AMBIT_ERRNO(ENOTSOCK)
    AMBIT_ERRNO(EDESTADDRREQ) AMBIT_ERRNO(EMSGSIZE) AMBIT_ERRNO(EPROTOTYPE)
    AMBIT_ERRNO(ENOPROTOOPT) AMBIT_ERRNO(EPROTONOSUPPORT) AMBIT_ERRNO(EOPNOTSUPP)
    AMBIT_ERRNO(EAFNOSUPPORT) AMBIT_ERRNO(EADDRINUSE) AMBIT_ERRNO(EADDRNOTAVAIL)
    AMBIT_ERRNO(ENETDOWN) AMBIT_ERRNO(ENETUNREACH) AMBIT_ERRNO(ECONNABORTED)
    AMBIT_ERRNO(ECONNRESET) AMBIT_ERRNO(ENOBUFS) AMBIT_ERRNO(EISCONN) AMBIT_ERRNO(ENOTCONN)
    AMBIT_ERRNO(ETIMEDOUT) AMBIT_ERRNO(ECONNREFUSED) AMBIT_ERRNO(EHOSTDOWN)
    AMBIT_ERRNO(EHOSTUNREACH) AMBIT_ERRNO(EALREADY) AMBIT_ERRNO(EINPROGRESS)
    AMBIT_ERRNO(ETOOMANYREFS) AMBIT_ERRNO(EPROTO)
#undef AMBIT_ERRNO
    default:
      return "UNKNOWN";
  }
}

// strerror_r is the GNU variant (returns the text) on glibc and the XSI one
// (returns 0 and fills buf) on musl; these overloads accept either.
[[maybe_unused]] const char* StrerrorText(const char* text, const char*) { return text; }
[[maybe_unused]] const char* StrerrorText(int rc, const char* buf) { return rc == 0 ? buf : "Unknown error"; }

}  // namespace

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err, const char* detail) {
  char buf[256];
  const char* text = StrerrorText(strerror_r(err, buf, sizeof buf), buf);
  std::string message = std::string(syscall) + ": " + text;
  if (detail != nullptr) message += std::string(" (") + detail + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, const char* syscall, int err, const char* detail) {
  throw ErrnoError(env, syscall, err, detail);
}

void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

static int64_t CheckInt(Napi::Env env, Napi::Value v, const char* name, int64_t min, int64_t max) {
  if (!v.IsNumber()) ThrowType(env, std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    ThrowType(env, std::string(name) + " must be an integer in [" + std::to_string(min) + ", " +
                       std::to_string(max) + "]");
  }
  return static_cast<int64_t>(d);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<int>(CheckInt(info.Env(), info[i], name, 0, INT32_MAX));
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min, int64_t max) {
  return CheckInt(info.Env(), info[i], name, min, max);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) ThrowType(info.Env(), std::string(name) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

static std::string CheckPath(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsString()) ThrowType(env, std::string(name) + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty() || s.find('\0') != std::string::npos) {
    ThrowType(env, std::string(name) + " must be a non-empty string without NUL bytes");
  }
  return s;
}

std::string ArgPath(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return CheckPath(info.Env(), info[i], name);
}

int64_t OptInt(Napi::Object obj, const char* key, int64_t min, int64_t max, int64_t fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  return CheckInt(obj.Env(), v, key, min, max);
}

bool OptBool(Napi::Object obj, const char* key, bool fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) ThrowType(obj.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string OptString(Napi::Object obj, const char* key) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return "";
  if (!v.IsString()) ThrowType(obj.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Instance& GetInstance(Napi::Env env) { return *env.GetInstanceData<Instance>(); }

}  // namespace ambit
