// Kernel unit tests without Node: the native kernels against plain float64 references and against
// each other, on every kernel family this CPU (or emulator) supports. Built and run by
// scripts/ci-arm64.sh for AArch64 under qemu (and natively on any host); the Node test suite
// (test/*.test.ts) checks the same contracts through the addon.
//
// Contracts checked, as in test/ops.test.ts, test/attention.test.ts and test/quant.test.ts:
//   - linear: within 1e-5 of sum |x w| of the float64 reference (BF16 precision: activations
//     rounded to bf16 first); each row of a batch equals its M = 1 result bit for bit, whatever the
//     neighbours and the thread count; unaligned weights give the same bits.
//   - linear_packed: linear()'s bits (also the gate/up silu pack against linear + silu_mul, and
//     accumulate against add).
//   - rmsnorm / rope / silu_mul / embedding against references; paged attention against the
//     float64 reference and a sequence alone against the same sequence in a batch.
//   - quantized linear (12 GGML types): the scalar family within the error bound of float64,
//     every other family the scalar family's bits, batch = solo.
//   - sampling: argmax and counts exact; the bandwidth microbenchmark runs.
//
// Usage: kernel_tests [--expect-isa NAME]   (NAME as bind_system.cc spells it, e.g. NeonBf16)
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "../common.h"
#include "../ops.h"
#include "../ops_sampling.h"
#include "../quant/quant.h"
#include "../quant/quantize.h"

using namespace pw;

namespace {

int g_failures = 0;
int g_checks = 0;
std::string g_context;

void fail(const std::string& what) {
  g_failures++;
  if (g_failures <= 30) std::fprintf(stderr, "FAIL [%s] %s\n", g_context.c_str(), what.c_str());
}

void check(bool ok, const std::string& what) {
  g_checks++;
  if (!ok) fail(what);
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Scalar: return "Scalar";
    case Isa::Avx2: return "Avx2";
    case Isa::Avx512: return "Avx512";
    case Isa::Avx512Bf16: return "Avx512Bf16";
    case Isa::Neon: return "Neon";
    case Isa::NeonBf16: return "NeonBf16";
    case Isa::AmxBf16: return "AmxBf16";
  }
  return "?";
}

std::vector<Isa> families() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(Isa::AmxBf16); i++)
    if (isa_supported(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
  return out;
}

void for_each_isa(const std::function<void(Isa)>& fn) {
  for (Isa isa : families()) {
    set_active_isa(isa);
    fn(isa);
  }
  set_active_isa(detected_isa());
}

// splitmix64: deterministic inputs.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float sym() { return static_cast<float>(2.0 * uniform() - 1.0); }
};

std::vector<float> random_f32(size_t n, Rng& r) {
  std::vector<float> v(n);
  for (float& x : v) x = r.sym();
  return v;
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// Weights of a dtype: the stored bytes and their exact float values.
struct Weights {
  DType dtype;
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

Weights random_weights(size_t n, DType dt, Rng& r) {
  Weights w{dt, std::vector<uint8_t>(n * dtype_bytes(dt)), std::vector<float>(n)};
  for (size_t i = 0; i < n; i++) {
    const float f = r.sym();
    if (dt == DType::F32) {
      std::memcpy(&w.bytes[i * 4], &f, 4);
      w.values[i] = f;
    } else {
      const uint16_t h = dt == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(&w.bytes[i * 2], &h, 2);
      w.values[i] = dt == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return w;
}

const char* dtype_name(DType d) { return d == DType::F32 ? "F32" : d == DType::F16 ? "F16" : "BF16"; }

// |got - want| <= rtol * scale + atol for every element.
bool close_to(const float* got, const std::vector<double>& want, const std::vector<double>& scale, double rtol,
              double atol, std::string* why) {
  for (size_t i = 0; i < want.size(); i++) {
    const double tol = atol + rtol * scale[i];
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol)) {
      *why = "element " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", expected " + std::to_string(want[i]);
      return false;
    }
  }
  return true;
}

// ---- linear ----

struct LinRef {
  std::vector<double> out, abs_sum;
};

LinRef linear_ref(const std::vector<float>& x, const Weights& w, const float* bias, int64_t M, int64_t N, int64_t K,
                  MatmulPrecision p) {
  LinRef r{std::vector<double>(static_cast<size_t>(M * N)), std::vector<double>(static_cast<size_t>(M * N))};
  for (int64_t m = 0; m < M; m++) {
    for (int64_t n = 0; n < N; n++) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; k++) {
        float xv = x[static_cast<size_t>(m * K + k)];
        if (p == MatmulPrecision::BF16) xv = bf16_to_f32(f32_to_bf16(xv));
        const double t = static_cast<double>(xv) * w.values[static_cast<size_t>(n * K + k)];
        s += t;
        a += std::fabs(t);
      }
      if (bias) {
        s += bias[n];
        a += std::fabs(bias[n]);
      }
      r.out[static_cast<size_t>(m * N + n)] = s;
      r.abs_sum[static_cast<size_t>(m * N + n)] = a;
    }
  }
  return r;
}

