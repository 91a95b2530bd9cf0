// PagedAttention over the block-table KV cache, one kernel family for prefill and decode.
//
// Work items are (sequence, KV heads, tile of up to kTileTokens query tokens); an item walks the
// block table once and serves every query head of its KV head groups (GQA / MQA / MHA) for every
// token of its tile. Decode-sized tiles of a batch with many sequences take all KV heads at once
// (a block's K and V are one contiguous run of the pool); otherwise an item is one KV head, or
// half of its query heads when there are too few items to balance the threads. Keys
// are consumed in chunks of kChunk at absolute positions [c*kChunk, (c+1)*kChunk): each chunk is
// staged once per item and head into contiguous float32 buffers (a copy, or the exact bf16 -> f32
// widening; at most 4 rows per head, i.e. decode, read the pool in place instead, with the same
// widening of a bf16 cache, prefetching the next chunk as they go), then every query row whose
// causal window reaches it does one online softmax step on it:
//   s_j = dot(q, k_j) * scale            (the ISA's fixed dot order / reduction tree)
//   m'  = max(m, max_j s_j);  alpha = exp(m - m');  p_j = exp(s_j - m')
//   l   = l * alpha + sum_j p_j          (fixed tree)
//   acc = acc * alpha;  acc += p_j * v_j for j in key order
// and at the end out = acc / l. Rows with the same key count in a chunk are stepped in packs of
// up to 4 that share the V loads of acc += p_j * v_j (each row keeps its own accumulators and
// order). A row's operations depend only on its own q, its position and the key/value contents:
// not on the tile, the other rows, the number of sequences, the thread that runs it, the
// physical block ids or even the block size.
//
// Sliding windows (window > 0): a query at position p sees keys p - window < j <= p, so a row's
// valid keys in a chunk are [lo, nvalid); lanes below lo are masked like those past nvalid, P.V
// starts at lo, and chunks wholly before the window are never visited. Keys before the earliest
// window of an item are never read (their blocks may have been freed and reused): staging fills
// them with zeros, the in-place path points them at a zero row. Soft-capping (softcap > 0):
// s_j = softcap * tanh(s_j / softcap) on the scaled scores (softcap.h), before masking.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops.h"
#include "simd.h"
#include "simd_neon.h"
#include "softcap.h"

namespace pw {
namespace {

constexpr int kChunk = 32;           // keys per online-softmax step
constexpr int64_t kTileTokens = 16;  // query tokens per work item

// Where a multi-row step reads keys and values: the staged float32 chunk, or the pool in place
// (Chunk::kb / vb) as float32 or bf16 rows (simd::load16's dtype codes).
constexpr int kStaged = -1, kDirectF32 = 0, kDirectBf16 = 2;
constexpr int src_bytes(int src) { return src == kDirectBf16 ? 2 : 4; }

// One chunk of keys. Staged: k and v are [kChunk][head_dim] float32, rows past the chunk's keys
// zero-filled. Direct (the x86 multi-row steps, AVX-512 and AVX2, with a compile-time head dim):
// kb[j] / vb[j] point at key j's row in the pool (a zero row past the chunk's keys), float32 or
// bf16 widened exactly as it is loaded, so the arithmetic is the staged one without the copy.
struct Chunk {
  const float* k;
  const float* v;
  const void* const* kb;
  const void* const* vb;
  // Direct: the next chunk's key and value rows (at an item's last chunk, the first chunk of the
  // item its thread likely runs next; or null), prefetched while this chunk is computed: its keys
  // by the first row's scores, its values by P.V, a few lines per key (a burst of a whole chunk's
  // lines overflows the core's miss buffers and is dropped: measured, no gain at all, while these
  // spread prefetches halve the time of decode over a DRAM-resident cache).
  const void* const* kn;
  const void* const* vn;
};

struct RowState {
  float m, l;
};

#if PW_X86
// A key or value row of the next chunk (direct steps) into L1, line by line.
template <int HD, int SRC>
PW_INLINE void prefetch_row(const void* row) {
  for (int o = 0; o < HD * src_bytes(SRC); o += 64) _mm_prefetch(reinterpret_cast<const char*>(row) + o, _MM_HINT_T0);
}

// ---------------------------------------------------------------------------------------------
// AVX-512

// Scores of keys [16g, 16g + 16) of a staged chunk, scaled: lane j = dot(q, k_{16g+j}) * scale,
// each dot one accumulator over d in steps of 16 (masked tail), reduced by hsum16x16. Keys are
// walked in two sets of 8 (fewer live registers); every accumulator still sees the same sequence.
PW_AVX512 PW_INLINE __m512 scores16(const float* q, const Chunk& ch, int g, int64_t hd, __m512 scale) {
  __m512 acc[16];
  for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
  for (int half = 0; half < 2; half++) {
    const float* kp = ch.k + (16 * g + 8 * half) * hd;
    __m512* a8 = acc + 8 * half;
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16) {
      const __m512 qv = _mm512_loadu_ps(q + d);
      for (int j = 0; j < 8; j++) a8[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kp + j * hd + d), a8[j]);
    }
    if (d < hd) {
      const __mmask16 m = static_cast<__mmask16>((1u << (hd - d)) - 1u);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
      for (int j = 0; j < 8; j++) a8[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, kp + j * hd + d), a8[j]);
    }
  }
  __m512 a[16];
  for (int l = 0; l < 16; l++) a[4 * (l % 4) + l / 4] = acc[l];  // hsum16x16: a[4q + p] -> lane 4p + q
  return _mm512_mul_ps(simd::hsum16x16(a), scale);
}

// Lane sources for gathering row r's 16 scores out of the passes of scores16_rows (kLanes2: 2 row
// slots, from 2 passes; kLanes4: 4 row slots, lanes 0-7 from 2 passes).
struct RowLanes {
  int32_t idx[4][16];
};
constexpr RowLanes row_lanes(int slots) {
  RowLanes t{};
  for (int r = 0; r < 4; r++)
    for (int l = 0; l < 16; l++) {
      const int half = slots == 2 ? 8 : 4;  // lanes taken from each of the two passes
      t.idx[r][l] = l < half ? slots * l + r : l < 2 * half ? 16 + slots * (l - half) + r : 0;
    }
  return t;
}
constexpr RowLanes kLanes2 = row_lanes(2), kLanes4 = row_lanes(4);

