// AMX-BF16 linear kernels (Isa::AmxBf16): linear() and linear_packed() at BF16 precision.
//
// Numerics: every output (m, n) is one float32 accumulator, an element of an AMX C tile, updated
// by one tdpbf16ps per k block of 32 (16 bf16 pairs), in k order from k = 0, over activations
// rounded to bf16 (RNE, NaN kept: simd::to_bf16x16) and K padded with zeros (exact: a tile starts
// at +0 and +0 products leave every sum as it is); then + bias; a gate/up pack then
// silu(gate) * up (simd::silu16); accumulate: out + result. An element of a C tile depends only on
// its own A row and B column, so a row's result is the same whatever rows share its tile, for any
// M, blocking or thread count; plain (Hugging Face layout) and packed weights feed the same A rows,
// so linear() and linear_packed() agree bit for bit, and a gate/up pack equals linear() twice +
// siluMul. The bits differ from the AVX512_BF16 family's (another accumulation order, and
// tdpbf16ps reads bf16 denormals as zero and flushes denormal sums).
//
// Operands: the weights are the A operand, 16 rows (outputs) of 64 bytes (32 bf16 of k): exactly
// a pack's superpanel k block ([k block][16 rows][32], ops_linear_packed.cc), so packs are the
// same for every family and full superpanels are read in place; the last, partial superpanel of a
// pack and Hugging Face rows (linear()) are copied per work item into zero-padded panels of the
// same shape. The activations are the B operand: per block of 16 rows and k block one 1 KiB tile
// [16 k pairs][16 rows][2 bf16] (the rows' bf16 pairs transposed), made once per call. A C tile
// is [16 outputs][16 rows] of float32; the epilogue transposes it back into output rows.
//
// Registers: C tiles 0 .. NA*NB-1 (NA weight panels x NB activation blocks), then NA A tiles,
// then NB B tiles; 2 x 2 for batches (8 tiles), 3 x 1 for up to 16 rows. Every tile is 16 rows of
// 64 bytes. Each work item loads the tile configuration and releases the tiles when done (other
// code may configure them differently, and released tiles cost nothing at a context switch).
#include "common.h"

#if PW_X86

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "amx.h"
#include "ops.h"
#include "scratch.h"
#include "simd.h"

