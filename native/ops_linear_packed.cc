// Pre-packed linear: out[M, N] = x[M, K] . w[N, K]^T (+ bias), with the weights re-laid out once at
// load time so the microkernels stream them contiguously.
//
// Numerics are exactly linear()'s (ops_linear.cc), bit for bit on every kernel family: each
// output is one vector accumulator over K in fixed steps from k = 0 (32 bf16 pairs per vdpbf16ps,
// 16 floats per FMA on AVX-512, 8 on AVX2, 8 scalar lanes; NEON: simd_neon.h), then the family's
// fixed reduction tree, then + bias. Only the memory order and the blocking change:
//
//   Weights: groups of 4 weight rows (4 output columns; in a gate/up pack 2 gate + the same 2 up
//   columns), 4 groups to a superpanel of 16 rows stored [K / KB][16][KB] (KB = 32 elements for
//   BF16 precision, 16 otherwise; K padded with zeros, which add exact zeros just as linear()'s
//   masked tails do). A single activation row (decode) walks a superpanel as one contiguous
//   stream, 16 accumulators reduced by one hsum16x16. A tile of up to 6 rows x one group keeps
//   24 accumulators in registers and loads each weight vector once for its rows and each
//   activation vector once for its 4 weight rows; hsum16x16 reduces them and the epilogue stores
//   straight from the reduced vectors. The first row tile of a group prefetches the next group.
//   Activations: rounded once per call (BF16 precision) into rows padded to the k blocks.
//
// Several weight matrices with the same K share one pack ("segments", e.g. q/k/v): one pass over
// the activations fills all their outputs. A gate/up pack writes silu(gate) * up (simd::silu16,
// the same bits as linear + siluMul). With `accumulate`, out += result (the same bits as linear +
// add). Batch invariance follows: tiles, groups and threads never change an output's sequence of
// operations, so row m of a batch is bit for bit the M = 1 result.
//
// BF16 precision on the AMX family (Isa::AmxBf16) runs on tiles, from the same packs:
// ops_linear_amx.cc (its numerics are that file's, equal between linear() and packs there).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops.h"
#include "scratch.h"
#include "simd.h"
#include "simd_neon.h"

namespace pw {
namespace {

constexpr int kRows = 4;     // weight rows per group (accumulators per row of a tile)
constexpr int kSuper = 4;    // groups per superpanel
constexpr int kMaxMR = 6;    // rows per tile (AVX-512: 6 x 4 = 24 zmm accumulators)

struct Job {
  const PackedLinear* P;
  const uint8_t* x;  // padded activation rows (bf16 bits, or float)
  size_t ldx;        // bytes per activation row
  float* const* outs;
  bool accumulate;
};

// Group g's first weight row in its superpanel, and the bytes from one k block to the next.
PW_INLINE const uint8_t* group_ptr(const PackedLinear& P, int64_t g, size_t* kb_stride) {
  const int64_t s = g / kSuper, gi = g % kSuper;
  const int64_t ng = std::min<int64_t>(kSuper, P.ngroups - s * kSuper);
  const size_t row = static_cast<size_t>(P.kb) * P.elem_bytes();
  *kb_stride = static_cast<size_t>(ng * kRows) * row;
  return P.data + static_cast<size_t>(s) * P.super_bytes + static_cast<size_t>(gi * kRows) * row;
}

// Per-call arguments of a microkernel. w / stride: the tile's first weight row and its k-block
// stride (group_ptr). pf / pf_stride: the next group's panel, prefetched along (the first row tile
// of a group is the one that waits on memory), or null. defer (gate/up packs, AVX-512): where the
// tile leaves its reduced [g0 g1 u0 u1] lanes, row i at defer + 32 i, for silu_pass512 to finish
// 8 groups at a time; null to finish in the tile.
struct TileArgs {
  const uint8_t* w;
  size_t stride;
  const uint8_t* pf;
  size_t pf_stride;
  float* defer;
};
using MkFn = void (*)(const Job&, int64_t m0, int64_t g0, const TileArgs& a);

#if PW_X86
// ---------------------------------------------------------------------------------------------
// AVX-512. A tile's accumulators acc[i][c] (row i, weight row c of its NG groups, W = 4 NG) are
// reduced 16 at a time by hsum16x16 into lane (i % R) * W + c of a result vector, R = 16 / W rows
// per vector; the epilogue stores each group's lanes straight from that vector (a masked store at
// an address shifted back by the lane offset: masked-out lanes never touch memory).

// Gate/up groups are lanes [g0 g1 u0 u1]: lanes l % 4 < 2 take lane l + 2 (the up value).
PW_AVX512 PW_INLINE __m512 up_to_gate_lanes(__m512 r) {
  const __m512i idx = _mm512_setr_epi32(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
  return _mm512_permutexvar_ps(idx, r);
}

template <int MR, int NG, bool SILU>
PW_AVX512 PW_INLINE void finish512(const Job& j, int64_t m0, int64_t g0, __m512 (&acc)[MR][NG * kRows], float* defer) {
  const PackedLinear& P = *j.P;
  constexpr int W = NG * kRows;
  constexpr int R = 16 / W;  // rows per result vector
  static_assert(NG == 1 || MR == 1, "tiles are one group of rows or one row of groups");
  __m512 bias = _mm512_setzero_ps();
  if (!SILU && P.bias) {
    if constexpr (NG == 1) bias = _mm512_broadcast_f32x4(_mm_loadu_ps(P.bias + g0 * kRows));
    else bias = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << W) - 1u), P.bias + g0 * kRows);
  }
  if constexpr (SILU && NG == 1) {
    if (defer) {
      // Leave row i's 4 reduced lanes at defer + 32 i; silu_pass512 finishes them.
#pragma GCC unroll 2
      for (int b = 0; b * R < MR; b++) {
        __m512 a[16];
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++) {
          const int i = b * R + l / W, c = l % W;
          a[4 * (l % 4) + l / 4] = i < MR ? acc[i < MR ? i : 0][c] : _mm512_setzero_ps();
        }
        const __m512 r = simd::hsum16x16(a);
        for (int ii = 0; ii < (MR - b * R < R ? MR - b * R : R); ii++) {
          _mm512_mask_storeu_ps(defer + 32 * (b * R + ii) - 4 * ii, static_cast<__mmask16>(0xfu << (4 * ii)), r);
        }
      }
      return;
    }
  }
  if constexpr (SILU && NG == 1) {
    // Gather every row's 2 gate values (lanes 2i, 2i + 1) and 2 up values into one vector each,
    // so one silu16 serves up to 8 rows.
    __m512 r[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
#pragma GCC unroll 2
    for (int b = 0; b * R < MR; b++) {
      __m512 a[16];
#pragma GCC unroll 16
      for (int l = 0; l < 16; l++) {
        const int i = b * R + l / W, c = l % W;
        a[4 * (l % 4) + l / 4] = i < MR ? acc[i < MR ? i : 0][c] : _mm512_setzero_ps();
      }
      r[b] = simd::hsum16x16(a);
    }
    alignas(64) int32_t gi[16], ui[16];
    for (int d = 0; d < 16; d++) {
      const int i = d / 2, c = d % 2;  // row i, column c; row i sits in vector i / 4, lanes 4 (i % 4) ..
      gi[d] = (i / 4) * 16 + (i % 4) * 4 + c;
      ui[d] = gi[d] + 2;
    }
    const __m512 g = _mm512_permutex2var_ps(r[0], _mm512_load_si512(gi), r[1]);
    const __m512 u = _mm512_permutex2var_ps(r[0], _mm512_load_si512(ui), r[1]);
    const __m512 v = _mm512_mul_ps(simd::silu16(g), u);
    const PackedLinear::Group& d = P.groups[static_cast<size_t>(g0)];
    const int64_t ldo = P.segs[0].n;
    float* o = j.outs[0] + m0 * ldo + d.col0;
    for (int i = 0; i < MR; i++, o += ldo) {
      const __mmask16 m = static_cast<__mmask16>(((1u << d.ncols) - 1u) << (2 * i));
      __m512 y = v;
      if (j.accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o - 2 * i), y);
      _mm512_mask_storeu_ps(o - 2 * i, m, y);
    }
    return;
  }
