// linear: out[M, N] = x[M, K] . w[N, K]^T (+ bias), weights in Hugging Face layout used in place.
//
// Batch invariance: every output (m, n) is one "dot-product layout" accumulation: one vector
// accumulator over K in fixed steps from k = 0 (full vectors, then one masked tail), then the
// fixed reduction tree of simd.h, then + bias[n]. Tiles of up to 4 rows of x by 4 rows of w share
// loads but never mix accumulators, and the reduction of a tile reduces 16 accumulators at once
// with the same tree (simd::hsum16x16). A single activation row (decode, M = 1) uses 1 x 16
// tiles that walk the weight rows one after another (a linear memory stream), again with the
// same per-accumulator sequence. So a row's result is the same for any M, any tiling, any thread
// count and any neighbours in the batch. The NEON families (AArch64) follow the same rule with
// one 4-lane accumulator per output (simd_neon.h).
//
// Work is split into (row block, column block) items handed out to the pool; w blocks are sized
// to stay in L2 while every row tile of the block streams over them.
//
// BF16 precision on the AMX family (Isa::AmxBf16) runs on tiles instead: ops_linear_amx.cc.
#include <algorithm>
#include <utility>
#include <vector>

#include "ops.h"
#include "scratch.h"
#include "simd.h"
#include "simd_neon.h"