// scores16 for R rows of one KV head at once (HD a multiple of 16): each key vector is loaded
// (and widened) once for all R rows instead of once per row. A pass covers 16 / RP keys for RP
// row slots (RP = 1, 2 or 4 >= R), and one hsum16x16 reduces its 16 accumulators straight from
// registers (lane RP k + r: row r, key k); permutes then gather each row's 16 scores. Every
// accumulator sees the same FMAs over d and the same reduction tree as in scores16: same bits.
template <int HD, int R, int SRC>
PW_AVX512 PW_INLINE void scores16_rows(const float* const* q, const Chunk& ch, int g, __m512 scale, bool pf, __m512* out) {
  static_assert(HD % 16 == 0, "multi-row scores need a compile-time head dim, a multiple of 16");
  static_assert(R >= 1 && R <= 4, "1 to 4 rows");
  constexpr int RP = R == 1 ? 1 : R == 2 ? 2 : 4;  // row slots per pass
  constexpr int KS = 16 / RP;                      // keys per pass
  __m512 part[RP];
  for (int p = 0; p < RP; p++) {
    const int j0 = p * KS;
    if (SRC != kStaged && pf) {  // the next chunk's keys (Chunk::kn)
      for (int j = 0; j < KS; j++) prefetch_row<HD, SRC>(ch.kn[16 * g + j0 + j]);
    }
    __m512 a[R][KS];
    for (int r = 0; r < R; r++)
      for (int j = 0; j < KS; j++) a[r][j] = _mm512_setzero_ps();
    for (int d = 0; d < HD; d += 16) {
      __m512 qv[R];
      for (int r = 0; r < R; r++) qv[r] = _mm512_loadu_ps(q[r] + d);
      for (int j = 0; j < KS; j++) {
        const int key = 16 * g + j0 + j;
        __m512 kv;
        if constexpr (SRC == kStaged) kv = _mm512_loadu_ps(ch.k + key * HD + d);
        else kv = simd::load16<SRC>(ch.kb[key], d);
        for (int r = 0; r < R; r++) a[r][j] = _mm512_fmadd_ps(qv[r], kv, a[r][j]);
      }
    }
    __m512 t[16];
    for (int l = 0; l < 16; l++) {  // hsum16x16 puts t[4 (l % 4) + l / 4] in lane l
      const int k = l / RP, r = l % RP;
      t[4 * (l % 4) + l / 4] = r < R ? a[r < R ? r : 0][k] : _mm512_setzero_ps();
    }
    part[p] = simd::hsum16x16(t);
  }
  for (int r = 0; r < R; r++) {
    __m512 sv;
    if constexpr (RP == 1) {
      sv = part[0];
    } else if constexpr (RP == 2) {
      sv = _mm512_permutex2var_ps(part[0], _mm512_loadu_si512(kLanes2.idx[r]), part[1]);
    } else {
      const __m512i ix = _mm512_loadu_si512(kLanes4.idx[r]);
      const __m512 lo = _mm512_permutex2var_ps(part[0], ix, part[1]);
      const __m512 hi = _mm512_permutex2var_ps(part[2 % RP], ix, part[3 % RP]);
      sv = _mm512_shuffle_f32x4(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
    }
    out[r] = _mm512_mul_ps(sv, scale);
  }
}

// acc[d0 .. d0 + 16*ND) = acc * alpha, then += p_j * v_j in key order. ND vectors are kept in
// registers so ND independent FMA chains run side by side (per element the order is the same).
template <int ND>
PW_AVX512 PW_INLINE void pv_block(float* acc, const Chunk& ch, int64_t hd, const float* p, int lo, int nvalid,
                                  __m512 av, int64_t d0, __mmask16 last) {
  __m512 o[ND];
  for (int i = 0; i < ND; i++) {
    const __mmask16 m = i == ND - 1 ? last : static_cast<__mmask16>(0xffff);
    o[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, acc + d0 + 16 * i), av);
  }
  for (int j = lo; j < nvalid; j++) {
    const __m512 pj = _mm512_set1_ps(p[j]);
    const float* v = ch.v + j * hd + d0;
    for (int i = 0; i < ND - 1; i++) o[i] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + 16 * i), o[i]);
    o[ND - 1] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(last, v + 16 * (ND - 1)), o[ND - 1]);
  }
  for (int i = 0; i < ND; i++) {
    const __mmask16 m = i == ND - 1 ? last : static_cast<__mmask16>(0xffff);
    _mm512_mask_storeu_ps(acc + d0 + 16 * i, m, o[i]);
  }
}

// Lanes of key group g (keys [16g, 16g + 16) of a chunk) below nvalid.
PW_INLINE __mmask16 key_mask(int nvalid, int g) {
  const int n = std::min(16, std::max(0, nvalid - 16 * g));
  return static_cast<__mmask16>((1u << n) - 1u);
}

// Lanes of key group g inside [lo, nvalid).
PW_INLINE __mmask16 key_mask(int lo, int nvalid, int g) {
  return static_cast<__mmask16>(key_mask(nvalid, g) & ~key_mask(lo, g));
}

// One chunk step of one row for any head dim (the multi-row steps below cover the common ones).
PW_AVX512 void row_step_avx512(const float* q, float* acc, RowState& st, const Chunk& ch, int lo, int nvalid,
                               int64_t hd, float scale, float cap) {
  const __m512 sc = _mm512_set1_ps(scale);
  const __m512 capv = _mm512_set1_ps(cap);
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  const __mmask16 m0 = key_mask(lo, nvalid, 0), m1 = key_mask(lo, nvalid, 1);
  __m512 s0 = ninf, s1 = ninf;
  if (m0) {
    s0 = scores16(q, ch, 0, hd, sc);
    if (cap > 0) s0 = softcap16(s0, capv);
    s0 = _mm512_mask_mov_ps(ninf, m0, s0);
  }
  if (m1) {
    s1 = scores16(q, ch, 1, hd, sc);
    if (cap > 0) s1 = softcap16(s1, capv);
    s1 = _mm512_mask_mov_ps(ninf, m1, s1);
  }
  const float mc = _mm512_reduce_max_ps(_mm512_max_ps(s0, s1));  // max is exact in any order
  const float mnew = std::max(st.m, mc);
  const float alpha = st.m == -__builtin_inff() ? 0.0f : std::exp(st.m - mnew);
  const __m512 mv = _mm512_set1_ps(mnew);
  const __m512 p0 = _mm512_maskz_mov_ps(m0, simd::exp16(_mm512_sub_ps(s0, mv)));
  const __m512 p1 = _mm512_maskz_mov_ps(m1, simd::exp16(_mm512_sub_ps(s1, mv)));
  st.l = st.l * alpha + (simd::hsum16(p0) + simd::hsum16(p1));
  st.m = mnew;
  alignas(64) float p[32];
  _mm512_store_ps(p, p0);
  _mm512_store_ps(p + 16, p1);
  const __m512 av = _mm512_set1_ps(alpha);
  for (int64_t d0 = 0; d0 < hd; d0 += 128) {
    const int64_t rest = std::min<int64_t>(128, hd - d0);
    const int nd = static_cast<int>((rest + 15) / 16);
    const __mmask16 last = rest % 16 ? static_cast<__mmask16>((1u << (rest % 16)) - 1u) : static_cast<__mmask16>(0xffff);
    switch (nd) {
      case 1: pv_block<1>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      case 2: pv_block<2>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      case 3: pv_block<3>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      case 4: pv_block<4>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      case 5: pv_block<5>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      case 6: pv_block<6>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      case 7: pv_block<7>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
      default: pv_block<8>(acc, ch, hd, p, lo, nvalid, av, d0, last); break;
    }
  }
}