#pragma GCC unroll 8
  for (int b = 0; b * R < MR; b++) {
    __m512 a[16];
#pragma GCC unroll 16
    for (int l = 0; l < 16; l++) {
      const int i = b * R + l / W, c = l % W;
      a[4 * (l % 4) + l / 4] = i < MR ? acc[i < MR ? i : 0][c] : _mm512_setzero_ps();
    }
    __m512 r = simd::hsum16x16(a);
    if constexpr (SILU) {
      r = _mm512_mul_ps(simd::silu16(r), up_to_gate_lanes(r));
    } else {
      if (P.bias) r = _mm512_add_ps(r, bias);
    }
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) {
      const PackedLinear::Group& d = P.groups[static_cast<size_t>(g0 + g)];
      const int64_t ldo = P.segs[static_cast<size_t>(d.seg)].n;
      for (int ii = 0; ii < (MR - b * R < R ? MR - b * R : R); ii++) {
        const int lane0 = ii * W + g * kRows;
        const __mmask16 m = static_cast<__mmask16>(((1u << d.ncols) - 1u) << lane0);
        float* o = j.outs[d.seg] + (m0 + b * R + ii) * ldo + d.col0 - lane0;
        __m512 v = r;
        if (j.accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v);
        _mm512_mask_storeu_ps(o, m, v);
      }
    }
  }
}

// Finishes deferred gate/up tiles: rows [m0, m1) of up to 8 consecutive groups starting at g0,
// their [g0 g1 u0 u1] lanes at defer + 32 (m - m0) + 4 g. One silu16 per row and 16 outputs, the
// same per-lane arithmetic as the in-tile epilogue (and siluMul).
PW_AVX512 void silu_pass512(const Job& j, int64_t m0, int64_t m1, int64_t g0, int ng, const float* defer) {
  const PackedLinear& P = *j.P;
  const PackedLinear::Group& d = P.groups[static_cast<size_t>(g0)];
  const int64_t ldo = P.segs[0].n;
  int cols = 0;
  for (int g = 0; g < ng; g++) cols += P.groups[static_cast<size_t>(g0 + g)].ncols;
  const __mmask16 m = static_cast<__mmask16>((1u << cols) - 1u);
  // Output column 2g + c of the block is gate lane 4g + c, up lane 4g + 2 + c.
  const __m512i gi = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const __m512i ui = _mm512_add_epi32(gi, _mm512_set1_epi32(2));
  float* o = j.outs[0] + m0 * ldo + d.col0;
  for (int64_t r = m0; r < m1; r++, o += ldo, defer += 32) {
    const __m512 lo = _mm512_loadu_ps(defer), hi = _mm512_loadu_ps(defer + 16);
    __m512 v = _mm512_mul_ps(simd::silu16(_mm512_permutex2var_ps(lo, gi, hi)), _mm512_permutex2var_ps(lo, ui, hi));
    if (j.accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v);
    _mm512_mask_storeu_ps(o, m, v);
  }
}

