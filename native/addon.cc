// N-API bindings of the Pagewise CPU backend (contract: src/backend/native.ts).
//
// Every binding validates its arguments before any kernel runs: types, dtype values, array
// lengths against the given shapes, and index arrays (ids, slots, block tables) against their
// ranges. A bad call throws a JS TypeError / RangeError; it never crashes or writes out of bounds.
// Arrays that hold parameters (weights, bias, norm weight, invFreq) must have exactly the size of
// their shape; activation and output arrays must have at least that size (callers may pass
// preallocated workspaces; only the leading part is used).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>

#include "common.h"
#include "ops.h"
#include "ops_sampling.h"
#include "quant/bind_quant.h"

namespace pw {
namespace {

// ---------------------------------------------------------------------------------------------
// Errors: bindings throw these C++ exceptions; Guard turns them into JS exceptions.

struct JsError : std::runtime_error {
  enum Kind { Type, Range, Plain } kind;
  JsError(Kind k, const std::string& m) : std::runtime_error(m), kind(k) {}
};

[[noreturn]] void type_error(const std::string& m) { throw JsError(JsError::Type, m); }
[[noreturn]] void range_error(const std::string& m) { throw JsError(JsError::Range, m); }
[[noreturn]] void plain_error(const std::string& m) { throw JsError(JsError::Plain, m); }

using Binding = Napi::Value (*)(const Napi::CallbackInfo&);

template <Binding F>
Napi::Value Guard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    Napi::Value v = F(info);
    return v;
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

std::string num(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e18) return std::to_string(static_cast<long long>(v));
  return std::to_string(v);
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Scalar: return "Scalar";
    case Isa::Avx2: return "Avx2";
    case Isa::Avx512: return "Avx512";
    case Isa::Avx512Bf16: return "Avx512Bf16";
  }
  return "?";
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

template <typename T>
struct View {
  T* data = nullptr;
  size_t len = 0;  // elements
};

// Element count of a shape, throwing RangeError on overflow past 2^53.
size_t mul_checked(const char* op, const char* what, std::initializer_list<int64_t> dims) {
  unsigned __int128 p = 1;
  for (int64_t d : dims) {
    p *= static_cast<uint64_t>(d);
    if (p > (static_cast<unsigned __int128>(1) << 53)) range_error(std::string(op) + ": " + what + " is too large");
  }
  return static_cast<size_t>(p);
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

  double number(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsNumber()) type_fail(name, "must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }

  int64_t integer(size_t i, const char* name, int64_t lo, int64_t hi) const {
    const double d = number(i, name);
    if (!std::isfinite(d) || d != std::floor(d)) type_fail(name, "must be an integer, got " + num(d));
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      range_fail(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + num(d));
    }
    return static_cast<int64_t>(d);
  }

  DType dtype(size_t i, const char* name) const {
    const int64_t d = integer(i, name, -1000000, 1000000);
    if (d < 0 || d > 2) range_fail(name, "is not a DType (F32=0, F16=1, BF16=2): " + std::to_string(d));
    return static_cast<DType>(d);
  }

  template <typename T, napi_typedarray_type Kind>
  View<T> typed(size_t i, const char* name, const char* type_name) const {
    Napi::Value v = info_[i];
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    // The C call gives the data pointer (offset applied) for ArrayBuffer- and
    // SharedArrayBuffer-backed arrays alike.
    if (!v.IsTypedArray() ||
        napi_get_typedarray_info(info_.Env(), v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
        type != Kind) {
      type_fail(name, std::string("must be a ") + type_name);
    }
    View<T> out;
    out.len = data == nullptr ? 0 : length;  // detached: no data, no elements
    out.data = static_cast<T*>(data);
    return out;
  }

  View<float> f32(size_t i, const char* name) const {
    return typed<float, napi_float32_array>(i, name, "Float32Array");
  }
  View<int32_t> i32(size_t i, const char* name) const {
    return typed<int32_t, napi_int32_array>(i, name, "Int32Array");
  }
  View<uint16_t> u16(size_t i, const char* name) const {
    return typed<uint16_t, napi_uint16_array>(i, name, "Uint16Array");
  }

  bool is_nullish(size_t i) const {
    Napi::Value v = info_[i];
    return v.IsNull() || v.IsUndefined();
  }

  // Weight array for a dtype: raw bits, Float32Array for F32 and Uint16Array for F16 / BF16.
  View<const void> weights(size_t i, const char* name, DType d) const {
    View<const void> w;
    if (d == DType::F32) {
      Napi::Value v = info_[i];
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        type_fail(name, "must be a Float32Array for dtype F32");
      }
      auto f = f32(i, name);
      w.data = f.data;
      w.len = f.len;
    } else {
      Napi::Value v = info_[i];
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
        type_fail(name, std::string("must be a Uint16Array for dtype ") + dtype_name(d));
      }
      auto u = u16(i, name);
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

  const char* op() const { return op_; }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
};

// Byte ranges [a, a+na) and [b, b+nb) overlap?
bool overlaps(const void* a, size_t na, const void* b, size_t nb) {
  if (na == 0 || nb == 0) return false;
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + nb && pb < pa + na;
}

constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

// ---------------------------------------------------------------------------------------------
// Runtime, threads, memory

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("f16c", f.f16c);
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bw", f.avx512bw);
  o.Set("avx512bf16", f.avx512bf16);
  o.Set("detectedIsa", static_cast<int>(detected_isa()));
  o.Set("activeIsa", static_cast<int>(active_isa()));
  return o;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Args a(info, "setIsa", 1);
  const int64_t v = a.integer(0, "isa", -1000000, 1000000);
  if (v < 0 || v > 3) a.range_fail("isa", "is not an Isa (Scalar=0, Avx2=1, Avx512=2, Avx512Bf16=3): " + std::to_string(v));
  const Isa isa = static_cast<Isa>(v);
  if (static_cast<int>(isa) > static_cast<int>(detected_isa())) {
    range_error(std::string("setIsa: this CPU does not support ") + isa_name(isa) + " (best: " +
                isa_name(detected_isa()) + ")");
  }
  set_active_isa(isa);
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setThreads", 1);
  set_num_threads(static_cast<int>(a.integer(0, "n", 1, 1024)));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

Napi::Value MmapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) type_error("mmapFile: path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.find('\0') != std::string::npos) type_error("mmapFile: path contains a NUL character");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) plain_error("mmapFile: cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    plain_error("mmapFile: cannot stat '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    plain_error("mmapFile: '" + path + "' is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  // Private mapping: the file is never modified. PROT_WRITE only makes an accidental write from
  // JS land in a private copy-on-write page instead of killing the process with SIGSEGV; pages
  // that are only read stay shared with the page cache.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  const int e = errno;
  close(fd);
  if (p == MAP_FAILED) plain_error("mmapFile: cannot map '" + path + "': " + std::strerror(e));
  return Napi::ArrayBuffer::New(env, p, size, [size](Napi::Env, void* data) { munmap(data, size); });
}

Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "allocAligned", 1);
  const int64_t bytes = a.integer(0, "bytes", 0, int64_t(1) << 48);
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  const size_t n = static_cast<size_t>(bytes);
  void* p = aligned_alloc_zeroed(n);
  if (!p) plain_error("allocAligned: out of memory allocating " + std::to_string(n) + " bytes");
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(n));
  return Napi::ArrayBuffer::New(env, p, n, [n](Napi::Env e, void* data) {
    aligned_free(data, n);
    Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(n));
  });
}

