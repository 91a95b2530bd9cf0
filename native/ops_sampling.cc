// Sampling helpers over one row of logits: the per-token work on a 50k–150k vocabulary that is too
// slow in JavaScript (argmax, softmax + inverse-CDF draw at a temperature, log-sum-exp and rank
// for logprobs). Each row is
// processed in a fixed order, so a result depends only on the row and the random number given.
#include <cmath>
#include <cstdint>

#include "common.h"
#include "ops_sampling.h"
#include "simd.h"

namespace pw {
namespace {

// ---- scalar (portable) ----

int64_t argmax_scalar(const float* x, int64_t n) {
  float m = -INFINITY;
  int64_t best = -1;
  for (int64_t i = 0; i < n; i++) {
    if (x[i] > m) {
      m = x[i];
      best = i;
    }
  }
  return best;
}

float max_scalar(const float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

int64_t softmax_sample_scalar(const float* x, int64_t n, float inv_t, double u) {
  const float m = max_scalar(x, n);
  if (m == -INFINITY) return -1;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(static_cast<double>((x[i] - m) * inv_t));
  const double target = u * sum;
  double acc = 0;
  int64_t last = -1;
  for (int64_t i = 0; i < n; i++) {
    const double e = std::exp(static_cast<double>((x[i] - m) * inv_t));
    if (e > 0) {
      acc += e;
      last = i;
      if (acc > target) return i;
    }
  }
  return last;
}

double logsumexp_scalar(const float* x, int64_t n) {
  const float m = max_scalar(x, n);
  if (m == -INFINITY) return -INFINITY;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(static_cast<double>(x[i] - m));
  return m + std::log(sum);
}

int64_t count_greater_scalar(const float* x, int64_t n, float v) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; i++) c += x[i] > v;
  return c;
}

// Top-p preparation: weights w[i] = exp((x[i] - max) * inv_t) in double, each id's log-weight
// bucket floor(-(x[i] - max) * inv_t * per_nat) (clamped to the last bucket; -inf goes there too),
// and the mass of every bucket. Returns the total mass.
double nucleus_weights_scalar(const float* x, int64_t n, double maxv, double inv_t, double* w, uint16_t* bucket,
                              double* hist, double per_nat, int64_t nb) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    const double v = (static_cast<double>(x[i]) - maxv) * inv_t;
    const double e = v < -708 ? 0.0 : std::exp(v);
    const double b = -v * per_nat;
    const int64_t bb = b < static_cast<double>(nb - 1) ? static_cast<int64_t>(b) : nb - 1;
    w[i] = e;
    bucket[i] = static_cast<uint16_t>(bb);
    hist[bb] += e;
    sum += e;
  }
  return sum;
}

// ---- AVX-512 ----

#if PW_X86
PW_AVX512 float max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  // max(x, m) keeps m when x is NaN: NaN logits never win, as in the scalar path.
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);
  if (i < n) {
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    m = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i), m);
  }
  return _mm512_reduce_max_ps(m);
}

PW_AVX512 int64_t argmax_avx512(const float* x, int64_t n) {
  const float m = max_avx512(x, n);
  if (m == -INFINITY) return -1;
  // The first index holding the maximum: ties go to the lowest id.
  const __m512 mv = _mm512_set1_ps(m);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), mv, _CMP_EQ_OQ);
    if (eq) return i + __builtin_ctz(eq);
  }
  for (; i < n; i++) if (x[i] == m) return i;
  return -1;
}

// exp(x) for x <= 0 (softmax weights): range reduction to [-ln2/2, ln2/2] and a degree-6
// polynomial (relative error ~1e-7); inputs below -87 (and -inf) give exactly 0.
PW_AVX512 PW_INLINE __m512 exp_neg(__m512 x) {
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(p, n));
}

// Weights exp((x - m) * inv_t) of 16 ids starting at i (ids past n weigh 0).
PW_AVX512 PW_INLINE __m512 weights16(const float* x, int64_t i, int64_t n, __m512 mv, __m512 tv) {
  const __mmask16 k = i + 16 <= n ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
  const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
  return exp_neg(_mm512_mul_ps(_mm512_sub_ps(v, mv), tv));
}

PW_AVX512 int64_t softmax_sample_avx512(const float* x, int64_t n, float inv_t, double u) {
  const float m = max_avx512(x, n);
  if (m == -INFINITY) return -1;
  const __m512 mv = _mm512_set1_ps(m);
  const __m512 tv = _mm512_set1_ps(inv_t);
  // Sum in double, one 16-id block at a time, so the scan below sees exactly the same partial sums.
  double sum = 0;
  for (int64_t i = 0; i < n; i += 16) sum += simd::hsum16(weights16(x, i, n, mv, tv));
  const double target = u * sum;
  double acc = 0;
  int64_t last = -1;
  alignas(64) float w[16];
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 e = weights16(x, i, n, mv, tv);
    const double block = simd::hsum16(e);
    if (block <= 0) continue;
    if (acc + block <= target) {
      acc += block;
      // The block's last id with a positive weight (the mask is non-zero since block > 0).
      last = i + 31 - __builtin_clz(static_cast<unsigned>(_mm512_cmp_ps_mask(e, _mm512_setzero_ps(), _CMP_GT_OQ)));
      continue;
    }
    // The draw lands in this block: walk it id by id.
    _mm512_store_ps(w, e);
    for (int l = 0; l < 16 && i + l < n; l++) {
      if (w[l] > 0) {
        acc += w[l];
        last = i + l;
        if (acc > target) return last;
      }
    }
  }
  return last;
}