const std::vector<std::pair<DType, MatmulPrecision>> kCombos = {
    {DType::F32, MatmulPrecision::F32},
    {DType::F16, MatmulPrecision::F32},
    {DType::BF16, MatmulPrecision::F32},
    {DType::BF16, MatmulPrecision::BF16},
};

std::string combo_name(Isa isa, DType d, MatmulPrecision p) {
  return std::string(isa_name(isa)) + " " + dtype_name(d) + "/" + (p == MatmulPrecision::BF16 ? "BF16" : "F32");
}

std::vector<float> run_linear(const std::vector<float>& x, const Weights& w, const float* bias, int64_t M, int64_t N,
                              int64_t K, MatmulPrecision p, size_t x_off = 0, const void* wdata = nullptr) {
  std::vector<float> out(static_cast<size_t>(M * N));
  linear(out.data(), x.data() + x_off, wdata ? wdata : w.bytes.data(), w.dtype, bias, M, N, K, p);
  return out;
}

void test_linear() {
  g_context = "linear vs float64";
  Rng r(2);
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 17}, {1, 31, 33}, {3, 5, 63}, {5, 9, 100}, {4, 16, 32},
                               {17, 13, 48}, {2, 3, 1000}, {23, 41, 129}};
  for_each_isa([&](Isa isa) {
    for (const auto& s : shapes) {
      const int64_t M = s[0], N = s[1], K = s[2];
      for (const auto& [dt, p] : kCombos) {
        for (bool with_bias : {false, true}) {
          const std::vector<float> x = random_f32(static_cast<size_t>(M * K), r);
          const Weights w = random_weights(static_cast<size_t>(N * K), dt, r);
          const std::vector<float> bias = random_f32(static_cast<size_t>(N), r);
          const float* b = with_bias ? bias.data() : nullptr;
          const std::vector<float> out = run_linear(x, w, b, M, N, K, p);
          const LinRef ref = linear_ref(x, w, b, M, N, K, p);
          std::string why;
          check(close_to(out.data(), ref.out, ref.abs_sum, 1e-5, 1e-30, &why),
                combo_name(isa, dt, p) + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" +
                    std::to_string(K) + (with_bias ? " bias " : " ") + why);
        }
      }
    }
  });

  g_context = "linear batch invariance";
  const int threads = num_threads();
  for_each_isa([&](Isa isa) {
    for (const auto& nk : std::vector<std::pair<int64_t, int64_t>>{{37, 100}, {64, 576}, {5, 33}, {19, 8}}) {
      const int64_t N = nk.first, K = nk.second, M = 64;
      for (const auto& [dt, p] : kCombos) {
        const std::vector<float> x = random_f32(static_cast<size_t>(M * K), r);
        const Weights w = random_weights(static_cast<size_t>(N * K), dt, r);
        const std::vector<float> bias = random_f32(static_cast<size_t>(N), r);
        const std::string label = combo_name(isa, dt, p) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
        const std::vector<float> batch = run_linear(x, w, bias.data(), M, N, K, p);
        for (int64_t m = 0; m < M; m++) {
          const std::vector<float> one = run_linear(x, w, bias.data(), 1, N, K, p, static_cast<size_t>(m * K));
          check(same_bits(one.data(), batch.data() + m * N, static_cast<size_t>(N)), label + ": row " + std::to_string(m) + " differs from M=1");
        }
        const std::vector<float> part = run_linear(x, w, bias.data(), 7, N, K, p, static_cast<size_t>(20 * K));
        check(same_bits(part.data(), batch.data() + 20 * N, static_cast<size_t>(7 * N)), label + ": M=7 slice differs");
        for (int t : {1, 2, 3}) {
          set_num_threads(t);
          const std::vector<float> again = run_linear(x, w, bias.data(), M, N, K, p);
          check(same_bits(again.data(), batch.data(), batch.size()), label + ": " + std::to_string(t) + " threads differ");
        }
        set_num_threads(threads);
      }
    }
  });

  g_context = "linear unaligned weights";
  for_each_isa([&](Isa isa) {
    const int64_t M = 3, N = 9, K = 40;
    const std::vector<float> x = random_f32(static_cast<size_t>(M * K), r);
    for (const auto& [dt, p] : kCombos) {
      const Weights w = random_weights(static_cast<size_t>(N * K), dt, r);
      std::vector<uint8_t> shifted(w.bytes.size() + 64);
      const size_t off = dtype_bytes(dt);  // one element: never 16-byte aligned
      std::memcpy(shifted.data() + off, w.bytes.data(), w.bytes.size());
      const std::vector<float> a = run_linear(x, w, nullptr, M, N, K, p);
      const std::vector<float> b = run_linear(x, w, nullptr, M, N, K, p, 0, shifted.data() + off);
      check(same_bits(a.data(), b.data(), a.size()), combo_name(isa, dt, p));
    }
  });
}

