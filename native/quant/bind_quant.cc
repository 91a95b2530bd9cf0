// N-API bindings of the quantized-weight ops. Every argument is validated before any kernel runs
// (types, GGML type ids, sizes against the block geometry, index ranges): a bad call throws a
// TypeError / RangeError, never crashes.
#include "bind_quant.h"

#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../common.h"
#include "kernels.h"
#include "quant.h"

namespace pw {
namespace {

using quant::QuantLinear;
using quant::TypeInfo;

constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

struct JsError : std::runtime_error {
  bool range;
  JsError(bool r, const std::string& m) : std::runtime_error(m), range(r) {}
};
[[noreturn]] void type_fail(const std::string& m) { throw JsError(false, m); }
[[noreturn]] void range_fail(const std::string& m) { throw JsError(true, m); }

using Binding = Napi::Value (*)(const Napi::CallbackInfo&);
template <Binding F>
Napi::Value Guard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return F(info);
  } catch (const JsError& e) {
    if (e.range) Napi::RangeError::New(env, e.what()).ThrowAsJavaScriptException();
    else Napi::TypeError::New(env, e.what()).ThrowAsJavaScriptException();
  } catch (const std::bad_alloc&) {
    Napi::Error::New(env, "pagewise native: out of memory").ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(env, std::string("pagewise native: ") + e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

void need_args(const Napi::CallbackInfo& info, const char* op, size_t n) {
  if (info.Length() < n) type_fail(std::string(op) + ": expected " + std::to_string(n) + " arguments, got " + std::to_string(info.Length()));
}

int64_t integer(Napi::Value v, const std::string& what, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) type_fail(what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d)) type_fail(what + " must be an integer");
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    range_fail(what + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(static_cast<long long>(d)));
  }
  return static_cast<int64_t>(d);
}

struct Span {
  void* data;
  size_t length;  // elements
};

Span typed(Napi::Env env, Napi::Value v, napi_typedarray_type want, const std::string& what, const char* tname) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != want) {
    type_fail(what + " must be a " + tname);
  }
  if (data == nullptr) length = 0;
  return Span{data, length};
}

TypeInfo type_arg(Napi::Value v, const std::string& what) {
  const int64_t t = integer(v, what, -1000000, 1000000);
  TypeInfo ti;
  if (!quant::type_info(static_cast<int>(t), &ti)) {
    range_fail(what + " is not a supported quantized GGML type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS): " + std::to_string(t));
  }
  return ti;
}

void check_k(const TypeInfo& ti, int64_t K, const std::string& what) {
  if (K % ti.block != 0) range_fail(what + ": K = " + std::to_string(K) + " is not a multiple of the " + ti.name + " block (" + std::to_string(ti.block) + ")");
}

size_t row_bytes(const TypeInfo& ti, int64_t K) { return static_cast<size_t>(K / ti.block) * ti.bytes; }

bool overlaps(const void* a, size_t na, const void* b, size_t nb) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return na && nb && pa < pb + nb && pb < pa + na;
}

const napi_type_tag kQuantTag = {0x7061676577697365ull, 0x716c696e65617231ull};  // "pagewise" "qlinear1"

Napi::Value make_pack(Napi::Env env, const char* op, int64_t K, bool gate_up, const std::vector<int>& types,
                      const std::vector<int64_t>& ns, const std::vector<const uint8_t*>& src,
                      const std::vector<const float*>& bias) {
  auto* p = new QuantLinear();
  if (!quant::quant_linear_init(*p, K, gate_up, types, ns, src, bias)) {
    delete p;
    throw std::runtime_error(std::string(op) + ": out of memory packing weights");
  }
  const int64_t charged = static_cast<int64_t>(p->bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, charged);
  auto h = Napi::External<QuantLinear>::New(env, p, [charged](Napi::Env e, QuantLinear* q) {
    if (!q->freed) Napi::MemoryManagement::AdjustExternalMemory(e, -charged);
    quant::quant_linear_release(*q);
    delete q;
  });
  h.TypeTag(&kQuantTag);
  return h;
}