namespace pw {
namespace {

struct Ctx {
  const void* x;    // activations: float (F32 path) or uint16 bf16 (vdpbf16ps path)
  int64_t ldx;      // elements per x row
  const uint8_t* w;
  int64_t ldw;      // bytes per w row
  int64_t K;
  float* out;
  int64_t ldo;
  const float* bias;
};

using TileFn = void (*)(const Ctx&, int64_t m0, int64_t n0);

// ---------------------------------------------------------------------------------------------
// Scalar: per (m, n), 8 partial sums over k (lane k % 8), then the 8-lane tree of hsum8.

template <int WT>
inline float scalar_w(const void* w, int64_t k) {
  if constexpr (WT == 0) return static_cast<const float*>(w)[k];
  else if constexpr (WT == 1) return f16_to_f32(static_cast<const uint16_t*>(w)[k]);
  else return bf16_to_f32(static_cast<const uint16_t*>(w)[k]);
}

template <int WT>
void tile_scalar(const Ctx& c, int64_t m0, int64_t n0) {
  const float* x = static_cast<const float*>(c.x) + m0 * c.ldx;
  const void* w = c.w + n0 * c.ldw;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= c.K; k += 8) {
    for (int l = 0; l < 8; l++) acc[l] += x[k + l] * scalar_w<WT>(w, k + l);
  }
  for (int l = 0; k + l < c.K; l++) acc[l] += x[k + l] * scalar_w<WT>(w, k + l);
  float s4[4], s2[2];
  for (int i = 0; i < 4; i++) s4[i] = acc[i] + acc[i + 4];
  for (int i = 0; i < 2; i++) s2[i] = s4[i] + s4[i + 2];
  float r = s2[0] + s2[1];
  if (c.bias) r += c.bias[n0];
  c.out[m0 * c.ldo + n0] = r;
}

#if PW_X86
// ---------------------------------------------------------------------------------------------
// AVX2 + FMA: 8-lane accumulators, each reduced by hsum8; tiles up to 4 x 2 (M > 1) or 1 x 16
// (M = 1).

template <int MR, int NR, int WT, bool SEQ>
PW_AVX2 void tile_avx2(const Ctx& c, int64_t m0, int64_t n0) {
  const float* x = static_cast<const float*>(c.x) + m0 * c.ldx;
  const uint8_t* w = c.w + n0 * c.ldw;
  __m256 acc[MR][NR];
  const int64_t K = c.K;
  if constexpr (MR == 1 || SEQ) {  // weight rows one after another, see tile_avx512
    for (int j = 0; j < NR; j++) {
      const uint8_t* wj = w + j * c.ldw;
      __m256 a[MR];
      for (int i = 0; i < MR; i++) a[i] = _mm256_setzero_ps();
      int64_t k = 0;
      for (; k + 8 <= K; k += 8) {
        const __m256 wv = simd::load8<WT>(wj, k);
        for (int i = 0; i < MR; i++) a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * c.ldx + k), wv, a[i]);
      }
      if (k < K) {
        const __m256 wv = simd::load8n<WT>(wj, k, K - k);
        for (int i = 0; i < MR; i++) a[i] = _mm256_fmadd_ps(simd::load8n<0>(x + i * c.ldx, k, K - k), wv, a[i]);
      }
      for (int i = 0; i < MR; i++) acc[i][j] = a[i];
    }
  } else {
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = simd::load8<WT>(w + j * c.ldw, k);
    for (int i = 0; i < MR; i++) {
      const __m256 xv = _mm256_loadu_ps(x + i * c.ldx + k);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const int64_t rem = K - k;
    __m256 wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = simd::load8n<WT>(w + j * c.ldw, k, rem);
    for (int i = 0; i < MR; i++) {
      const __m256 xv = simd::load8n<0>(x + i * c.ldx, k, rem);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  }
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NR; j++) {
      float r = simd::hsum8(acc[i][j]);
      if (c.bias) r += c.bias[n0 + j];
      c.out[(m0 + i) * c.ldo + n0 + j] = r;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512, float32 math (weights F32 / F16 / BF16 widened exactly).

// Reduces and stores an MR x NR tile (MR <= 4 and NR <= 4, or MR = 1 and NR <= 16) through one
// hsum16x16: output (i, j) goes to lane 4i + j (or lane j when MR = 1), so rows store directly.
template <int MR, int NR>
PW_AVX512 PW_INLINE void store_tile512(const Ctx& c, int64_t m0, int64_t n0, __m512 (&acc)[MR][NR]) {
  static_assert((MR <= 4 && NR <= 4) || (MR == 1 && NR <= 16), "tile shape");
  __m512 a[16];
  for (int s = 0; s < 16; s++) a[s] = _mm512_setzero_ps();
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NR; j++) {
      const int lane = MR == 1 ? j : 4 * i + j;
      a[4 * (lane % 4) + lane / 4] = acc[i][j];  // hsum16x16 puts a[4q + p] in lane 4p + q
    }
  }
  __m512 r = simd::hsum16x16(a);
  if (MR == 1) {
    const __mmask16 m = static_cast<__mmask16>((1u << NR) - 1u);
    if (c.bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c.bias + n0));
    _mm512_mask_storeu_ps(c.out + m0 * c.ldo + n0, m, r);
    return;
  }
  if (c.bias) {
    const __m128 b = _mm_maskz_loadu_ps(static_cast<__mmask8>((1u << NR) - 1), c.bias + n0);
    r = _mm512_add_ps(r, _mm512_broadcast_f32x4(b));
  }
  // Row i of the tile is lanes 4i .. 4i+NR-1: a masked store puts them at out[m0 + i, n0 ..].
  for (int i = 0; i < MR; i++) {
    float* row = c.out + (m0 + i) * c.ldo + n0;
    _mm512_mask_storeu_ps(row - 4 * i, static_cast<__mmask16>(((1u << NR) - 1u) << (4 * i)), r);
  }
}