namespace pw {
namespace {

constexpr int64_t kKb = 32;          // k per tdpbf16ps (16 bf16 pairs)
constexpr size_t kTileBytes = 1024;  // 16 rows x 64 bytes

// Every tile 16 rows of 64 bytes: loaded per work item (AmxTileScope, amx.h).
const AmxTileConfig kTiles = AmxTileConfig::full();

template <class F, int... I>
PW_INLINE void static_for(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

// NA weight panels (a[i]: k block kb at kb KiB) x NB activation blocks (b + j * b_stride, the
// same way): k blocks [kb0, kb1) into the NA x NB C tiles, which start at zero (first) or from
// their float32 values at c + i * ci_stride + j * 256 ([16 outputs][16 rows]), where they are
// stored back. Storing and reloading a C tile is exact, so K chunks leave every sum's sequence of
// operations as one pass over K would.
template <int NA, int NB>
void amx_block(const uint8_t* const* a, const uint8_t* b, size_t b_stride, int64_t kb0, int64_t kb1, float* c,
               size_t ci_stride, bool first) {
  constexpr int A0 = NA * NB, B0 = NA * NB + NA;
  static_assert(B0 + NB <= 8, "8 tile registers");
  auto ct = [&](int t) { return c + static_cast<size_t>(t / NB) * ci_stride + static_cast<size_t>(t % NB) * 256; };
  if (first) {
    static_for([&](auto t) { tile_zero<decltype(t)::value>(); }, std::make_integer_sequence<int, NA * NB>{});
  } else {
    static_for([&](auto t) { tile_load<decltype(t)::value>(ct(decltype(t)::value), 64); }, std::make_integer_sequence<int, NA * NB>{});
  }
  for (int64_t kb = kb0; kb < kb1; kb++) {
    const size_t off = static_cast<size_t>(kb) * kTileBytes;
    if constexpr (NB == 1) {
      // One activation block (decode): the panels stream from memory with nothing to reuse; ask
      // for each one simd::kStreamAhead bytes ahead, as the single-row AVX-512 kernels do.
      for (int i = 0; i < NA; i++) {
        for (int l = 0; l < 16; l++) _mm_prefetch(reinterpret_cast<const char*>(a[i] + off + simd::kStreamAhead + 64 * l), _MM_HINT_T0);
      }
    }
    static_for([&](auto i) { tile_load<A0 + decltype(i)::value>(a[decltype(i)::value] + off, 64); },
               std::make_integer_sequence<int, NA>{});
    static_for([&](auto j) { tile_load<B0 + decltype(j)::value>(b + decltype(j)::value * b_stride + off, 64); },
               std::make_integer_sequence<int, NB>{});
    static_for(
        [&](auto t) {
          constexpr int i = decltype(t)::value / NB, j = decltype(t)::value % NB;
          tile_dpbf16<decltype(t)::value, A0 + i, B0 + j>();
        },
        std::make_integer_sequence<int, NA * NB>{});
  }
  static_for([&](auto t) { tile_store<decltype(t)::value>(ct(decltype(t)::value), 64); }, std::make_integer_sequence<int, NA * NB>{});
}

using BlockFn = void (*)(const uint8_t* const*, const uint8_t*, size_t, int64_t, int64_t, float*, size_t, bool);
constexpr int kMaxNA = 3;
constexpr int64_t kSubPanels = 8;  // panels whose C tiles a work item keeps while it walks K
// block_fns[na - 1][nb - 1]; nb = 2 only with na <= 2.
const BlockFn block_fns[kMaxNA][2] = {
    {amx_block<1, 1>, amx_block<1, 2>}, {amx_block<2, 1>, amx_block<2, 2>}, {amx_block<3, 1>, nullptr}};

// 16 x 16 transpose of 32-bit lanes: o[c] lane r = r_in[r] lane c.
PW_AVX512 PW_INLINE void transpose16(const __m512i* r, __m512i* o) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + j], 128-bit lane L: column 4L + j of rows 4i .. 4i + 3.
  for (int i = 0; i < 4; i++) {
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; j++) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), v1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i w0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd), w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    o[j] = _mm512_shuffle_i32x4(v0, v1, 0x88);
    o[8 + j] = _mm512_shuffle_i32x4(v0, v1, 0xdd);
    o[4 + j] = _mm512_shuffle_i32x4(w0, w1, 0x88);
    o[12 + j] = _mm512_shuffle_i32x4(w0, w1, 0xdd);
  }
}

// Activation block mb (rows 16 mb .. 16 mb + 15 of x[M, K]; missing rows and k past K are zero)
// as nkb B tiles at dst.
PW_AVX512 void prep_block(uint8_t* dst, const float* x, int64_t M, int64_t K, int64_t nkb, int64_t mb) {
  const int64_t r0 = 16 * mb, rows = std::min<int64_t>(16, M - r0);
  for (int64_t kb = 0; kb < nkb; kb++) {
    const int64_t k0 = kb * kKb, n = std::min<int64_t>(kKb, K - k0);
    const __mmask16 lo = n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
    const __mmask16 hi = n >= 32 ? static_cast<__mmask16>(0xffff) : n > 16 ? static_cast<__mmask16>((1u << (n - 16)) - 1u) : 0;
    __m512i r[16], o[16];
    for (int i = 0; i < 16; i++) {
      if (i < rows) {
        const float* s = x + (r0 + i) * K + k0;
        const __m256i a = simd::to_bf16x16(_mm512_maskz_loadu_ps(lo, s));
        const __m256i b = simd::to_bf16x16(_mm512_maskz_loadu_ps(hi, s + 16));
        r[i] = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);  // dword p: bf16 pair (2p, 2p + 1)
      } else {
        r[i] = _mm512_setzero_si512();
      }
    }
    transpose16(r, o);
    uint8_t* t = dst + static_cast<size_t>(kb) * kTileBytes;
    for (int p = 0; p < 16; p++) _mm512_storeu_si512(t + 64 * p, o[p]);
  }
}