Napi::Value PackLinearQuant(const Napi::CallbackInfo& info) {
  // packLinearQuant(parts: {w: Uint8Array, type, n, bias?}[], K)
  const char* op = "packLinearQuant";
  need_args(info, op, 2);
  Napi::Env env = info.Env();
  const int64_t K = integer(info[1], std::string(op) + ": K", 1, kMaxDim);
  if (!info[0].IsArray()) type_fail(std::string(op) + ": parts must be an array of {w, type, n, bias?}");
  Napi::Array parts = info[0].As<Napi::Array>();
  const uint32_t count = parts.Length();
  if (count == 0 || count > 64) range_fail(std::string(op) + ": parts must hold 1 to 64 weight matrices, got " + std::to_string(count));
  std::vector<int> types;
  std::vector<int64_t> ns;
  std::vector<const uint8_t*> src;
  std::vector<const float*> bias;
  int64_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    const std::string w = std::string(op) + ": parts[" + std::to_string(i) + "]";
    Napi::Value e = parts.Get(i);
    if (!e.IsObject()) type_fail(w + " must be an object {w, type, n, bias?}");
    Napi::Object o = e.As<Napi::Object>();
    const TypeInfo ti = type_arg(o.Get("type"), w + ".type");
    const int64_t n = integer(o.Get("n"), w + ".n", 1, kMaxDim);
    total += n;
    if (total > kMaxDim) range_fail(std::string(op) + ": parts have more than 2^31 - 1 rows in all");
    check_k(ti, K, w);
    const Span data = typed(env, o.Get("w"), napi_uint8_array, w + ".w", "Uint8Array");
    const double want = static_cast<double>(row_bytes(ti, K)) * static_cast<double>(n);
    if (static_cast<double>(data.length) != want) {
      range_fail(w + ".w has " + std::to_string(data.length) + " bytes, n rows of K " + ti.name + " values take " + std::to_string(static_cast<long long>(want)));
    }
    const float* b = nullptr;
    Napi::Value bv = o.Get("bias");
    if (!bv.IsUndefined() && !bv.IsNull()) {
      const Span bs = typed(env, bv, napi_float32_array, w + ".bias", "Float32Array");
      if (bs.length != static_cast<size_t>(n)) range_fail(w + ".bias has " + std::to_string(bs.length) + " elements, expected n = " + std::to_string(n));
      b = static_cast<const float*>(bs.data);
    }
    types.push_back(static_cast<int>(o.Get("type").As<Napi::Number>().Int32Value()));
    ns.push_back(n);
    src.push_back(static_cast<const uint8_t*>(data.data));
    bias.push_back(b);
  }
  return make_pack(env, op, K, false, types, ns, src, bias);
}

Napi::Value PackGateUpQuant(const Napi::CallbackInfo& info) {
  // packGateUpQuant(gate: Uint8Array, gateType, up: Uint8Array, upType, I, K)
  const char* op = "packGateUpQuant";
  need_args(info, op, 6);
  Napi::Env env = info.Env();
  const std::string o = op;
  const TypeInfo tg = type_arg(info[1], o + ": gateType");
  const TypeInfo tu = type_arg(info[3], o + ": upType");
  const int64_t I = integer(info[4], o + ": I", 1, kMaxDim / 2);
  const int64_t K = integer(info[5], o + ": K", 1, kMaxDim);
  check_k(tg, K, o + ": gate");
  check_k(tu, K, o + ": up");
  const Span g = typed(env, info[0], napi_uint8_array, o + ": gate", "Uint8Array");
  const Span u = typed(env, info[2], napi_uint8_array, o + ": up", "Uint8Array");
  if (static_cast<double>(g.length) != static_cast<double>(row_bytes(tg, K)) * static_cast<double>(I)) range_fail(o + ": gate has " + std::to_string(g.length) + " bytes, not I rows of K values");
  if (static_cast<double>(u.length) != static_cast<double>(row_bytes(tu, K)) * static_cast<double>(I)) range_fail(o + ": up has " + std::to_string(u.length) + " bytes, not I rows of K values");
  const int gt = info[1].As<Napi::Number>().Int32Value(), ut = info[3].As<Napi::Number>().Int32Value();
  return make_pack(env, op, K, true, {gt, ut}, {I, I}, {static_cast<const uint8_t*>(g.data), static_cast<const uint8_t*>(u.data)}, {nullptr, nullptr});
}