// ---------------------------------------------------------------------------------------------
// Elementwise ops

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
    if (ids.data[t] < 0 || ids.data[t] >= vocab) {
      a.range_fail("ids", "[" + std::to_string(t) + "] = " + std::to_string(ids.data[t]) + " is out of range [0, " +
                              std::to_string(vocab) + ")");
    }
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

// ---------------------------------------------------------------------------------------------
// Linear

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

// ---------------------------------------------------------------------------------------------
// Pre-packed linear

const napi_type_tag kPackedTag = {0x7061676577697365ull, 0x706b6c696e656172ull};  // "pagewise" "pklinear"

PackedLinear& packed_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Napi::Value v = info[i];
  if (!v.IsExternal() || !v.As<Napi::External<PackedLinear>>().CheckTypeTag(&kPackedTag)) {
    type_error(std::string(op) + ": w must be a handle returned by packLinear or packGateUp");
  }
  PackedLinear* p = v.As<Napi::External<PackedLinear>>().Data();
  if (p->freed) plain_error(std::string(op) + ": the packed weights have been freed");
  return *p;
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
    const bool is_f32 = wv.IsTypedArray() && wv.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
    const bool is_u16 = wv.IsTypedArray() && wv.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
    if (dt == DType::F32 ? !is_f32 : !is_u16) {
      a.type_fail("parts", "[" + std::to_string(i) + "].w must be a " + (dt == DType::F32 ? "Float32Array" : "Uint16Array") +
                               " for dtype " + dtype_name(dt));
    }
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    napi_get_typedarray_info(env, wv, &type, &length, &data, nullptr, nullptr);
    if (data == nullptr) length = 0;
    const size_t want = mul_checked(a.op(), "w", {n, K});
    if (length != want) {
      a.range_fail("parts", "[" + std::to_string(i) + "].w has " + std::to_string(length) + " elements, expected n*K = " +
                                std::to_string(want));
    }
    const float* b = nullptr;
    Napi::Value bv = o.Get("bias");
    if (!bv.IsNull() && !bv.IsUndefined()) {
      if (!bv.IsTypedArray() || bv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        a.type_fail("parts", "[" + std::to_string(i) + "].bias must be a Float32Array, null or undefined");
      }
      size_t blen = 0;
      void* bdata = nullptr;
      napi_get_typedarray_info(env, bv, &type, &blen, &bdata, nullptr, nullptr);
      if (bdata == nullptr) blen = 0;
      if (blen != static_cast<size_t>(n)) {
        a.range_fail("parts", "[" + std::to_string(i) + "].bias has " + std::to_string(blen) + " elements, expected n = " +
                                  std::to_string(n));
      }
      b = static_cast<const float*>(bdata);
    }
    seg_n.push_back(n);
    src.push_back(data);
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
  PackedLinear& p = packed_arg(info, 0, a.op());
  auto x = a.f32(1, "x");
  const int64_t M = a.integer(2, "M", 0, kMaxDim);
  if (!info[3].IsArray()) a.type_fail("outs", "must be an array of Float32Array");
  if (!info[4].IsBoolean()) a.type_fail("accumulate", "must be a boolean");
  const bool accumulate = info[4].As<Napi::Boolean>().Value();
  Napi::Array arr = info[3].As<Napi::Array>();
  const size_t nout = p.segs.size();
  if (arr.Length() != nout) {
    a.range_fail("outs", "has " + std::to_string(arr.Length()) + " arrays, the packed weights have " + std::to_string(nout) +
                             " output" + (nout == 1 ? "" : "s"));
  }
  const size_t nx = mul_checked(a.op(), "x", {M, p.K});
  a.need_at_least(x, "x", nx, "M*K");
  float* outs[64];
  size_t out_bytes[64];
  for (size_t s = 0; s < nout; s++) {
    Napi::Value v = arr.Get(static_cast<uint32_t>(s));
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (!v.IsTypedArray() || napi_get_typedarray_info(info.Env(), v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
        type != napi_float32_array) {
      a.type_fail("outs", "[" + std::to_string(s) + "] must be a Float32Array");
    }
    if (data == nullptr) length = 0;
    const size_t need = mul_checked(a.op(), "out", {M, p.segs[s].n});
    if (length < need) {
      a.range_fail("outs", "[" + std::to_string(s) + "] has " + std::to_string(length) + " elements, needs at least M*n = " +
                               std::to_string(need));
    }
    outs[s] = static_cast<float*>(data);
    out_bytes[s] = need * 4;
    if (overlaps(data, need * 4, x.data, nx * 4)) a.range_fail("outs", "[" + std::to_string(s) + "] overlaps x");
    for (size_t r = 0; r < s; r++) {
      if (overlaps(data, need * 4, outs[r], out_bytes[r])) {
        a.range_fail("outs", "[" + std::to_string(s) + "] overlaps outs[" + std::to_string(r) + "]");
      }
    }
  }
  linear_packed(p, x.data, M, outs, accumulate);
  return info.Env().Undefined();
}

