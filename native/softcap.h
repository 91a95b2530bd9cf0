// Tanh soft-capping, cap * tanh(x / cap) (Gemma 2's attention scores and final logits): one
// formula per kernel family, shared by the attention kernel and the elementwise softcap op so
// both cap alike. tanh(y) = sign(y) (1 - e) / (1 + e) with e = exp(-2|y|): no overflow for any
// y, absolute error about one float32 ulp of 1 (relative to cap, far below the models' noise).
#pragma once
#include <cmath>

#include "common.h"
#include "simd.h"

namespace pw {

inline float softcap_scalar(float x, float cap) { return cap * std::tanh(x / cap); }

#if PW_X86
PW_AVX512 PW_INLINE __m512 softcap16(__m512 x, __m512 cap) {
  const __m512 y = _mm512_div_ps(x, cap);
  const __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(INT32_MIN)));
  const __m512 ay = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(INT32_MAX)));
  const __m512 e = simd::exp16(_mm512_mul_ps(ay, _mm512_set1_ps(-2.0f)));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  return _mm512_mul_ps(cap, _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), _mm512_castps_si512(sign))));
}

PW_AVX2 PW_INLINE __m256 softcap8(__m256 x, __m256 cap) {
  const __m256 y = _mm256_div_ps(x, cap);
  const __m256 sign = _mm256_and_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)));
  const __m256 ay = _mm256_and_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MAX)));
  const __m256 e = simd::exp8(_mm256_mul_ps(ay, _mm256_set1_ps(-2.0f)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  return _mm256_mul_ps(cap, _mm256_or_ps(t, sign));
}
#endif  // PW_X86

}  // namespace pw