// ---- linear_packed ----

void test_linear_packed() {
  g_context = "linear_packed equals linear";
  Rng r(21);
  struct Shape {
    int64_t M, K;
    std::vector<int64_t> widths;
  };
  const std::vector<Shape> shapes = {{1, 1, {1}},          {1, 17, {7, 16, 33}}, {2, 63, {31}},     {5, 100, {9, 1, 40}},
                                     {6, 48, {64, 32}},    {7, 33, {17, 50}},    {13, 129, {5, 3}}, {25, 1000, {3, 70}},
                                     {300, 40, {21}},      {4, 8, {3}}};
  for_each_isa([&](Isa isa) {
    for (const Shape& s : shapes) {
      for (const auto& [dt, p] : kCombos) {
        const std::vector<float> x = random_f32(static_cast<size_t>(s.M * s.K), r);
        std::vector<Weights> ws;
        std::vector<std::vector<float>> biases;
        std::vector<const void*> src;
        std::vector<const float*> bias_ptrs;
        for (size_t i = 0; i < s.widths.size(); i++) {
          ws.push_back(random_weights(static_cast<size_t>(s.widths[i] * s.K), dt, r));
          biases.push_back(random_f32(static_cast<size_t>(s.widths[i]), r));
        }
        for (size_t i = 0; i < s.widths.size(); i++) {
          src.push_back(ws[i].bytes.data());
          bias_ptrs.push_back(i % 2 == 0 ? biases[i].data() : nullptr);
        }
        PackedLinear P;
        if (!packed_linear_init(P, s.widths, s.K, dt, p, false, true)) {
          fail("out of memory");
          return;
        }
        packed_linear_fill(P, src, bias_ptrs);
        std::vector<std::vector<float>> outs;
        std::vector<float*> out_ptrs;
        for (int64_t n : s.widths) outs.emplace_back(static_cast<size_t>(s.M * n), 0.5f);
        for (auto& o : outs) out_ptrs.push_back(o.data());
        linear_packed(P, x.data(), s.M, out_ptrs.data(), false);
        for (size_t i = 0; i < s.widths.size(); i++) {
          const std::vector<float> want = run_linear(x, ws[i], bias_ptrs[i], s.M, s.widths[i], s.K, p);
          check(same_bits(outs[i].data(), want.data(), want.size()),
                combo_name(isa, dt, p) + " M=" + std::to_string(s.M) + " K=" + std::to_string(s.K) + " part " + std::to_string(i) + " differs from linear()");
        }
        // accumulate: out + result, the bits of add().
        std::vector<std::vector<float>> acc;
        std::vector<float*> acc_ptrs;
        for (int64_t n : s.widths) acc.emplace_back(random_f32(static_cast<size_t>(s.M * n), r));
        std::vector<std::vector<float>> acc0 = acc;
        for (auto& o : acc) acc_ptrs.push_back(o.data());
        linear_packed(P, x.data(), s.M, acc_ptrs.data(), true);
        for (size_t i = 0; i < s.widths.size(); i++) {
          std::vector<float> want(acc0[i].size());
          add(want.data(), acc0[i].data(), outs[i].data(), static_cast<int64_t>(want.size()));
          check(same_bits(acc[i].data(), want.data(), want.size()), combo_name(isa, dt, p) + " accumulate part " + std::to_string(i));
        }
        packed_linear_release(P);
      }
    }
  });

  g_context = "linear_packed gate/up equals linear + silu_mul";
  for_each_isa([&](Isa isa) {
    for (const auto& mik : std::vector<std::array<int64_t, 3>>{{1, 7, 40}, {5, 13, 64}, {9, 2, 33}, {1, 64, 96}, {30, 21, 17}}) {
      const int64_t M = mik[0], I = mik[1], K = mik[2];
      for (const auto& [dt, p] : kCombos) {
        const std::vector<float> x = random_f32(static_cast<size_t>(M * K), r);
        const Weights g = random_weights(static_cast<size_t>(I * K), dt, r);
        const Weights u = random_weights(static_cast<size_t>(I * K), dt, r);
        PackedLinear P;
        if (!packed_linear_init(P, {I}, K, dt, p, true, false)) {
          fail("out of memory");
          return;
        }
        packed_linear_fill(P, {g.bytes.data(), u.bytes.data()}, {nullptr});
        std::vector<float> out(static_cast<size_t>(M * I));
        float* op = out.data();
        linear_packed(P, x.data(), M, &op, false);
        const std::vector<float> gl = run_linear(x, g, nullptr, M, I, K, p);
        const std::vector<float> ul = run_linear(x, u, nullptr, M, I, K, p);
        std::vector<float> want(out.size());
        silu_mul(want.data(), gl.data(), ul.data(), M, I, I, I);
        check(same_bits(out.data(), want.data(), out.size()), combo_name(isa, dt, p) + " M=" + std::to_string(M) + " I=" + std::to_string(I) + " K=" + std::to_string(K));
        packed_linear_release(P);
      }
    }
  });
}