Napi::Value PackedLinearFree(const Napi::CallbackInfo& info) {
  Args a(info, "packedLinearFree", 1);
  Napi::Value v = info[0];
  if (!v.IsExternal() || !v.As<Napi::External<PackedLinear>>().CheckTypeTag(&kPackedTag)) {
    type_error("packedLinearFree: w must be a handle returned by packLinear or packGateUp");
  }
  PackedLinear* p = v.As<Napi::External<PackedLinear>>().Data();
  if (!p->freed) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -static_cast<int64_t>(p->bytes));
    packed_linear_release(*p);  // the finalizer deletes the struct
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// KV cache

const napi_type_tag kKvCacheTag = {0x7061676577697365ull, 0x6b76636163686531ull};  // "pagewise" "kvcache1"

KvCache& cache_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Napi::Value v = info[i];
  if (!v.IsExternal() || !v.As<Napi::External<KvCache>>().CheckTypeTag(&kKvCacheTag)) {
    type_error(std::string(op) + ": cache must be a handle returned by kvCacheCreate");
  }
  KvCache* c = v.As<Napi::External<KvCache>>().Data();
  if (c->freed) plain_error(std::string(op) + ": the KV cache has been freed");
  return *c;
}

struct KvShape {
  int64_t layers, blocks, block_size, kv_heads, head_dim;
  DType dtype;
};