// AVX512_BF16 (linear()'s tile_dpbf16): acc = vdpbf16ps(acc, x[32], w[32]) per k block.
template <int MR, int NG, bool SILU>
PW_AVX512BF16 void mk_dpbf16(const Job& j, int64_t m0, int64_t g0, const TileArgs& ta) {
  const uint8_t* w = ta.w;
  const size_t stride = ta.stride;
  const uint8_t* pf = ta.pf;
  const size_t pf_stride = ta.pf_stride;
  constexpr int W = NG * kRows;
  __m512 acc[MR][W];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
    for (int c = 0; c < W; c++) acc[i][c] = _mm512_setzero_ps();
  const uint8_t* x = j.x + static_cast<size_t>(m0) * j.ldx;
  const int64_t nkb = j.P->nkb;
  for (int64_t kb = 0; kb < nkb; kb++) {
    __m512i xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_si512(x + i * j.ldx);
    // A single row streams its superpanel front to back, prefetching simd::kStreamAhead bytes
    // ahead; a tile of rows prefetches the next group (see TileArgs).
    if (MR > 1 && pf) {
      // Into L1: the next group's tiles start on it right after this one (T0 against T1, weights
      // from DRAM: smollm qkv / o / gate_up at M = 16-64 +5-25%, down and llama-1b unchanged).
      for (int c = 0; c < W; c++) _mm_prefetch(reinterpret_cast<const char*>(pf + c * 64), _MM_HINT_T0);
      pf += pf_stride;
    }
    if (MR == 1) {
      for (int c = 0; c < W; c++) _mm_prefetch(reinterpret_cast<const char*>(w + simd::kStreamAhead + c * 64), _MM_HINT_T0);
    }
    for (int c = 0; c < W; c++) {
      const __m512i wv = _mm512_loadu_si512(w + c * 64);
      for (int i = 0; i < MR; i++) acc[i][c] = _mm512_dpbf16_ps(acc[i][c], (__m512bh)xv[i], (__m512bh)wv);
    }
    x += 64;
    w += stride;
  }
  finish512<MR, NG, SILU>(j, m0, g0, acc, ta.defer);
}

// AVX-512 float32 (linear()'s tile_avx512): weights of type WT widened exactly, 16 k per FMA;
// a k block of KB = 32 (BF16 precision without the instruction) is two FMA steps, in k order.
template <int MR, int NG, bool SILU, int WT, int KB>
PW_AVX512 void mk_f32_512(const Job& j, int64_t m0, int64_t g0, const TileArgs& ta) {
  const uint8_t* w = ta.w;
  const size_t stride = ta.stride;
  const uint8_t* pf = ta.pf;
  const size_t pf_stride = ta.pf_stride;
  constexpr int W = NG * kRows;
  constexpr int EB = WT == 0 ? 4 : 2;
  constexpr int LINES = W * KB * EB / 64;  // cache lines of a k block
  __m512 acc[MR][W];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
    for (int c = 0; c < W; c++) acc[i][c] = _mm512_setzero_ps();
  const uint8_t* x = j.x + static_cast<size_t>(m0) * j.ldx;
  const int64_t nkb = j.P->nkb;
  for (int64_t kb = 0; kb < nkb; kb++) {
    if (MR > 1 && pf) {
      for (int c = 0; c < LINES; c++) _mm_prefetch(reinterpret_cast<const char*>(pf + c * 64), _MM_HINT_T1);
      pf += pf_stride;
    }
    if (MR == 1) {
      for (int c = 0; c < LINES; c++) _mm_prefetch(reinterpret_cast<const char*>(w + simd::kStreamAhead + c * 64), _MM_HINT_T0);
    }
    for (int sub = 0; sub < KB / 16; sub++) {
      __m512 xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_ps(reinterpret_cast<const float*>(x + i * j.ldx) + sub * 16);
      for (int c = 0; c < W; c++) {
        const __m512 wv = simd::load16<WT>(w, c * KB + sub * 16);
        for (int i = 0; i < MR; i++) acc[i][c] = _mm512_fmadd_ps(xv[i], wv, acc[i][c]);
      }
    }
    x += KB * 4;
    w += stride;
  }
  finish512<MR, NG, SILU>(j, m0, g0, acc, ta.defer);
}

// ---------------------------------------------------------------------------------------------
// AVX2 and scalar: reductions into red[MR][4 NG], then a plain float epilogue (lane for lane what
// linear()'s epilogues, siluMul and add compute; the build never contracts a * b + c into an FMA).

#endif  // PW_X86

enum class Fam { Scalar, Avx2 };

#if PW_X86
PW_AVX2 void silu_mul_avx2(float* o, const float* g, const float* u, int n, bool accumulate) {
  const __m256i m = simd::mask8(n);
  __m256 r = _mm256_mul_ps(simd::silu8(_mm256_maskload_ps(g, m)), _mm256_maskload_ps(u, m));
  if (accumulate) r = _mm256_add_ps(_mm256_maskload_ps(o, m), r);
  _mm256_maskstore_ps(o, m, r);
}
#endif  // PW_X86