// ---- elementwise ----

void test_elementwise() {
  Rng r(7);
  g_context = "rmsnorm";
  for_each_isa([&](Isa isa) {
    for (const auto& mh : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 17}, {3, 64}, {5, 100}, {2, 576}}) {
      const int64_t M = mh.first, H = mh.second;
      const std::vector<float> x = random_f32(static_cast<size_t>(M * H), r), w = random_f32(static_cast<size_t>(H), r);
      std::vector<float> out(x.size());
      rmsnorm(out.data(), x.data(), w.data(), M, H, 1e-5f);
      std::vector<double> ref(x.size()), mag(x.size());
      for (int64_t m = 0; m < M; m++) {
        double ss = 0;
        for (int64_t i = 0; i < H; i++) ss += static_cast<double>(x[m * H + i]) * x[m * H + i];
        const double rs = 1.0 / std::sqrt(ss / H + 1e-5);
        for (int64_t i = 0; i < H; i++) {
          ref[m * H + i] = x[m * H + i] * rs * w[i];
          mag[m * H + i] = std::fabs(ref[m * H + i]);
        }
      }
      std::string why;
      check(close_to(out.data(), ref, mag, 2e-6, 1e-7, &why), std::string(isa_name(isa)) + " M=" + std::to_string(M) + " H=" + std::to_string(H) + " " + why);
      std::vector<float> row(static_cast<size_t>(H));
      rmsnorm(row.data(), x.data() + (M - 1) * H, w.data(), 1, H, 1e-5f);
      check(same_bits(row.data(), out.data() + (M - 1) * H, static_cast<size_t>(H)), std::string(isa_name(isa)) + " last row alone differs");
    }
  });

  g_context = "silu_mul";
  for_each_isa([&](Isa isa) {
    for (const auto& mi : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 19}, {3, 64}, {4, 100}}) {
      const int64_t M = mi.first, I = mi.second;
      std::vector<float> g = random_f32(static_cast<size_t>(M * I), r), u = random_f32(static_cast<size_t>(M * I), r);
      for (float& v : g) v *= 12.0f;
      std::vector<float> out(g.size());
      silu_mul(out.data(), g.data(), u.data(), M, I, I, I);
      std::vector<double> ref(g.size()), mag(g.size());
      for (size_t i = 0; i < g.size(); i++) {
        ref[i] = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
        mag[i] = std::fabs(ref[i]);
      }
      std::string why;
      check(close_to(out.data(), ref, mag, 2e-6, 1e-30, &why), std::string(isa_name(isa)) + " M=" + std::to_string(M) + " I=" + std::to_string(I) + " " + why);
    }
  });

  g_context = "rope";
  for_each_isa([&](Isa isa) {
    for (const auto& th : std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {3, 64}, {5, 80}, {2, 34}}) {
      const int64_t T = th.first, hd = th.second, half = hd / 2, nh = 3, nkv = 1;
      std::vector<int32_t> pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; t++) pos[t] = static_cast<int32_t>(t * 37 + 5);
      std::vector<float> inv(static_cast<size_t>(half));
      for (int64_t i = 0; i < half; i++) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / hd));
      std::vector<float> cs(static_cast<size_t>(T * hd));
      rope_table(cs.data(), pos.data(), T, half, inv.data());
      std::vector<float> q = random_f32(static_cast<size_t>(T * nh * hd), r), k = random_f32(static_cast<size_t>(T * nkv * hd), r);
      const std::vector<float> q0 = q, k0 = k;
      rope(q.data(), k.data(), cs.data(), T, nh, nkv, hd);
      std::vector<double> ref(q.size()), mag(q.size(), 1.0);
      for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++)
          for (int64_t i = 0; i < half; i++) {
            const double ang = static_cast<double>(pos[t]) * inv[i];
            const double x1 = q0[(t * nh + h) * hd + i], x2 = q0[(t * nh + h) * hd + half + i];
            ref[(t * nh + h) * hd + i] = x1 * std::cos(ang) - x2 * std::sin(ang);
            ref[(t * nh + h) * hd + half + i] = x2 * std::cos(ang) + x1 * std::sin(ang);
          }
      std::string why;
      check(close_to(q.data(), ref, mag, 1e-6, 1e-6, &why), std::string(isa_name(isa)) + " T=" + std::to_string(T) + " hd=" + std::to_string(hd) + " " + why);
    }
  });

  g_context = "embedding";
  for_each_isa([&](Isa isa) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      const int64_t V = 11, H = 37;
      const Weights table = random_weights(static_cast<size_t>(V * H), dt, r);
      const std::vector<int32_t> ids = {3, 0, 10, 3};
      std::vector<float> out(ids.size() * H);
      embedding(out.data(), table.bytes.data(), dt, ids.data(), static_cast<int64_t>(ids.size()), H);
      bool ok = true;
      for (size_t t = 0; t < ids.size(); t++) ok = ok && same_bits(out.data() + t * H, table.values.data() + ids[t] * H, static_cast<size_t>(H));
      check(ok, std::string(isa_name(isa)) + " " + dtype_name(dt));
    }
  });
}