// SEQ (always for MR = 1): walk the weight rows one after another, each row once for the MR
// accumulators of its column. Used where the weights come from DRAM (decode, and the first row
// tile of each weight block): a linear stream the hardware prefetcher follows, where
// interleaving 4-16 short rows was up to 2-3x slower. Other row tiles, reading the block from
// L2, share each weight load between MR rows instead.
template <int MR, int NR, int WT, bool SEQ>
PW_AVX512 void tile_avx512(const Ctx& c, int64_t m0, int64_t n0) {
  const float* x = static_cast<const float*>(c.x) + m0 * c.ldx;
  const uint8_t* w = c.w + n0 * c.ldw;
  __m512 acc[MR][NR];
  if constexpr (MR == 1 || SEQ) {
    const int64_t K = c.K;
    for (int j = 0; j < NR; j++) {
      const uint8_t* wj = w + j * c.ldw;
      __m512 a[MR];
      for (int i = 0; i < MR; i++) a[i] = _mm512_setzero_ps();
      int64_t k = 0;
      for (; k + 16 <= K; k += 16) {
        const __m512 wv = simd::load16<WT>(wj, k);
        for (int i = 0; i < MR; i++) a[i] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * c.ldx + k), wv, a[i]);
      }
      if (k < K) {
        const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1u);
        const __m512 wv = simd::load16m<WT>(wj, k, m);
        for (int i = 0; i < MR; i++) a[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i * c.ldx + k), wv, a[i]);
      }
      for (int i = 0; i < MR; i++) acc[i][j] = a[i];
    }
    store_tile512<MR, NR>(c, m0, n0, acc);
    return;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
  const int64_t K = c.K;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = simd::load16<WT>(w + j * c.ldw, k);
    for (int i = 0; i < MR; i++) {
      const __m512 xv = _mm512_loadu_ps(x + i * c.ldx + k);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1u);
    __m512 wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = simd::load16m<WT>(w + j * c.ldw, k, m);
    for (int i = 0; i < MR; i++) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + i * c.ldx + k);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  store_tile512<MR, NR>(c, m0, n0, acc);
}

// AVX512_BF16: x pre-rounded to bf16, 32 elements per step with vdpbf16ps (same SEQ split).
template <int MR, int NR, bool SEQ>
PW_AVX512BF16 void tile_dpbf16(const Ctx& c, int64_t m0, int64_t n0) {
  const uint16_t* x = static_cast<const uint16_t*>(c.x) + m0 * c.ldx;
  const uint8_t* w = c.w + n0 * c.ldw;
  __m512 acc[MR][NR];
  if constexpr (MR == 1 || SEQ) {  // see tile_avx512
    const int64_t K = c.K;
    for (int j = 0; j < NR; j++) {
      const uint16_t* wj = reinterpret_cast<const uint16_t*>(w + j * c.ldw);
      __m512 a[MR];
      for (int i = 0; i < MR; i++) a[i] = _mm512_setzero_ps();
      int64_t k = 0;
      for (; k + 32 <= K; k += 32) {
        const __m512i wv = _mm512_loadu_si512(wj + k);
        for (int i = 0; i < MR; i++) a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)_mm512_loadu_si512(x + i * c.ldx + k), (__m512bh)wv);
      }
      if (k < K) {
        const __mmask32 m = static_cast<__mmask32>((1ull << (K - k)) - 1u);
        const __m512i wv = _mm512_maskz_loadu_epi16(m, wj + k);
        for (int i = 0; i < MR; i++) {
          a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * c.ldx + k), (__m512bh)wv);
        }
      }
      for (int i = 0; i < MR; i++) acc[i][j] = a[i];
    }
    store_tile512<MR, NR>(c, m0, n0, acc);
    return;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
  const int64_t K = c.K;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512i wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = _mm512_loadu_si512(reinterpret_cast<const uint16_t*>(w + j * c.ldw) + k);
    for (int i = 0; i < MR; i++) {
      const __m512i xv = _mm512_loadu_si512(x + i * c.ldx + k);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
    }
  }
  if (k < K) {
    const __mmask32 m = static_cast<__mmask32>((1ull << (K - k)) - 1u);
    __m512i wv[NR];
    for (int j = 0; j < NR; j++) wv[j] = _mm512_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(w + j * c.ldw) + k);
    for (int i = 0; i < MR; i++) {
      const __m512i xv = _mm512_maskz_loadu_epi16(m, x + i * c.ldx + k);
      for (int j = 0; j < NR; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
    }
  }
  store_tile512<MR, NR>(c, m0, n0, acc);
}
#endif  // PW_X86

