// What every N-API binding of the Pagewise CPU backend uses to read and check its arguments
// (contract: src/backend/backend.ts and native.ts). One set of helpers, so every binding reports
// bad input the same way: a JS TypeError for a wrong type, a RangeError for a value out of range,
// each message "op: argument what-is-wrong". A binding never crashes or writes out of bounds.
//
// A binding is a plain function that throws the C++ errors below; `bind<F>(env, exports, name)`
// wraps it in Guard, which turns them (and std::bad_alloc) into JS exceptions. Each binding file
// (bind_*.cc) defines one Init…(env, exports) that addon.cc calls.
//
// Arrays that hold parameters (weights, bias, norm weight, invFreq) must have exactly the size of
// their shape; activation and output arrays must have at least that size (callers may pass
// preallocated workspaces; only the leading part is used).
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>

#include "common.h"

namespace pw {

// ---- errors ----

struct JsError : std::runtime_error {
  enum Kind { Type, Range, Plain } kind;
  JsError(Kind k, const std::string& m) : std::runtime_error(m), kind(k) {}
};

[[noreturn]] inline void type_error(const std::string& m) { throw JsError(JsError::Type, m); }
[[noreturn]] inline void range_error(const std::string& m) { throw JsError(JsError::Range, m); }
[[noreturn]] inline void plain_error(const std::string& m) { throw JsError(JsError::Plain, m); }

using Binding = Napi::Value (*)(const Napi::CallbackInfo&);

template <Binding F>
Napi::Value Guard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return F(info);
  } catch (const JsError& e) {
    if (e.kind == JsError::Type) {
      Napi::TypeError::New(env, e.what()).ThrowAsJavaScriptException();
    } else if (e.kind == JsError::Range) {
      Napi::RangeError::New(env, e.what()).ThrowAsJavaScriptException();
    } else {
      Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
    }
  } catch (const std::bad_alloc&) {
    Napi::Error::New(env, "pagewise native: out of memory").ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(env, std::string("pagewise native: ") + e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// exports[name] = F, guarded.
template <Binding F>
void bind(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New<Guard<F>>(env, name));
}

// ---- formatting and shape arithmetic ----

// A number as a message shows it: integers without a fraction.
inline std::string num(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e18) return std::to_string(static_cast<long long>(v));
  return std::to_string(v);
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

// Largest dimension a binding accepts (shapes index with int32 on the JS side).
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

// Element count of a shape, throwing RangeError on overflow past 2^53.
inline size_t mul_checked(const char* op, const char* what, std::initializer_list<int64_t> dims) {
  unsigned __int128 p = 1;
  for (int64_t d : dims) {
    p *= static_cast<uint64_t>(d);
    if (p > (static_cast<unsigned __int128>(1) << 53)) range_error(std::string(op) + ": " + what + " is too large");
  }
  return static_cast<size_t>(p);
}

// Byte ranges [a, a+na) and [b, b+nb) overlap?
inline bool overlaps(const void* a, size_t na, const void* b, size_t nb) {
  if (na == 0 || nb == 0) return false;
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + nb && pb < pa + na;
}

// ---- argument reading ----

template <typename T>
struct View {
  T* data = nullptr;
  size_t len = 0;  // elements
};

// A typed array's data and length if `v` is a typed array of `kind` (a detached one has no data
// and no elements); false otherwise. The C call gives the data pointer (offset applied) for
// ArrayBuffer- and SharedArrayBuffer-backed arrays alike.
template <typename T>
bool typed_view(Napi::Env env, Napi::Value v, napi_typedarray_type kind, View<T>* out) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != kind) {
    return false;
  }
  out->len = data == nullptr ? 0 : length;
  out->data = static_cast<T*>(data);
  return true;
}

