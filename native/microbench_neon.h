// NEON loops of the machine-limit microbenchmarks (microbench.cc holds the x86 ones and the
// timing): a prefetching read stream, and NA independent FMLA / BFDOT chains.
#pragma once
#include <cstddef>
#include <cstdint>

#include "simd.h"
#include "simd_neon.h"

#if PW_ARM64
namespace pw {
namespace {

float read_neon(const float* p, size_t n) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    // Prefetching as the kernels' memory-bound streams do: the limit they are measured against.
    __builtin_prefetch(reinterpret_cast<const char*>(p + i) + simd::kStreamAhead);
    a0 = vaddq_f32(a0, vld1q_f32(p + i));
    a1 = vaddq_f32(a1, vld1q_f32(p + i + 4));
    a2 = vaddq_f32(a2, vld1q_f32(p + i + 8));
    a3 = vaddq_f32(a3, vld1q_f32(p + i + 12));
  }
  return simd::hsum4(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
}

template <int NA, int64_t ITERS>
float fma_neon(float seed) {
  float32x4_t acc[NA];
  for (int i = 0; i < NA; i++) acc[i] = vdupq_n_f32(seed * static_cast<float>(i));
  const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
  for (int64_t it = 0; it < ITERS; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < NA; i++) acc[i] = vfmaq_f32(b, acc[i], a);
  }
  float32x4_t s = acc[0];
  for (int i = 1; i < NA; i++) s = vaddq_f32(s, acc[i]);
  return simd::hsum4(s);
}

template <int NA, int64_t ITERS>
PW_NEON_BF16 float bfdot_neon(float seed) {
  float32x4_t acc[NA];
  for (int i = 0; i < NA; i++) acc[i] = vdupq_n_f32(seed * static_cast<float>(i));
  uint16x8_t a = vdupq_n_u16(0x3f80), b = vdupq_n_u16(0x3400);  // 1.0, ~1.2e-7
  // Opaque to the optimizer: GCC 12 would otherwise emit these bf16 constants as FP16 immediates
  // (fmov v.8h, #1.0: the wrong bits, and an FP16 instruction the target lacks).
  __asm__("" : "+w"(a), "+w"(b));
  for (int64_t it = 0; it < ITERS; it++) {
#pragma GCC unroll 32
    for (int i = 0; i < NA; i++) acc[i] = simd::bfdot(acc[i], a, b);
  }
  float32x4_t s = acc[0];
  for (int i = 1; i < NA; i++) s = vaddq_f32(s, acc[i]);
  return simd::hsum4(s);
}

}  // namespace
}  // namespace pw
#endif  // PW_ARM64
