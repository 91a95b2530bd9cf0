// SIMD helpers shared by the x86 kernels (simd_neon.h holds the AArch64 ones). The binary is
// compiled for generic x86-64; functions that use AVX2 / AVX-512 carry a target attribute and only
// run after runtime dispatch (cpu.cc).
//
// Reductions are defined once per vector width with a fixed pairing tree, so a result never
// depends on which code path (single vector or several transposed together) reduced it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.h"

#if PW_X86
#include <immintrin.h>

#define PW_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PW_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define PW_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#endif  // PW_X86
#define PW_INLINE inline __attribute__((always_inline))

namespace pw {
namespace simd {

// How far ahead a memory-bound stream (a single-row linear, the bandwidth benchmark) prefetches.
// Measured on Zen 5 (the smollm-135m decode step's 121 linear ops, from DRAM, medians of
// interleaved runs): none 40-42, 1 KiB 43, 2 KiB 44-47, 4 KiB 42-45, 8 KiB 42 GB/s: the hardware
// prefetcher alone stops short of what two cores can pull.
constexpr size_t kStreamAhead = 2048;

#if PW_X86

// ---------------------------------------------------------------------------------------------
// AVX-512

// Canonical 16-lane sum: s8[i] = v[i] + v[i+8]; s4[i] = s8[i] + s8[i+4]; s2[i] = s4[i] + s4[i+2];
// result = s2[0] + s2[1].
PW_AVX512 PW_INLINE float hsum16(__m512 v) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

// Reduces 16 vectors at once with the tree of hsum16: lane (4*i + j) of the result is
// hsum16(a[4*j + i]) (bit for bit: every lane sees the same additions in the same pairing).
PW_AVX512 PW_INLINE __m512 hsum16x16(const __m512* a) {
  __m512 t[8];
  for (int p = 0; p < 8; p++) {
    // 128-bit lanes [A0 A1 B0 B1] + [A2 A3 B2 B3] = s8 of a[2p] (lanes 0-1) and a[2p+1] (2-3).
    const __m512 lo = _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2));
    t[p] = _mm512_add_ps(lo, hi);
  }
  __m512 u[4];
  for (int q = 0; q < 4; q++) {
    // s4 of a[4q + L] in 128-bit lane L.
    const __m512 lo = _mm512_shuffle_f32x4(t[2 * q], t[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(t[2 * q], t[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1));
    u[q] = _mm512_add_ps(lo, hi);
  }
  __m512 w[2];
  for (int r = 0; r < 2; r++) {
    // lane L: [s2 pair of a[8r + L], s2 pair of a[8r + 4 + L]].
    const __m512 lo = _mm512_shuffle_ps(u[2 * r], u[2 * r + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_ps(u[2 * r], u[2 * r + 1], _MM_SHUFFLE(3, 2, 3, 2));
    w[r] = _mm512_add_ps(lo, hi);
  }
  // lane L: [a[L], a[4 + L], a[8 + L], a[12 + L]].
  const __m512 lo = _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0));
  const __m512 hi = _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1));
  return _mm512_add_ps(lo, hi);
}

// 16 weights of dtype WT (0 F32, 1 F16, 2 BF16) starting at element k, widened exactly.
template <int WT>
PW_AVX512 PW_INLINE __m512 load16(const void* p, int64_t k) {
  if constexpr (WT == 0) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + k);
  } else if constexpr (WT == 1) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + k)));
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Same, lanes outside `m` are zero (and not read).
template <int WT>
PW_AVX512 PW_INLINE __m512 load16m(const void* p, int64_t k, __mmask16 m) {
  if constexpr (WT == 0) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + k);
  } else if constexpr (WT == 1) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + k));
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// exp(x) for float lanes, |rel err| < 2 ulp-ish on [-87, 88]; below -87.3 gives 0 (flushed),
// above 88.7 gives +inf. Cody-Waite range reduction + degree-6 polynomial.
PW_AVX512 PW_INLINE __m512 exp16(__m512 x) {
  const __m512 hi = _mm512_set1_ps(88.72283935546875f);
  const __m512 lo = _mm512_set1_ps(-87.33654022216797f);
  const __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // Scale by 2^n in two steps so n = 128 (x near 88.7) does not overflow the exponent field.
  const __m512i ni = _mm512_cvtps_epi32(n);
  const __m512i h1 = _mm512_srai_epi32(ni, 1);
  const __m512i h2 = _mm512_sub_epi32(ni, h1);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h1, _mm512_set1_epi32(127)), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h2, _mm512_set1_epi32(127)), 23));
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
  y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(__builtin_inff()));
  y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
  return y;
}