// linearPacked(w, x, M, outs, accumulate) for a quantized pack.
void LinearQuant(const Napi::CallbackInfo& info, QuantLinear& p) {
  const std::string op = "linearPacked";
  Napi::Env env = info.Env();
  need_args(info, op.c_str(), 5);
  if (p.freed) throw std::runtime_error(op + ": the packed weights have been freed");
  const Span x = typed(env, info[1], napi_float32_array, op + ": x", "Float32Array");
  const int64_t M = integer(info[2], op + ": M", 0, kMaxDim);
  if (!info[3].IsArray()) type_fail(op + ": outs must be an array of Float32Array");
  if (!info[4].IsBoolean()) type_fail(op + ": accumulate must be a boolean");
  const bool accumulate = info[4].As<Napi::Boolean>().Value();
  Napi::Array arr = info[3].As<Napi::Array>();
  const size_t nout = p.gate_up ? 1 : p.parts.size();
  if (arr.Length() != nout) range_fail(op + ": outs has " + std::to_string(arr.Length()) + " arrays, the packed weights have " + std::to_string(nout) + " output(s)");
  const double nx = static_cast<double>(M) * static_cast<double>(p.K);
  if (static_cast<double>(x.length) < nx) range_fail(op + ": x has " + std::to_string(x.length) + " elements, needs at least M*K = " + std::to_string(static_cast<long long>(nx)));
  std::vector<float*> outs(nout);
  std::vector<size_t> out_bytes(nout);
  for (size_t s = 0; s < nout; s++) {
    const Span o = typed(env, arr.Get(static_cast<uint32_t>(s)), napi_float32_array, op + ": outs[" + std::to_string(s) + "]", "Float32Array");
    const double need = static_cast<double>(M) * static_cast<double>(p.parts[s].n);
    if (static_cast<double>(o.length) < need) range_fail(op + ": outs[" + std::to_string(s) + "] has " + std::to_string(o.length) + " elements, needs at least M*n = " + std::to_string(static_cast<long long>(need)));
    outs[s] = static_cast<float*>(o.data);
    out_bytes[s] = static_cast<size_t>(need) * 4;
    if (overlaps(o.data, out_bytes[s], x.data, static_cast<size_t>(nx) * 4)) range_fail(op + ": outs[" + std::to_string(s) + "] overlaps x");
    for (size_t r = 0; r < s; r++) {
      if (overlaps(o.data, out_bytes[s], outs[r], out_bytes[r])) range_fail(op + ": outs[" + std::to_string(s) + "] overlaps outs[" + std::to_string(r) + "]");
    }
  }
  quant::quant_linear(p, static_cast<const float*>(x.data), M, outs.data(), accumulate);
}

QuantLinear* quant_handle(Napi::Value v) {
  if (!v.IsExternal()) return nullptr;
  auto e = v.As<Napi::External<QuantLinear>>();
  return e.CheckTypeTag(&kQuantTag) ? e.Data() : nullptr;
}

// The float op of the same name, kept per environment, for handles that are not quantized packs.
struct Forward {
  Napi::FunctionReference linear_packed, free_packed, embedding_packed;
};

Napi::Value forward(const Napi::CallbackInfo& info, Napi::FunctionReference& f) {
  std::vector<napi_value> args(info.Length());
  for (size_t i = 0; i < info.Length(); i++) args[i] = info[i];
  return f.Call(info.This(), args);
}

Napi::Value LinearPackedAny(const Napi::CallbackInfo& info) {
  if (QuantLinear* p = info.Length() > 0 ? quant_handle(info[0]) : nullptr) {
    try {
      LinearQuant(info, *p);
    } catch (const JsError& e) {
      if (e.range) Napi::RangeError::New(info.Env(), e.what()).ThrowAsJavaScriptException();
      else Napi::TypeError::New(info.Env(), e.what()).ThrowAsJavaScriptException();
    } catch (const std::bad_alloc&) {
      Napi::Error::New(info.Env(), "pagewise native: out of memory").ThrowAsJavaScriptException();
    } catch (const std::exception& e) {
      Napi::Error::New(info.Env(), std::string("pagewise native: ") + e.what()).ThrowAsJavaScriptException();
    }
    return info.Env().Undefined();
  }
  return forward(info, static_cast<Forward*>(info.Data())->linear_packed);
}

