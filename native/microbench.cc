// Machine-limit microbenchmarks (what performance numbers are reported against): memory read
// bandwidth and peak FMA / BF16-dot throughput, each with every pool thread busy at once.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "amx.h"
#include "microbench_neon.h"
#include "ops.h"
#include "simd.h"

namespace pw {
namespace {

using Clock = std::chrono::steady_clock;

// Runs fn(thread_index) on num_threads() threads at the same time: every item waits at a start
// barrier (bounded, so a missing thread can never hang the call) and times its own work.
// Returns the slowest item's seconds.
double run_together(FnRef<void(int64_t)> fn) {
  const int64_t n = num_threads();
  std::atomic<int64_t> arrived{0};
  std::vector<double> secs(static_cast<size_t>(n), 0.0);
  parallel_items(n, [&](int64_t i) {
    arrived.fetch_add(1);
    const auto deadline = Clock::now() + std::chrono::seconds(1);
    while (arrived.load() < n && Clock::now() < deadline) cpu_relax();
    const auto t0 = Clock::now();
    fn(i);
    secs[static_cast<size_t>(i)] = std::chrono::duration<double>(Clock::now() - t0).count();
  });
  return *std::max_element(secs.begin(), secs.end());
}

#if PW_X86
PW_AVX512 float read_avx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    // Prefetching as the kernels' memory-bound streams do: the limit they are measured against.
    for (int l = 0; l < 4; l++) _mm_prefetch(reinterpret_cast<const char*>(p + i + 16 * l) + simd::kStreamAhead, _MM_HINT_T0);
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return simd::hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

PW_AVX2 float read_avx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int l = 0; l < 2; l++) _mm_prefetch(reinterpret_cast<const char*>(p + i + 16 * l) + simd::kStreamAhead, _MM_HINT_T0);
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  return simd::hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}
#endif  // PW_X86

float read_scalar(const float* p, size_t n) {
  float a[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) a[l] += p[i + l];
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

constexpr int64_t kFmaIters = int64_t(1) << 22;

// NA independent accumulator chains: a chain waits the instruction's latency between steps, so
// throughput peaks only with >= latency x issue width chains (Zen 4: 4-cycle FMA / 6-cycle
// vdpbf16ps, one zmm per cycle: 8 saturate). Sweep them with bench_peak_flops(..., accumulators).
#if PW_X86
template <int NA>
PW_AVX512 float fma_avx512(float seed) {
  __m512 acc[NA];
  for (int i = 0; i < NA; i++) acc[i] = _mm512_set1_ps(seed * static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < kFmaIters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < NA; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < NA; i++) s = _mm512_add_ps(s, acc[i]);
  return simd::hsum16(s);
}

template <int NA>
PW_AVX2 float fma_avx2(float seed) {
  constexpr int N2 = NA > 14 ? 14 : NA;  // 16 ymm registers in all
  __m256 acc[N2];
  for (int i = 0; i < N2; i++) acc[i] = _mm256_set1_ps(seed * static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < kFmaIters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < N2; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < N2; i++) s = _mm256_add_ps(s, acc[i]);
  return simd::hsum8(s);
}

template <int NA>
PW_AVX512BF16 float dpbf16_avx512(float seed) {
  __m512 acc[NA];
  for (int i = 0; i < NA; i++) acc[i] = _mm512_set1_ps(seed * static_cast<float>(i));
  const __m512i a = _mm512_set1_epi16(0x3f80), b = _mm512_set1_epi16(0x3400);  // 1.0, ~1.2e-7
  for (int64_t it = 0; it < kFmaIters; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < NA; i++) acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)a, (__m512bh)b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < NA; i++) s = _mm512_add_ps(s, acc[i]);
  return simd::hsum16(s);
}

// The AMX-BF16 peak: TDPBF16PS into 4 independent C tiles (each 16 x 16 x 32 pairs: 16384 flops),
// from A / B tiles of zeros (the tile unit's speed does not depend on values). Loads the tile
// configuration and releases the tiles (AmxTileScope), as every tile kernel does per work item.
constexpr int64_t kAmxIters = int64_t(1) << 16;

float amx_bf16_peak(float seed) {
  alignas(64) static const uint8_t zeros[1024] = {};
  alignas(64) float out[16 * 16];
  const AmxTileScope scope(AmxTileConfig::full());
  tile_load<4>(zeros, 64);
  tile_load<5>(zeros, 64);
  tile_load<6>(zeros, 64);
  tile_load<7>(zeros, 64);
  tile_zero<0>();
  tile_zero<1>();
  tile_zero<2>();
  tile_zero<3>();
  for (int64_t it = 0; it < kAmxIters; it++) {
    tile_dpbf16<0, 4, 6>();
    tile_dpbf16<1, 5, 6>();
    tile_dpbf16<2, 4, 7>();
    tile_dpbf16<3, 5, 7>();
  }
  tile_store<0>(out, 64);
  return out[0] + seed;
}

struct PeakFns {
  float (*f512)(float);
  float (*f2)(float);
  float (*bf)(float);
  int n2;  // AVX2 chains actually run
};

template <int NA>
PeakFns peak_fns() {
  return PeakFns{fma_avx512<NA>, fma_avx2<NA>, dpbf16_avx512<NA>, NA > 14 ? 14 : NA};
}
#elif PW_ARM64
struct PeakFns {
  float (*f32)(float);  // FMLA, 4 lanes
  float (*bf)(float);   // BFDOT, 8 bf16 products (4 lanes of 2)
};