// ---- attention ----

void test_attention() {
  Rng r(11);
  struct Seq {
    int64_t q_len, seq_len;
  };
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const auto& shape : std::vector<std::array<int64_t, 4>>{{4, 2, 64, 16}, {2, 2, 80, 8}, {3, 1, 33, 5}}) {
      const int64_t nh = shape[0], nkv = shape[1], hd = shape[2], bs = shape[3];
      g_context = std::string("attention ") + dtype_name(dt) + " heads " + std::to_string(nh) + "/" + std::to_string(nkv) + " hd " + std::to_string(hd);
      const std::vector<Seq> seqs = {{1, 70}, {9, 9}, {5, 40}, {1, 1}, {17, 33}};
      int64_t max_blocks = 0, total_blocks = 0;
      for (const Seq& s : seqs) {
        max_blocks = std::max(max_blocks, (s.seq_len + bs - 1) / bs);
        total_blocks += (s.seq_len + bs - 1) / bs;
      }
      KvCache c;
      c.num_layers = 1;
      c.num_blocks = total_blocks + 3;
      c.block_size = bs;
      c.kv_heads = nkv;
      c.head_dim = hd;
      c.dtype = dt;
      c.pool_bytes = static_cast<size_t>(c.num_blocks) * c.block_bytes();  // what bind_kv.cc sets
      if (!kv_cache_alloc(c)) {
        fail("out of memory");
        return;
      }
      // Blocks handed out back to front, so physical order differs from logical order.
      std::vector<int32_t> tables(seqs.size() * static_cast<size_t>(max_blocks), 0);
      int32_t next = static_cast<int32_t>(c.num_blocks - 1);
      std::vector<std::vector<float>> ks, vs, qs;
      for (size_t i = 0; i < seqs.size(); i++) {
        const Seq& s = seqs[i];
        for (int64_t b = 0; b < (s.seq_len + bs - 1) / bs; b++) tables[i * max_blocks + b] = next--;
        ks.push_back(random_f32(static_cast<size_t>(s.seq_len * nkv * hd), r));
        vs.push_back(random_f32(static_cast<size_t>(s.seq_len * nkv * hd), r));
        qs.push_back(random_f32(static_cast<size_t>(s.q_len * nh * hd), r));
        std::vector<int32_t> slots(static_cast<size_t>(s.seq_len));
        for (int64_t p = 0; p < s.seq_len; p++) slots[p] = tables[i * max_blocks + p / bs] * static_cast<int32_t>(bs) + static_cast<int32_t>(p % bs);
        kv_cache_write(c, 0, ks[i].data(), vs[i].data(), slots.data(), s.seq_len);
        if (dt == DType::BF16) {  // the reference sees what the cache holds
          for (float& v : ks[i]) v = bf16_to_f32(f32_to_bf16(v));
          for (float& v : vs[i]) v = bf16_to_f32(f32_to_bf16(v));
        }
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      // Runs sequences `which` as one batch; returns their outputs concatenated.
      auto attend = [&](const std::vector<size_t>& which) {
        std::vector<int32_t> qsl = {0}, lens, tbl;
        std::vector<float> q;
        for (size_t i : which) {
          qsl.push_back(qsl.back() + static_cast<int32_t>(seqs[i].q_len));
          lens.push_back(static_cast<int32_t>(seqs[i].seq_len));
          tbl.insert(tbl.end(), tables.begin() + static_cast<int64_t>(i) * max_blocks, tables.begin() + static_cast<int64_t>(i + 1) * max_blocks);
          q.insert(q.end(), qs[i].begin(), qs[i].end());
        }
        std::vector<float> out(q.size());
        AttentionArgs a{};  // by name: fields added later keep their zero (off) values
        a.out = out.data();
        a.q = q.data();
        a.cache = &c;
        a.layer = 0;
        a.block_tables = tbl.data();
        a.max_blocks_per_seq = max_blocks;
        a.query_start_loc = qsl.data();
        a.seq_lens = lens.data();
        a.num_seqs = static_cast<int64_t>(which.size());
        a.n_heads = nh;
        a.n_kv_heads = nkv;
        a.head_dim = hd;
        a.scale = scale;
        paged_attention(a);
        return out;
      };
      for_each_isa([&](Isa isa) {
        std::vector<size_t> all;
        for (size_t i = 0; i < seqs.size(); i++) all.push_back(i);
        const std::vector<float> full = attend(all);
        size_t off = 0;
        for (size_t i = 0; i < seqs.size(); i++) {
          const Seq& s = seqs[i];
          const size_t w = static_cast<size_t>(s.q_len * nh * hd);
          std::vector<double> ref(w, 0.0), mag(w, 1.0);
          const int64_t group = nh / nkv;
          std::vector<double> sc(static_cast<size_t>(s.seq_len));
          for (int64_t t = 0; t < s.q_len; t++) {
            const int64_t pos = s.seq_len - s.q_len + t;
            for (int64_t h = 0; h < nh; h++) {
              const int64_t g = h / group;
              double mx = -INFINITY, sum = 0;
              for (int64_t j = 0; j <= pos; j++) {
                double d = 0;
                for (int64_t e = 0; e < hd; e++) d += static_cast<double>(qs[i][(t * nh + h) * hd + e]) * ks[i][(j * nkv + g) * hd + e];
                sc[j] = d * scale;
                mx = std::max(mx, sc[j]);
              }
              for (int64_t j = 0; j <= pos; j++) sum += (sc[j] = std::exp(sc[j] - mx));
              for (int64_t j = 0; j <= pos; j++)
                for (int64_t e = 0; e < hd; e++) ref[(t * nh + h) * hd + e] += sc[j] / sum * vs[i][(j * nkv + g) * hd + e];
            }
          }
          for (size_t e = 0; e < w; e++) mag[e] = std::fabs(ref[e]);
          std::string why;
          check(close_to(full.data() + off, ref, mag, 1e-4, 2e-5, &why), std::string(isa_name(isa)) + " seq " + std::to_string(i) + " " + why);
          const std::vector<float> alone = attend({i});
          check(same_bits(alone.data(), full.data() + off, w), std::string(isa_name(isa)) + " seq " + std::to_string(i) + " alone differs from the batch");
          off += w;
        }
      });
      kv_cache_release(c);
    }
  }
}