// exp(x) in double for x <= 0: range reduction and a degree-12 Taylor polynomial (error ~1e-15),
// so logprobs are as exact as a float64 reference; inputs below -708 (and -inf) give 0.
PW_AVX512 PW_INLINE __m512d exp_neg_pd(__m512d x) {
  const __mmask8 tiny = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-708.0), _CMP_LT_OQ);
  x = _mm512_max_pd(x, _mm512_set1_pd(-708.0));
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0.6931471803691238), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.9082149292705877e-10), r);
  double c = 1.0;
  for (int k = 1; k <= 12; k++) c /= k;
  __m512d p = _mm512_set1_pd(c);  // 1/12!
  for (int k = 11; k >= 0; k--) {
    double ck = 1.0;
    for (int j = 1; j <= k; j++) ck /= j;
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(ck));
  }
  return _mm512_maskz_mov_pd(static_cast<__mmask8>(~tiny), _mm512_scalef_pd(p, n));
}

PW_AVX512 double logsumexp_avx512(const float* x, int64_t n) {
  const float m = max_avx512(x, n);
  if (m == -INFINITY) return -INFINITY;
  const __m512d mv = _mm512_set1_pd(m);
  __m512d acc = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm512_add_pd(acc, exp_neg_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), mv)));
  double sum = _mm512_reduce_add_pd(acc);
  for (; i < n; i++) sum += std::exp(static_cast<double>(x[i]) - m);
  return m + std::log(sum);
}

PW_AVX512 double nucleus_weights_avx512(const float* x, int64_t n, double maxv, double inv_t, double* w, uint16_t* bucket,
                                        double* hist, double per_nat, int64_t nb) {
  const __m512d mv = _mm512_set1_pd(maxv);
  const __m512d tv = _mm512_set1_pd(inv_t);
  const __m512d bv = _mm512_set1_pd(-per_nat);
  const __m512d last = _mm512_set1_pd(static_cast<double>(nb - 1));
  __m512d acc = _mm512_setzero_pd();
  alignas(64) int32_t bi[8];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d v = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), mv), tv);
    const __m512d e = exp_neg_pd(v);
    _mm512_storeu_pd(w + i, e);
    acc = _mm512_add_pd(acc, e);
    // min(b, nb - 1) also maps +inf (from -inf logits) to the last bucket.
    const __m512d b = _mm512_min_pd(_mm512_mul_pd(v, bv), last);
    _mm256_store_si256(reinterpret_cast<__m256i*>(bi), _mm512_cvttpd_epi32(b));
    for (int l = 0; l < 8; l++) {
      bucket[i + l] = static_cast<uint16_t>(bi[l]);
      hist[bi[l]] += w[i + l];
    }
  }
  double sum = _mm512_reduce_add_pd(acc);
  if (i < n) sum += nucleus_weights_scalar(x + i, n - i, maxv, inv_t, w + i, bucket + i, hist, per_nat, nb);
  return sum;
}

PW_AVX512 int64_t count_greater_avx512(const float* x, int64_t n, float v) {
  const __m512 vv = _mm512_set1_ps(v);
  int64_t c = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) c += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), vv, _CMP_GT_OQ));
  for (; i < n; i++) c += x[i] > v;
  return c;
}
#endif  // PW_X86

}  // namespace

// ---- ISA dispatch (off x86 the portable kernels serve every family) ----

int64_t row_argmax(const float* x, int64_t n) {
#if PW_X86
  if (active_isa() >= Isa::Avx512) return argmax_avx512(x, n);
#endif
  return argmax_scalar(x, n);
}

int64_t row_softmax_sample(const float* x, int64_t n, float inv_t, double u) {
#if PW_X86
  if (active_isa() >= Isa::Avx512) return softmax_sample_avx512(x, n, inv_t, u);
#endif
  return softmax_sample_scalar(x, n, inv_t, u);
}

double row_logsumexp(const float* x, int64_t n) {
#if PW_X86
  if (active_isa() >= Isa::Avx512) return logsumexp_avx512(x, n);
#endif
  return logsumexp_scalar(x, n);
}

int64_t row_count_greater(const float* x, int64_t n, float v) {
#if PW_X86
  if (active_isa() >= Isa::Avx512) return count_greater_avx512(x, n, v);
#endif
  return count_greater_scalar(x, n, v);
}

double row_nucleus_weights(const float* x, int64_t n, double maxv, double inv_t, double* w, uint16_t* bucket,
                           double* hist, double per_nat, int64_t nb) {
#if PW_X86
  if (active_isa() >= Isa::Avx512) return nucleus_weights_avx512(x, n, maxv, inv_t, w, bucket, hist, per_nat, nb);
#endif
  return nucleus_weights_scalar(x, n, maxv, inv_t, w, bucket, hist, per_nat, nb);
}

void draw_rows(const float* logits, int64_t n, const int32_t* rows, const double* inv_t, const double* u, int32_t* out,
               int64_t count) {
#if PW_X86
  const bool vec = active_isa() >= Isa::Avx512;
#endif
  auto draw = [&](int64_t i) {
    const float* row = logits + static_cast<int64_t>(rows[i]) * n;
    if (inv_t[i] == 0) {
#if PW_X86
      if (vec) {
        out[i] = static_cast<int32_t>(argmax_avx512(row, n));
        return;
      }
#endif
      out[i] = static_cast<int32_t>(argmax_scalar(row, n));
    } else {
      const float ft = static_cast<float>(inv_t[i]);
#if PW_X86
      if (vec) {
        out[i] = static_cast<int32_t>(softmax_sample_avx512(row, n, ft, u[i]));
        return;
      }
#endif
      out[i] = static_cast<int32_t>(softmax_sample_scalar(row, n, ft, u[i]));
    }
  };
  parallel_items(count, draw);
}

}  // namespace pw