// 16 floats to bf16 bits, round to nearest even, NaN stays NaN (quieted): exactly f32_to_bf16.
PW_AVX512 PW_INLINE __m256i to_bf16x16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

// silu(g) = g / (1 + exp(0 - g)), the one formula every AVX-512 silu uses (silu_mul and the
// fused gate/up epilogue give the same bits).
PW_AVX512 PW_INLINE __m512 silu16(__m512 g) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

// ---------------------------------------------------------------------------------------------
// AVX2

// Canonical 8-lane sum: s4[i] = v[i] + v[i+4]; s2[i] = s4[i] + s4[i+2]; result = s2[0] + s2[1].
PW_AVX2 PW_INLINE float hsum8(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

// Eight hsum8s at once: lane l = hsum8(a[l]), the same tree (each step adds the same pairs), from
// registers: two 128-bit halves, then pairs 2 apart, then neighbours, each step for all eight.
PW_AVX2 PW_INLINE __m256 hsum8x8(const __m256* a) {
  // Step 1, per input: s4[i] = v[i] + v[i + 4]; pair p holds inputs (p, p + 4) in its two halves.
  __m256 s4[4];
  for (int p = 0; p < 4; p++)
    s4[p] = _mm256_add_ps(_mm256_permute2f128_ps(a[p], a[p + 4], 0x20), _mm256_permute2f128_ps(a[p], a[p + 4], 0x31));
  // Step 2: s2[i] = s4[i] + s4[i + 2]; u[h] lanes: [s2 of in 2h, in 2h + 1 | s2 of in 2h + 4, in 2h + 5].
  __m256 u[2];
  for (int h = 0; h < 2; h++)
    u[h] = _mm256_add_ps(_mm256_shuffle_ps(s4[2 * h], s4[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(s4[2 * h], s4[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Step 3: s2[0] + s2[1]; lanes in0, in1, in2, in3 | in4 .. in7.
  return _mm256_add_ps(_mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

PW_AVX2 PW_INLINE __m256i mask8(int64_t n) {  // lanes [0, n) set, n in [0, 8]
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

template <int WT>
PW_AVX2 PW_INLINE __m256 load8(const void* p, int64_t k) {
  if constexpr (WT == 0) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + k);
  } else if constexpr (WT == 1) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + k)));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// Tail load of n < 8 elements; the rest is zero. 16-bit types go through a small copy.
template <int WT>
PW_AVX2 PW_INLINE __m256 load8n(const void* p, int64_t k, int64_t n) {
  if constexpr (WT == 0) {
    return _mm256_maskload_ps(static_cast<const float*>(p) + k, mask8(n));
  } else {
    alignas(16) uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const uint16_t* s = static_cast<const uint16_t*>(p) + k;
    for (int64_t i = 0; i < n; i++) tmp[i] = s[i];
    return load8<WT>(tmp, 0);
  }
}

PW_AVX2 PW_INLINE __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.72283935546875f);
  const __m256 lo = _mm256_set1_ps(-87.33654022216797f);
  const __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i h1 = _mm256_srai_epi32(ni, 1);
  const __m256i h2 = _mm256_sub_epi32(ni, h1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, _mm256_set1_epi32(127)), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
  return y;
}

// AVX2 twin of silu16.
PW_AVX2 PW_INLINE __m256 silu8(__m256 g) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

#endif  // PW_X86

}  // namespace simd
}  // namespace pw
