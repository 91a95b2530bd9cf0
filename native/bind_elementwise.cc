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
    a.need_index("ids", std::to_string(t), ids.data[t], 0, vocab);
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
  Args a(info, "siluMul", 7);
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
    a.need_at_least(gate, "gate", mul_checked(a.op(), "gate", {M - 1, gs}) + static_cast<size_t>(I),
                    "(M-1)*gateStride+I");
    a.need_at_least(up, "up", mul_checked(a.op(), "up", {M - 1, us}) + static_cast<size_t>(I), "(M-1)*upStride+I");
  }
  if (M > 0 && I > 0) {
    // Rows run in parallel: out may alias gate or up only exactly (same start, stride I).
    const size_t no = static_cast<size_t>(M * I) * 4;
    const size_t ng = (static_cast<size_t>(M - 1) * gs + I) * 4, nu = (static_cast<size_t>(M - 1) * us + I) * 4;
    const bool g_ok = !overlaps(out.data, no, gate.data, ng) || (out.data == gate.data && (gs == I || M == 1));
    const bool u_ok = !overlaps(out.data, no, up.data, nu) || (out.data == up.data && (us == I || M == 1));
    if (!g_ok) a.range_fail("out", "overlaps gate (only out === gate with gateStride === I is allowed)");
    if (!u_ok) a.range_fail("out", "overlaps up (only out === up with upStride === I is allowed)");
  }
  silu_mul(out.data, gate.data, up.data, M, I, gs, us);
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
