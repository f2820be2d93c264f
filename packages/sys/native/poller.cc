// Readiness notifications for fds that libuv does not manage (seqpacket sockets,
// connecting TCP sockets), without libuv's headers and without the threadpool:
//
//   one epoll thread per Node environment --(ThreadSafeFunction)--> JS dispatcher.
//
// Every registration is EPOLLONESHOT: after one notification the fd is disarmed until
// JS has done its non-blocking I/O and re-arms it (pollArm), so a busy fd cannot flood
// the JS thread and the thread never busy-polls. Registrations carry a JS-chosen id
// (never 0, which marks the wake-up eventfd), so a late notification for a closed
// and reused fd number is recognisable and dropped by JS.
//
// The ThreadSafeFunction is unref'd unless JS holds ref'd registrations (pollRef),
// so an idle process can exit.
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <thread>
#include <utility>

#include "common.h"

namespace ambit {

struct PollerState {
  UniqueFd epfd;
  UniqueFd wakefd;
  std::thread thread;
  Napi::ThreadSafeFunction tsfn;
  bool stopped = false;  // touched on the JS thread only

  // Wakes the epoll thread and waits for it to end. Idempotent.
  void Stop() {
    if (stopped) return;
    stopped = true;
    uint64_t one = 1;
    if (write(wakefd.get(), &one, sizeof one) < 0) {
      // eventfd writes cannot fail short of a full counter; the thread is stopping anyway.
    }
    if (thread.joinable()) thread.join();
  }
  ~PollerState() { Stop(); }
};

namespace {

using Batch = std::vector<std::pair<uint64_t, uint32_t>>;

// Runs on the JS thread: hands [id0, events0, id1, events1, ...] to the dispatcher.
void Deliver(Napi::Env env, Napi::Function dispatch, Batch* raw) {
  std::unique_ptr<Batch> batch(raw);
  if (env == nullptr || dispatch.IsEmpty()) return;  // environment shutting down
  try {
    Napi::Array arr = Napi::Array::New(env, batch->size() * 2);
    uint32_t i = 0;
    for (const auto& [id, events] : *batch) {
      arr.Set(i++, Napi::Number::New(env, static_cast<double>(id)));
      arr.Set(i++, Napi::Number::New(env, events));
    }
    dispatch.Call({arr});
  } catch (const Napi::Error&) {
    // The dispatcher catches its handlers' exceptions, so this is an environment that can no
    // longer run JS (a worker being torn down): there is nobody left to notify.
  }
}

void Run(PollerState* st) {
  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(st->epfd.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    auto* batch = new Batch();
    batch->reserve(n);
    for (int i = 0; i < n; i++) {
      uint64_t id = events[i].data.u64;  // epoll_event is packed: copy, don't bind
      if (id == 0) {  // the wake-up eventfd: stop
        delete batch;
        return;
      }
      batch->emplace_back(id, static_cast<uint32_t>(events[i].events));
    }
    // Fails only when the environment is going away.
    if (st->tsfn.NonBlockingCall(batch, Deliver) != napi_ok) {
      delete batch;
      return;
    }
  }
}

PollerState& Poller(Napi::Env env) {
  auto& p = GetInstance(env).poller;
  if (!p || p->stopped) throw Napi::Error::New(env, "poller not started");
  return *p;
}

// pollStart(dispatch): starts the epoll thread once per environment.
Napi::Value PollStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) ThrowType(env, "dispatch must be a function");
  auto& slot = GetInstance(env).poller;
  if (slot) return env.Undefined();

