// The KV cache handle as an argument (bind_kv.cc): shared by the cache and attention bindings.
#pragma once
#include <napi.h>

#include "ops.h"

namespace pw {

// The live cache behind argument i, a handle returned by kvCacheCreate; TypeError for anything
// else, Error once it has been freed.
KvCache& cache_arg(const Napi::CallbackInfo& info, size_t i, const char* op);

}  // namespace pw