template <Fam F, int MR, int NG, bool SILU>
PW_INLINE void epilogue_generic(const Job& j, int64_t m0, int64_t g0, const float* red) {
  const PackedLinear& P = *j.P;
  constexpr int W = NG * kRows;
  for (int g = 0; g < NG; g++) {
    const PackedLinear::Group& d = P.groups[static_cast<size_t>(g0 + g)];
    const int64_t ldo = P.segs[static_cast<size_t>(d.seg)].n;
    for (int i = 0; i < MR; i++) {
      const float* r = red + i * W + g * kRows;
      float* o = j.outs[d.seg] + (m0 + i) * ldo + d.col0;
      if constexpr (SILU) {
#if PW_X86
        if constexpr (F == Fam::Avx2) {
          silu_mul_avx2(o, r, r + 2, d.ncols, j.accumulate);
        } else
#endif
        {
          for (int c = 0; c < d.ncols; c++) {
            const float v = r[c] / (1.0f + std::exp(-r[c])) * r[c + 2];
            o[c] = j.accumulate ? o[c] + v : v;
          }
        }
      } else {
        const float* b = P.bias ? P.bias + (g0 + g) * kRows : nullptr;
        for (int c = 0; c < d.ncols; c++) {
          float v = r[c];
          if (b) v = v + b[c];
          o[c] = j.accumulate ? o[c] + v : v;
        }
      }
    }
  }
}

#if PW_X86
// AVX2 + FMA (linear()'s tile_avx2): 8 k per FMA, each accumulator reduced by hsum8.
template <int MR, int NG, bool SILU, int WT, int KB>
PW_AVX2 void mk_avx2(const Job& j, int64_t m0, int64_t g0, const TileArgs& ta) {
  const uint8_t* w = ta.w;
  const size_t stride = ta.stride;
  const PackedLinear& P = *j.P;
  constexpr int W = NG * kRows;
  __m256 acc[MR * W];
  for (int a = 0; a < MR * W; a++) acc[a] = _mm256_setzero_ps();
  const uint8_t* x = j.x + static_cast<size_t>(m0) * j.ldx;
  for (int64_t kb = 0; kb < P.nkb; kb++) {
    for (int sub = 0; sub < KB / 8; sub++) {
      __m256 xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(reinterpret_cast<const float*>(x + i * j.ldx) + kb * KB + sub * 8);
      for (int c = 0; c < W; c++) {
        const __m256 wv = simd::load8<WT>(w, c * KB + sub * 8);
        for (int i = 0; i < MR; i++) acc[i * W + c] = _mm256_fmadd_ps(xv[i], wv, acc[i * W + c]);
      }
    }
    w += stride;
  }
  float red[MR * W];
  for (int a = 0; a < MR * W; a++) red[a] = simd::hsum8(acc[a]);
  epilogue_generic<Fam::Avx2, MR, NG, SILU>(j, m0, g0, red);
}
#endif  // PW_X86

#if PW_ARM64
// NEON (linear()'s tile_neon / tile_bfdot, simd_neon.h): one 4-lane accumulator per output, the
// scalar epilogue (silu as silu_mul computes it for these families). KB = 0: BFDOT on bf16 rows.
template <int MR, int NG, bool SILU, int WT, int KB>
void mk_neon(const Job& j, int64_t m0, int64_t g0, const TileArgs& ta) {
  constexpr int W = NG * kRows;
  float red[MR * W];
  const uint8_t* x = j.x + static_cast<size_t>(m0) * j.ldx;
  if constexpr (KB == 0) simd::panel_tile_bf16<MR, W>(x, j.ldx, ta.w, ta.stride, j.P->nkb, red);
  else simd::panel_tile_f32<MR, W, WT, KB>(x, j.ldx, ta.w, ta.stride, j.P->nkb, red);
  epilogue_generic<Fam::Scalar, MR, NG, SILU>(j, m0, g0, red);
}
#endif  // PW_ARM64

// Scalar (linear()'s tile_scalar): 8 partial sums (lane k % 8), products rounded then added.
template <int WT>
inline float scalar_w(const uint8_t* w, int64_t i) {
  if constexpr (WT == 0) {
    float f;
    std::memcpy(&f, w + 4 * i, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, w + 2 * i, 2);
    return WT == 1 ? f16_to_f32(h) : bf16_to_f32(h);
  }
}

template <int MR, int NG, bool SILU, int WT, int KB>
void mk_scalar(const Job& j, int64_t m0, int64_t g0, const TileArgs& ta) {
  const uint8_t* w = ta.w;
  const size_t stride = ta.stride;
  const PackedLinear& P = *j.P;
  constexpr int W = NG * kRows;
  const size_t eb = P.elem_bytes();
  float red[MR * W];
  for (int i = 0; i < MR; i++) {
    const float* x = reinterpret_cast<const float*>(j.x + static_cast<size_t>(m0 + i) * j.ldx);
    for (int c = 0; c < W; c++) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t kb = 0; kb < P.nkb; kb++) {
        const uint8_t* wr = w + kb * stride + static_cast<size_t>(c * KB) * eb;
        for (int e = 0; e < KB; e++) acc[e % 8] += x[kb * KB + e] * scalar_w<WT>(wr, e);
      }
      float s4[4], s2[2];
      for (int q = 0; q < 4; q++) s4[q] = acc[q] + acc[q + 4];
      for (int q = 0; q < 2; q++) s2[q] = s4[q] + s4[q + 2];
      red[i * W + c] = s2[0] + s2[1];
    }
  }
  epilogue_generic<Fam::Scalar, MR, NG, SILU>(j, m0, g0, red);
}