// ---- sampling ----

void test_sampling() {
  g_context = "sampling";
  Rng r(5);
  for_each_isa([&](Isa isa) {
    for (int64_t n : {1, 15, 16, 17, 1000, 50257}) {
      std::vector<float> x = random_f32(static_cast<size_t>(n), r);
      if (n > 20) x[static_cast<size_t>(n / 3)] = 5.0f, x[static_cast<size_t>(n / 2)] = 5.0f;  // tie: the lower index
      int64_t best = 0;
      for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
      check(row_argmax(x.data(), n) == best, std::string(isa_name(isa)) + " argmax n=" + std::to_string(n));
      int64_t cnt = 0;
      for (float v : x) cnt += v > 0.25f;
      check(row_count_greater(x.data(), n, 0.25f) == cnt, std::string(isa_name(isa)) + " count_greater n=" + std::to_string(n));
      double m = -INFINITY, s = 0;
      for (float v : x) m = std::max(m, static_cast<double>(v));
      for (float v : x) s += std::exp(static_cast<double>(v) - m);
      check(std::fabs(row_logsumexp(x.data(), n) - (m + std::log(s))) <= 1e-6 * (1 + std::fabs(m)), std::string(isa_name(isa)) + " logsumexp n=" + std::to_string(n));
    }
  });
}