// P.V for R rows over vectors [D0V, D0V + NB) of the head dim: V loads are shared by the rows,
// R * NB independent chains; per element still acc * alpha, then + p_j * v_j in key order.
template <int HD, int R, int NB, int SRC>
PW_AVX512 PW_INLINE void pv_rows(float* const* acc, const Chunk& ch, const float (*p)[kChunk], const float* alpha,
                                 int lo, int nvalid, int d0) {
  __m512 o[R][NB];
  for (int r = 0; r < R; r++) {
    const __m512 av = _mm512_set1_ps(alpha[r]);
    for (int i = 0; i < NB; i++) o[r][i] = _mm512_mul_ps(_mm512_loadu_ps(acc[r] + d0 + 16 * i), av);
  }
  for (int j = lo; j < nvalid; j++) {
    __m512 vv[NB];
    if constexpr (SRC != kStaged) {
      if (d0 == 0 && ch.vn) {
        prefetch_row<HD, SRC>(ch.vn[j]);
      }
      for (int i = 0; i < NB; i++) vv[i] = simd::load16<SRC>(ch.vb[j], d0 + 16 * i);
    } else {
      const float* vj = ch.v + j * HD + d0;
      for (int i = 0; i < NB; i++) vv[i] = _mm512_loadu_ps(vj + 16 * i);
    }
    for (int r = 0; r < R; r++) {
      const __m512 pj = _mm512_set1_ps(p[r][j]);
      for (int i = 0; i < NB; i++) o[r][i] = _mm512_fmadd_ps(pj, vv[i], o[r][i]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int i = 0; i < NB; i++) _mm512_storeu_ps(acc[r] + d0 + 16 * i, o[r][i]);
}

template <int HD, int R, int D0V, int SRC>
PW_AVX512 PW_INLINE void pv_all(float* const* acc, const Chunk& ch, const float (*p)[kChunk], const float* alpha,
                                int lo, int nvalid) {
  constexpr int ND = HD / 16;
  constexpr int NDB = R * ND <= 16 ? ND : 16 / R;  // keep R * NB accumulators within 16 registers
  if constexpr (D0V < ND) {
    constexpr int NB = NDB < ND - D0V ? NDB : ND - D0V;
    pv_rows<HD, R, NB, SRC>(acc, ch, p, alpha, lo, nvalid, 16 * D0V);
    pv_all<HD, R, D0V + NB, SRC>(acc, ch, p, alpha, lo, nvalid);
  }
}

// One chunk step for R rows with the same valid keys (HD a multiple of 16, known at compile
// time); SRC: the staged chunk or the pool in place (kStaged, kDirectF32, kDirectBf16).
//
// The rows' softmax steps run phase by phase (all scores, all maxima, all exponentials) rather
// than row after row: each row's step is one long dependent chain (reduction, max, exp, sum), and
// side by side the rows' chains overlap. Each row's operations are row_step_avx512's, in order
// (scores16_rows gives scores16's bits).
template <int HD, int R, int SRC>
PW_AVX512 void rows_step_avx512(const float* const* q, float* const* acc, RowState* const* st, const Chunk& ch,
                                int lo, int nvalid, float scale, float cap) {
  const __m512 sc = _mm512_set1_ps(scale);
  const __m512 capv = _mm512_set1_ps(cap);
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  const __mmask16 m0 = key_mask(lo, nvalid, 0), m1 = key_mask(lo, nvalid, 1);
  __m512 s0[R], s1[R];
  // Group 0 is always scored (its pass issues the next chunk's key prefetches).
  scores16_rows<HD, R, SRC>(q, ch, 0, sc, ch.kn != nullptr, s0);
  for (int r = 0; r < R; r++) s0[r] = _mm512_mask_mov_ps(ninf, m0, cap > 0 ? softcap16(s0[r], capv) : s0[r]);
  if (m1) {
    scores16_rows<HD, R, SRC>(q, ch, 1, sc, ch.kn != nullptr, s1);
    for (int r = 0; r < R; r++) s1[r] = _mm512_mask_mov_ps(ninf, m1, cap > 0 ? softcap16(s1[r], capv) : s1[r]);
  } else {
    for (int r = 0; r < R; r++) s1[r] = ninf;
  }
  float mnew[R], alpha[R];
  for (int r = 0; r < R; r++) mnew[r] = std::max(st[r]->m, _mm512_reduce_max_ps(_mm512_max_ps(s0[r], s1[r])));
  for (int r = 0; r < R; r++) alpha[r] = st[r]->m == -__builtin_inff() ? 0.0f : std::exp(st[r]->m - mnew[r]);
  alignas(64) float p[R][kChunk];
  for (int r = 0; r < R; r++) {
    const __m512 mv = _mm512_set1_ps(mnew[r]);
    const __m512 p0 = _mm512_maskz_mov_ps(m0, simd::exp16(_mm512_sub_ps(s0[r], mv)));
    const __m512 p1 = _mm512_maskz_mov_ps(m1, simd::exp16(_mm512_sub_ps(s1[r], mv)));
    st[r]->l = st[r]->l * alpha[r] + (simd::hsum16(p0) + simd::hsum16(p1));
    st[r]->m = mnew[r];
    _mm512_store_ps(p[r], p0);
    _mm512_store_ps(p[r] + 16, p1);
  }
  pv_all<HD, R, 0, SRC>(acc, ch, p, alpha, lo, nvalid);
}

PW_AVX512 void finish_avx512(float* out, const float* acc, float l, int64_t hd) {
  const __m512 lv = _mm512_set1_ps(l);
  for (int64_t d = 0; d < hd; d += 16) {
    const __mmask16 dm = hd - d >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (hd - d)) - 1u);
    _mm512_mask_storeu_ps(out + d, dm, _mm512_div_ps(_mm512_maskz_loadu_ps(dm, acc + d), lv));
  }
}

PW_AVX512 void widen_bf16_avx512(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, simd::load16<2>(src, i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, simd::load16m<2>(src, i, m));
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2: dot per key with the 8-lane tree of hsum8 (the one-row step, for any head dim; the
// multi-row steps below give its bits).

PW_AVX2 PW_INLINE float dot_avx2(const float* q, const float* k, int64_t hd) {
  __m256 acc = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= hd; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc);
  if (d < hd) {
    const __m256i m = simd::mask8(hd - d);
    acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + d, m), _mm256_maskload_ps(k + d, m), acc);
  }
  return simd::hsum8(acc);
}

