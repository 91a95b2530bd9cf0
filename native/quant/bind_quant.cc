// N-API bindings of the quantized-weight ops, on binding.h's argument readers: every argument is
// validated before any kernel runs (types, GGML type ids, sizes against the block geometry, index
// ranges), and a bad call throws a TypeError / RangeError, never crashes. linearPacked,
// embeddingPacked and packedLinearFree take quantized packs as well as float ones (bind_linear.cc).
#include "bind_quant.h"

#include <string>
#include <vector>

#include "../binding.h"
#include "kernels.h"
#include "quant.h"

namespace pw {

using quant::QuantLinear;
using quant::TypeInfo;

namespace {

const napi_type_tag kQuantTag = {0x7061676577697365ull, 0x716c696e65617231ull};  // "pagewise" "qlinear1"

// A GGML type id this backend has kernels for.
TypeInfo type_value(const Args& a, Napi::Value v, const char* name) {
  const int64_t t = a.integer_value(v, name, -1000000, 1000000);
  TypeInfo ti;
  if (!quant::type_info(static_cast<int>(t), &ti)) {
    a.range_fail(name, "is not a supported quantized GGML type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS): " + std::to_string(t));
  }
  return ti;
}

void check_k(const Args& a, const TypeInfo& ti, int64_t K, const char* name) {
  if (K % ti.block != 0) a.range_fail(name, "has K = " + std::to_string(K) + ", not a multiple of the " + ti.name + " block (" + std::to_string(ti.block) + ")");
}

size_t row_bytes(const TypeInfo& ti, int64_t K) { return static_cast<size_t>(K / ti.block) * ti.bytes; }

// v holds exactly `rows` rows of K values of the type (`rows_name`: how the message names the
// count). Load-time checks: the message's shape is built eagerly.
void need_rows(const Args& a, const View<uint8_t>& v, const char* name, const TypeInfo& ti, int64_t rows, const char* rows_name,
               int64_t K) {
  const std::string shape = std::string(rows_name) + " rows of " + std::to_string(K) + " " + ti.name + " values";
  a.need_exactly(v, name, mul_checked(a.op(), name, {rows, static_cast<int64_t>(row_bytes(ti, K))}), shape.c_str());
}

Napi::Value make_pack(Napi::Env env, const char* op, int64_t K, bool gate_up, const std::vector<int>& types,
                      const std::vector<int64_t>& ns, const std::vector<const uint8_t*>& src,
                      const std::vector<const float*>& bias) {
  auto* p = new QuantLinear();
  if (!quant::quant_linear_init(*p, K, gate_up, types, ns, src, bias)) {
    delete p;
    plain_error(std::string(op) + ": out of memory packing weights");
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
  Args a(info, "packLinearQuant", 2);
  Napi::Env env = info.Env();
  const int64_t K = a.integer(1, "K", 1, kMaxDim);
  if (!info[0].IsArray()) a.type_fail("parts", "must be an array of {w, type, n, bias?}");
  Napi::Array parts = info[0].As<Napi::Array>();
  const uint32_t count = parts.Length();
  if (count == 0 || count > 64) a.range_fail("parts", "must hold 1 to 64 weight matrices, got " + std::to_string(count));
  std::vector<int> types;
  std::vector<int64_t> ns;
  std::vector<const uint8_t*> src;
  std::vector<const float*> bias;
  int64_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    // Load-time only: the labels are built eagerly.
    const std::string w = "parts[" + std::to_string(i) + "]";
    Napi::Value e = parts.Get(i);
    if (!e.IsObject()) a.type_fail(w.c_str(), "must be an object {w, type, n, bias?}");
    Napi::Object o = e.As<Napi::Object>();
    const TypeInfo ti = type_value(a, o.Get("type"), (w + ".type").c_str());
    const int64_t n = a.integer_value(o.Get("n"), (w + ".n").c_str(), 1, kMaxDim);
    total += n;
    if (total > kMaxDim) a.range_fail("parts", "have more than 2^31 - 1 rows in all");
    check_k(a, ti, K, w.c_str());
    const auto data = a.typed_value<uint8_t, napi_uint8_array>(o.Get("w"), (w + ".w").c_str(), "Uint8Array");
    need_rows(a, data, (w + ".w").c_str(), ti, n, "n", K);
    const float* b = nullptr;
    Napi::Value bv = o.Get("bias");
    if (!bv.IsUndefined() && !bv.IsNull()) {
      const auto bs = a.typed_value<float, napi_float32_array>(bv, (w + ".bias").c_str(), "Float32Array");
      a.need_exactly(bs, (w + ".bias").c_str(), static_cast<size_t>(n), "n");
      b = bs.data;
    }
    types.push_back(static_cast<int>(o.Get("type").As<Napi::Number>().Int32Value()));
    ns.push_back(n);
    src.push_back(data.data);
    bias.push_back(b);
  }
  return make_pack(env, a.op(), K, false, types, ns, src, bias);
}

Napi::Value PackGateUpQuant(const Napi::CallbackInfo& info) {
  // packGateUpQuant(gate: Uint8Array, gateType, up: Uint8Array, upType, I, K)
  Args a(info, "packGateUpQuant", 6);
  const TypeInfo tg = type_value(a, info[1], "gateType");
  const TypeInfo tu = type_value(a, info[3], "upType");
  const int64_t I = a.integer(4, "I", 1, kMaxDim / 2);
  const int64_t K = a.integer(5, "K", 1, kMaxDim);
  check_k(a, tg, K, "gate");
  check_k(a, tu, K, "up");
  const auto g = a.u8(0, "gate");
  const auto u = a.u8(2, "up");
  need_rows(a, g, "gate", tg, I, "I", K);
  need_rows(a, u, "up", tu, I, "I", K);
  const int gt = info[1].As<Napi::Number>().Int32Value(), ut = info[3].As<Napi::Number>().Int32Value();
  return make_pack(info.Env(), a.op(), K, true, {gt, ut}, {I, I}, {g.data, u.data}, {nullptr, nullptr});
}

Napi::Value EmbeddingQuant(const Napi::CallbackInfo& info) {
  // embeddingQuant(out, table: Uint8Array, type, ids, hidden)
  Args a(info, "embeddingQuant", 5);
  const auto out = a.f32(0, "out");
  const auto table = a.u8(1, "table");
  const TypeInfo ti = type_value(a, info[2], "type");
  const auto ids = a.i32(3, "ids");
  const int64_t hidden = a.integer(4, "hidden", 1, kMaxDim);
  check_k(a, ti, hidden, "hidden");
  const size_t rb = row_bytes(ti, hidden);
  if (table.len % rb != 0) a.range_fail("table", "has " + std::to_string(table.len) + " bytes, not a whole number of rows of " + std::to_string(rb));
  const int64_t vocab = static_cast<int64_t>(table.len / rb);
  const int64_t T = static_cast<int64_t>(ids.len);
  const size_t no = mul_checked(a.op(), "out", {T, hidden});
  a.need_at_least(out, "out", no, "ids.length*hidden");
  for (int64_t t = 0; t < T; t++) a.need_index("ids", {t}, ids.data[t], 0, vocab);
  if (overlaps(out.data, no * 4, table.data, table.len)) a.range_fail("out", "overlaps table");
  quant::embedding_quant(out.data, table.data, info[2].As<Napi::Number>().Int32Value(), ids.data, T, hidden);
  return info.Env().Undefined();
}

Napi::Value DequantizeRows(const Napi::CallbackInfo& info) {
  // dequantizeRows(type, src: Uint8Array, rows, k) -> Float32Array
  Args a(info, "dequantizeRows", 4);
  const TypeInfo ti = type_value(a, info[0], "type");
  const auto src = a.u8(1, "src");
  const int64_t rows = a.integer(2, "rows", 0, kMaxDim);
  const int64_t k = a.integer(3, "k", 1, kMaxDim);
  check_k(a, ti, k, "k");
  need_rows(a, src, "src", ti, rows, "rows", k);
  if (static_cast<double>(rows) * static_cast<double>(k) > static_cast<double>(int64_t(1) << 30)) a.range_fail("rows", "* k is too large");
  Napi::Float32Array out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(rows * k));
  quant::dequantize_rows(info[0].As<Napi::Number>().Int32Value(), src.data, rows, k, out.Data());
  return out;
}

Napi::Value QuantAmx(const Napi::CallbackInfo& info) {
  // quantAmx(on?: boolean): switches the AMX path of the quantized linear op (tests, benchmarks);
  // returns whether it runs now.
  Args a(info, "quantAmx", 0);
  const int set = info.Length() > 0 && !info[0].IsUndefined() ? (a.boolean(0, "on") ? 1 : 0) : -1;
  return Napi::Boolean::New(info.Env(), quant::quant_amx(set));
}

}  // namespace

QuantLinear* quant_pack(Napi::Value v) {
  if (!v.IsExternal()) return nullptr;
  auto e = v.As<Napi::External<QuantLinear>>();
  return e.CheckTypeTag(&kQuantTag) ? e.Data() : nullptr;
}

void quant_pack_free(Napi::Env env, QuantLinear& p) {
  if (p.freed) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(p.bytes));
  quant::quant_linear_release(p);  // the finalizer deletes the struct
}

void InitQuant(Napi::Env env, Napi::Object exports) {
  bind<PackLinearQuant>(env, exports, "packLinearQuant");
  bind<PackGateUpQuant>(env, exports, "packGateUpQuant");
  bind<EmbeddingQuant>(env, exports, "embeddingQuant");
  bind<DequantizeRows>(env, exports, "dequantizeRows");
  bind<QuantAmx>(env, exports, "quantAmx");
}

}  // namespace pw
