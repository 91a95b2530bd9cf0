// quantizeRows(type, src: Float32Array, rows, k) -> Uint8Array (contract: src/model/quantize/quantize.ts).
// Arguments are validated before anything runs; bad ones throw a TypeError / RangeError.
#include "bind_quantize.h"

#include <cstring>
#include <string>

#include "quantize.h"

namespace pw {
namespace {

Napi::Value fail(Napi::Env env, bool range, const std::string& m) {
  if (range) Napi::RangeError::New(env, "quantizeRows: " + m).ThrowAsJavaScriptException();
  else Napi::TypeError::New(env, "quantizeRows: " + m).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool whole_number(const Napi::Value& v, double max, int64_t* out) {
  if (!v.IsNumber()) return false;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

Napi::Value QuantizeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4) return fail(env, false, "expected (type, src, rows, k)");
  int64_t type, rows, k;
  if (!whole_number(info[0], 1000, &type)) return fail(env, false, "type must be a GGML type id");
  int block_size, block_bytes;
  if (!quantize_type_info(static_cast<int>(type), &block_size, &block_bytes)) {
    return fail(env, true, "GGML type " + std::to_string(type) + " has no quantizer");
  }
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    return fail(env, false, "src must be a Float32Array");
  }
  if (!whole_number(info[2], 9007199254740991.0, &rows) || !whole_number(info[3], 9007199254740991.0, &k) || k == 0) {
    return fail(env, false, "rows and k must be integers (k > 0)");
  }
  if (k % block_size != 0) {
    return fail(env, true, "a row of " + std::to_string(k) + " values is not a whole number of blocks of " + std::to_string(block_size));
  }
  Napi::Float32Array src = info[1].As<Napi::Float32Array>();
  if (static_cast<int64_t>(src.ElementLength()) != rows * k) {
    return fail(env, true, "src has " + std::to_string(src.ElementLength()) + " values, expected rows * k = " + std::to_string(rows * k));
  }
  const size_t bytes = static_cast<size_t>(rows * (k / block_size) * block_bytes);
  Napi::Uint8Array dst = Napi::Uint8Array::New(env, bytes);
  if (bytes > 0) quantize_rows(static_cast<int>(type), src.Data(), rows, k, dst.Data());
  return dst;
}

}  // namespace

void InitQuantize(Napi::Env env, Napi::Object exports) {
  exports.Set("quantizeRows", Napi::Function::New(env, QuantizeRows, "quantizeRows"));
}

}  // namespace pw