// Reads (numLayers, [numBlocks,] blockSize, kvHeads, headDim, dtype) starting at argument 0.
KvShape kv_shape(const Args& a, bool with_blocks) {
  KvShape s{};
  size_t i = 0;
  s.layers = a.integer(i++, "numLayers", 1, 1 << 20);
  s.blocks = with_blocks ? a.integer(i++, "numBlocks", 1, kMaxDim) : 1;
  s.block_size = a.integer(i++, "blockSize", 1, 1 << 20);
  s.kv_heads = a.integer(i++, "kvHeads", 1, 1 << 20);
  s.head_dim = a.integer(i++, "headDim", 1, 1 << 20);
  s.dtype = a.dtype(i++, "dtype");
  if (s.dtype == DType::F16) a.range_fail("dtype", "must be F32 or BF16 for a KV cache");
  if (s.blocks * s.block_size > kMaxDim) {
    a.range_fail("numBlocks", "* blockSize must fit in an Int32 slot index (< 2^31)");
  }
  return s;
}

Napi::Value KvCacheBlockBytes(const Napi::CallbackInfo& info) {
  // kvCacheBlockBytes(numLayers, blockSize, kvHeads, headDim, dtype)
  Args a(info, "kvCacheBlockBytes", 5);
  KvShape s = kv_shape(a, false);
  const size_t per = mul_checked(a.op(), "block", {s.layers, 2, s.block_size, s.kv_heads, s.head_dim,
                                                   static_cast<int64_t>(dtype_bytes(s.dtype))});
  return Napi::Number::New(info.Env(), static_cast<double>(per));
}

