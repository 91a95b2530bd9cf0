// N-API binding of the quantizers (quantize.cc): registered on the addon's exports by addon.cc.
#pragma once
#include <napi.h>

namespace pw {
void InitQuantize(Napi::Env env, Napi::Object exports);
}  // namespace pw
