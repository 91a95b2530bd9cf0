// NEON helpers and dot-product kernels of the AArch64 families (simd.h is the x86 twin).
// Advanced SIMD is part of every AArch64 target; the BF16 dot product (BFDOT, FEAT_BF16) is not,
// so functions using it carry PW_NEON_BF16 and only run after run-time dispatch (cpu.cc).
//
// Numerics of a dot product over k in [0, K), shared by linear() (ops_linear.cc) and
// linear_packed() (ops_linear_packed.cc) so the two give the same bits:
//   - Neon (float32 math; F16 / BF16 weights widened exactly): one 4-lane accumulator, lane l
//     gathering k = l (mod 4), one FMA per step of 4 k from k = 0; the tail is zero-padded up to
//     the packed layout's k block (16, or 32 for BF16 precision), zero steps included, so both
//     ops run the same steps on the same values. Then hsum4.
//   - NeonBf16 (BF16 precision): activations rounded to bf16 (RNE), one BFDOT per step of 8 k
//     (lane l gathering the pairs (8s + 2l, 8s + 2l + 1)), zero-padded to blocks of 32, then hsum4.
//     BFDOT's own rounding (round-to-odd inner sum, denormals flushed) is deterministic, so each
//     output still depends only on its row, not on the batch.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common.h"

#if PW_ARM64
#include <arm_neon.h>

#ifndef PW_INLINE
#define PW_INLINE inline __attribute__((always_inline))
#endif
// GCC's arm_neon.h declares the BF16 intrinsics for armv8.2-a+bf16, and inlines them only into
// functions with at least those features (every FEAT_BF16 CPU is Armv8.2 or later).
#if defined(__clang__)
#define PW_NEON_BF16 __attribute__((target("bf16")))
#else
#define PW_NEON_BF16 __attribute__((target("arch=armv8.2-a+bf16")))
#endif

namespace pw {
namespace simd {

// Canonical 4-lane sum: (v0 + v1) + (v2 + v3) (pairwise adds).
PW_INLINE float hsum4(float32x4_t v) {
  const float32x4_t p = vpaddq_f32(v, v);
  return vgetq_lane_f32(vpaddq_f32(p, p), 0);
}

// 4 weights of dtype WT (0 F32, 1 F16, 2 BF16) starting at element k, widened exactly.
template <int WT>
PW_INLINE float32x4_t load4(const void* p, int64_t k) {
  if constexpr (WT == 0) {
    return vld1q_f32(static_cast<const float*>(p) + k);
  } else if constexpr (WT == 1) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(p) + k)));
  } else {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(p) + k), 16));
  }
}

// Same for the n < 4 elements left at k; the other lanes are zero (and not read).
template <int WT>
PW_INLINE float32x4_t load4n(const void* p, int64_t k, int64_t n) {
  constexpr size_t eb = WT == 0 ? 4 : 2;
  alignas(16) uint8_t tmp[16] = {};
  std::memcpy(tmp, static_cast<const uint8_t*>(p) + static_cast<size_t>(k) * eb, static_cast<size_t>(n) * eb);
  return load4<WT>(tmp, 0);
}

// The n < 8 bf16 values left at k, zero-padded.
PW_INLINE uint16x8_t load8n_u16(const uint16_t* p, int64_t k, int64_t n) {
  alignas(16) uint16_t tmp[8] = {};
  std::memcpy(tmp, p + k, static_cast<size_t>(n) * 2);
  return vld1q_u16(tmp);
}

PW_NEON_BF16 PW_INLINE float32x4_t bfdot(float32x4_t acc, uint16x8_t x, uint16x8_t w) {
  return vbfdotq_f32(acc, vreinterpretq_bf16_u16(x), vreinterpretq_bf16_u16(w));
}

// An MR x NR tile of float32 dot products for linear(): x rows at x + i * ldx (floats), weight rows
// at w + j * ldw (bytes) in the Hugging Face layout; red[i * NR + j] = hsum4 of the accumulator.
// KB: the k block the tail is padded to (see the header).
template <int MR, int NR, int WT, int KB>
void dot_tile_f32(const float* x, int64_t ldx, const uint8_t* w, int64_t ldw, int64_t K, float* red) {
  float32x4_t acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) {
    float32x4_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = vld1q_f32(x + i * ldx + k);
    for (int j = 0; j < NR; j++) {
      const float32x4_t wv = load4<WT>(w + j * ldw, k);
      for (int i = 0; i < MR; i++) acc[i][j] = vfmaq_f32(acc[i][j], xv[i], wv);
    }
  }
  if (k < K) {
    float32x4_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = load4n<0>(x + i * ldx, k, K - k);
    for (int j = 0; j < NR; j++) {
      const float32x4_t wv = load4n<WT>(w + j * ldw, k, K - k);
      for (int i = 0; i < MR; i++) acc[i][j] = vfmaq_f32(acc[i][j], xv[i], wv);
    }
    k += 4;
  }
  const float32x4_t z = vdupq_n_f32(0.0f);
  for (; k % KB != 0; k += 4) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc[i][j] = vfmaq_f32(acc[i][j], z, z);
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) red[i * NR + j] = hsum4(acc[i][j]);
}

