// Bindings of the Gemma-family activation ops: geluTanhMul, softcap, scale.
#include <cmath>
#include <string>

#include "binding.h"
#include "ops_activation.h"

namespace pw {
namespace {

Napi::Value GeluTanhMul(const Napi::CallbackInfo& info) {
  // geluTanhMul(out, gate, up, M, I, gateStride, upStride)
  const GatedMulArgs g = read_gated_mul(info, "geluTanhMul");
  gelu_tanh_mul(g.out.data, g.gate.data, g.up.data, g.M, g.I, g.gs, g.us);
  return info.Env().Undefined();
}

// out and x of n elements each; out may be x itself but not partly overlap it.
void check_unary(const Args& a, const View<float>& out, const View<float>& x, int64_t n) {
  a.need_at_least(out, "out", static_cast<size_t>(n), "n");
  a.need_at_least(x, "x", static_cast<size_t>(n), "n");
  if (out.data != x.data && overlaps(out.data, static_cast<size_t>(n) * 4, x.data, static_cast<size_t>(n) * 4)) {
    a.range_fail("out", "partly overlaps x (it may alias x exactly, or not at all)");
  }
}

Napi::Value Softcap(const Napi::CallbackInfo& info) {
  // softcap(out, x, n, cap)
  Args a(info, "softcap", 4);
  auto out = a.f32(0, "out");
  auto x = a.f32(1, "x");
  const int64_t n = a.integer(2, "n", 0, int64_t(1) << 48);
  const double cap = a.number(3, "cap");
  if (!std::isfinite(cap) || cap <= 0) a.range_fail("cap", "must be a finite number > 0");
  check_unary(a, out, x, n);
  softcap(out.data, x.data, n, static_cast<float>(cap));
  return info.Env().Undefined();
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  // scale(out, x, n, s)
  Args a(info, "scale", 4);
  auto out = a.f32(0, "out");
  auto x = a.f32(1, "x");
  const int64_t n = a.integer(2, "n", 0, int64_t(1) << 48);
  const double s = a.number(3, "s");
  if (!std::isfinite(s)) a.range_fail("s", "must be finite");
  check_unary(a, out, x, n);
  scale(out.data, x.data, n, static_cast<float>(s));
  return info.Env().Undefined();
}

}  // namespace

void InitActivation(Napi::Env env, Napi::Object exports) {
  bind<GeluTanhMul>(env, exports, "geluTanhMul");
  bind<Softcap>(env, exports, "softcap");
  bind<Scale>(env, exports, "scale");
}

}  // namespace pw
