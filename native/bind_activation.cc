// Bindings of the Gemma-family activation ops: geluTanhMul, softcap, scale.
#include <cmath>
#include <string>

#include "binding.h"
#include "ops_activation.h"

namespace pw {
namespace {

Napi::Value GeluTanhMul(const Napi::CallbackInfo& info) {
  // geluTanhMul(out, gate, up, M, I, gateStride, upStride): the argument rules of siluMul.
  Args a(info, "geluTanhMul", 7);
  auto out = a.f32(0, "out");
  auto gate = a.f32(1, "gate");
  auto up = a.f32(2, "up");
  const int64_t M = a.integer(3, "M", 0, kMaxDim);
  const int64_t I = a.integer(4, "I", 0, kMaxDim);
  const int64_t gs = a.integer(5, "gateStride", 0, int64_t(1) << 40);
  const int64_t us = a.integer(6, "upStride", 0, int64_t(1) << 40);
  if (M > 1 && gs < I) a.range_fail("gateStride", "must be >= I (" + std::to_string(I) + "), got " + std::to_string(gs));
  if (M > 1 && us < I) a.range_fail("upStride", "must be >= I (" + std::to_string(I) + "), got " + std::to_string(us));
  if (M > 0 && I > 0) {
    a.need_at_least(out, "out", mul_checked(a.op(), "out", {M, I}), "M*I");
    a.need_at_least(gate, "gate", mul_checked(a.op(), "gate", {M - 1, gs}) + static_cast<size_t>(I), "(M-1)*gateStride+I");
    a.need_at_least(up, "up", mul_checked(a.op(), "up", {M - 1, us}) + static_cast<size_t>(I), "(M-1)*upStride+I");
    // Rows run in parallel: out may alias gate or up only exactly (same start, stride I).
    const size_t no = static_cast<size_t>(M * I) * 4;
    const size_t ng = (static_cast<size_t>(M - 1) * gs + I) * 4, nu = (static_cast<size_t>(M - 1) * us + I) * 4;
    const bool g_ok = !overlaps(out.data, no, gate.data, ng) || (out.data == gate.data && (gs == I || M == 1));
    const bool u_ok = !overlaps(out.data, no, up.data, nu) || (out.data == up.data && (us == I || M == 1));
    if (!g_ok) a.range_fail("out", "overlaps gate (only out === gate with gateStride === I is allowed)");
    if (!u_ok) a.range_fail("out", "overlaps up (only out === up with upStride === I is allowed)");
  }
  gelu_tanh_mul(out.data, gate.data, up.data, M, I, gs, us);
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