#if PW_ARM64
// ---------------------------------------------------------------------------------------------
// NEON (simd_neon.h holds the arithmetic): tiles up to 4 x 4 (M > 1) or 1 x 16 (M = 1), each
// output one 4-lane accumulator; KB is linear_packed's k block for the same precision.

template <int MR, int NR>
PW_INLINE void store_red(const Ctx& c, int64_t m0, int64_t n0, const float* red) {
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NR; j++) {
      float r = red[i * NR + j];
      if (c.bias) r += c.bias[n0 + j];
      c.out[(m0 + i) * c.ldo + n0 + j] = r;
    }
  }
}

template <int MR, int NR, int WT, int KB>
void tile_neon(const Ctx& c, int64_t m0, int64_t n0) {
  float red[MR * NR];
  simd::dot_tile_f32<MR, NR, WT, KB>(static_cast<const float*>(c.x) + m0 * c.ldx, c.ldx, c.w + n0 * c.ldw, c.ldw, c.K, red);
  store_red<MR, NR>(c, m0, n0, red);
}

template <int MR, int NR>
void tile_bfdot(const Ctx& c, int64_t m0, int64_t n0) {
  float red[MR * NR];
  simd::dot_tile_bf16<MR, NR>(static_cast<const uint16_t*>(c.x) + m0 * c.ldx, c.ldx, c.w + n0 * c.ldw, c.ldw, c.K, red);
  store_red<MR, NR>(c, m0, n0, red);
}
#endif  // PW_ARM64

// ---------------------------------------------------------------------------------------------
// Tile tables: table[mr - 1][nr - 1] computes an mr x nr tile.

struct Kernel {
  int mr_max = 1, nr_max = 1;
  TileFn fn[4][16] = {};   // register-blocked tiles
  TileFn seq[4][16] = {};  // weight rows one after another (streaming from DRAM)
};

template <template <int, int> class T, int MR, int... NR>
void fill_row(Kernel& k, std::integer_sequence<int, NR...>) {
  ((k.fn[MR - 1][NR] = T<MR, NR + 1>::f), ...);
  ((k.seq[MR - 1][NR] = T<MR, NR + 1>::fs), ...);
}

// Tiles up to 4 x 4 (batches) or 1 x 16 (a single row: more weight rows in flight per x load).
template <template <int, int> class T>
Kernel make_kernel(bool single_row, int mr_max, int nr_max) {
  Kernel k;
  k.mr_max = mr_max;
  k.nr_max = nr_max;
  if (single_row) {
    fill_row<T, 1>(k, std::make_integer_sequence<int, 16>{});
  } else {
    fill_row<T, 1>(k, std::make_integer_sequence<int, 4>{});
    fill_row<T, 2>(k, std::make_integer_sequence<int, 4>{});
    fill_row<T, 3>(k, std::make_integer_sequence<int, 4>{});
    fill_row<T, 4>(k, std::make_integer_sequence<int, 4>{});
  }
  return k;
}

#if PW_X86
template <int WT> struct Avx512T {
  template <int MR, int NR> struct T {
    static constexpr TileFn f = tile_avx512<MR, NR, WT, false>;
    static constexpr TileFn fs = tile_avx512<MR, NR, WT, true>;
  };
};
template <int WT> struct Avx2T {
  template <int MR, int NR> struct T {
    static constexpr TileFn f = tile_avx2<MR, NR, WT, false>;
    static constexpr TileFn fs = tile_avx2<MR, NR, WT, true>;
  };
};
template <int MR, int NR> struct Dpbf16T {
  static constexpr TileFn f = tile_dpbf16<MR, NR, false>;
  static constexpr TileFn fs = tile_dpbf16<MR, NR, true>;
};
#elif PW_ARM64
template <int WT, int KB> struct NeonT {
  template <int MR, int NR> struct T {
    static constexpr TileFn f = tile_neon<MR, NR, WT, KB>;
    static constexpr TileFn fs = tile_neon<MR, NR, WT, KB>;
  };
};
template <int MR, int NR> struct BfdotT {
  static constexpr TileFn f = tile_bfdot<MR, NR>;
  static constexpr TileFn fs = tile_bfdot<MR, NR>;
};
#endif
template <int WT> struct ScalarT {
  template <int MR, int NR> struct T {
    static constexpr TileFn f = tile_scalar<WT>;
    static constexpr TileFn fs = tile_scalar<WT>;
  };
};