Napi::Value PackedLinearFreeAny(const Napi::CallbackInfo& info) {
  if (QuantLinear* p = info.Length() > 0 ? quant_handle(info[0]) : nullptr) {
    if (!p->freed) {
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -static_cast<int64_t>(p->bytes));
      quant::quant_linear_release(*p);  // the finalizer deletes the struct
    }
    return info.Env().Undefined();
  }
  return forward(info, static_cast<Forward*>(info.Data())->free_packed);
}

// Every id a row of a table of `rows`.
void check_ids(const std::string& op, const int32_t* id, int64_t T, int64_t rows) {
  for (int64_t t = 0; t < T; t++) {
    if (id[t] < 0 || id[t] >= rows) range_fail(op + ": ids[" + std::to_string(t) + "] = " + std::to_string(id[t]) + " is outside [0, " + std::to_string(rows) + ")");
  }
}

Napi::Value EmbeddingQuant(const Napi::CallbackInfo& info) {
  // embeddingQuant(out, table: Uint8Array, type, ids, hidden)
  const std::string op = "embeddingQuant";
  need_args(info, op.c_str(), 5);
  Napi::Env env = info.Env();
  const Span out = typed(env, info[0], napi_float32_array, op + ": out", "Float32Array");
  const Span table = typed(env, info[1], napi_uint8_array, op + ": table", "Uint8Array");
  const TypeInfo ti = type_arg(info[2], op + ": type");
  const Span ids = typed(env, info[3], napi_int32_array, op + ": ids", "Int32Array");
  const int64_t hidden = integer(info[4], op + ": hidden", 1, kMaxDim);
  check_k(ti, hidden, op + ": hidden");
  const size_t rb = row_bytes(ti, hidden);
  if (table.length % rb != 0) range_fail(op + ": table has " + std::to_string(table.length) + " bytes, not a whole number of rows of " + std::to_string(rb));
  const int64_t vocab = static_cast<int64_t>(table.length / rb);
  const int64_t T = static_cast<int64_t>(ids.length);
  if (static_cast<double>(out.length) < static_cast<double>(T) * static_cast<double>(hidden)) range_fail(op + ": out has " + std::to_string(out.length) + " elements, needs at least ids.length*hidden");
  const int32_t* id = static_cast<const int32_t*>(ids.data);
  check_ids(op, id, T, vocab);
  if (overlaps(out.data, static_cast<size_t>(T * hidden) * 4, table.data, table.length)) range_fail(op + ": out overlaps table");
  quant::embedding_quant(static_cast<float*>(out.data), static_cast<const uint8_t*>(table.data), info[2].As<Napi::Number>().Int32Value(), id, T, hidden);
  return env.Undefined();
}

Napi::Value EmbeddingPacked(const Napi::CallbackInfo& info) {
  // embeddingPacked(out, w, ids): rows of a one-part quantized pack (EmbeddingPackedAny below)
  const std::string op = "embeddingPacked";
  need_args(info, op.c_str(), 3);
  Napi::Env env = info.Env();
  QuantLinear* p = quant_handle(info[1]);  // a quantized pack: EmbeddingPackedAny checked
  if (p->freed) throw std::runtime_error(op + ": the packed weights have been freed");
  if (p->gate_up || p->parts.size() != 1) range_fail(op + ": w must be a pack of one part, not " + std::to_string(p->parts.size()) + (p->gate_up ? " (gate/up)" : ""));
  const Span out = typed(env, info[0], napi_float32_array, op + ": out", "Float32Array");
  const Span ids = typed(env, info[2], napi_int32_array, op + ": ids", "Int32Array");
  const int64_t T = static_cast<int64_t>(ids.length), rows = p->parts[0].n;
  if (static_cast<double>(out.length) < static_cast<double>(T) * static_cast<double>(p->K)) range_fail(op + ": out has " + std::to_string(out.length) + " elements, needs at least ids.length*K");
  const int32_t* id = static_cast<const int32_t*>(ids.data);
  check_ids(op, id, T, rows);
  quant::embedding_packed(static_cast<float*>(out.data), *p, id, T);
  return env.Undefined();
}