// ---------------------------------------------------------------------------------------------
// Kernel tables.

struct Family {
  bool defer_silu = false;  // gate/up tiles can leave their lanes for silu_pass512 (AVX-512)
  int mr_max = 1;          // rows per tile
  int row_groups = 1;      // groups per single-row call (divides kSuper)
  MkFn tile[kMaxMR] = {};  // tile[mr - 1]: mr rows x 1 group
  MkFn row[kSuper] = {};   // row[ng - 1]: 1 row x ng groups of one superpanel
};

template <template <int, int, bool> class T, bool SILU, int... MR>
void fill_tiles(Family& f, std::integer_sequence<int, MR...>) {
  ((f.tile[MR] = T<MR + 1, 1, SILU>::fn), ...);
}
template <template <int, int, bool> class T, bool SILU, int... NG>
void fill_rows(Family& f, std::integer_sequence<int, NG...>) {
  ((f.row[NG] = T<1, NG + 1, SILU>::fn), ...);
}
template <template <int, int, bool> class T, bool SILU, int MRMAX, int NGMAX>
Family make_family() {
  static_assert(kSuper % NGMAX == 0, "single-row runs must not cross a superpanel");
  Family f;
  f.mr_max = MRMAX;
  f.row_groups = NGMAX;
  fill_tiles<T, SILU>(f, std::make_integer_sequence<int, MRMAX>{});
  fill_rows<T, SILU>(f, std::make_integer_sequence<int, NGMAX>{});
  return f;
}

#if PW_X86
template <int MR, int NG, bool SILU> struct DpT { static constexpr MkFn fn = mk_dpbf16<MR, NG, SILU>; };
template <int WT, int KB> struct F512 {
  template <int MR, int NG, bool SILU> struct T { static constexpr MkFn fn = mk_f32_512<MR, NG, SILU, WT, KB>; };
};
template <int WT, int KB> struct A2 {
  template <int MR, int NG, bool SILU> struct T { static constexpr MkFn fn = mk_avx2<MR, NG, SILU, WT, KB>; };
};
#elif PW_ARM64
template <int WT, int KB> struct Ne {
  template <int MR, int NG, bool SILU> struct T { static constexpr MkFn fn = mk_neon<MR, NG, SILU, WT, KB>; };
};
#endif
template <int WT, int KB> struct Sc {
  template <int MR, int NG, bool SILU> struct T { static constexpr MkFn fn = mk_scalar<MR, NG, SILU, WT, KB>; };
};

// Plain and gate/up kernels of one (family, dtype, k block).
struct Families {
  Family plain, silu;
};
template <template <int, int, bool> class T, int MRMAX, int NGMAX>
Families make_families(bool avx512) {
  Families f{make_family<T, false, MRMAX, NGMAX>(), make_family<T, true, MRMAX, NGMAX>()};
  f.silu.defer_silu = avx512;
  return f;
}

const Family& family_for(Isa isa, const PackedLinear& P) {
  // BF16 precision: vdpbf16ps on AVX512_BF16; elsewhere the float kernels on bf16 weights over
  // activations already rounded to bf16 (k blocks of 32 either way), as linear() does. AArch64:
  // BFDOT on FEAT_BF16, the NEON float kernels otherwise.
#if PW_X86
  static const Families dp = make_families<DpT, 6, 4>(true);
  static const Families f512[3] = {make_families<F512<0, 16>::T, 6, 4>(true), make_families<F512<1, 16>::T, 6, 4>(true),
                                   make_families<F512<2, 16>::T, 6, 4>(true)};
  static const Families f512bf = make_families<F512<2, 32>::T, 6, 4>(true);
  static const Families a2[3] = {make_families<A2<0, 16>::T, 3, 2>(false), make_families<A2<1, 16>::T, 3, 2>(false),
                                 make_families<A2<2, 16>::T, 3, 2>(false)};
  static const Families a2bf = make_families<A2<2, 32>::T, 3, 2>(false);
#elif PW_ARM64
  static const Families bd = make_families<Ne<2, 0>::T, 4, 4>(false);
  static const Families ne[3] = {make_families<Ne<0, 16>::T, 4, 4>(false), make_families<Ne<1, 16>::T, 4, 4>(false),
                                 make_families<Ne<2, 16>::T, 4, 4>(false)};
  static const Families nebf = make_families<Ne<2, 32>::T, 4, 4>(false);
#endif
  static const Families sc[3] = {make_families<Sc<0, 16>::T, 1, 1>(false), make_families<Sc<1, 16>::T, 1, 1>(false),
                                 make_families<Sc<2, 16>::T, 1, 1>(false)};
  static const Families scbf = make_families<Sc<2, 32>::T, 1, 1>(false);
  const bool bf = P.precision == MatmulPrecision::BF16;
  const int wt = static_cast<int>(P.dtype);
  const Families* f;
  switch (isa) {
#if PW_X86
    case Isa::AmxBf16:  // BF16 precision runs on tiles (linear_packed)
    case Isa::Avx512Bf16: f = bf ? &dp : &f512[wt]; break;
    case Isa::Avx512: f = bf ? &f512bf : &f512[wt]; break;
    case Isa::Avx2: f = bf ? &a2bf : &a2[wt]; break;
#elif PW_ARM64
    case Isa::NeonBf16: f = bf ? &bd : &ne[wt]; break;
    case Isa::Neon: f = bf ? &nebf : &ne[wt]; break;
#endif
    default: f = bf ? &scbf : &sc[wt]; break;
  }
  return P.silu_pairs ? f->silu : f->plain;
}