// Rows [0, rows) of a stored C tile ([16 outputs][16 rows]) as vectors over the 16 outputs.
PW_AVX512 PW_INLINE void tile_rows(const float* c, int rows, __m512* v) {
  if (rows <= 2) {  // decode: a gather per row instead of the whole transpose
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(16));
    for (int r = 0; r < rows; r++) v[r] = _mm512_i32gather_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(r)), c, 4);
    return;
  }
  __m512i in[16], o[16];
  for (int i = 0; i < 16; i++) in[i] = _mm512_load_si512(c + 16 * i);
  transpose16(in, o);
  for (int r = 0; r < rows; r++) v[r] = _mm512_castsi512_ps(o[r]);
}

// ---------------------------------------------------------------------------------------------
// Epilogues: (panel p, row m, the 16 outputs of the panel for that row).

struct PlainEpi {  // linear(): out[m, 16 p + i] = v[i] (+ bias)
  float* out;
  int64_t N;
  const float* bias;
  PW_AVX512 PW_INLINE void operator()(int64_t p, int64_t m, __m512 v) const {
    const int64_t n0 = 16 * p, nc = std::min<int64_t>(16, N - n0);
    const __mmask16 mask = static_cast<__mmask16>((1u << nc) - 1u);
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias + n0));
    _mm512_mask_storeu_ps(out + m * N + n0, mask, v);
  }
};

struct PackedEpi {  // linear_packed(): superpanel p = groups 4 p .. 4 p + 3
  const PackedLinear* P;
  float* const* outs;
  bool accumulate;
  PW_AVX512 PW_INLINE void operator()(int64_t p, int64_t m, __m512 v) const {
    const int64_t g0 = 4 * p;
    const int ng = static_cast<int>(std::min<int64_t>(4, P->ngroups - g0));
    const PackedLinear::Group* gr = P->groups.data() + g0;
    if (P->silu_pairs) {
      // Lanes [g0 g1 u0 u1 | g2 g3 u2 u3 | ...]: output column 2 g + c is gate lane 4 g + c, up lane 4 g + 2 + c.
      const __m512i gi = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0);
      const __m512i ui = _mm512_setr_epi32(2, 3, 6, 7, 10, 11, 14, 15, 2, 2, 2, 2, 2, 2, 2, 2);
      __m512 r = _mm512_mul_ps(simd::silu16(_mm512_permutexvar_ps(gi, v)), _mm512_permutexvar_ps(ui, v));
      const int cols = 2 * (ng - 1) + gr[ng - 1].ncols;
      const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
      float* o = outs[0] + m * P->segs[0].n + gr[0].col0;
      if (accumulate) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), r);
      _mm512_mask_storeu_ps(o, mask, r);
      return;
    }
    if (P->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (4 * ng)) - 1u), P->bias + g0 * 4));
    for (int g = 0; g < ng; g++) {
      const PackedLinear::Group& d = gr[g];
      const int lane0 = 4 * g;
      const __mmask16 mask = static_cast<__mmask16>(((1u << d.ncols) - 1u) << lane0);
      float* o = outs[d.seg] + m * P->segs[static_cast<size_t>(d.seg)].n + d.col0 - lane0;
      __m512 r = v;
      if (accumulate) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), r);
      _mm512_mask_storeu_ps(o, mask, r);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Weight panels: 16 rows x nkb k blocks of 1 KiB, [k block][16 rows][32 bf16].