// embeddingPacked on a quantized pack here, on any other handle the float op (bind_linear.cc).
Napi::Value EmbeddingPackedAny(const Napi::CallbackInfo& info) {
  if (info.Length() > 1 && quant_handle(info[1])) return Guard<EmbeddingPacked>(info);
  return forward(info, static_cast<Forward*>(info.Data())->embedding_packed);
}

Napi::Value DequantizeRows(const Napi::CallbackInfo& info) {
  // dequantizeRows(type, src: Uint8Array, rows, k) -> Float32Array
  const std::string op = "dequantizeRows";
  need_args(info, op.c_str(), 4);
  Napi::Env env = info.Env();
  const TypeInfo ti = type_arg(info[0], op + ": type");
  const Span src = typed(env, info[1], napi_uint8_array, op + ": src", "Uint8Array");
  const int64_t rows = integer(info[2], op + ": rows", 0, kMaxDim);
  const int64_t k = integer(info[3], op + ": k", 1, kMaxDim);
  check_k(ti, k, op);
  const double want = static_cast<double>(row_bytes(ti, k)) * static_cast<double>(rows);
  if (static_cast<double>(src.length) != want) range_fail(op + ": src has " + std::to_string(src.length) + " bytes, rows x k values take " + std::to_string(static_cast<long long>(want)));
  if (static_cast<double>(rows) * static_cast<double>(k) > static_cast<double>(int64_t(1) << 30)) range_fail(op + ": rows*k too large");
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(rows * k));
  quant::dequantize_rows(info[0].As<Napi::Number>().Int32Value(), static_cast<const uint8_t*>(src.data), rows, k, out.Data());
  return out;
}

}  // namespace

Napi::Value QuantAmx(const Napi::CallbackInfo& info) {
  // quantAmx(on?: boolean): switches the AMX path of the quantized linear op (tests, benchmarks);
  // returns whether it runs now.
  int set = -1;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsBoolean()) type_fail("quantAmx: on must be a boolean");
    set = info[0].As<Napi::Boolean>().Value() ? 1 : 0;
  }
  return Napi::Boolean::New(info.Env(), quant::quant_amx(set));
}

void InitQuant(Napi::Env env, Napi::Object exports) {
  auto* fwd = new Forward();
  fwd->linear_packed = Napi::Persistent(exports.Get("linearPacked").As<Napi::Function>());
  fwd->free_packed = Napi::Persistent(exports.Get("packedLinearFree").As<Napi::Function>());
  fwd->embedding_packed = Napi::Persistent(exports.Get("embeddingPacked").As<Napi::Function>());
  env.AddCleanupHook([fwd]() { delete fwd; });
  exports.Set("linearPacked", Napi::Function::New(env, LinearPackedAny, "linearPacked", fwd));
  exports.Set("packedLinearFree", Napi::Function::New(env, PackedLinearFreeAny, "packedLinearFree", fwd));
  exports.Set("packLinearQuant", Napi::Function::New<Guard<PackLinearQuant>>(env, "packLinearQuant"));
  exports.Set("packGateUpQuant", Napi::Function::New<Guard<PackGateUpQuant>>(env, "packGateUpQuant"));
  exports.Set("embeddingQuant", Napi::Function::New<Guard<EmbeddingQuant>>(env, "embeddingQuant"));
  exports.Set("embeddingPacked", Napi::Function::New(env, EmbeddingPackedAny, "embeddingPacked", fwd));
  exports.Set("dequantizeRows", Napi::Function::New<Guard<DequantizeRows>>(env, "dequantizeRows"));
  exports.Set("quantAmx", Napi::Function::New<Guard<QuantAmx>>(env, "quantAmx"));
}

}  // namespace pw
