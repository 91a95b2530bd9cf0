// quantizeRows(type, src: Float32Array, rows, k) -> Uint8Array (contract: src/model/quantize/quantize.ts).
// Arguments are validated before anything runs (binding.h's readers); bad ones throw a TypeError /
// RangeError.
#include "bind_quantize.h"

#include <string>

#include "../binding.h"
#include "quantize.h"

namespace pw {
namespace {

Napi::Value QuantizeRows(const Napi::CallbackInfo& info) {
  Args a(info, "quantizeRows", 4);
  const int64_t type = a.integer(0, "type", 0, 1000);
  int block_size, block_bytes;
  if (!quantize_type_info(static_cast<int>(type), &block_size, &block_bytes)) {
    a.range_fail("type", "is GGML type " + std::to_string(type) + ", which has no quantizer");
  }
  const auto src = a.f32(1, "src");
  const int64_t rows = a.integer(2, "rows", 0, kMaxDim);
  const int64_t k = a.integer(3, "k", 1, kMaxDim);
  if (k % block_size != 0) a.range_fail("k", "= " + std::to_string(k) + " is not a whole number of blocks of " + std::to_string(block_size));
  a.need_exactly(src, "src", mul_checked(a.op(), "src", {rows, k}), "rows*k");
  const size_t bytes = mul_checked(a.op(), "the output", {rows, k / block_size, block_bytes});
  Napi::Uint8Array dst = Napi::Uint8Array::New(info.Env(), bytes);
  if (bytes > 0) quantize_rows(static_cast<int>(type), src.data, rows, k, dst.Data());
  return dst;
}

}  // namespace

void InitQuantize(Napi::Env env, Napi::Object exports) { bind<QuantizeRows>(env, exports, "quantizeRows"); }

}  // namespace pw