template <int NA>
PeakFns peak_fns() {
  return PeakFns{fma_neon<NA, kFmaIters>, bfdot_neon<NA, kFmaIters>};
}
#endif

#if PW_X86 || PW_ARM64
PeakFns peak_fns_for(int accumulators) {
  switch (accumulators) {
    case 1: return peak_fns<1>();
    case 2: return peak_fns<2>();
    case 4: return peak_fns<4>();
    case 8: return peak_fns<8>();
    case 12: return peak_fns<12>();
    case 24: return peak_fns<24>();
    default: return peak_fns<16>();
  }
}
#endif

volatile float g_sink;

}  // namespace

double bench_memory_bandwidth(size_t bytes, int iters) {
  const Isa isa = active_isa();
  const size_t n = bytes / sizeof(float);
  auto* p = static_cast<float*>(aligned_alloc_zeroed(n * sizeof(float)));
  if (!p) return -1.0;
  const int64_t threads = num_threads();
  // Fault every page in with non-zero data (zero pages could all map one physical page).
  parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e) { std::fill(p + b, p + e, 1.0f); });
  double best = 0;
  for (int it = 0; it < iters; it++) {
    const double secs = run_together([&](int64_t t) {
      // Per-thread slices, 64-float (256-byte) aligned.
      const size_t per = (n / static_cast<size_t>(threads)) / 64 * 64;
      const float* s = p + per * static_cast<size_t>(t);
#if PW_X86
      const float r = isa >= Isa::Avx512 ? read_avx512(s, per) : isa == Isa::Avx2 ? read_avx2(s, per) : read_scalar(s, per);
#elif PW_ARM64
      const float r = isa >= Isa::Neon ? read_neon(s, per) : read_scalar(s, per);
#else
      const float r = read_scalar(s, per);
#endif
      g_sink = r;
    });
    const size_t per = (n / static_cast<size_t>(threads)) / 64 * 64;
    const double gbs = static_cast<double>(per * static_cast<size_t>(threads) * sizeof(float)) / secs / 1e9;
    best = std::max(best, gbs);
  }
  aligned_free(p, n * sizeof(float));
  return best;
}

void bench_peak_flops(double* f32_gflops, double* bf16_gflops, int accumulators) {
  const Isa isa = active_isa();
  const int64_t threads = num_threads();
#if PW_X86 || PW_ARM64
  const PeakFns fns = peak_fns_for(accumulators);
#endif
  double best32 = 0, best16 = 0;
  // Rep 0 is a warm-up, not counted: a core that was idle runs its first ~10 ms of 512-bit FMAs
  // at half the rate (bench kernels, which measures the peaks first, read 250 / 501 GFLOP/s and
  // then 499 / 1003 for the same 16 chains in its sweep right after).
  for (int rep = 0; rep < 4; rep++) {
    const double s = run_together([&](int64_t t) {
      const float seed = 1e-3f * static_cast<float>(t + 1);
#if PW_X86
      if (isa >= Isa::Avx512) g_sink = fns.f512(seed);
      else if (isa == Isa::Avx2) g_sink = fns.f2(seed);
      else
#elif PW_ARM64
      if (isa >= Isa::Neon) g_sink = fns.f32(seed);
      else
#endif
      {
        float a = seed;
        for (int64_t i = 0; i < kFmaIters; i++) a = a * 0.999999f + 1e-7f;
        g_sink = a;
      }
    });
#if PW_X86
    const double lanes = isa >= Isa::Avx512 ? 16.0 * accumulators : isa == Isa::Avx2 ? 8.0 * fns.n2 : 1;
#elif PW_ARM64
    const double lanes = isa >= Isa::Neon ? 4.0 * accumulators : 1;
#else
    const double lanes = 1;
    (void)isa;
    (void)accumulators;
#endif
    if (rep > 0) best32 = std::max(best32, static_cast<double>(threads) * kFmaIters * lanes * 2 / s / 1e9);
#if PW_X86
    if (isa == Isa::AmxBf16 && cpu_features().amx_bf16) {
      // The family's BF16 products run on tiles: its peak is the tile unit's.
      const double s16 = run_together([&](int64_t t) { g_sink = amx_bf16_peak(1e-3f * static_cast<float>(t + 1)); });
      if (rep > 0) best16 = std::max(best16, static_cast<double>(threads) * kAmxIters * 4 * 16384 / s16 / 1e9);
    } else if (cpu_features().avx512bf16 && (detected_isa() == Isa::Avx512Bf16 || detected_isa() == Isa::AmxBf16)) {
      const double s16 = run_together([&](int64_t t) { g_sink = fns.bf(1e-3f * static_cast<float>(t + 1)); });
      // 32 bf16 pairs per instruction, 2 flops each.
      if (rep > 0) best16 = std::max(best16, static_cast<double>(threads) * kFmaIters * accumulators * 32 * 2 / s16 / 1e9);
    }
#elif PW_ARM64
    if (detected_isa() == Isa::NeonBf16) {
      const double s16 = run_together([&](int64_t t) { g_sink = fns.bf(1e-3f * static_cast<float>(t + 1)); });
      // 8 bf16 pairs per BFDOT, 2 flops each.
      if (rep > 0) best16 = std::max(best16, static_cast<double>(threads) * kFmaIters * accumulators * 8 * 2 / s16 / 1e9);
    }
#endif
  }
  *f32_gflops = best32;
  *bf16_gflops = best16;
}

}  // namespace pw