// The BFDOT twin of dot_tile_f32: x rows of bf16 bits, bf16 weights, steps of 8, blocks of 32.
template <int MR, int NR>
PW_NEON_BF16 void dot_tile_bf16(const uint16_t* x, int64_t ldx, const uint8_t* w, int64_t ldw, int64_t K, float* red) {
  float32x4_t acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    uint16x8_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = vld1q_u16(x + i * ldx + k);
    for (int j = 0; j < NR; j++) {
      const uint16x8_t wv = vld1q_u16(reinterpret_cast<const uint16_t*>(w + j * ldw) + k);
      for (int i = 0; i < MR; i++) acc[i][j] = bfdot(acc[i][j], xv[i], wv);
    }
  }
  if (k < K) {
    uint16x8_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = load8n_u16(x + i * ldx, k, K - k);
    for (int j = 0; j < NR; j++) {
      const uint16x8_t wv = load8n_u16(reinterpret_cast<const uint16_t*>(w + j * ldw), k, K - k);
      for (int i = 0; i < MR; i++) acc[i][j] = bfdot(acc[i][j], xv[i], wv);
    }
    k += 8;
  }
  const uint16x8_t z = vdupq_n_u16(0);
  for (; k % 32 != 0; k += 8) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc[i][j] = bfdot(acc[i][j], z, z);
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) red[i * NR + j] = hsum4(acc[i][j]);
}

// Packed panels (ops_linear_packed.cc): W weight rows stored [nkb][.][KB], row c of block kb at
// w + kb * stride + c * KB elements; MR activation rows padded to nkb * KB at x + i * ldx bytes.
// The same steps as dot_tile_f32 / dot_tile_bf16 on the same values: red[i * W + c].
template <int MR, int W, int WT, int KB>
void panel_tile_f32(const uint8_t* x, size_t ldx, const uint8_t* w, size_t stride, int64_t nkb, float* red) {
  constexpr size_t eb = WT == 0 ? 4 : 2;
  float32x4_t acc[MR][W];
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < W; c++) acc[i][c] = vdupq_n_f32(0.0f);
  for (int64_t kb = 0; kb < nkb; kb++) {
    for (int s = 0; s < KB / 4; s++) {
      float32x4_t xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = vld1q_f32(reinterpret_cast<const float*>(x + i * ldx) + kb * KB + 4 * s);
      for (int c = 0; c < W; c++) {
        const float32x4_t wv = load4<WT>(w + static_cast<size_t>(c * KB) * eb, 4 * s);
        for (int i = 0; i < MR; i++) acc[i][c] = vfmaq_f32(acc[i][c], xv[i], wv);
      }
    }
    w += stride;
  }
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < W; c++) red[i * W + c] = hsum4(acc[i][c]);
}

template <int MR, int W>
PW_NEON_BF16 void panel_tile_bf16(const uint8_t* x, size_t ldx, const uint8_t* w, size_t stride, int64_t nkb, float* red) {
  constexpr int KB = 32;
  float32x4_t acc[MR][W];
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < W; c++) acc[i][c] = vdupq_n_f32(0.0f);
  for (int64_t kb = 0; kb < nkb; kb++) {
    for (int s = 0; s < KB / 8; s++) {
      uint16x8_t xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = vld1q_u16(reinterpret_cast<const uint16_t*>(x + i * ldx) + kb * KB + 8 * s);
      for (int c = 0; c < W; c++) {
        const uint16x8_t wv = vld1q_u16(reinterpret_cast<const uint16_t*>(w) + c * KB + 8 * s);
        for (int i = 0; i < MR; i++) acc[i][c] = bfdot(acc[i][c], xv[i], wv);
      }
    }
    w += stride;
  }
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < W; c++) red[i * W + c] = hsum4(acc[i][c]);
}

// One online-softmax step of paged attention (ops_attention.cc) for one query row over a staged
// chunk of n <= 32 keys, k and v [n][hd] contiguous: the scalar step's operations (ops_attention.cc's
// row_step_scalar) with each score dot(q, k_j) one 4-lane accumulator over d (zero-padded tail),
// reduced by hsum4, and the per-element acc * alpha and acc + p_j * v_j done 4 elements at a time
// (a product then a sum, as the scalar step rounds them).
inline void attend_chunk(const float* q, float* acc, float& m, float& l, const float* k, const float* v, int n,
                         int64_t hd, float scale) {
  float s[32];
  float mc = -__builtin_inff();
  for (int j = 0; j < n; j++) {
    const float* kj = k + j * hd;
    float32x4_t a = vdupq_n_f32(0.0f);
    int64_t d = 0;
    for (; d + 4 <= hd; d += 4) a = vfmaq_f32(a, vld1q_f32(q + d), vld1q_f32(kj + d));
    if (d < hd) a = vfmaq_f32(a, load4n<0>(q, d, hd - d), load4n<0>(kj, d, hd - d));
    s[j] = hsum4(a) * scale;
    mc = std::max(mc, s[j]);
  }
  const float mnew = std::max(m, mc);
  const float alpha = m == -__builtin_inff() ? 0.0f : std::exp(m - mnew);
  float lc = 0.0f;
  for (int j = 0; j < n; j++) {
    s[j] = std::exp(s[j] - mnew);
    lc += s[j];
  }
  l = l * alpha + lc;
  m = mnew;
  const float32x4_t av = vdupq_n_f32(alpha);
  int64_t d = 0;
  for (; d + 4 <= hd; d += 4) vst1q_f32(acc + d, vmulq_f32(vld1q_f32(acc + d), av));
  for (; d < hd; d++) acc[d] *= alpha;
  for (int j = 0; j < n; j++) {
    const float* vj = v + j * hd;
    const float32x4_t p = vdupq_n_f32(s[j]);
    d = 0;
    for (; d + 4 <= hd; d += 4) vst1q_f32(acc + d, vaddq_f32(vld1q_f32(acc + d), vmulq_f32(p, vld1q_f32(vj + d))));
    for (; d < hd; d++) acc[d] += s[j] * vj[d];
  }
}

}  // namespace simd
}  // namespace pw

#endif  // PW_ARM64
