// Row-wise and element-wise ops: embedding, rmsnorm, rope, silu*mul, add.
// Rows are independent, so splitting them over threads never changes a result; within a row the
// arithmetic depends only on the row (and the active ISA).
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "simd.h"

namespace pw {
namespace {

// Rows per parallel chunk so that a chunk holds at least ~16K elements (pool overhead amortized).
void for_rows(int64_t rows, int64_t row_elems, FnRef<void(int64_t, int64_t)> fn) {
  const int64_t total = rows * std::max<int64_t>(row_elems, 1);
  if (total < (int64_t(1) << 15) || rows < 2) {
    fn(0, rows);
    return;
  }
  parallel_for(rows, fn);
}

// ---- embedding ----

#if PW_X86
PW_AVX512 void widen_row_avx512(float* out, const uint16_t* src, DType dt, int64_t n) {
  int64_t i = 0;
  if (dt == DType::BF16) {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, simd::load16<2>(src, i));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
      _mm512_mask_storeu_ps(out + i, m, simd::load16m<2>(src, i, m));
    }
  } else {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, simd::load16<1>(src, i));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
      _mm512_mask_storeu_ps(out + i, m, simd::load16m<1>(src, i, m));
    }
  }
}
#endif  // PW_X86

void widen_row(float* out, const void* src, DType dt, int64_t n, Isa isa) {
  if (dt == DType::F32) {
    std::memcpy(out, src, static_cast<size_t>(n) * 4);
    return;
  }
  const auto* s = static_cast<const uint16_t*>(src);
#if PW_X86
  if (isa >= Isa::Avx512) {
    widen_row_avx512(out, s, dt, n);
    return;
  }
#else
  (void)isa;
#endif
  if (dt == DType::BF16) {
    for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(s[i]);
  } else {
    for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(s[i]);  // exact either way
  }
}

// ---- rmsnorm: sum of squares in double (exact products), fixed per-ISA order ----

double sumsq_scalar(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += static_cast<double>(x[i]) * x[i];
  return s;
}

#if PW_X86
PW_AVX2 double sumsq_avx2(const float* x, int64_t n) {
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    acc = _mm256_fmadd_pd(d, d, acc);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, acc);
  for (int l = 0; i < n; i++, l++) lanes[l] += static_cast<double>(x[i]) * x[i];
  return (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
}

PW_AVX512 double sumsq_avx512(const float* x, int64_t n) {
  __m512d acc = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    acc = _mm512_fmadd_pd(d, d, acc);
  }
  if (i < n) {
    const __mmask8 m = static_cast<__mmask8>((1u << (n - i)) - 1u);
    const __m512d d = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i));
    acc = _mm512_fmadd_pd(d, d, acc);
  }
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(acc), _mm512_extractf64x4_pd(acc, 1));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

PW_AVX512 void scale_row_avx512(float* out, const float* x, const float* w, float r, int64_t n) {
  const __m512 rv = _mm512_set1_ps(r);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), rv), _mm512_loadu_ps(w + i)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), rv), _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}
#endif  // PW_X86

// ---- silu(gate) * up ----

#if PW_X86
PW_AVX512 void silu_mul_row_avx512(float* out, const float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 uv = _mm512_maskz_loadu_ps(m, u + i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(simd::silu16(gv), uv));
  }
}

PW_AVX2 void silu_mul_row_avx2(float* out, const float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i < n; i += 8) {
    const int64_t cnt = std::min<int64_t>(8, n - i);
    const __m256i m = simd::mask8(cnt);
    const __m256 gv = _mm256_maskload_ps(g + i, m);
    const __m256 uv = _mm256_maskload_ps(u + i, m);
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(simd::silu8(gv), uv));
  }
}
#endif  // PW_X86

void silu_mul_row_scalar(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float gv = g[i];
    out[i] = gv / (1.0f + std::exp(-gv)) * u[i];
  }
}

}  // namespace

void embedding(float* out, const void* table, DType dtype, const int32_t* ids, int64_t T, int64_t hidden) {
  const Isa isa = active_isa();
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_bytes(dtype);
  for_rows(T, hidden, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      widen_row(out + t * hidden, static_cast<const uint8_t*>(table) + static_cast<size_t>(ids[t]) * row_bytes, dtype,
                hidden, isa);
    }
  });
}

void embedding_packed(float* out, const PackedLinear& P, const int32_t* ids, int64_t T) {
  const Isa isa = active_isa();
  const int64_t K = P.K;
  for_rows(T, K, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++)
      for (int64_t kb = 0; kb < P.nkb; kb++)
        widen_row(out + t * K + kb * P.kb, packed_linear_block(P, ids[t], kb), P.dtype, std::min(P.kb, K - kb * P.kb), isa);
  });
}