struct PlainSrc {  // Hugging Face rows w[N, K], copied into a zero-padded panel
  const uint16_t* w;
  int64_t N, K, nkb;
  PW_AVX512 const uint8_t* operator()(int64_t p, uint8_t* buf) const {
    for (int64_t kb = 0; kb < nkb; kb++) {
      const int64_t k0 = kb * kKb, n = std::min<int64_t>(kKb, K - k0);
      const __mmask32 mask = n >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << n) - 1u);
      uint8_t* t = buf + static_cast<size_t>(kb) * kTileBytes;
      for (int r = 0; r < 16; r++) {
        const int64_t row = 16 * p + r;
        const __m512i v = row < N ? _mm512_maskz_loadu_epi16(mask, w + row * K + k0) : _mm512_setzero_si512();
        _mm512_storeu_si512(t + 64 * r, v);
      }
    }
    return buf;
  }
};

struct PackedSrc {  // a pack's superpanel: in place when full, else copied with zero rows added
  const PackedLinear* P;
  const uint8_t* operator()(int64_t p, uint8_t* buf) const {
    const uint8_t* s = P->data + static_cast<size_t>(p) * P->super_bytes;
    const int64_t ng = std::min<int64_t>(4, P->ngroups - 4 * p);
    if (ng == 4) return s;
    const size_t used = static_cast<size_t>(ng) * 4 * 64;  // bytes of a k block of this superpanel
    for (int64_t kb = 0; kb < P->nkb; kb++) {
      std::memcpy(buf + static_cast<size_t>(kb) * kTileBytes, s + static_cast<size_t>(kb) * used, used);
      std::memset(buf + static_cast<size_t>(kb) * kTileBytes + used, 0, kTileBytes - used);
    }
    return buf;
  }
};

// A call's work items: (chunk of panels, chunk of activation blocks).
template <class Src, class Epi>
struct Items {
  const Src& src;
  const Epi& epi;
  const uint8_t* xt;  // activation tiles, block mb at mb * panel_bytes
  int64_t M, nkb, np, nmb;
  size_t panel_bytes;
  int64_t pchunk, mchunk, nmc;

  PW_AVX512 void run(int64_t item) const {
    const int64_t pa = item / nmc * pchunk, pz = std::min(np, pa + pchunk);
    const int64_t ma = item % nmc * mchunk, mz = std::min(nmb, ma + mchunk);
    const int64_t nm = mz - ma;
    // Two activation blocks or more: 2 x 2 tiles; one: 3 panels at a time (3 C tiles in flight).
    const int na_max = nm >= 2 ? 2 : kMaxNA;
    // K in chunks of 8 k blocks: a pair of activation blocks' chunk (16 KiB) stays in L1 while the
    // sub-range's panels pass, each panel pair's chunk (16 KiB) read from L2; over all of K at once,
    // a panel pair and an activation pair outgrow L1 from K ~ 400 up. A single activation block
    // has nothing to keep: one pass.
    const int64_t kc = nm >= 2 ? 8 : nkb;
    thread_local Scratch pbuf, cvec;
    uint8_t* pb = pbuf.bytes(kSubPanels * panel_bytes);
    float* cb = reinterpret_cast<float*>(cvec.bytes(static_cast<size_t>(kSubPanels * nm) * kTileBytes));
    const AmxTileScope tiles(kTiles);
    for (int64_t ps = pa; ps < pz; ps += kSubPanels) {
      const int64_t pe = std::min(pz, ps + kSubPanels);
      const uint8_t* a[kSubPanels];
      for (int64_t p = ps; p < pe; p++) a[p - ps] = src(p, pb + static_cast<size_t>(p - ps) * panel_bytes);
      for (int64_t kb0 = 0; kb0 < nkb; kb0 += kc) {
        const int64_t kb1 = std::min(nkb, kb0 + kc);
        for (int64_t mb = ma; mb < mz;) {
          const int nb = na_max == 2 ? static_cast<int>(std::min<int64_t>(2, mz - mb)) : 1;
          for (int64_t p = ps; p < pe;) {
            const int na = static_cast<int>(std::min<int64_t>(nb == 2 ? 2 : kMaxNA, pe - p));
            float* c = cb + static_cast<size_t>((p - ps) * nm + (mb - ma)) * 256;
            block_fns[na - 1][nb - 1](a + (p - ps), xt + static_cast<size_t>(mb) * panel_bytes, panel_bytes, kb0, kb1, c,
                                      static_cast<size_t>(nm) * 256, kb0 == 0);
            p += na;
          }
          mb += nb;
        }
      }
      for (int64_t p = ps; p < pe; p++) {
        for (int64_t mb = ma; mb < mz; mb++) {
          const int64_t m0 = 16 * mb;
          const int rows = static_cast<int>(std::min<int64_t>(16, M - m0));
          __m512 v[16];
          tile_rows(cb + static_cast<size_t>((p - ps) * nm + (mb - ma)) * 256, rows, v);
          for (int r = 0; r < rows; r++) epi(p, m0 + r, v[r]);
        }
      }
    }
  }
};