// ---- thread pool: parallel_pieces covers its range once, in shrinking contiguous pieces ----

void test_pool() {
  g_context = "pool";
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t n : {int64_t(1), int64_t(2), int64_t(7), int64_t(128), int64_t(1001)})
      for (int64_t share : {1, 2, 4})
        for (int64_t min_piece : {1, 3}) {
          const std::string what = "threads " + std::to_string(threads) + " n " + std::to_string(n) + " share " +
                                   std::to_string(share) + " min " + std::to_string(min_piece);
          std::vector<int> hits(static_cast<size_t>(n), 0);
          std::vector<std::pair<int64_t, int64_t>> pieces;
          std::mutex mu;
          parallel_pieces(n, share, min_piece, [&](int64_t b, int64_t e) {
            std::lock_guard<std::mutex> lk(mu);
            pieces.emplace_back(b, e);
            for (int64_t i = b; i < e; i++) hits[static_cast<size_t>(i)]++;
          });
          check(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }), what + ": every index once");
          std::sort(pieces.begin(), pieces.end());
          const int64_t per = share * threads;
          check(!pieces.empty() && pieces[0].second - pieces[0].first == (threads == 1 ? n : std::min(n, std::max(min_piece, (n + per - 1) / per))),
                what + ": the first piece (one thread: the whole range)");
          for (size_t i = 1; i + 1 < pieces.size(); i++)
            check(pieces[i].second - pieces[i].first <= pieces[i - 1].second - pieces[i - 1].first && pieces[i].second - pieces[i].first >= min_piece,
                  what + ": pieces shrink, none below min_piece but the last");
        }
  }
  set_num_threads(saved);
}

// ---- machine-limit microbenchmarks: they run on every family (the peak-FLOP loops take seconds
// under an emulator, so only the bandwidth stream runs here) ----

void test_microbench() {
  g_context = "microbench";
  for_each_isa([&](Isa isa) {
    const double gbs = bench_memory_bandwidth(size_t(1) << 20, 1);
    check(gbs > 0 && std::isfinite(gbs), std::string(isa_name(isa)) + " bandwidth " + std::to_string(gbs));
  });
}

// ---- quantized linear ----

struct QType {
  int type, block, bytes;
  std::vector<int> halves;  // offsets of the fp16 scale fields in a block
};

const std::vector<QType> kQuantTypes = {
    {quant::Q4_0, 32, 18, {0}},     {quant::Q4_1, 32, 20, {0, 2}},  {quant::Q5_0, 32, 22, {0}},
    {quant::Q5_1, 32, 24, {0, 2}},  {quant::Q8_0, 32, 34, {0}},     {quant::Q2_K, 256, 84, {80, 82}},
    {quant::Q3_K, 256, 110, {108}}, {quant::Q4_K, 256, 144, {0, 2}}, {quant::Q5_K, 256, 176, {0, 2}},
    {quant::Q6_K, 256, 210, {208}}, {quant::IQ4_NL, 32, 18, {0}},   {quant::IQ4_XS, 256, 136, {0}},
};

// Random valid blocks: random payload bytes, fp16 scales of magnitude ~0.01 (either sign).
std::vector<uint8_t> random_quant(const QType& t, int64_t rows, int64_t K, Rng& r) {
  const int64_t nb = rows * K / t.block;
  std::vector<uint8_t> out(static_cast<size_t>(nb * t.bytes));
  for (uint8_t& b : out) b = static_cast<uint8_t>(r.next() >> 56);
  for (int64_t i = 0; i < nb; i++) {
    for (int off : t.halves) {
      const float v = (r.uniform() < 0.5 ? -0.01f : 0.01f) * static_cast<float>(0.25 + r.uniform());
      const uint16_t h = f32_to_f16(v);
      std::memcpy(&out[static_cast<size_t>(i * t.bytes + off)], &h, 2);
    }
  }
  return out;
}

std::vector<float> run_quant(const quant::QuantLinear& q, const float* x, int64_t M, int64_t N) {
  std::vector<float> out(static_cast<size_t>(M * N));
  float* o = out.data();
  quant::quant_linear(q, x, M, &o, false);
  return out;
}