Napi::Value KvCacheCreate(const Napi::CallbackInfo& info) {
  // kvCacheCreate(numLayers, numBlocks, blockSize, kvHeads, headDim, dtype)
  Napi::Env env = info.Env();
  Args a(info, "kvCacheCreate", 6);
  KvShape s = kv_shape(a, true);
  const size_t pool = mul_checked(a.op(), "cache", {s.blocks, 2, s.block_size, s.kv_heads, s.head_dim,
                                                    static_cast<int64_t>(dtype_bytes(s.dtype))});
  mul_checked(a.op(), "cache", {static_cast<int64_t>(pool), s.layers});
  auto* c = new KvCache();
  c->num_layers = s.layers;
  c->num_blocks = s.blocks;
  c->block_size = s.block_size;
  c->kv_heads = s.kv_heads;
  c->head_dim = s.head_dim;
  c->dtype = s.dtype;
  c->pool_bytes = pool;
  if (!kv_cache_alloc(*c)) {
    delete c;
    plain_error("kvCacheCreate: out of memory allocating " + std::to_string(pool * s.layers) + " bytes");
  }
  Napi::External<KvCache> h = Napi::External<KvCache>::New(env, c, [](Napi::Env, KvCache* p) {
    kv_cache_release(*p);
    delete p;
  });
  h.TypeTag(&kKvCacheTag);
  return h;
}

Napi::Value KvCacheFree(const Napi::CallbackInfo& info) {
  Args a(info, "kvCacheFree", 1);
  Napi::Value v = info[0];
  if (!v.IsExternal() || !v.As<Napi::External<KvCache>>().CheckTypeTag(&kKvCacheTag)) {
    type_error("kvCacheFree: cache must be a handle returned by kvCacheCreate");
  }
  kv_cache_release(*v.As<Napi::External<KvCache>>().Data());  // idempotent; the finalizer deletes
  return info.Env().Undefined();
}

Napi::Value KvCacheCommit(const Napi::CallbackInfo& info) {
  // kvCacheCommit(cache, maxBytes)
  Args a(info, "kvCacheCommit", 2);
  KvCache& c = cache_arg(info, 0, a.op());
  const int64_t max_bytes = a.integer(1, "maxBytes", 1, int64_t(1) << 40);
  return Napi::Boolean::New(info.Env(), kv_cache_commit(c, static_cast<size_t>(max_bytes)));
}

Napi::Value KvCacheWrite(const Napi::CallbackInfo& info) {
  // kvCacheWrite(cache, layer, k, v, slotMapping, T)
  Args a(info, "kvCacheWrite", 6);
  KvCache& c = cache_arg(info, 0, a.op());
  const int64_t layer = a.integer(1, "layer", 0, kMaxDim);
  if (layer >= c.num_layers) a.range_fail("layer", "= " + std::to_string(layer) + " is out of range [0, " + std::to_string(c.num_layers) + ")");
  auto k = a.f32(2, "k");
  auto v = a.f32(3, "v");
  auto slots = a.i32(4, "slotMapping");
  const int64_t T = a.integer(5, "T", 0, kMaxDim);
  const size_t n = mul_checked(a.op(), "k", {T, c.kv_heads, c.head_dim});
  a.need_at_least(k, "k", n, "T*kvHeads*headDim");
  a.need_at_least(v, "v", n, "T*kvHeads*headDim");
  a.need_at_least(slots, "slotMapping", static_cast<size_t>(T), "T");
  const int64_t ns = c.num_slots();
  for (int64_t t = 0; t < T; t++) {
    const int32_t s = slots.data[t];
    if (s < -1 || s >= ns) {
      a.range_fail("slotMapping", "[" + std::to_string(t) + "] = " + std::to_string(s) + " is out of range [-1, " +
                                      std::to_string(ns) + ")");
    }
  }
  kv_cache_write(c, layer, k.data, v.data, slots.data, T);
  return info.Env().Undefined();
}