// out = x[M, K] . (np panels)^T through epilogue `epi`, weights from `src`.
template <class Src, class Epi>
void run_amx(const Src& src, const Epi& epi, const float* x, int64_t M, int64_t K, int64_t np, bool tiny) {
  const int64_t nkb = (K + kKb - 1) / kKb, nmb = (M + 15) / 16;
  const size_t panel_bytes = static_cast<size_t>(nkb) * kTileBytes;
  // Activation tiles, made once per call (the engine calls from one thread).
  thread_local Scratch xbuf;
  uint8_t* xt = xbuf.bytes(static_cast<size_t>(nmb) * panel_bytes);
  auto prep = [&](int64_t b, int64_t e) {
    for (int64_t mb = b; mb < e; mb++) prep_block(xt + static_cast<size_t>(mb) * panel_bytes, x, M, K, nkb, mb);
  };
  if (nmb > 1 && M * K >= (int64_t(1) << 17)) parallel_for(nmb, prep);
  else prep(0, nmb);

  // Items: (chunk of panels, chunk of up to 8 activation blocks), about 4 per thread. A chunk of
  // activation blocks (128 rows x K) stays in L2 while the item's panels pass over it.
  const int64_t mchunk = std::min<int64_t>(nmb, 8);
  const int64_t nmc = (nmb + mchunk - 1) / mchunk;
  // A single block of rows (decode) takes 2 items per thread: longer weight streams (what the
  // single-row AVX-512 kernels measured best).
  const int64_t want = (nmb == 1 ? 2 : 4) * static_cast<int64_t>(num_threads());
  const int64_t splits = std::max<int64_t>(1, (want + nmc - 1) / nmc);
  const int64_t pchunk = std::max<int64_t>(1, (np + splits - 1) / splits);
  const int64_t npc = (np + pchunk - 1) / pchunk;

  const Items<Src, Epi> it{src, epi, xt, M, nkb, np, nmb, panel_bytes, pchunk, mchunk, nmc};
  if (tiny) {
    for (int64_t i = 0; i < npc * nmc; i++) it.run(i);
  } else {
    parallel_items(npc * nmc, [&](int64_t i) { it.run(i); });
  }
}

}  // namespace

void linear_amx(float* out, const float* x, const uint16_t* w, const float* bias, int64_t M, int64_t N, int64_t K) {
  if (M == 0) return;
  const int64_t nkb = (K + kKb - 1) / kKb;
  run_amx(PlainSrc{w, N, K, nkb}, PlainEpi{out, N, bias}, x, M, K, (N + 15) / 16, M * N * K < (int64_t(1) << 16));
}

void linear_packed_amx(const PackedLinear& P, const float* x, int64_t M, float* const* outs, bool accumulate) {
  if (M == 0) return;
  const int64_t np = (P.ngroups + 3) / 4;
  run_amx(PackedSrc{&P}, PackedEpi{&P, outs, accumulate}, x, M, P.K, np, M * P.ngroups * 4 * P.K < (int64_t(1) << 16));
}

}  // namespace pw

#endif  // PW_X86
