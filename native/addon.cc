// The Pagewise CPU backend's N-API module (contract: src/backend/backend.ts and native.ts).
// Each area's bindings live in their own file (bind_AREA.cc, defining InitAREA); they all read
// and check their arguments with the helpers of binding.h. Adding an area is one line in
// PW_BINDING_AREAS (plus its source in binding.gyp).
#include <napi.h>

#define PW_BINDING_AREAS(X) \
  X(System)                 \
  X(Elementwise)            \
  X(Linear)                 \
  X(Kv)                     \
  X(Attention)              \
  X(Activation)             \
  X(Sampling)              \
  X(Quantize)               \
  X(Quant)

namespace pw {

#define PW_DECLARE_INIT(area) void Init##area(Napi::Env env, Napi::Object exports);
PW_BINDING_AREAS(PW_DECLARE_INIT)
#undef PW_DECLARE_INIT

}  // namespace pw

static Napi::Object InitPagewise(Napi::Env env, Napi::Object exports) {
#define PW_CALL_INIT(area) pw::Init##area(env, exports);
  PW_BINDING_AREAS(PW_CALL_INIT)
#undef PW_CALL_INIT
  return exports;
}

NODE_API_MODULE(pagewise, InitPagewise)