// ---------------------------------------------------------------------------------------------
// Activations: rows padded with zeros to the k blocks; BF16 precision rounds (RNE, NaN kept) to
// bf16 bits (vdpbf16ps) or to bf16 values held as floats (the other families).

#if PW_X86
PW_AVX512 PW_INLINE __m512i round_bf16_hi(__m512 v) {  // linear()'s round_bf16_hi
  const __m512i u = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
  return _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
}

PW_AVX512 void row_to_bf16_512(uint16_t* dst, const float* src, int64_t K, int64_t kpad) {
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m512i r = _mm512_srli_epi32(round_bf16_hi(_mm512_loadu_ps(src + k)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), _mm512_cvtepi32_epi16(r));
  }
  if (k < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1u);
    const __m512i r = _mm512_srli_epi32(round_bf16_hi(_mm512_maskz_loadu_ps(m, src + k)), 16);
    _mm256_mask_storeu_epi16(dst + k, m, _mm512_cvtepi32_epi16(r));
  }
  std::fill(dst + K, dst + kpad, uint16_t(0));
}

PW_AVX512 void row_round_f32_512(float* dst, const float* src, int64_t K, int64_t kpad) {
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) _mm512_storeu_ps(dst + k, _mm512_castsi512_ps(round_bf16_hi(_mm512_loadu_ps(src + k))));
  for (; k < K; k++) dst[k] = bf16_to_f32(f32_to_bf16(src[k]));
  std::fill(dst + K, dst + kpad, 0.0f);
}
#endif  // PW_X86

// The activations of a call, in the kernels' layout (the engine calls from one thread).
thread_local Scratch activations;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Packing

size_t PackedLinear::elem_bytes() const { return dtype_bytes(dtype); }

bool packed_linear_init(PackedLinear& P, const std::vector<int64_t>& seg_n, int64_t K, DType dtype,
                        MatmulPrecision precision, bool silu_pairs, bool has_bias) {
  P.K = K;
  P.dtype = dtype;
  P.precision = precision;
  P.kb = precision == MatmulPrecision::BF16 ? 32 : 16;
  P.nkb = (K + P.kb - 1) / P.kb;
  P.kpad = P.nkb * P.kb;
  P.silu_pairs = silu_pairs;
  P.segs.clear();
  P.groups.clear();
  const int64_t cols = silu_pairs ? kRows / 2 : kRows;  // output columns per group
  for (size_t s = 0; s < seg_n.size(); s++) {
    const int64_t ng = (seg_n[s] + cols - 1) / cols;
    P.segs.push_back(PackedLinear::Segment{seg_n[s], static_cast<int64_t>(P.groups.size()), ng});
    for (int64_t g = 0; g < ng; g++) {
      P.groups.push_back(PackedLinear::Group{static_cast<int>(s), g * cols,
                                             static_cast<int>(std::min<int64_t>(cols, seg_n[s] - g * cols))});
    }
  }
  P.ngroups = static_cast<int64_t>(P.groups.size());
  P.super_bytes = static_cast<size_t>(kSuper * kRows * P.kpad) * P.elem_bytes();
  const int64_t nsuper = (P.ngroups + kSuper - 1) / kSuper;
  const int64_t last_rows = (P.ngroups - (nsuper - 1) * kSuper) * kRows;
  P.bytes = static_cast<size_t>(nsuper - 1) * P.super_bytes + static_cast<size_t>(last_rows * P.kpad) * P.elem_bytes();
  // 4 KiB pages: with transparent huge pages every first touch of a 2 MiB region during packing
  // may stall on compaction (llama-1b load: 2.4-6.4 s against 1.8-2.0 s), and streaming the
  // packed weights measured no faster with them (bench kernels, M = 1 and 64).
  P.data = static_cast<uint8_t*>(aligned_alloc_zeroed(P.bytes, false));
  if (!P.data) return false;
  if (has_bias) {
    P.bias = static_cast<float*>(aligned_alloc_zeroed(static_cast<size_t>(P.ngroups * kRows) * 4));
    if (!P.bias) {
      aligned_free(P.data, P.bytes);
      P.data = nullptr;
      return false;
    }
  }
  return true;
}

void packed_linear_fill(PackedLinear& P, const std::vector<const void*>& src, const std::vector<const float*>& bias) {
  const size_t eb = P.elem_bytes();
  const int64_t K = P.K, KB = P.kb;
  const size_t row_bytes = static_cast<size_t>(K) * eb;
  parallel_for(P.ngroups, [&](int64_t gb, int64_t ge) {
    for (int64_t g = gb; g < ge; g++) {
      const PackedLinear::Group& d = P.groups[static_cast<size_t>(g)];
      size_t stride = 0;
      uint8_t* base = const_cast<uint8_t*>(group_ptr(P, g, &stride));
      for (int c = 0; c < kRows; c++) {
        // Plain: columns col0 .. col0 + 3. Gate/up: gate col0, col0 + 1, then up col0, col0 + 1.
        const int col = P.silu_pairs ? c % 2 : c;
        if (col >= d.ncols) continue;  // zero row (the allocation is zeroed)
        const void* s = P.silu_pairs ? src[static_cast<size_t>(c / 2)] : src[static_cast<size_t>(d.seg)];
        const uint8_t* row = static_cast<const uint8_t*>(s) + static_cast<size_t>(d.col0 + col) * row_bytes;
        for (int64_t kb = 0; kb * KB < K; kb++) {
          const int64_t n = std::min<int64_t>(KB, K - kb * KB);
          std::memcpy(base + kb * stride + static_cast<size_t>(c * KB) * eb, row + static_cast<size_t>(kb * KB) * eb,
                      static_cast<size_t>(n) * eb);
        }
      }
    }
  });
  if (P.bias) {
    for (int64_t g = 0; g < P.ngroups; g++) {
      const PackedLinear::Group& d = P.groups[static_cast<size_t>(g)];
      const float* b = bias[static_cast<size_t>(d.seg)];
      if (!b) continue;
      for (int c = 0; c < d.ncols; c++) P.bias[g * kRows + c] = b[d.col0 + c];
    }
  }
}

