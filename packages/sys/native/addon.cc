// Entry point of the ambit_sys addon (Node-API only, see README.md).
#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace ambit;
  // One Instance per environment, freed by Node when the environment exits.
  env.SetInstanceData(new Instance());
  InitNetns(env, exports);
  InitTcp(env, exports);
  InitSeqpacket(env, exports);
  InitPoller(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ambit_sys, Init)