Napi::Value KvCacheCopyBlocks(const Napi::CallbackInfo& info) {
  // kvCacheCopyBlocks(cache, src, dst)
  Args a(info, "kvCacheCopyBlocks", 3);
  KvCache& c = cache_arg(info, 0, a.op());
  auto src = a.i32(1, "src");
  auto dst = a.i32(2, "dst");
  if (src.len != dst.len) {
    a.range_fail("dst", "has " + std::to_string(dst.len) + " elements, src has " + std::to_string(src.len));
  }
  for (size_t i = 0; i < src.len; i++) {
    if (src.data[i] < 0 || src.data[i] >= c.num_blocks) {
      a.range_fail("src", "[" + std::to_string(i) + "] = " + std::to_string(src.data[i]) + " is not a block id in [0, " + std::to_string(c.num_blocks) + ")");
    }
    if (dst.data[i] < 0 || dst.data[i] >= c.num_blocks) {
      a.range_fail("dst", "[" + std::to_string(i) + "] = " + std::to_string(dst.data[i]) + " is not a block id in [0, " + std::to_string(c.num_blocks) + ")");
    }
  }
  kv_cache_copy_blocks(c, src.data, dst.data, static_cast<int64_t>(src.len));
  return info.Env().Undefined();
}

Napi::Value KvCacheReadSlot(const Napi::CallbackInfo& info) {
  // kvCacheReadSlot(cache, layer, which, slot)
  Napi::Env env = info.Env();
  Args a(info, "kvCacheReadSlot", 4);
  KvCache& c = cache_arg(info, 0, a.op());
  const int64_t layer = a.integer(1, "layer", 0, kMaxDim);
  if (layer >= c.num_layers) a.range_fail("layer", "= " + std::to_string(layer) + " is out of range [0, " + std::to_string(c.num_layers) + ")");
  if (!info[2].IsString()) a.type_fail("which", "must be 'k' or 'v'");
  const std::string which = info[2].As<Napi::String>().Utf8Value();
  if (which != "k" && which != "v") a.range_fail("which", "must be 'k' or 'v', got '" + which + "'");
  const int64_t slot = a.integer(3, "slot", 0, kMaxDim);
  if (slot >= c.num_slots()) a.range_fail("slot", "= " + std::to_string(slot) + " is out of range [0, " + std::to_string(c.num_slots()) + ")");
  const size_t n = static_cast<size_t>(c.kv_heads * c.head_dim);
  Napi::Float32Array out = Napi::Float32Array::New(env, n);
  kv_cache_read_slot(c, layer, which == "v", slot, out.Data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Attention

Napi::Value PagedAttention(const Napi::CallbackInfo& info) {
  // pagedAttention(out, q, cache, layer, blockTables, maxBlocksPerSeq, queryStartLoc, seqLens,
  //                numSeqs, nHeads, nKvHeads, headDim, scale)
  Args a(info, "pagedAttention", 13);
  auto out = a.f32(0, "out");
  auto q = a.f32(1, "q");
  KvCache& c = cache_arg(info, 2, a.op());
  const int64_t layer = a.integer(3, "layer", 0, kMaxDim);
  if (layer >= c.num_layers) a.range_fail("layer", "= " + std::to_string(layer) + " is out of range [0, " + std::to_string(c.num_layers) + ")");
  auto bt = a.i32(4, "blockTables");
  const int64_t mb = a.integer(5, "maxBlocksPerSeq", 0, kMaxDim);
  auto qsl = a.i32(6, "queryStartLoc");
  auto sl = a.i32(7, "seqLens");
  const int64_t S = a.integer(8, "numSeqs", 0, kMaxDim);
  const int64_t nh = a.integer(9, "nHeads", 1, 1 << 20);
  const int64_t nkv = a.integer(10, "nKvHeads", 1, 1 << 20);
  const int64_t hd = a.integer(11, "headDim", 1, 1 << 20);
  const double scale = a.number(12, "scale");
  if (!std::isfinite(scale)) a.range_fail("scale", "must be finite");
  if (nkv != c.kv_heads) a.range_fail("nKvHeads", "= " + std::to_string(nkv) + " does not match the cache's kvHeads = " + std::to_string(c.kv_heads));
  if (hd != c.head_dim) a.range_fail("headDim", "= " + std::to_string(hd) + " does not match the cache's headDim = " + std::to_string(c.head_dim));
  if (nh % nkv != 0) a.range_fail("nHeads", "= " + std::to_string(nh) + " is not a multiple of nKvHeads = " + std::to_string(nkv));
  a.need_at_least(qsl, "queryStartLoc", static_cast<size_t>(S + 1), "numSeqs+1");
  a.need_at_least(sl, "seqLens", static_cast<size_t>(S), "numSeqs");
  a.need_at_least(bt, "blockTables", mul_checked(a.op(), "blockTables", {S, mb}), "numSeqs*maxBlocksPerSeq");
  if (qsl.data[0] < 0) a.range_fail("queryStartLoc", "[0] must be >= 0");
  for (int64_t s = 0; s < S; s++) {
    const int64_t q0 = qsl.data[s], q1 = qsl.data[s + 1];
    const int64_t len = sl.data[s];
    if (q1 < q0) a.range_fail("queryStartLoc", "must be non-decreasing (at sequence " + std::to_string(s) + ")");
    if (len < q1 - q0) {
      a.range_fail("seqLens", "[" + std::to_string(s) + "] = " + std::to_string(len) + " is smaller than its " +
                                  std::to_string(q1 - q0) + " query tokens");
    }
    if (q1 == q0) continue;  // nothing to compute; its table is not read
    const int64_t nb = (len + c.block_size - 1) / c.block_size;
    if (nb > mb) {
      a.range_fail("seqLens", "[" + std::to_string(s) + "] = " + std::to_string(len) + " needs " + std::to_string(nb) +
                                  " blocks, more than maxBlocksPerSeq = " + std::to_string(mb));
    }
    const int32_t* row = bt.data + s * mb;
    for (int64_t b = 0; b < nb; b++) {
      if (row[b] < 0 || row[b] >= c.num_blocks) {
        a.range_fail("blockTables", "[" + std::to_string(s) + ", " + std::to_string(b) + "] = " + std::to_string(row[b]) +
                                        " is not a block id in [0, " + std::to_string(c.num_blocks) + ")");
      }
    }
  }
  const int64_t total = qsl.data[S];
  const size_t n = mul_checked(a.op(), "q", {total, nh, hd});
  a.need_at_least(q, "q", n, "queryStartLoc[numSeqs]*nHeads*headDim");
  a.need_at_least(out, "out", n, "queryStartLoc[numSeqs]*nHeads*headDim");
  if (overlaps(out.data, n * 4, q.data, n * 4)) a.range_fail("out", "overlaps q");
  AttentionArgs args{};
  args.out = out.data;
  args.q = q.data;
  args.cache = &c;
  args.layer = layer;
  args.block_tables = bt.data;
  args.max_blocks_per_seq = mb;
  args.query_start_loc = qsl.data;
  args.seq_lens = sl.data;
  args.num_seqs = S;
  args.n_heads = nh;
  args.n_kv_heads = nkv;
  args.head_dim = hd;
  args.scale = static_cast<float>(scale);
  paged_attention(args);
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Machine limits

Napi::Value BenchMemoryBandwidth(const Napi::CallbackInfo& info) {
  // benchMemoryBandwidth(bytes, iters)
  Args a(info, "benchMemoryBandwidth", 2);
  const int64_t bytes = a.integer(0, "bytes", int64_t(1) << 16, int64_t(1) << 40);
  const int64_t iters = a.integer(1, "iters", 1, 1000);
  const double gbs = bench_memory_bandwidth(static_cast<size_t>(bytes), static_cast<int>(iters));
  if (gbs < 0) plain_error("benchMemoryBandwidth: out of memory allocating " + std::to_string(bytes) + " bytes");
  return Napi::Number::New(info.Env(), gbs);
}

Napi::Value BenchPeakFlops(const Napi::CallbackInfo& info) {
  // benchPeakFlops(accumulators = 16)
  int accumulators = 16;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    Args a(info, "benchPeakFlops", 1);
    const int64_t n = a.integer(0, "accumulators", 1, 64);
    if (n != 1 && n != 2 && n != 4 && n != 8 && n != 12 && n != 16 && n != 24) {
      a.range_fail("accumulators", "must be 1, 2, 4, 8, 12, 16 or 24, got " + std::to_string(n));
    }
    accumulators = static_cast<int>(n);
  }
  double f32 = 0, bf16 = 0;
  bench_peak_flops(&f32, &bf16, accumulators);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("f32Gflops", f32);
  o.Set("bf16Gflops", bf16);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New<Guard<CpuInfo>>(env, "cpuInfo"));
  exports.Set("setIsa", Napi::Function::New<Guard<SetIsa>>(env, "setIsa"));
  exports.Set("setThreads", Napi::Function::New<Guard<SetThreads>>(env, "setThreads"));
  exports.Set("getThreads", Napi::Function::New<Guard<GetThreads>>(env, "getThreads"));
  exports.Set("mmapFile", Napi::Function::New<Guard<MmapFile>>(env, "mmapFile"));
  exports.Set("allocAligned", Napi::Function::New<Guard<AllocAligned>>(env, "allocAligned"));
  exports.Set("embedding", Napi::Function::New<Guard<Embedding>>(env, "embedding"));
  exports.Set("linear", Napi::Function::New<Guard<Linear>>(env, "linear"));
  exports.Set("packLinear", Napi::Function::New<Guard<PackLinear>>(env, "packLinear"));
  exports.Set("packGateUp", Napi::Function::New<Guard<PackGateUp>>(env, "packGateUp"));
  exports.Set("linearPacked", Napi::Function::New<Guard<LinearPacked>>(env, "linearPacked"));
  exports.Set("packedLinearFree", Napi::Function::New<Guard<PackedLinearFree>>(env, "packedLinearFree"));
  exports.Set("rmsnorm", Napi::Function::New<Guard<Rmsnorm>>(env, "rmsnorm"));
  exports.Set("ropeTable", Napi::Function::New<Guard<RopeTable>>(env, "ropeTable"));
  exports.Set("rope", Napi::Function::New<Guard<Rope>>(env, "rope"));
  exports.Set("siluMul", Napi::Function::New<Guard<SiluMul>>(env, "siluMul"));
  exports.Set("add", Napi::Function::New<Guard<Add>>(env, "add"));
  exports.Set("kvCacheCreate", Napi::Function::New<Guard<KvCacheCreate>>(env, "kvCacheCreate"));
  exports.Set("kvCacheBlockBytes", Napi::Function::New<Guard<KvCacheBlockBytes>>(env, "kvCacheBlockBytes"));
  exports.Set("kvCacheFree", Napi::Function::New<Guard<KvCacheFree>>(env, "kvCacheFree"));
  exports.Set("kvCacheCommit", Napi::Function::New<Guard<KvCacheCommit>>(env, "kvCacheCommit"));
  exports.Set("kvCacheWrite", Napi::Function::New<Guard<KvCacheWrite>>(env, "kvCacheWrite"));
  exports.Set("kvCacheCopyBlocks", Napi::Function::New<Guard<KvCacheCopyBlocks>>(env, "kvCacheCopyBlocks"));
  exports.Set("kvCacheReadSlot", Napi::Function::New<Guard<KvCacheReadSlot>>(env, "kvCacheReadSlot"));
  exports.Set("pagedAttention", Napi::Function::New<Guard<PagedAttention>>(env, "pagedAttention"));
  exports.Set("benchMemoryBandwidth", Napi::Function::New<Guard<BenchMemoryBandwidth>>(env, "benchMemoryBandwidth"));
  exports.Set("benchPeakFlops", Napi::Function::New<Guard<BenchPeakFlops>>(env, "benchPeakFlops"));
  register_sampling_ops(env, exports);
  InitQuant(env, exports);
  return exports;
}

}  // namespace
}  // namespace pw

static Napi::Object InitPagewise(Napi::Env env, Napi::Object exports) { return pw::Init(env, exports); }

NODE_API_MODULE(pagewise, InitPagewise)