template <int WT>
struct Kernels {
#if PW_X86
  Kernel avx512 = make_kernel<Avx512T<WT>::template T>(false, 4, 4);
  Kernel avx512_row = make_kernel<Avx512T<WT>::template T>(true, 1, 16);
  Kernel avx2 = make_kernel<Avx2T<WT>::template T>(false, 4, 2);
  Kernel avx2_row = make_kernel<Avx2T<WT>::template T>(true, 1, 16);
#elif PW_ARM64
  Kernel neon = make_kernel<NeonT<WT, 16>::template T>(false, 4, 4);
  Kernel neon_row = make_kernel<NeonT<WT, 16>::template T>(true, 1, 16);
#endif
  Kernel scalar = make_kernel<ScalarT<WT>::template T>(false, 1, 1);
};

// bf16: BF16 precision (the NEON float kernels then pad K to blocks of 32, as linear_packed does).
const Kernel& kernel_for(Isa isa, int wt, bool dpbf16, bool bf16, int64_t M) {
#if PW_X86
  static const Kernel kbf = make_kernel<Dpbf16T>(false, 4, 4);
  static const Kernel kbf_row = make_kernel<Dpbf16T>(true, 1, 16);
  (void)bf16;
#elif PW_ARM64
  static const Kernel kbf = make_kernel<BfdotT>(false, 4, 4);
  static const Kernel kbf_row = make_kernel<BfdotT>(true, 1, 16);
  static const Kernel kneon_bf = make_kernel<NeonT<2, 32>::template T>(false, 4, 4);
  static const Kernel kneon_bf_row = make_kernel<NeonT<2, 32>::template T>(true, 1, 16);
  if (bf16 && isa == Isa::Neon) return M == 1 ? kneon_bf_row : kneon_bf;
#else
  (void)bf16;
#endif
  static const Kernels<0> k0;
  static const Kernels<1> k1;
  static const Kernels<2> k2;
#if PW_X86 || PW_ARM64
  if (dpbf16) return M == 1 ? kbf_row : kbf;
#endif
  auto pick = [&](const auto& k) -> const Kernel& {
    switch (isa) {
#if PW_X86
      case Isa::AmxBf16:
      case Isa::Avx512Bf16:
      case Isa::Avx512: return M == 1 ? k.avx512_row : k.avx512;
      case Isa::Avx2: return M == 1 ? k.avx2_row : k.avx2;
#elif PW_ARM64
      case Isa::NeonBf16:
      case Isa::Neon: return M == 1 ? k.neon_row : k.neon;
#endif
      default: return k.scalar;
    }
  };
  return wt == 0 ? pick(k0) : wt == 1 ? pick(k1) : pick(k2);
}

#if PW_X86
// Vector f32_to_bf16 (bit-exact with the scalar one: RNE, NaN stays NaN) of 16 lanes, as the
// rounded bits in the high halves of 32-bit lanes.
PW_AVX512 PW_INLINE __m512i round_bf16_hi(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
  return _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
}

PW_AVX512 void round_bf16_f32_avx512(float* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(round_bf16_hi(_mm512_loadu_ps(src + i))));
  for (; i < n; i++) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