  auto st = std::make_shared<PollerState>();
  st->epfd.reset(epoll_create1(EPOLL_CLOEXEC));
  if (st->epfd.get() < 0) ThrowErrno(env, "epoll_create1", errno);
  st->wakefd.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (st->wakefd.get() < 0) ThrowErrno(env, "eventfd", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (epoll_ctl(st->epfd.get(), EPOLL_CTL_ADD, st->wakefd.get(), &ev) != 0) ThrowErrno(env, "epoll_ctl", errno);

  // The finalizer runs on the JS thread when Node tears the function down (environment
  // exit); it stops the thread before the function is freed. It co-owns the state with
  // the Instance, whichever goes last frees it.
  auto* keep = new std::shared_ptr<PollerState>(st);
  try {
    st->tsfn = Napi::ThreadSafeFunction::New(
        env, info[0].As<Napi::Function>(), "ambit-sys-poller", 0, 1,
        [](Napi::Env, std::shared_ptr<PollerState>* data) {
          (*data)->Stop();
          delete data;
        },
        keep);
  } catch (...) {
    delete keep;
    throw;
  }
  st->tsfn.Unref(env);
  st->thread = std::thread(Run, st.get());
  slot = st;
  return env.Undefined();
}

void Ctl(Napi::Env env, int op, int fd, double id, int64_t events) {
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(events) | EPOLLONESHOT;
  ev.data.u64 = static_cast<uint64_t>(id);
  if (epoll_ctl(Poller(env).epfd.get(), op, fd, &ev) != 0) ThrowErrno(env, "epoll_ctl", errno);
}

// pollAdd(id, fd, events): registers fd, armed for events (EPOLLIN/EPOLLOUT/...).
Napi::Value PollAdd(const Napi::CallbackInfo& info) {
  Ctl(info.Env(), EPOLL_CTL_ADD, ArgFd(info, 1, "fd"), static_cast<double>(ArgInt(info, 0, "id", 1, 1LL << 53)),
      ArgInt(info, 2, "events", 0, UINT32_MAX));
  return info.Env().Undefined();
}

// pollArm(id, fd, events): re-arms a registration for one more notification.
Napi::Value PollArm(const Napi::CallbackInfo& info) {
  Ctl(info.Env(), EPOLL_CTL_MOD, ArgFd(info, 1, "fd"), static_cast<double>(ArgInt(info, 0, "id", 1, 1LL << 53)),
      ArgInt(info, 2, "events", 0, UINT32_MAX));
  return info.Env().Undefined();
}

// pollDel(fd): removes a registration; never throws (used on cleanup paths).
Napi::Value PollDel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto& p = GetInstance(env).poller;
  if (p && !p->stopped) epoll_ctl(p->epfd.get(), EPOLL_CTL_DEL, fd, nullptr);
  return env.Undefined();
}

// pollRef(on): whether pending notifications keep the event loop alive.
Napi::Value PollRef(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool on = ArgBool(info, 0, "on");
  PollerState& st = Poller(env);
  if (on) {
    st.tsfn.Ref(env);
  } else {
    st.tsfn.Unref(env);
  }
  return env.Undefined();
}

}  // namespace

Instance::~Instance() {
  if (poller) poller->Stop();
}

bool IsInternalFd(Napi::Env env, int fd) {
  Instance& inst = GetInstance(env);
  if (fd == inst.origNetns.get()) return true;
  return inst.poller && (fd == inst.poller->epfd.get() || fd == inst.poller->wakefd.get());
}

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("pollStart", Napi::Function::New(env, PollStart, "pollStart"));
  exports.Set("pollAdd", Napi::Function::New(env, PollAdd, "pollAdd"));
  exports.Set("pollArm", Napi::Function::New(env, PollArm, "pollArm"));
  exports.Set("pollDel", Napi::Function::New(env, PollDel, "pollDel"));
  exports.Set("pollRef", Napi::Function::New(env, PollRef, "pollRef"));
  Napi::Object ev = Napi::Object::New(env);
  ev.Set("IN", static_cast<uint32_t>(EPOLLIN));
  ev.Set("OUT", static_cast<uint32_t>(EPOLLOUT));
  ev.Set("ERR", static_cast<uint32_t>(EPOLLERR));
  ev.Set("HUP", static_cast<uint32_t>(EPOLLHUP));
  ev.Set("RDHUP", static_cast<uint32_t>(EPOLLRDHUP));
  exports.Set("pollEvents", ev);
}

}  // namespace ambit
