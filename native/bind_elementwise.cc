// Bindings of the elementwise ops: embedding, RMSNorm, RoPE, SiLU-mul and add.
#include <string>

#include "binding.h"
#include "ops.h"

namespace pw {
namespace {

Napi::Value Embedding(const Napi::CallbackInfo& info) {
  // embedding(out, table, tableDtype, ids, hidden)
  Args a(info, "embedding", 5);
  auto out = a.f32(0, "out");
  const DType dt = a.dtype(2, "tableDtype");
  auto table = a.weights(1, "table", dt);
  auto ids = a.i32(3, "ids");
  const int64_t hidden = a.integer(4, "hidden", 1, kMaxDim);
  if (table.len % static_cast<size_t>(hidden) != 0) {
    a.range_fail("table", "has " + std::to_string(table.len) + " elements, not a multiple of hidden = " +
                              std::to_string(hidden));
  }
  const int64_t vocab = static_cast<int64_t>(table.len / static_cast<size_t>(hidden));
  const int64_t T = static_cast<int64_t>(ids.len);
  a.need_at_least(out, "out", mul_checked(a.op(), "out", {T, hidden}), "ids.length*hidden");
  for (int64_t t = 0; t < T; t++) {
    a.need_index("ids", {t}, ids.data[t], 0, vocab);
  }
  embedding(out.data, table.data, dt, ids.data, T, hidden);
  return info.Env().Undefined();
}

Napi::Value Rmsnorm(const Napi::CallbackInfo& info) {
  // rmsnorm(out, x, weight, M, H, eps)
  Args a(info, "rmsnorm", 6);
  auto out = a.f32(0, "out");
  auto x = a.f32(1, "x");
  auto w = a.f32(2, "weight");
  const int64_t M = a.integer(3, "M", 0, kMaxDim);
  const int64_t H = a.integer(4, "H", 1, kMaxDim);
  const double eps = a.number(5, "eps");
  if (!std::isfinite(eps) || eps < 0) a.range_fail("eps", "must be a finite number >= 0");
  const size_t n = mul_checked(a.op(), "x", {M, H});
  a.need_at_least(x, "x", n, "M*H");
  a.need_at_least(out, "out", n, "M*H");
  a.need_exactly(w, "weight", static_cast<size_t>(H), "H");
  if (out.data != x.data && overlaps(out.data, n * 4, x.data, n * 4)) {
    a.range_fail("out", "partly overlaps x (it may alias x exactly, or not at all)");
  }
  rmsnorm(out.data, x.data, w.data, M, H, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value RopeTable(const Napi::CallbackInfo& info) {
  // ropeTable(cosSin, positions, T, invFreq)
  Args a(info, "ropeTable", 4);
  auto cs = a.f32(0, "cosSin");
  auto pos = a.i32(1, "positions");
  const int64_t T = a.integer(2, "T", 0, kMaxDim);
  auto inv = a.f32(3, "invFreq");
  if (inv.len == 0) a.range_fail("invFreq", "must not be empty");
  a.need_at_least(pos, "positions", static_cast<size_t>(T), "T");
  a.need_at_least(cs, "cosSin", mul_checked(a.op(), "cosSin", {T, 2, static_cast<int64_t>(inv.len)}), "T*2*invFreq.length");
  rope_table(cs.data, pos.data, T, static_cast<int64_t>(inv.len), inv.data);
  return info.Env().Undefined();
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  // rope(q, k, cosSin, T, nHeads, nKvHeads, headDim)
  Args a(info, "rope", 7);
  auto q = a.f32(0, "q");
  auto k = a.f32(1, "k");
  auto cs = a.f32(2, "cosSin");
  const int64_t T = a.integer(3, "T", 0, kMaxDim);
  const int64_t nh = a.integer(4, "nHeads", 0, 1 << 20);
  const int64_t nkv = a.integer(5, "nKvHeads", 0, 1 << 20);
  const int64_t hd = a.integer(6, "headDim", 2, 1 << 20);
  if (hd % 2 != 0) a.range_fail("headDim", "must be even, got " + std::to_string(hd));
  const size_t nq = mul_checked(a.op(), "q", {T, nh, hd});
  const size_t nk = mul_checked(a.op(), "k", {T, nkv, hd});
  a.need_at_least(q, "q", nq, "T*nHeads*headDim");
  a.need_at_least(k, "k", nk, "T*nKvHeads*headDim");
  a.need_at_least(cs, "cosSin", mul_checked(a.op(), "cosSin", {T, hd}), "T*headDim");
  if (overlaps(q.data, nq * 4, k.data, nk * 4)) a.range_fail("q", "overlaps k");
  rope(q.data, k.data, cs.data, T, nh, nkv, hd);
  return info.Env().Undefined();
}

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  // siluMul(out, gate, up, M, I, gateStride, upStride)
  const GatedMulArgs g = read_gated_mul(info, "siluMul");
  silu_mul(g.out.data, g.gate.data, g.up.data, g.M, g.I, g.gs, g.us);
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  // add(out, a, b, n)
  Args a(info, "add", 4);
  auto out = a.f32(0, "out");
  auto x = a.f32(1, "a");
  auto y = a.f32(2, "b");
  const int64_t n = a.integer(3, "n", 0, int64_t(1) << 48);
  a.need_at_least(out, "out", static_cast<size_t>(n), "n");
  a.need_at_least(x, "a", static_cast<size_t>(n), "n");
  a.need_at_least(y, "b", static_cast<size_t>(n), "n");
  add(out.data, x.data, y.data, n);
  return info.Env().Undefined();
}

}  // namespace

void InitElementwise(Napi::Env env, Napi::Object exports) {
  bind<Embedding>(env, exports, "embedding");
  bind<Rmsnorm>(env, exports, "rmsnorm");
  bind<RopeTable>(env, exports, "ropeTable");
  bind<Rope>(env, exports, "rope");
  bind<SiluMul>(env, exports, "siluMul");
  bind<Add>(env, exports, "add");
}

}  // namespace pw