PW_AVX512 void round_bf16_avx512(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i r = _mm512_srli_epi32(round_bf16_hi(_mm512_loadu_ps(src + i)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
#endif  // PW_X86

// The rounded activations of a call (the engine calls from one thread).
thread_local Scratch rounded;

}  // namespace

void linear(float* out, const float* x, const void* w, DType dtype, const float* bias, int64_t M, int64_t N,
            int64_t K, MatmulPrecision precision) {
  if (M == 0) return;
  const Isa isa = active_isa();
  const int wt = static_cast<int>(dtype);
  const bool bf16 = precision == MatmulPrecision::BF16;
  // A BF16 dot-product instruction: vdpbf16ps (x86) or BFDOT (AArch64).
  const bool dpbf16 = bf16 && (isa == Isa::Avx512Bf16 || isa == Isa::NeonBf16);
#if PW_X86
  if (bf16 && isa == Isa::AmxBf16) {
    linear_amx(out, x, static_cast<const uint16_t*>(w), bias, M, N, K);
    return;
  }
#endif

  Ctx c{};
  c.w = static_cast<const uint8_t*>(w);
  c.ldw = K * static_cast<int64_t>(dtype_bytes(dtype));
  c.K = K;
  c.out = out;
  c.ldo = N;
  c.bias = bias;
  c.ldx = K;
  c.x = x;
  const size_t nx = static_cast<size_t>(M) * static_cast<size_t>(K);
  if (dpbf16) {
    // Round each activation once per call (RNE), vdpbf16ps reads the bf16 bits.
    uint16_t* xb = rounded.get<uint16_t>(nx);
#if PW_X86
    round_bf16_avx512(xb, x, nx);
#else
    for (size_t i = 0; i < nx; i++) xb[i] = f32_to_bf16(x[i]);
#endif
    c.x = xb;
  } else if (bf16) {
    // Same math without the instruction: bf16 activations times bf16 weights (exact products),
    // accumulated in float32 by the F32 kernels.
    float* xr = rounded.get<float>(nx);
#if PW_X86
    if (isa >= Isa::Avx512) {
      round_bf16_f32_avx512(xr, x, nx);
    } else
#endif
    {
      for (size_t i = 0; i < nx; i++) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    }
    c.x = xr;
  }

  const Kernel& kern = kernel_for(isa, wt, dpbf16, bf16, M);
  const int64_t MR = kern.mr_max, NR = kern.nr_max;
  // Column block: keep the w block (NB rows) within ~256 KiB of L2; row block: 64 rows of x.
  int64_t NB = std::max<int64_t>(NR, (int64_t(256) << 10) / std::max<int64_t>(1, c.ldw));
  NB = std::min<int64_t>(NB, 256);
  NB = std::max<int64_t>(NR, NB / NR * NR);
  const int64_t MB = std::min<int64_t>(M, 64);
  // Enough items for load balance on a few threads.
  const int64_t threads = num_threads();
  const int64_t nmb = (M + MB - 1) / MB;
  while (NB > 4 * NR && nmb * ((N + NB - 1) / NB) < 8 * threads) NB = std::max<int64_t>(NR, NB / 2 / NR * NR);
  const int64_t nnb = (N + NB - 1) / NB;

  auto run = [&](int64_t item) {
    const int64_t nb = item / nmb, mb = item % nmb;
    const int64_t n_begin = nb * NB, n_end = std::min(N, n_begin + NB);
    const int64_t m_begin = mb * MB, m_end = std::min(M, m_begin + MB);
    for (int64_t m0 = m_begin; m0 < m_end; m0 += MR) {
      const int64_t mr = std::min(MR, m_end - m0);
      // The first row tile pulls the weight block in from memory; later ones find it in L2.
      const auto& table = m0 == m_begin ? kern.seq : kern.fn;
      for (int64_t n0 = n_begin; n0 < n_end; n0 += NR) {
        const int64_t nr = std::min(NR, n_end - n0);
        table[mr - 1][nr - 1](c, m0, n0);
      }
    }
  };
  // Tiny products are not worth waking the pool (a few microseconds); items give the same bits
  // whichever thread runs them.
  if (M * N * K < (int64_t(1) << 16)) {
    for (int64_t i = 0; i < nnb * nmb; i++) run(i);
  } else {
    parallel_items(nnb * nmb, run);
  }
}

}  // namespace pw