// Argument reader bound to one call; messages name the op and the argument.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op, size_t count) : info_(info), op_(op) {
    if (info.Length() < count) {
      type_error(std::string(op) + ": expected " + std::to_string(count) + " arguments, got " +
                 std::to_string(info.Length()));
    }
  }

  [[noreturn]] void type_fail(const char* name, const std::string& why) const {
    type_error(std::string(op_) + ": " + name + " " + why);
  }
  [[noreturn]] void range_fail(const char* name, const std::string& why) const {
    range_error(std::string(op_) + ": " + name + " " + why);
  }

  // The readers take the argument's index, or (…_value) a value found inside one (an element or a
  // property), named as the message should show it.
  double number(size_t i, const char* name) const { return number_value(info_[i], name); }
  double number_value(Napi::Value v, const char* name) const {
    if (!v.IsNumber()) type_fail(name, "must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }

  int64_t integer(size_t i, const char* name, int64_t lo, int64_t hi) const { return integer_value(info_[i], name, lo, hi); }
  int64_t integer_value(Napi::Value v, const char* name, int64_t lo, int64_t hi) const {
    const double d = number_value(v, name);
    if (!std::isfinite(d) || d != std::floor(d)) type_fail(name, "must be an integer, got " + num(d));
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      range_fail(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + num(d));
    }
    return static_cast<int64_t>(d);
  }

  bool boolean(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsBoolean()) type_fail(name, "must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }

  DType dtype(size_t i, const char* name) const {
    const int64_t d = integer(i, name, -1000000, 1000000);
    if (d < 0 || d > 2) range_fail(name, "is not a DType (F32=0, F16=1, BF16=2): " + std::to_string(d));
    return static_cast<DType>(d);
  }

  template <typename T, napi_typedarray_type Kind>
  View<T> typed(size_t i, const char* name, const char* type_name) const {
    return typed_value<T, Kind>(info_[i], name, type_name);
  }
  template <typename T, napi_typedarray_type Kind>
  View<T> typed_value(Napi::Value v, const char* name, const char* type_name) const {
    View<T> out;
    if (!typed_view(info_.Env(), v, Kind, &out)) type_fail(name, std::string("must be a ") + type_name);
    return out;
  }

  View<float> f32(size_t i, const char* name) const { return typed<float, napi_float32_array>(i, name, "Float32Array"); }
  View<double> f64(size_t i, const char* name) const { return typed<double, napi_float64_array>(i, name, "Float64Array"); }
  View<int32_t> i32(size_t i, const char* name) const { return typed<int32_t, napi_int32_array>(i, name, "Int32Array"); }
  View<uint16_t> u16(size_t i, const char* name) const { return typed<uint16_t, napi_uint16_array>(i, name, "Uint16Array"); }
  View<uint8_t> u8(size_t i, const char* name) const { return typed<uint8_t, napi_uint8_array>(i, name, "Uint8Array"); }

  bool is_nullish(size_t i) const {
    Napi::Value v = info_[i];
    return v.IsNull() || v.IsUndefined();
  }

  // Weight array for a dtype: raw bits, Float32Array for F32 and Uint16Array for F16 / BF16.
  View<const void> weights(size_t i, const char* name, DType d) const {
    View<const void> w;
    if (d == DType::F32) {
      View<float> f;
      if (!typed_view(info_.Env(), info_[i], napi_float32_array, &f)) type_fail(name, "must be a Float32Array for dtype F32");
      w.data = f.data;
      w.len = f.len;
    } else {
      View<uint16_t> u;
      if (!typed_view(info_.Env(), info_[i], napi_uint16_array, &u)) {
        type_fail(name, std::string("must be a Uint16Array for dtype ") + dtype_name(d));
      }
      w.data = u.data;
      w.len = u.len;
    }
    return w;
  }

  template <typename T>
  void need_at_least(const View<T>& v, const char* name, size_t n, const char* shape) const {
    if (v.len < n) {
      range_fail(name, "has " + std::to_string(v.len) + " elements, needs at least " + shape + " = " +
                           std::to_string(n));
    }
  }
  template <typename T>
  void need_exactly(const View<T>& v, const char* name, size_t n, const char* shape) const {
    if (v.len != n) {
      range_fail(name, "has " + std::to_string(v.len) + " elements, expected " + shape + " = " + std::to_string(n));
    }
  }

  // An index into an array of `size` elements: "name[where] = v is out of range [lo, size)", where
  // is the element's position (one or two numbers), formatted only when the check fails (these run
  // per element on every call).
  void need_index(const char* name, std::initializer_list<int64_t> where, int64_t v, int64_t lo, int64_t size,
                  const char* what = "is out of range") const {
    if (v < lo || v >= size) index_fail(name, where, v, lo, size, what);
  }
  [[noreturn]] void index_fail(const char* name, std::initializer_list<int64_t> where, int64_t v, int64_t lo, int64_t size,
                               const char* what) const {
    std::string at;
    for (int64_t w : where) at += (at.empty() ? "" : ", ") + std::to_string(w);
    range_fail(name, "[" + at + "] = " + std::to_string(v) + " " + what + " [" + std::to_string(lo) + ", " + std::to_string(size) + ")");
  }

  const char* op() const { return op_; }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
};

// The arguments of a gated activation op(out, gate, up, M, I, gateStride, upStride) (siluMul,
// geluTanhMul), checked: row strides of at least I, buffers long enough, and out aliasing gate or
// up only exactly (rows run in parallel).
struct GatedMulArgs {
  View<float> out, gate, up;
  int64_t M, I, gs, us;
};

inline GatedMulArgs read_gated_mul(const Napi::CallbackInfo& info, const char* op) {
  Args a(info, op, 7);
  GatedMulArgs g{a.f32(0, "out"), a.f32(1, "gate"), a.f32(2, "up"), a.integer(3, "M", 0, kMaxDim), a.integer(4, "I", 0, kMaxDim),
                 a.integer(5, "gateStride", 0, int64_t(1) << 40), a.integer(6, "upStride", 0, int64_t(1) << 40)};
  const int64_t M = g.M, I = g.I, gs = g.gs, us = g.us;
  if (M > 1 && gs < I) a.range_fail("gateStride", "must be >= I (" + std::to_string(I) + "), got " + std::to_string(gs));
  if (M > 1 && us < I) a.range_fail("upStride", "must be >= I (" + std::to_string(I) + "), got " + std::to_string(us));
  if (M > 0 && I > 0) {
    a.need_at_least(g.out, "out", mul_checked(op, "out", {M, I}), "M*I");
    a.need_at_least(g.gate, "gate", mul_checked(op, "gate", {M - 1, gs}) + static_cast<size_t>(I), "(M-1)*gateStride+I");
    a.need_at_least(g.up, "up", mul_checked(op, "up", {M - 1, us}) + static_cast<size_t>(I), "(M-1)*upStride+I");
    const size_t no = static_cast<size_t>(M * I) * 4;
    const size_t ng = (static_cast<size_t>(M - 1) * gs + I) * 4, nu = (static_cast<size_t>(M - 1) * us + I) * 4;
    const bool g_ok = !overlaps(g.out.data, no, g.gate.data, ng) || (g.out.data == g.gate.data && (gs == I || M == 1));
    const bool u_ok = !overlaps(g.out.data, no, g.up.data, nu) || (g.out.data == g.up.data && (us == I || M == 1));
    if (!g_ok) a.range_fail("out", "overlaps gate (only out === gate with gateStride === I is allowed)");
    if (!u_ok) a.range_fail("out", "overlaps up (only out === up with upStride === I is allowed)");
  }
  return g;
}

}  // namespace pw
