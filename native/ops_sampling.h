// Sampling helpers (ops_sampling.cc): registered on the addon's exports by addon.cc.
#pragma once
#include <napi.h>

namespace pw {
void register_sampling_ops(Napi::Env env, Napi::Object exports);
}  // namespace pw