const uint8_t* packed_linear_block(const PackedLinear& P, int64_t r, int64_t kb) {
  size_t stride = 0;
  const uint8_t* g = group_ptr(P, r / kRows, &stride);
  return g + static_cast<size_t>(kb) * stride + static_cast<size_t>((r % kRows) * P.kb) * P.elem_bytes();
}

void packed_linear_release(PackedLinear& P) {
  if (P.data) aligned_free(P.data, P.bytes);
  if (P.bias) aligned_free(P.bias, static_cast<size_t>(P.ngroups * kRows) * 4);
  P.data = nullptr;
  P.bias = nullptr;
  P.freed = true;
}

// ---------------------------------------------------------------------------------------------
// Compute

void linear_packed(const PackedLinear& P, const float* x, int64_t M, float* const* outs, bool accumulate) {
  if (M == 0) return;
  const Isa isa = active_isa();
#if PW_X86
  if (P.precision == MatmulPrecision::BF16 && isa == Isa::AmxBf16) {
    linear_packed_amx(P, x, M, outs, accumulate);
    return;
  }
#endif
  const Family& fam = family_for(isa, P);
  const bool bf = P.precision == MatmulPrecision::BF16;
  const bool dp = bf && (isa == Isa::Avx512Bf16 || isa == Isa::NeonBf16);  // vdpbf16ps / BFDOT
  const int64_t K = P.K, kpad = P.kpad;

  // Activation rows, padded to the k blocks (and rounded for BF16 precision).
  const size_t ldx = static_cast<size_t>(kpad) * (dp ? 2 : 4);
  uint8_t* xs = activations.bytes(static_cast<size_t>(M) * ldx);
  auto prep_rows = [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; m++) {
      const float* src = x + m * K;
      uint8_t* dst = xs + static_cast<size_t>(m) * ldx;
      if (dp) {
#if PW_X86
        row_to_bf16_512(reinterpret_cast<uint16_t*>(dst), src, K, kpad);
#else
        uint16_t* d = reinterpret_cast<uint16_t*>(dst);
        for (int64_t k = 0; k < K; k++) d[k] = f32_to_bf16(src[k]);
        std::fill(d + K, d + kpad, uint16_t(0));
#endif
      } else if (bf) {
        float* d = reinterpret_cast<float*>(dst);
#if PW_X86
        if (isa >= Isa::Avx512) {
          row_round_f32_512(d, src, K, kpad);
        } else
#endif
        {
          for (int64_t k = 0; k < K; k++) d[k] = bf16_to_f32(f32_to_bf16(src[k]));
          std::fill(d + K, d + kpad, 0.0f);
        }
      } else {
        std::memcpy(dst, src, static_cast<size_t>(K) * 4);
        std::fill(reinterpret_cast<float*>(dst) + K, reinterpret_cast<float*>(dst) + kpad, 0.0f);
      }
    }
  };
  if (M * K >= (int64_t(1) << 17)) parallel_for(M, prep_rows);
  else prep_rows(0, M);

  Job j{};
  j.P = &P;
  j.x = xs;
  j.ldx = ldx;
  j.outs = outs;
  j.accumulate = accumulate;

  const int64_t G = P.ngroups;
  const int64_t threads = num_threads();
  // Tiny products are not worth waking the pool (a few microseconds); work items give the same
  // bits whichever thread runs them.
  const bool tiny = M * G * kRows * K < (int64_t(1) << 16);
  if (M == 1) {
    // One row: runs of row_groups groups (a superpanel: one contiguous stream, one reduction per
    // 16 outputs), in contiguous chunks so each thread streams its own part of the weights.
    const int64_t RG = fam.row_groups;
    const int64_t runs = (G + RG - 1) / RG;
    // Contiguous pieces shrinking as the runs run out (parallel_pieces): long first streams (the
    // step's linear ops ran 3-6% faster with 2 equal chunks per thread than with 4 or 8, measured
    // interleaved), short last ones so neither thread waits long for the other.
    auto run = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        const int64_t g0 = r * RG;
        const int64_t ng = std::min<int64_t>(RG, G - g0);
        size_t stride = 0;
        const uint8_t* w = group_ptr(P, g0, &stride);
        fam.row[ng - 1](j, 0, g0, TileArgs{w, stride, nullptr, 0, nullptr});
      }
    };
    if (tiny) {
      run(0, runs);
    } else {
      parallel_pieces(runs, 2, 1, run);
    }
    return;
  }

  // Batches: items are (row block, chunk of groups). Inside an item, sub-blocks of rows whose
  // activations fit in L1 (24 KiB) are the outer loop, then the groups, then the sub-block's row
  // tiles: a group's panel is loaded once per sub-block and serves its tiles from L1, the rows
  // stay in L1 while the chunk's panels stream past from L2. (Groups outer over row blocks of
  // 96+ rows streamed 6 activation lines from L2 per k block instead, which lost a third of the
  // speed from K ~ 1100 up: smollm down, K = 1536, M = 1024: 540 -> 750 GFLOP/s; llama-1b
  // shapes at M = 64-256: +30-45%.) A chunk is sized to stay in L2 across the sub-blocks; the
  // first tile of the first sub-block, which brings it from memory, prefetches each next panel.
  const int64_t MR = fam.mr_max;
  const int64_t ntiles = (M + MR - 1) / MR;
  const size_t panel_bytes = static_cast<size_t>(kRows * P.kpad) * P.elem_bytes();
  const int64_t l2_groups = std::max<int64_t>(1, static_cast<int64_t>((size_t(384) << 10) / panel_bytes));
  // Enough items that the last ones handed out are small next to the whole, split so that the
  // traffic from memory is least: every chunk reads all the activation rows, every row block
  // reads all the weights. Decode batches (few rows) split the groups finely and read each weight
  // once; long prefills keep the fewest chunks L2 allows and split the rows (a 8192-row prefill
  // step split 16 ways by groups re-read its 24 MB of activations 16 times: down 575 -> 735
  // GFLOP/s).
  const int64_t want = 8 * threads;
  const int64_t min_chunks = std::min(G, (G + l2_groups - 1) / l2_groups);
  const double x_bytes = static_cast<double>(M) * static_cast<double>(ldx);
  const double w_bytes = static_cast<double>(G) * static_cast<double>(panel_bytes);
  int64_t ngc = min_chunks;
  double least = -1;
  for (int64_t c = min_chunks; c <= std::min(G, std::max(min_chunks, want)); c++) {
    const int64_t r = std::min(ntiles, std::max<int64_t>(1, (want + c - 1) / c));
    const double traffic = x_bytes * static_cast<double>(c) + w_bytes * static_cast<double>(r);
    if (least < 0 || traffic < least) {
      least = traffic;
      ngc = c;
    }
  }
  const int64_t gchunk = (G + ngc - 1) / ngc;
  const int64_t nchunks = (G + gchunk - 1) / gchunk;
  const int64_t nrb = std::min(ntiles, std::max<int64_t>(1, (want + nchunks - 1) / nchunks));
  // Sub-blocks of whole tiles whose activations fit in 24 KiB.
  const int64_t sub_tiles = std::max<int64_t>(1, static_cast<int64_t>((size_t(24) << 10) / (static_cast<size_t>(MR) * ldx)));
  // Rows spread evenly over the tiles (32 rows: 6 6 5 5 5 5, not 6 6 6 6 6 2): a short tile has
  // too few accumulators to hide the dot instruction's latency and takes nearly a full tile's time.
  const int64_t base = M / ntiles, extra = M % ntiles;
  auto tile_start = [&](int64_t t) { return std::min(M, t * base + std::min(t, extra)); };

  auto run = [&](int64_t item) {
    const int64_t gc = item / nrb, rb = item % nrb;
    const int64_t ga = gc * gchunk, gz = std::min(G, ga + gchunk);
    // Row blocks of equal tile counts.
    const int64_t ta0 = rb * ntiles / nrb, tz = (rb + 1) * ntiles / nrb;
    // Gate/up on AVX-512: tiles leave their lanes in `defer`, one silu pass per 8 groups.
    thread_local std::vector<float> defer_buf;
    const size_t defer_need = static_cast<size_t>(sub_tiles * MR) * 32;
    if (fam.defer_silu && defer_buf.size() < defer_need) defer_buf.resize(defer_need);
    float* defer = fam.defer_silu ? defer_buf.data() : nullptr;
    for (int64_t st = ta0; st < tz; st += sub_tiles) {
      const int64_t st1 = std::min(tz, st + sub_tiles);
      [[maybe_unused]] const int64_t s0 = tile_start(st), s1 = tile_start(st1);  // s1: x86 silu pass
      size_t stride = 0, next_stride = 0;
      const uint8_t* w = group_ptr(P, ga, &stride);
      for (int64_t g = ga; g < gz; g++) {
        const uint8_t* next = g + 1 < gz ? group_ptr(P, g + 1, &next_stride) : nullptr;
        const int64_t gb = defer ? (g - ga) % 8 : 0;  // position in the current block of 8 groups
        for (int64_t t = st; t < st1; t++) {
          const int64_t m0 = tile_start(t), mr = tile_start(t + 1) - m0;
          if (mr == 0) continue;
          const TileArgs ta{w, stride, st == ta0 && t == st ? next : nullptr, next_stride, defer ? defer + (m0 - s0) * 32 + 4 * gb : nullptr};
          fam.tile[mr - 1](j, m0, g, ta);
        }
#if PW_X86
        if (defer && (gb == 7 || g + 1 == gz)) silu_pass512(j, s0, s1, g - gb, static_cast<int>(gb + 1), defer);
#endif
        w = next;
        stride = next_stride;
      }
    }
  };
  const int64_t items = nchunks * nrb;
  if (tiny) {
    for (int64_t i = 0; i < items; i++) run(i);
  } else {
    parallel_items(items, run);
  }
}

}  // namespace pw
