// Activation ops of the Gemma family: gelu_pytorch_tanh(gate) * up (GeGLU), tanh soft-capping of
// logits, and a scalar multiply (Gemma's embedding scale).
//
// gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), is computed as
// x / (1 + exp(-2u)) (the same function: 0.5 (1 + tanh(u)) = sigmoid(2u)), the form of silu, so
// it needs one exp and no tanh, and large |x| neither overflows nor loses the sign.
#include "ops_activation.h"

#include <algorithm>
#include <cmath>

#include "common.h"
#include "simd.h"
#include "softcap.h"

namespace pw {
namespace {

// -2 sqrt(2/pi) and -2 sqrt(2/pi) * 0.044715: exp's argument is x (kA + kB x^2).
constexpr float kA = -1.5957691216057308f;
constexpr float kB = -0.07135481627159233f;

// Elements per parallel chunk: below that, one thread does it all.
constexpr int64_t kSerial = int64_t(1) << 15;

void for_range(int64_t rows, int64_t row_elems, FnRef<void(int64_t, int64_t)> fn) {
  if (rows * std::max<int64_t>(row_elems, 1) < kSerial || rows < 2) {
    fn(0, rows);
    return;
  }
  parallel_for(rows, fn);
}

float gelu_tanh_scalar(float x) { return x / (1.0f + std::exp(x * (kA + kB * (x * x)))); }

#if PW_X86
PW_AVX512 void gelu_mul_row_avx512(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 z = _mm512_mul_ps(x, _mm512_add_ps(_mm512_set1_ps(kA), _mm512_mul_ps(_mm512_set1_ps(kB), _mm512_mul_ps(x, x))));
    const __m512 gl = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), simd::exp16(z)));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(gl, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

PW_AVX2 void gelu_mul_row_avx2(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = simd::mask8(std::min<int64_t>(8, n - i));
    const __m256 x = _mm256_maskload_ps(g + i, m);
    const __m256 z = _mm256_mul_ps(x, _mm256_add_ps(_mm256_set1_ps(kA), _mm256_mul_ps(_mm256_set1_ps(kB), _mm256_mul_ps(x, x))));
    const __m256 gl = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), simd::exp8(z)));
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(gl, _mm256_maskload_ps(u + i, m)));
  }
}

void gelu_mul_row_scalar(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = gelu_tanh_scalar(g[i]) * u[i];
}

PW_AVX512 void softcap_avx512(float* out, const float* x, int64_t n, float cap) {
  const __m512 c = _mm512_set1_ps(cap);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(out + i, m, softcap16(_mm512_maskz_loadu_ps(m, x + i), c));
  }
}

PW_AVX2 void softcap_avx2(float* out, const float* x, int64_t n, float cap) {
  const __m256 c = _mm256_set1_ps(cap);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = simd::mask8(std::min<int64_t>(8, n - i));
    _mm256_maskstore_ps(out + i, m, softcap8(_mm256_maskload_ps(x + i, m), c));
  }
}
#endif  // PW_X86

// Contiguous pieces of a flat array for the thread pool.
constexpr int64_t kPiece = 4096;

}  // namespace

void gelu_tanh_mul(float* out, const float* gate, const float* up, int64_t M, int64_t I, int64_t gate_stride,
                   int64_t up_stride) {
  [[maybe_unused]] const Isa isa = active_isa();  // x86 families only
  for_range(M, I * 4, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; m++) {
      const float* g = gate + m * gate_stride;
      const float* u = up + m * up_stride;
      float* o = out + m * I;
#if PW_X86
      if (isa >= Isa::Avx512) {
        gelu_mul_row_avx512(o, g, u, I);
        continue;
      }
      if (isa == Isa::Avx2) {
        gelu_mul_row_avx2(o, g, u, I);
        continue;
      }
#endif
      gelu_mul_row_scalar(o, g, u, I);
    }
  });
}

void softcap(float* out, const float* x, int64_t n, float cap) {
  [[maybe_unused]] const Isa isa = active_isa();  // x86 families only
  for_range((n + kPiece - 1) / kPiece, kPiece * 8, [&](int64_t b, int64_t e) {
    const int64_t i0 = b * kPiece, i1 = std::min(n, e * kPiece);
#if PW_X86
    if (isa >= Isa::Avx512) {
      softcap_avx512(out + i0, x + i0, i1 - i0, cap);
      return;
    }
    if (isa == Isa::Avx2) {
      softcap_avx2(out + i0, x + i0, i1 - i0, cap);
      return;
    }
#endif
    for (int64_t i = i0; i < i1; i++) out[i] = softcap_scalar(x[i], cap);
  });
}

void scale(float* out, const float* x, int64_t n, float s) {
  for_range((n + kPiece - 1) / kPiece, kPiece, [&](int64_t b, int64_t e) {
    const int64_t i1 = std::min(n, e * kPiece);
    for (int64_t i = b * kPiece; i < i1; i++) out[i] = x[i] * s;
  });
}

}  // namespace pw
