// Bindings of the linear layers: plain linear on raw weights, and pre-packed weights (pack,
// run, free).
#include <string>
#include <vector>

#include "binding.h"
#include "ops.h"
#include "quant/bind_quant.h"

namespace pw {
namespace {

Napi::Value Linear(const Napi::CallbackInfo& info) {
  // linear(out, x, w, wDtype, bias, M, N, K, precision)
  Args a(info, "linear", 9);
  auto out = a.f32(0, "out");
  auto x = a.f32(1, "x");
  const DType dt = a.dtype(3, "wDtype");
  auto w = a.weights(2, "w", dt);
  View<float> bias;
  const bool has_bias = !a.is_nullish(4);
  if (has_bias) bias = a.f32(4, "bias");
  const int64_t M = a.integer(5, "M", 0, kMaxDim);
  const int64_t N = a.integer(6, "N", 1, kMaxDim);
  const int64_t K = a.integer(7, "K", 1, kMaxDim);
  const int64_t p = a.integer(8, "precision", -1000000, 1000000);
  if (p != 0 && p != 1) a.range_fail("precision", "is not a MatmulPrecision (F32=0, BF16=1): " + std::to_string(p));
  const auto prec = static_cast<MatmulPrecision>(p);
  if (prec == MatmulPrecision::BF16 && dt != DType::BF16) {
    a.range_fail("precision", std::string("BF16 requires BF16 weights, got ") + dtype_name(dt));
  }
  const size_t nx = mul_checked(a.op(), "x", {M, K});
  const size_t no = mul_checked(a.op(), "out", {M, N});
  a.need_at_least(x, "x", nx, "M*K");
  a.need_at_least(out, "out", no, "M*N");
  a.need_exactly(w, "w", mul_checked(a.op(), "w", {N, K}), "N*K");
  if (has_bias) a.need_exactly(bias, "bias", static_cast<size_t>(N), "N");
  if (overlaps(out.data, no * 4, x.data, nx * 4)) a.range_fail("out", "overlaps x");
  if (overlaps(out.data, no * 4, w.data, w.len * dtype_bytes(dt))) a.range_fail("out", "overlaps w");
  if (has_bias && overlaps(out.data, no * 4, bias.data, bias.len * 4)) a.range_fail("out", "overlaps bias");
  linear(out.data, x.data, w.data, dt, has_bias ? bias.data : nullptr, M, N, K, prec);
  return info.Env().Undefined();
}

const napi_type_tag kPackedTag = {0x7061676577697365ull, 0x706b6c696e656172ull};  // "pagewise" "pklinear"

// A packed-weights handle of either kind: float (packLinear, packGateUp) or quantized
// (packLinearQuant, packGateUpQuant, bind_quant.cc). The ops that run packs read their arguments
// once, here, and hand the pack to its kind's kernel.
struct AnyPack {
  PackedLinear* f = nullptr;
  quant::QuantLinear* q = nullptr;
  bool freed() const { return q ? q->freed : f->freed; }
  int64_t K() const { return q ? q->K : f->K; }
  bool gate_up() const { return q ? q->gate_up : f->silu_pairs; }
  // Output arrays a call fills, and the columns of output s.
  size_t outputs() const { return q ? (q->gate_up ? 1 : q->parts.size()) : f->segs.size(); }
  int64_t n(size_t s) const { return q ? q->parts[s].n : f->segs[s].n; }
  size_t parts() const { return q ? q->parts.size() : f->segs.size(); }
};

AnyPack any_pack(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Napi::Value v = info[i];
  AnyPack p;
  if ((p.q = quant_pack(v)) == nullptr) {
    if (!v.IsExternal() || !v.As<Napi::External<PackedLinear>>().CheckTypeTag(&kPackedTag)) {
      type_error(std::string(op) + ": w must be a handle returned by packLinear, packGateUp, packLinearQuant or packGateUpQuant");
    }
    p.f = v.As<Napi::External<PackedLinear>>().Data();
  }
  return p;
}

// A live pack (not yet freed), for the ops that run one.
AnyPack live_pack(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const AnyPack p = any_pack(info, i, op);
  if (p.freed()) plain_error(std::string(op) + ": the packed weights have been freed");
  return p;
}

MatmulPrecision precision_arg(const Args& a, size_t i, DType dt) {
  const int64_t p = a.integer(i, "precision", -1000000, 1000000);
  if (p != 0 && p != 1) a.range_fail("precision", "is not a MatmulPrecision (F32=0, BF16=1): " + std::to_string(p));
  const auto prec = static_cast<MatmulPrecision>(p);
  if (prec == MatmulPrecision::BF16 && dt != DType::BF16) {
    a.range_fail("precision", std::string("BF16 requires BF16 weights, got ") + dtype_name(dt));
  }
  return prec;
}

// Allocates, fills (on the pool) and wraps a pack; the handle's finalizer frees what is left.
Napi::Value make_packed(Napi::Env env, const char* op, const std::vector<int64_t>& seg_n, int64_t K, DType dt,
                        MatmulPrecision prec, bool silu, const std::vector<const void*>& src,
                        const std::vector<const float*>& bias) {
  bool has_bias = false;
  for (const float* b : bias) has_bias = has_bias || b != nullptr;
  auto* p = new PackedLinear();
  if (!packed_linear_init(*p, seg_n, K, dt, prec, silu, has_bias)) {
    delete p;
    plain_error(std::string(op) + ": out of memory packing weights");
  }
  packed_linear_fill(*p, src, bias);
  const int64_t charged = static_cast<int64_t>(p->bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, charged);
  Napi::External<PackedLinear> h = Napi::External<PackedLinear>::New(env, p, [charged](Napi::Env e, PackedLinear* q) {
    if (!q->freed) Napi::MemoryManagement::AdjustExternalMemory(e, -charged);
    packed_linear_release(*q);
    delete q;
  });
  h.TypeTag(&kPackedTag);
  return h;
}

Napi::Value PackLinear(const Napi::CallbackInfo& info) {
  // packLinear(parts: {w, n, bias?}[], wDtype, K, precision)
  Napi::Env env = info.Env();
  Args a(info, "packLinear", 4);
  const DType dt = a.dtype(1, "wDtype");
  const int64_t K = a.integer(2, "K", 1, kMaxDim);
  const MatmulPrecision prec = precision_arg(a, 3, dt);
  if (!info[0].IsArray()) a.type_fail("parts", "must be an array of {w, n, bias?}");
  Napi::Array parts = info[0].As<Napi::Array>();
  const uint32_t count = parts.Length();
  if (count == 0 || count > 64) a.range_fail("parts", "must hold 1 to 64 weight matrices, got " + std::to_string(count));
  std::vector<int64_t> seg_n;
  std::vector<const void*> src;
  std::vector<const float*> bias;
  int64_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value e = parts.Get(i);
    if (!e.IsObject()) a.type_fail("parts", "[" + std::to_string(i) + "] must be an object {w, n, bias?}");
    Napi::Object o = e.As<Napi::Object>();
    Napi::Value nv = o.Get("n");
    if (!nv.IsNumber()) a.type_fail("parts", "[" + std::to_string(i) + "].n must be a number");
    const double nd = nv.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(nd) || nd != std::floor(nd) || nd < 1 || nd > static_cast<double>(kMaxDim)) {
      a.range_fail("parts", "[" + std::to_string(i) + "].n must be an integer in [1, 2^31), got " + num(nd));
    }
    const int64_t n = static_cast<int64_t>(nd);
    total += n;
    if (total > kMaxDim) a.range_fail("parts", "have more than 2^31 - 1 output columns in all");
    Napi::Value wv = o.Get("w");
    View<void> w;
    if (!typed_view(env, wv, dt == DType::F32 ? napi_float32_array : napi_uint16_array, &w)) {
      a.type_fail("parts", "[" + std::to_string(i) + "].w must be a " + (dt == DType::F32 ? "Float32Array" : "Uint16Array") +
                               " for dtype " + dtype_name(dt));
    }
    const size_t want = mul_checked(a.op(), "w", {n, K});
    if (w.len != want) {
      a.range_fail("parts", "[" + std::to_string(i) + "].w has " + std::to_string(w.len) + " elements, expected n*K = " +
                                std::to_string(want));
    }
    const float* b = nullptr;
    Napi::Value bv = o.Get("bias");
    if (!bv.IsNull() && !bv.IsUndefined()) {
      View<float> bias_view;
      if (!typed_view(env, bv, napi_float32_array, &bias_view)) {
        a.type_fail("parts", "[" + std::to_string(i) + "].bias must be a Float32Array, null or undefined");
      }
      if (bias_view.len != static_cast<size_t>(n)) {
        a.range_fail("parts", "[" + std::to_string(i) + "].bias has " + std::to_string(bias_view.len) +
                                  " elements, expected n = " + std::to_string(n));
      }
      b = bias_view.data;
    }
    seg_n.push_back(n);
    src.push_back(w.data);
    bias.push_back(b);
  }
  return make_packed(env, a.op(), seg_n, K, dt, prec, false, src, bias);
}