void test_quant() {
  Rng r(9);
  const int threads = num_threads();
  for (const QType& t : kQuantTypes) {
    quant::TypeInfo ti;
    if (!quant::type_info(t.type, &ti) || ti.block != t.block || ti.bytes != t.bytes) {
      g_context = "quant";
      fail("type " + std::to_string(t.type) + ": geometry differs from quant.h");
      continue;
    }
    g_context = std::string("quant ") + ti.name;
    for (int64_t K : t.block == 32 ? std::vector<int64_t>{96, 512} : std::vector<int64_t>{256, 768}) {
      const int64_t N = 37, M = 40;
      const std::vector<uint8_t> wq = random_quant(t, N, K, r);
      std::vector<float> w(static_cast<size_t>(N * K));
      quant::dequantize_rows(t.type, wq.data(), N, K, w.data());
      const std::vector<float> x = random_f32(static_cast<size_t>(M * K), r);
      quant::QuantLinear q;
      if (!quant::quant_linear_init(q, K, false, {t.type}, {N}, {wq.data()}, {nullptr})) {
        fail("out of memory");
        return;
      }
      std::vector<float> scalar_full;
      for_each_isa([&](Isa isa) {
        const std::string label = std::string(isa_name(isa)) + " K=" + std::to_string(K);
        for (int th : {1, 2}) {
          set_num_threads(th);
          const std::vector<float> full = run_quant(q, x.data(), M, N);
          if (isa == Isa::Scalar && th == 1) {
            scalar_full = full;
            // The bound of test/quant.test.ts: activation rounding plus float32 steps.
            for (int64_t m = 0; m < M; m++) {
              for (int64_t n = 0; n < N; n++) {
                double want = 0, e = 0, mag = 0;
                const int64_t G = K % 256 == 0 ? 256 : 32;  // the activation groups (act_quant.h)
                for (int64_t b = 0; b < K; b += G) {
                  double amax = 0, ws = 0;
                  for (int64_t j = 0; j < G; j++) amax = std::max(amax, std::fabs(static_cast<double>(x[m * K + b + j])));
                  for (int64_t j = 0; j < G; j++) {
                    const double wv = w[n * K + b + j], xv = x[m * K + b + j];
                    want += wv * xv;
                    ws += std::fabs(wv);
                    mag += std::fabs(wv * xv) + std::fabs(wv) * amax / 8191;
                  }
                  e += amax / 16382 * ws;
                }
                const double bound = e * 1.0001 + (K / 32 + 8) * std::ldexp(1.0, -23) * mag + 1e-30;
                const double got = full[m * N + n];
                if (!(std::fabs(got - want) <= bound)) {
                  fail(label + " (" + std::to_string(m) + ", " + std::to_string(n) + "): " + std::to_string(got) + " vs " + std::to_string(want));
                  m = M;
                  break;
                }
                g_checks++;
              }
            }
          } else {
            check(same_bits(full.data(), scalar_full.data(), full.size()), label + " threads " + std::to_string(th) + ": differs from the scalar family");
          }
          for (int64_t mm : {1, 2, 3, 7, 17}) {
            const std::vector<float> part = run_quant(q, x.data(), mm, N);
            check(same_bits(part.data(), full.data(), part.size()), label + " M=" + std::to_string(mm) + " differs from the batch");
          }
          const std::vector<float> solo = run_quant(q, x.data() + 17 * K, 1, N);
          check(same_bits(solo.data(), full.data() + 17 * N, static_cast<size_t>(N)), label + " row 17 solo differs");
        }
        set_num_threads(threads);
      });
      quant::quant_linear_release(q);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* expect = nullptr;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--expect-isa") == 0 && i + 1 < argc) {
      expect = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--expect-isa NAME]\n", argv[0]);
      return 2;
    }
  }
  std::string fams;
  for (Isa i : families()) fams += std::string(fams.empty() ? "" : ", ") + isa_name(i);
  std::printf("detected %s; families: %s; threads %d\n", isa_name(detected_isa()), fams.c_str(), num_threads());
  if (expect && std::strcmp(expect, isa_name(detected_isa())) != 0) {
    std::fprintf(stderr, "FAIL expected the detected family to be %s\n", expect);
    return 1;
  }
  const std::pair<const char*, void (*)()> suites[] = {
      {"linear", test_linear}, {"linear_packed", test_linear_packed}, {"elementwise", test_elementwise},
      {"attention", test_attention}, {"sampling", test_sampling}, {"quant", test_quant},
      {"microbench", test_microbench}, {"pool", test_pool},
  };
  for (const auto& [name, fn] : suites) {
    const int before = g_failures;
    fn();
    std::printf("%-14s %s\n", name, g_failures == before ? "ok" : "FAILED");
    std::fflush(stdout);
  }
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