void rmsnorm(float* out, const float* x, const float* weight, int64_t M, int64_t H, float eps) {
  [[maybe_unused]] const Isa isa = active_isa();  // x86 families only
  for_rows(M, H, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; m++) {
      const float* xr = x + m * H;
      float* o = out + m * H;
#if PW_X86
      const double ss = isa >= Isa::Avx512 ? sumsq_avx512(xr, H) : isa == Isa::Avx2 ? sumsq_avx2(xr, H) : sumsq_scalar(xr, H);
#else
      const double ss = sumsq_scalar(xr, H);
#endif
      const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(H) + static_cast<double>(eps)));
#if PW_X86
      if (isa >= Isa::Avx512) {
        scale_row_avx512(o, xr, weight, r, H);
      } else
#endif
      {
        for (int64_t i = 0; i < H; i++) o[i] = (xr[i] * r) * weight[i];  // HF order: (x * rsqrt) * w
      }
    }
  });
}

void rope_table(float* cos_sin, const int32_t* positions, int64_t T, int64_t half, const float* inv_freq) {
  for_rows(T, 16 * half, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const double p = static_cast<double>(positions[t]);
      float* cv = cos_sin + t * 2 * half;
      for (int64_t i = 0; i < half; i++) {
        const double angle = p * static_cast<double>(inv_freq[i]);
        cv[i] = static_cast<float>(std::cos(angle));
        cv[half + i] = static_cast<float>(std::sin(angle));
      }
    }
  });
}

namespace {

// x[i] = x1 c - x2 s, x[i + half] = x2 c + x1 s: two products and a sum, rounded as written (the
// build never contracts them into an FMA), the same on every path.
void rope_head_scalar(float* x, const float* cv, const float* sv, int64_t half) {
  for (int64_t i = 0; i < half; i++) {
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * cv[i] - x2 * sv[i];
    x[i + half] = x2 * cv[i] + x1 * sv[i];
  }
}

#if PW_X86
PW_AVX512 void rope_head_avx512(float* x, const float* cv, const float* sv, int64_t half) {
  for (int64_t i = 0; i < half; i += 16) {
    const __mmask16 m = half - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (half - i)) - 1u);
    const __m512 x1 = _mm512_maskz_loadu_ps(m, x + i), x2 = _mm512_maskz_loadu_ps(m, x + half + i);
    const __m512 c = _mm512_maskz_loadu_ps(m, cv + i), sn = _mm512_maskz_loadu_ps(m, sv + i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_sub_ps(_mm512_mul_ps(x1, c), _mm512_mul_ps(x2, sn)));
    _mm512_mask_storeu_ps(x + half + i, m, _mm512_add_ps(_mm512_mul_ps(x2, c), _mm512_mul_ps(x1, sn)));
  }
}
#endif  // PW_X86

}  // namespace

void rope(float* q, float* k, const float* cos_sin, int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
#if PW_X86
  const bool vec = active_isa() >= Isa::Avx512;
#endif
  for_rows(T, (n_heads + n_kv_heads) * head_dim, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const float* cv = cos_sin + t * head_dim;
      const float* sv = cv + half;
      for (int64_t h = 0; h < n_heads + n_kv_heads; h++) {
        float* x = h < n_heads ? q + (t * n_heads + h) * head_dim : k + (t * n_kv_heads + h - n_heads) * head_dim;
#if PW_X86
        if (vec) rope_head_avx512(x, cv, sv, half);
        else
#endif
          rope_head_scalar(x, cv, sv, half);
      }
    }
  });
}

namespace {
void silu_mul_row_isa(Isa isa, float* o, const float* g, const float* u, int64_t n) {
#if PW_X86
  if (isa >= Isa::Avx512) return silu_mul_row_avx512(o, g, u, n);
  if (isa == Isa::Avx2) return silu_mul_row_avx2(o, g, u, n);
#endif
  (void)isa;
  silu_mul_row_scalar(o, g, u, n);
}
}  // namespace

void silu_mul(float* out, const float* gate, const float* up, int64_t M, int64_t I, int64_t gate_stride,
              int64_t up_stride) {
  const Isa isa = active_isa();
  for_rows(M, I * 4, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; m++) silu_mul_row_isa(isa, out + m * I, gate + m * gate_stride, up + m * up_stride, I);
  });
}

void silu_mul_row(float* out, const float* g, const float* u, int64_t n, bool accumulate) {
  const Isa isa = active_isa();
  if (!accumulate) return silu_mul_row_isa(isa, out, g, u, n);
  // As silu_mul into a temporary, then add: the product rounded to float before the sum.
  float tmp[256];
  for (int64_t i0 = 0; i0 < n; i0 += 256) {
    const int64_t c = std::min<int64_t>(256, n - i0);
    silu_mul_row_isa(isa, tmp, g + i0, u + i0, c);
    for (int64_t i = 0; i < c; i++) out[i0 + i] = out[i0 + i] + tmp[i];
  }
}

void add(float* out, const float* a, const float* b, int64_t n) {
  const int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  for_rows(chunks, kChunk, [&](int64_t cb, int64_t ce) {
    const int64_t e = std::min(n, ce * kChunk);
    for (int64_t i = cb * kChunk; i < e; i++) out[i] = a[i] + b[i];
  });
}

}  // namespace pw