Napi::Value PackGateUp(const Napi::CallbackInfo& info) {
  // packGateUp(gate, up, wDtype, I, K, precision)
  Args a(info, "packGateUp", 6);
  const DType dt = a.dtype(2, "wDtype");
  auto gate = a.weights(0, "gate", dt);
  auto up = a.weights(1, "up", dt);
  const int64_t I = a.integer(3, "I", 1, kMaxDim / 2);
  const int64_t K = a.integer(4, "K", 1, kMaxDim);
  const MatmulPrecision prec = precision_arg(a, 5, dt);
  const size_t want = mul_checked(a.op(), "gate", {I, K});
  a.need_exactly(gate, "gate", want, "I*K");
  a.need_exactly(up, "up", want, "I*K");
  return make_packed(info.Env(), a.op(), {I}, K, dt, prec, true, {gate.data, up.data}, {nullptr});
}

Napi::Value LinearPacked(const Napi::CallbackInfo& info) {
  // linearPacked(w, x, M, outs, accumulate)
  Args a(info, "linearPacked", 5);
  const AnyPack p = live_pack(info, 0, a.op());
  auto x = a.f32(1, "x");
  const int64_t M = a.integer(2, "M", 0, kMaxDim);
  if (!info[3].IsArray()) a.type_fail("outs", "must be an array of Float32Array");
  const bool accumulate = a.boolean(4, "accumulate");
  Napi::Array arr = info[3].As<Napi::Array>();
  const size_t nout = p.outputs();
  if (arr.Length() != nout) {
    a.range_fail("outs", "has " + std::to_string(arr.Length()) + " arrays, the packed weights have " + std::to_string(nout) +
                             " output" + (nout == 1 ? "" : "s"));
  }
  const size_t nx = mul_checked(a.op(), "x", {M, p.K()});
  a.need_at_least(x, "x", nx, "M*K");
  float* outs[64];
  size_t out_bytes[64];
  for (size_t s = 0; s < nout; s++) {
    Napi::Value v = arr.Get(static_cast<uint32_t>(s));
    View<float> o;
    if (!typed_view(info.Env(), v, napi_float32_array, &o)) a.type_fail("outs", "[" + std::to_string(s) + "] must be a Float32Array");
    const size_t need = mul_checked(a.op(), "out", {M, p.n(s)});
    if (o.len < need) {
      a.range_fail("outs", "[" + std::to_string(s) + "] has " + std::to_string(o.len) + " elements, needs at least M*n = " +
                               std::to_string(need));
    }
    outs[s] = o.data;
    out_bytes[s] = need * 4;
    if (overlaps(o.data, need * 4, x.data, nx * 4)) a.range_fail("outs", "[" + std::to_string(s) + "] overlaps x");
    for (size_t r = 0; r < s; r++) {
      if (overlaps(o.data, need * 4, outs[r], out_bytes[r])) {
        a.range_fail("outs", "[" + std::to_string(s) + "] overlaps outs[" + std::to_string(r) + "]");
      }
    }
  }
  if (p.q) quant::quant_linear(*p.q, x.data, M, outs, accumulate);
  else linear_packed(*p.f, x.data, M, outs, accumulate);
  return info.Env().Undefined();
}