// Lanes of key group g (keys [8g, 8g + 8) of a chunk) inside [lo, nvalid): key_mask's AVX2 twin.
PW_AVX2 PW_INLINE __m256i key_mask8(int lo, int nvalid, int g) {
  return _mm256_andnot_si256(simd::mask8(std::max(0, std::min(8, lo - 8 * g))), simd::mask8(std::max(0, std::min(8, nvalid - 8 * g))));
}

// The online-softmax step of one row on its chunk scores s (-inf outside the valid keys): the new
// max, p = exp(s - max) on the valid lanes, l = l * alpha + sum(p). Returns alpha.
PW_AVX2 PW_INLINE float softmax_step_avx2(const float* s, const __m256i* valid, RowState& st, float* p) {
  float mc = -__builtin_inff();
  for (int j = 0; j < kChunk; j++) mc = std::max(mc, s[j]);
  const float mnew = std::max(st.m, mc);
  const float alpha = st.m == -__builtin_inff() ? 0.0f : std::exp(st.m - mnew);
  const __m256 mv = _mm256_set1_ps(mnew);
  float lc = 0.0f;
  for (int g = 0; g < kChunk / 8; g++) {
    const __m256 pv = _mm256_and_ps(simd::exp8(_mm256_sub_ps(_mm256_load_ps(s + 8 * g), mv)), _mm256_castsi256_ps(valid[g]));
    _mm256_store_ps(p + 8 * g, pv);
    lc = g == 0 ? simd::hsum8(pv) : lc + simd::hsum8(pv);
  }
  st.l = st.l * alpha + lc;
  st.m = mnew;
  return alpha;
}

PW_AVX2 void row_step_avx2(const float* q, float* acc, RowState& st, const Chunk& ch, int lo, int nvalid, int64_t hd,
                           float scale, float cap) {
  alignas(32) float s[kChunk];
  __m256i valid[kChunk / 8];
  for (int g = 0; g < kChunk / 8; g++) valid[g] = key_mask8(lo, nvalid, g);
  for (int j = 0; j < kChunk; j++) s[j] = j >= lo && j < nvalid ? dot_avx2(q, ch.k + j * hd, hd) * scale : -__builtin_inff();
  if (cap > 0) {
    const __m256 capv = _mm256_set1_ps(cap);
    for (int g = 0; g < kChunk / 8; g++) {
      const __m256 capped = softcap8(_mm256_load_ps(s + 8 * g), capv);
      _mm256_store_ps(s + 8 * g, _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), capped, _mm256_castsi256_ps(valid[g])));
    }
  }
  alignas(32) float p[kChunk];
  const float alpha = softmax_step_avx2(s, valid, st, p);
  const __m256 av = _mm256_set1_ps(alpha);
  int64_t d = 0;
  for (; d + 32 <= hd; d += 32) {  // four independent chains
    __m256 o[4];
    for (int i = 0; i < 4; i++) o[i] = _mm256_mul_ps(_mm256_loadu_ps(acc + d + 8 * i), av);
    for (int j = lo; j < nvalid; j++) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      for (int i = 0; i < 4; i++) o[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(ch.v + j * hd + d + 8 * i), o[i]);
    }
    for (int i = 0; i < 4; i++) _mm256_storeu_ps(acc + d + 8 * i, o[i]);
  }
  for (; d < hd; d += 8) {
    const __m256i dm = simd::mask8(std::min<int64_t>(8, hd - d));
    __m256 o = _mm256_mul_ps(_mm256_maskload_ps(acc + d, dm), av);
    for (int j = lo; j < nvalid; j++) o = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_maskload_ps(ch.v + j * hd + d, dm), o);
    _mm256_maskstore_ps(acc + d, dm, o);
  }
}

// row_step_avx2 for R rows of one KV head at once, HD a multiple of 8 known at compile time, keys
// and values staged or read in place (SRC, as rows_step_avx512). The same bits as row_step_avx2:
// each key's dot is the same FMA chain over d, reduced by the same tree (hsum8x8 reduces eight
// chains at once where dot_avx2 reduced one, and the chains of neighbouring keys overlap), and
// the softmax and P.V steps are its operations in its order; the rows share each K and V load.

// Scores of keys [8g, 8g + 8) for the R rows, scaled. A pass covers 8 / RP keys of RP row slots
// (RP = 1, 2 or 4 >= R): eight chains, one hsum8x8 (lane order chosen so that the rows' scores
// come out of the passes by 128-bit moves).
template <int HD, int R, int SRC>
PW_AVX2 PW_INLINE void scores8_rows(const float* const* q, const Chunk& ch, int g, __m256 scale, bool pf, __m256* out) {
  static_assert(HD % 8 == 0 && R >= 1 && R <= 4, "1 to 4 rows, a head dim a multiple of 8");
  constexpr int RP = R == 1 ? 1 : R == 2 ? 2 : 4;
  constexpr int KS = 8 / RP;  // keys per pass
  __m256 part[RP];
  for (int p = 0; p < RP; p++) {
    const int j0 = 8 * g + p * KS;
    if (SRC != kStaged && pf) {  // the next chunk's keys (Chunk::kn)
      for (int j = 0; j < KS; j++) prefetch_row<HD, SRC>(ch.kn[j0 + j]);
    }
    __m256 a[R][KS];
    for (int r = 0; r < R; r++)
      for (int j = 0; j < KS; j++) a[r][j] = _mm256_setzero_ps();
    for (int d = 0; d < HD; d += 8) {
      __m256 qv[R];
      for (int r = 0; r < R; r++) qv[r] = _mm256_loadu_ps(q[r] + d);
      for (int j = 0; j < KS; j++) {
        __m256 kv;
        if constexpr (SRC == kStaged) kv = _mm256_loadu_ps(ch.k + (j0 + j) * HD + d);
        else kv = simd::load8<SRC>(ch.kb[j0 + j], d);
        for (int r = 0; r < R; r++) a[r][j] = _mm256_fmadd_ps(qv[r], kv, a[r][j]);
      }
    }
    // Lane l of the pass: row l / KS, key l % KS (rows past R: zero chains).
    __m256 t[8];
    for (int l = 0; l < 8; l++) t[l] = l / KS < R ? a[l / KS < R ? l / KS : 0][l % KS] : _mm256_setzero_ps();
    part[p] = simd::hsum8x8(t);
  }
  if constexpr (RP == 1) {
    out[0] = _mm256_mul_ps(part[0], scale);
  } else if constexpr (RP == 2) {  // pass p: [row 0 keys 4p..4p+3 | row 1 keys 4p..4p+3]
    out[0] = _mm256_mul_ps(_mm256_permute2f128_ps(part[0], part[1], 0x20), scale);
    out[1] = _mm256_mul_ps(_mm256_permute2f128_ps(part[0], part[1], 0x31), scale);
  } else {  // pass p: [rows 0, 1 | rows 2, 3] x keys 2p, 2p + 1
    __m256 lo[2], hi[2];
    for (int h = 0; h < 2; h++) {
      lo[h] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(part[2 * h]), _mm256_castps_pd(part[2 * h + 1])));  // rows 0 | 2
      hi[h] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(part[2 * h]), _mm256_castps_pd(part[2 * h + 1])));  // rows 1 | 3
    }
    const __m256 rows[4] = {_mm256_permute2f128_ps(lo[0], lo[1], 0x20), _mm256_permute2f128_ps(hi[0], hi[1], 0x20),
                            _mm256_permute2f128_ps(lo[0], lo[1], 0x31), _mm256_permute2f128_ps(hi[0], hi[1], 0x31)};
    for (int r = 0; r < R; r++) out[r] = _mm256_mul_ps(rows[r], scale);
  }
}