Napi::Value PackedLinearFree(const Napi::CallbackInfo& info) {
  Args a(info, "packedLinearFree", 1);
  const AnyPack p = any_pack(info, 0, a.op());
  if (p.q) {
    quant_pack_free(info.Env(), *p.q);
  } else if (!p.f->freed) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -static_cast<int64_t>(p.f->bytes));
    packed_linear_release(*p.f);  // the finalizer deletes the struct
  }
  return info.Env().Undefined();
}

Napi::Value EmbeddingPacked(const Napi::CallbackInfo& info) {
  // embeddingPacked(out, w, ids): rows of a one-part pack, float or quantized
  Args a(info, "embeddingPacked", 3);
  auto out = a.f32(0, "out");
  const AnyPack p = live_pack(info, 1, a.op());
  if (p.gate_up() || p.parts() != 1) {
    a.range_fail("w", "must be a pack of one part, not " + std::to_string(p.parts()) + (p.gate_up() ? " (gate/up)" : ""));
  }
  auto ids = a.i32(2, "ids");
  const int64_t T = static_cast<int64_t>(ids.len), rows = p.n(0);
  a.need_at_least(out, "out", mul_checked(a.op(), "out", {T, p.K()}), "ids.length*K");
  for (int64_t t = 0; t < T; t++) a.need_index("ids", {t}, ids.data[t], 0, rows);
  if (p.q) quant::embedding_packed(out.data, *p.q, ids.data, T);
  else embedding_packed(out.data, *p.f, ids.data, T);
  return info.Env().Undefined();
}

}  // namespace

void InitLinear(Napi::Env env, Napi::Object exports) {
  bind<Linear>(env, exports, "linear");
  bind<PackLinear>(env, exports, "packLinear");
  bind<PackGateUp>(env, exports, "packGateUp");
  bind<LinearPacked>(env, exports, "linearPacked");
  bind<PackedLinearFree>(env, exports, "packedLinearFree");
  bind<EmbeddingPacked>(env, exports, "embeddingPacked");
}

}  // namespace pw