// P.V for R rows over vectors [D0V, D0V + NB) of the head dim, the V loads shared by the rows.
template <int HD, int R, int NB, int SRC>
PW_AVX2 PW_INLINE void pv_rows_avx2(float* const* acc, const Chunk& ch, const float (*p)[kChunk], const float* alpha,
                                    int lo, int nvalid, int d0) {
  __m256 o[R][NB];
  for (int r = 0; r < R; r++) {
    const __m256 av = _mm256_set1_ps(alpha[r]);
    for (int i = 0; i < NB; i++) o[r][i] = _mm256_mul_ps(_mm256_loadu_ps(acc[r] + d0 + 8 * i), av);
  }
  for (int j = lo; j < nvalid; j++) {
    if constexpr (SRC != kStaged) {
      if (d0 == 0 && ch.vn) {
        prefetch_row<HD, SRC>(ch.vn[j]);
      }
    }
    __m256 pj[R];
    for (int r = 0; r < R; r++) pj[r] = _mm256_set1_ps(p[r][j]);
    for (int i = 0; i < NB; i++) {
      __m256 vv;
      if constexpr (SRC == kStaged) vv = _mm256_loadu_ps(ch.v + j * HD + d0 + 8 * i);
      else vv = simd::load8<SRC>(ch.vb[j], d0 + 8 * i);
      for (int r = 0; r < R; r++) o[r][i] = _mm256_fmadd_ps(pj[r], vv, o[r][i]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int i = 0; i < NB; i++) _mm256_storeu_ps(acc[r] + d0 + 8 * i, o[r][i]);
}

template <int HD, int R, int D0V, int SRC>
PW_AVX2 PW_INLINE void pv_all_avx2(float* const* acc, const Chunk& ch, const float (*p)[kChunk], const float* alpha,
                                   int lo, int nvalid) {
  constexpr int ND = HD / 8;
  constexpr int NBMAX = R == 1 ? 8 : R == 2 ? 6 : R == 3 ? 3 : 2;  // accumulators + p broadcasts + a V load in 16 registers
  if constexpr (D0V < ND) {
    constexpr int NB = NBMAX < ND - D0V ? NBMAX : ND - D0V;
    pv_rows_avx2<HD, R, NB, SRC>(acc, ch, p, alpha, lo, nvalid, 8 * D0V);
    pv_all_avx2<HD, R, D0V + NB, SRC>(acc, ch, p, alpha, lo, nvalid);
  }
}

template <int HD, int R, int SRC>
PW_AVX2 void rows_step_avx2(const float* const* q, float* const* acc, RowState* const* st, const Chunk& ch, int lo,
                            int nvalid, float scale, float cap) {
  const __m256 sc = _mm256_set1_ps(scale);
  const __m256 capv = _mm256_set1_ps(cap);
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  alignas(32) float s[R][kChunk];
  __m256i valid[kChunk / 8];
  for (int g = 0; g < kChunk / 8; g++) {
    valid[g] = key_mask8(lo, nvalid, g);
    __m256 sg[R];
    if (_mm256_testz_si256(valid[g], valid[g])) {
      for (int r = 0; r < R; r++) sg[r] = ninf;
    } else {
      scores8_rows<HD, R, SRC>(q, ch, g, sc, ch.kn != nullptr, sg);
      for (int r = 0; r < R; r++) sg[r] = _mm256_blendv_ps(ninf, cap > 0 ? softcap8(sg[r], capv) : sg[r], _mm256_castsi256_ps(valid[g]));
    }
    for (int r = 0; r < R; r++) _mm256_store_ps(s[r] + 8 * g, sg[r]);
  }
  float alpha[R];
  alignas(32) float p[R][kChunk];
  for (int r = 0; r < R; r++) alpha[r] = softmax_step_avx2(s[r], valid, *st[r], p[r]);
  pv_all_avx2<HD, R, 0, SRC>(acc, ch, p, alpha, lo, nvalid);
}

PW_AVX2 void finish_avx2(float* out, const float* acc, float l, int64_t hd) {
  const __m256 lv = _mm256_set1_ps(l);
  int64_t d = 0;
  for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(out + d, _mm256_div_ps(_mm256_loadu_ps(acc + d), lv));
  for (; d < hd; d++) out[d] = acc[d] / l;
}

PW_AVX2 void widen_bf16_avx2(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, simd::load8<2>(src, i));
  for (; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

#endif  // PW_X86

// ---------------------------------------------------------------------------------------------
// Scalar: sequential float dot, std::exp.

void row_step_scalar(const float* q, float* acc, RowState& st, const Chunk& ch, int lo, int nvalid, int64_t hd,
                     float scale, float cap) {
  float s[kChunk];
  float mc = -__builtin_inff();
  for (int j = lo; j < nvalid; j++) {
    float dot = 0.0f;
    for (int64_t d = 0; d < hd; d++) dot += q[d] * ch.k[j * hd + d];
    s[j] = dot * scale;
    if (cap > 0) s[j] = softcap_scalar(s[j], cap);
    mc = std::max(mc, s[j]);
  }
  const float mnew = std::max(st.m, mc);
  const float alpha = st.m == -__builtin_inff() ? 0.0f : std::exp(st.m - mnew);
  float lc = 0.0f;
  for (int j = lo; j < nvalid; j++) {
    s[j] = std::exp(s[j] - mnew);
    lc += s[j];
  }
  st.l = st.l * alpha + lc;
  st.m = mnew;
  // Per element: acc * alpha, then + p_j * v_j in key order (loops ordered for independent chains).
  for (int64_t d = 0; d < hd; d++) acc[d] *= alpha;
  for (int j = lo; j < nvalid; j++) {
    const float* v = ch.v + j * hd;
    for (int64_t d = 0; d < hd; d++) acc[d] += s[j] * v[d];
  }
}

#if PW_ARM64
// NEON: the scalar step with 4-lane dots and vectorized P.V (simd::attend_chunk).
// A chunk cut by a sliding window (lo > 0) or with a logit soft-cap takes the scalar step: which
// step a chunk gets depends only on the model and the query's position, never on the batch.
void row_step_neon(const float* q, float* acc, RowState& st, const Chunk& ch, int lo, int nvalid, int64_t hd, float scale,
                   float cap) {
  static_assert(kChunk <= 32, "attend_chunk holds at most 32 scores");
  if (lo != 0 || cap != 0.0f) return row_step_scalar(q, acc, st, ch, lo, nvalid, hd, scale, cap);
  simd::attend_chunk(q, acc, st.m, st.l, ch.k, ch.v, nvalid, hd, scale);
}
#endif

// ---------------------------------------------------------------------------------------------

using RowStep = void (*)(const float* q, float* acc, RowState& st, const Chunk& ch, int lo, int nvalid, int64_t hd,
                        float scale, float cap);
using RowsStep = void (*)(const float* const* q, float* const* acc, RowState* const* st, const Chunk& ch, int lo,
                          int nvalid, float scale, float cap);

RowStep pick_row_step(Isa isa) {
#if PW_X86
  if (isa >= Isa::Avx512) return row_step_avx512;
  return isa == Isa::Avx2 ? row_step_avx2 : row_step_scalar;
#elif PW_ARM64
  return isa >= Isa::Neon ? row_step_neon : row_step_scalar;
#else
  (void)isa;
  return row_step_scalar;
#endif
}

// Multi-row steps (index R - 1) for the x86 head dims compiled in; all null otherwise.
struct RowsSteps {
  RowsStep fn[4] = {nullptr, nullptr, nullptr, nullptr};
};

#if PW_X86
template <int HD, int SRC>
RowsSteps rows_steps(Isa isa) {
  if (isa >= Isa::Avx512)
    return RowsSteps{{rows_step_avx512<HD, 1, SRC>, rows_step_avx512<HD, 2, SRC>, rows_step_avx512<HD, 3, SRC>,
                      rows_step_avx512<HD, 4, SRC>}};
  return RowsSteps{{rows_step_avx2<HD, 1, SRC>, rows_step_avx2<HD, 2, SRC>, rows_step_avx2<HD, 3, SRC>, rows_step_avx2<HD, 4, SRC>}};
}

template <int HD>
RowsSteps rows_steps_from(Isa isa, int src) {
  switch (src) {
    case kDirectF32: return rows_steps<HD, kDirectF32>(isa);
    case kDirectBf16: return rows_steps<HD, kDirectBf16>(isa);
    default: return rows_steps<HD, kStaged>(isa);
  }
}
#endif

// src: where the steps read keys and values (kStaged, kDirectF32, kDirectBf16).
RowsSteps pick_rows_steps(Isa isa, int64_t hd, int src) {
#if !PW_X86
  (void)isa;
  (void)hd;
  (void)src;
  return RowsSteps{};
#else
  if (isa < Isa::Avx2) return RowsSteps{};
  switch (hd) {
    case 32: return rows_steps_from<32>(isa, src);
    case 64: return rows_steps_from<64>(isa, src);
    case 80: return rows_steps_from<80>(isa, src);
    case 96: return rows_steps_from<96>(isa, src);
    case 128: return rows_steps_from<128>(isa, src);
    default: return RowsSteps{};
  }
#endif
}

struct Item {
  int64_t seq, head0, nheads, tok0, tok1;  // KV heads [head0, head0 + nheads), query tokens [tok0, tok1)
  int64_t g0, g1;                          // query heads [g0, g1) of each KV head's group
  int64_t cost;                            // ~ keys x tokens x heads: larger items are handed out first
  int64_t order;
};

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// after: the item this thread will most likely run next (its first chunk is prefetched), or null.
void run_item(const AttentionArgs& a, const Item& it, Isa isa, const Item* after) {
  const KvCache& c = *a.cache;
  const int64_t hd = a.head_dim, bs = c.block_size;
  const int64_t group = it.g1 - it.g0;  // query rows per token and KV head in this item
  const int64_t q_group = a.n_heads / a.n_kv_heads;
  const int64_t q_begin = a.query_start_loc[it.seq];
  const int64_t q_len = a.query_start_loc[it.seq + 1] - q_begin;
  const int64_t seq_len = a.seq_lens[it.seq];
  const int64_t first_pos = seq_len - q_len;  // absolute position of local query token 0
  const int32_t* table = a.block_tables + it.seq * a.max_blocks_per_seq;
  const int64_t ntok = it.tok1 - it.tok0;
  const int64_t head_rows = ntok * group;  // query rows of one KV head
  const int64_t rows = head_rows * it.nheads;

  thread_local std::vector<float> acc_buf, stage_buf;
  thread_local std::vector<RowState> state_buf;
  float* acc = grow(acc_buf, static_cast<size_t>(rows * hd));
  RowState* st = grow(state_buf, static_cast<size_t>(rows));
  std::fill(acc, acc + rows * hd, 0.0f);
  for (int64_t r = 0; r < rows; r++) st[r] = RowState{-__builtin_inff(), 0.0f};

  const bool bf16 = c.dtype == DType::BF16;
  // Keys / values of the current chunk, contiguous: [kChunk][hd] each (exact copies / widening).
  float* stage = grow(stage_buf, static_cast<size_t>(2 * kChunk * hd));
  float* kst = stage;
  float* vst = stage + kChunk * hd;
  const uint8_t* pool = static_cast<const uint8_t*>(c.pools[a.layer]);
  const RowStep row_step = pick_row_step(isa);
  // A cache feeding at most one pack of rows per head (decode: one token's query heads of a KV
  // head) is read in place: staging would write and re-read every key for one use (a float32
  // cache's staging copies were 20 % of a 32-sequence decode step of smollm-135m). More rows
  // share each staged chunk, and widening it once is cheaper than once per pack.
  RowsSteps rows_step = pick_rows_steps(isa, hd, kStaged);
  const bool direct = head_rows <= 4 && rows_step.fn[0] != nullptr;
  if (direct) rows_step = pick_rows_steps(isa, hd, bf16 ? kDirectBf16 : kDirectF32);
  const size_t elem = bf16 ? 2 : 4;  // bytes per cache value
  // Direct: key row pointers of the current and the next chunk, per head of the item.
  thread_local std::vector<const void*> ptr_buf;
  thread_local std::vector<float> zero_row;  // zero bits, as float32 or bf16 values
  const void** ptrs = grow(ptr_buf, static_cast<size_t>(4 * it.nheads * kChunk));
  auto rows_of = [&](int64_t which, int64_t hi, bool value) {
    return ptrs + ((which * it.nheads + hi) * 2 + (value ? 1 : 0)) * kChunk;
  };
  if (direct && zero_row.size() < static_cast<size_t>(hd)) zero_row.assign(static_cast<size_t>(hd), 0);
  thread_local std::vector<const float*> qp_buf;
  thread_local std::vector<float*> accp_buf;
  thread_local std::vector<RowState*> stp_buf;
  thread_local std::vector<int> nv_buf, lo_buf;
  const float** qp = grow(qp_buf, static_cast<size_t>(head_rows));
  float** accp = grow(accp_buf, static_cast<size_t>(head_rows));
  RowState** stp = grow(stp_buf, static_cast<size_t>(head_rows));
  int* nv = grow(nv_buf, static_cast<size_t>(head_rows));
  int* lov = grow(lo_buf, static_cast<size_t>(head_rows));

  const int64_t window = a.sliding_window;
  // First key any row of an item sees: 0, or the window start of its first token.
  auto first_key = [&a, window](const Item& x) -> int64_t {
    if (window <= 0) return 0;
    const int64_t pos0 = a.seq_lens[x.seq] - (a.query_start_loc[x.seq + 1] - a.query_start_loc[x.seq]) + x.tok0;
    return std::max<int64_t>(0, pos0 - window + 1);
  };
  const int64_t kmin = first_key(it);
  const int64_t last_pos = first_pos + it.tok1 - 1;
  const int64_t chunk0 = kmin / kChunk;
  const int64_t nchunks = last_pos / kChunk + 1;
  auto chunk_end = [&](int64_t ci) { return std::min<int64_t>((ci + 1) * kChunk, last_pos + 1); };
  // Pointers to the rows of keys [k0, k1) of head h in the pool, chunk slots from k0 % kChunk;
  // zero rows for the slots before (keys outside every window of the item) and after.
  auto fill_rows_of = [&](const int32_t* tbl, int64_t k0, int64_t k1, int64_t h, const void** kr, const void** vr) {
    const int64_t skip = k0 % kChunk;
    for (int64_t j = 0; j < skip; j++) kr[j] = vr[j] = zero_row.data();
    kr += skip;
    vr += skip;
    for (int64_t pos = k0; pos < k1;) {
      const int64_t off = pos % bs;
      const int64_t run = std::min<int64_t>(k1 - pos, bs - off);
      const uint8_t* ks = pool + c.index(tbl[pos / bs], false, h, off) * elem;
      const uint8_t* vs = pool + c.index(tbl[pos / bs], true, h, off) * elem;
      for (int64_t e = 0; e < run; e++) {
        kr[pos - k0 + e] = ks + static_cast<size_t>(e * hd) * elem;
        vr[pos - k0 + e] = vs + static_cast<size_t>(e * hd) * elem;
      }
      pos += run;
    }
    for (int64_t j = k1 - k0; j < kChunk - skip; j++) kr[j] = vr[j] = zero_row.data();
  };
  auto fill_rows = [&](int64_t k0, int64_t k1, int64_t h, const void** kr, const void** vr) { fill_rows_of(table, k0, k1, h, kr, vr); };
  // The last chunk prefetches the first chunk of the item this thread most likely takes next
  // (items go out in order, one per thread in turn), which would otherwise start cold: 64
  // sequences x 192 keys 10.4 -> 9.5 ms, x 64 keys 4.7 -> 3.2 ms per 30 layers. A wrong guess
  // costs a chunk's worth of prefetches.
  const bool chain = direct && after && after->nheads == it.nheads;
  const int32_t* after_table = chain ? a.block_tables + after->seq * a.max_blocks_per_seq : nullptr;
  const int64_t after_begin = chain ? first_key(*after) : 0;
  const int64_t after_end = chain ? std::min<int64_t>((after_begin / kChunk + 1) * kChunk, a.seq_lens[after->seq] - (a.query_start_loc[after->seq + 1] - a.query_start_loc[after->seq]) + after->tok1) : 0;
  if (direct) {
    for (int64_t hi = 0; hi < it.nheads; hi++) fill_rows(kmin, chunk_end(chunk0), it.head0 + hi, rows_of(chunk0 % 2, hi, false), rows_of(chunk0 % 2, hi, true));
  }
  for (int64_t ci = chunk0; ci < nchunks; ci++) {
    const int64_t k0 = ci * kChunk;
    const int64_t kfrom = std::max(k0, kmin);  // keys before kfrom are outside every window here
    const int n = static_cast<int>(chunk_end(ci) - k0);
    const int64_t cur = ci % 2, nxt = 1 - cur;
    for (int64_t hi = 0; hi < it.nheads; hi++) {
      const int64_t h = it.head0 + hi;
      Chunk ch{kst, vst, nullptr, nullptr, nullptr, nullptr};
      if (direct) {
        ch.kb = rows_of(cur, hi, false);
        ch.vb = rows_of(cur, hi, true);
        if (ci + 1 < nchunks) {
          fill_rows(k0 + kChunk, chunk_end(ci + 1), h, rows_of(nxt, hi, false), rows_of(nxt, hi, true));
          ch.kn = rows_of(nxt, hi, false);
          ch.vn = rows_of(nxt, hi, true);
        } else if (chain) {
          fill_rows_of(after_table, after_begin, after_end, after->head0 + hi, rows_of(nxt, hi, false), rows_of(nxt, hi, true));
          ch.kn = rows_of(nxt, hi, false);
          ch.vn = rows_of(nxt, hi, true);
        }
      } else {
        // Stage the chunk's keys, block run by block run (a run stays inside one physical block).
        const int jfrom = static_cast<int>(kfrom - k0);
        if (jfrom > 0) {
          std::fill(kst, kst + jfrom * hd, 0.0f);
          std::fill(vst, vst + jfrom * hd, 0.0f);
        }
        for (int j = jfrom; j < n;) {
          const int64_t pos = k0 + j;
          const int64_t off = pos % bs;
          const int run = static_cast<int>(std::min<int64_t>(n - j, bs - off));
          const size_t kidx = c.index(table[pos / bs], false, h, off);
          const size_t vidx = c.index(table[pos / bs], true, h, off);
          const size_t cnt = static_cast<size_t>(run * hd);
          if (bf16) {
            const uint16_t* ks = reinterpret_cast<const uint16_t*>(pool) + kidx;
            const uint16_t* vs = reinterpret_cast<const uint16_t*>(pool) + vidx;
#if PW_X86
            if (isa >= Isa::Avx512) {
              widen_bf16_avx512(kst + j * hd, ks, static_cast<int64_t>(cnt));
              widen_bf16_avx512(vst + j * hd, vs, static_cast<int64_t>(cnt));
            } else if (isa >= Isa::Avx2) {
              widen_bf16_avx2(kst + j * hd, ks, static_cast<int64_t>(cnt));
              widen_bf16_avx2(vst + j * hd, vs, static_cast<int64_t>(cnt));
            } else
#endif
            {
              for (size_t e = 0; e < cnt; e++) {
                kst[j * hd + e] = bf16_to_f32(ks[e]);
                vst[j * hd + e] = bf16_to_f32(vs[e]);
              }
            }
          } else {
            std::memcpy(kst + j * hd, reinterpret_cast<const float*>(pool) + kidx, cnt * sizeof(float));
            std::memcpy(vst + j * hd, reinterpret_cast<const float*>(pool) + vidx, cnt * sizeof(float));
          }
          j += run;
        }
        if (n < kChunk) {
          std::fill(kst + n * hd, kst + kChunk * hd, 0.0f);
          std::fill(vst + n * hd, vst + kChunk * hd, 0.0f);
        }
      }
      // Rows of this head whose window reaches this chunk, with their valid keys [lo, nvalid) in it.
      int64_t active = 0;
      for (int64_t t = it.tok0; t < it.tok1; t++) {
        const int64_t pos = first_pos + t;
        if (pos < k0) continue;
        const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1 - k0) : 0;
        if (lo >= kChunk) continue;
        const int nvalid = static_cast<int>(std::min<int64_t>(kChunk, pos + 1 - k0));
        for (int64_t g = 0; g < group; g++) {
          const int64_t r = hi * head_rows + (t - it.tok0) * group + g;
          qp[active] = a.q + ((q_begin + t) * a.n_heads + h * q_group + it.g0 + g) * hd;
          accp[active] = acc + r * hd;
          stp[active] = st + r;
          nv[active] = nvalid;
          lov[active] = static_cast<int>(lo);
          active++;
        }
      }
      if (rows_step.fn[0]) {
        // Packs of up to 4 rows with the same valid keys share the V loads of P.V.
        for (int64_t i = 0; i < active;) {
          int64_t m = 1;
          while (m < 4 && i + m < active && nv[i + m] == nv[i] && lov[i + m] == lov[i]) m++;
          rows_step.fn[m - 1](qp + i, accp + i, stp + i, ch, lov[i], nv[i], a.scale, a.softcap);
          i += m;
        }
      } else {
        for (int64_t i = 0; i < active; i++) row_step(qp[i], accp[i], *stp[i], ch, lov[i], nv[i], hd, a.scale, a.softcap);
      }
    }
  }
  for (int64_t hi = 0; hi < it.nheads; hi++) {
    for (int64_t t = it.tok0; t < it.tok1; t++) {
      for (int64_t g = 0; g < group; g++) {
        const int64_t head = (it.head0 + hi) * q_group + it.g0 + g;
        const int64_t r = hi * head_rows + (t - it.tok0) * group + g;
        float* o = a.out + ((q_begin + t) * a.n_heads + head) * hd;
#if PW_X86
        if (isa >= Isa::Avx512) {
          finish_avx512(o, acc + r * hd, st[r].l, hd);
        } else if (isa >= Isa::Avx2) {
          finish_avx2(o, acc + r * hd, st[r].l, hd);
        } else
#endif
        {
          for (int64_t d = 0; d < hd; d++) o[d] = acc[r * hd + d] / st[r].l;
        }
      }
    }
  }
}

}  // namespace

void paged_attention(const AttentionArgs& a) {
  const Isa isa = active_isa();
  const int64_t group = a.n_heads / a.n_kv_heads;
  // With enough sequences to keep every thread busy, a decode-sized tile (a few query rows per KV
  // head) is one item for all KV heads: it reads each block's K and V in one contiguous run.
  // Otherwise one item per KV head; and with too few of those to balance the threads, the ones
  // left over after an equal share each (batch-1 decode, 3 KV heads on 2 threads: the third) split
  // their query rows in two items. Splitting every head instead read each head's keys twice:
  // batch-1 decode over 576 keys 0.77 -> 0.66 ms, batch 2 1.23 -> 0.95 ms per 30 layers.
  // Items never change a row's arithmetic.
  const int64_t threads = num_threads();
  const bool whole_seq = a.num_seqs >= 4 * threads;
  const bool split_rows = group > 1 && a.num_seqs * a.n_kv_heads < 4 * threads;
  const int64_t remainder_from = a.num_seqs * a.n_kv_heads - (a.num_seqs * a.n_kv_heads) % threads;
  // Reused across calls (the engine calls from one thread; no allocation once warm).
  thread_local std::vector<Item> items;
  items.clear();
  for (int64_t s = 0; s < a.num_seqs; s++) {
    const int64_t q_len = a.query_start_loc[s + 1] - a.query_start_loc[s];
    const int64_t first_pos = a.seq_lens[s] - q_len;
    for (int64_t t0 = 0; t0 < q_len; t0 += kTileTokens) {
      const int64_t t1 = std::min(q_len, t0 + kTileTokens);
      const int64_t keys = a.sliding_window > 0 ? std::min(first_pos + t1, a.sliding_window + t1 - t0) : first_pos + t1;
      const int64_t cost = keys * (t1 - t0);  // per query head
      if (whole_seq && (t1 - t0) * group <= 4) {
        items.push_back(Item{s, 0, a.n_kv_heads, t0, t1, 0, group, cost * group * a.n_kv_heads, 0});
      } else {
        for (int64_t h = 0; h < a.n_kv_heads; h++) {
          const bool split = split_rows && s * a.n_kv_heads + h >= remainder_from;
          const int64_t half = split ? (group + 1) / 2 : group;
          for (int64_t g0 = 0; g0 < group; g0 += half) {
            const int64_t g1 = std::min(group, g0 + half);
            items.push_back(Item{s, h, 1, t0, t1, g0, g1, cost * (g1 - g0), 0});
          }
        }
      }
    }
  }
  // Costliest items (long causal windows x many tokens) first, so dynamic hand-out balances; ties
  // keep their order (std::sort with the index as tie-break: no temporary buffer, unlike
  // stable_sort).
  for (size_t i = 0; i < items.size(); i++) items[i].order = static_cast<int64_t>(i);
  std::sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.cost != y.cost ? x.cost > y.cost : x.order < y.order; });
  int64_t work = 0;  // ~ query rows x keys x head_dim
  for (const Item& it : items) work += it.cost;
  work *= a.head_dim;
  const Item* list = items.data();
  const int64_t nitems = static_cast<int64_t>(items.size());
  auto run = [&a, list, isa, nitems, threads](int64_t i) { run_item(a, list[i], isa, i + threads < nitems ? &list[i + threads] : nullptr); };
  if (work < (int64_t(1) << 16)) {
    for (int64_t i = 0; i < static_cast<int64_t>(items.size()); i++) run(i);
  } else {
    parallel_items(static_cast<int64_t>(items.size()), run);
  }
}

}  // namespace pw
