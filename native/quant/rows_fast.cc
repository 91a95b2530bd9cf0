// AVX-512 VNNI row kernel of the quantized linear op: 16 weight rows at a time, one row per
// 32-bit lane, so the float steps of linear.cc's contract run lane-wise on 16 outputs at once
// (the same operations as the scalar kernel, in the same order: the same bits).
//
// Per weight block, the 16 rows' blocks are decoded to u = q + 128 (unsigned bytes, what
// vpdpbusd multiplies) and laid out quad-major, U[k / 4][row][4]: one 64-byte load feeds a
// vpdpbusd for all 16 rows against a broadcast quad of activation bytes. The decoded block
// (16 x 256 bytes at most) stays in L1 while every activation row passes over it, 4 rows at a
// time sharing each weight load. Integer sums per sub-block: sum(u hi), sum(u lo) in two
// accumulators, then I = 256 sum(u hi) + sum(u lo) - 128 X = sum(q v) exactly (|each| < 2^29).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../simd.h"
#include "kernels.h"
#include "quant.h"

#define PW_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace pw {
namespace quant {
namespace {

bool has_vnni() {
  static const bool v = __builtin_cpu_supports("avx512vnni");
  return v;
}

constexpr int kTileRows = 16;
constexpr int kMR = 4;  // activation rows per pass over a decoded block

struct Decoded {
  alignas(64) uint32_t u[kMaxBlock / 4][kTileRows];  // quad-major unsigned bytes
  alignas(64) float a[kMaxSubs][kTileRows];
  alignas(64) float m[kMaxSubs][kTileRows];
};

// Decodes block blk of nr rows (rows nr..15 get zeros).
void decode16(const TypeInfo& ti, int type, const uint8_t* w, size_t row_bytes, int64_t blk, int64_t nr, Decoded& d) {
  int8_t q[kMaxBlock];
  float a[kMaxSubs], m[kMaxSubs];
  const int subs = ti.block / ti.sub, quads = ti.block / 4;
  for (int r = 0; r < kTileRows; r++) {
    if (r < nr) {
      decode_block(type, w + static_cast<size_t>(r) * row_bytes + static_cast<size_t>(blk) * ti.bytes, q, a, m);
      for (int j = 0; j < ti.block; j++) q[j] = static_cast<int8_t>(static_cast<uint8_t>(q[j]) ^ 0x80);  // + 128
    } else {
      std::memset(q, 0x80, static_cast<size_t>(ti.block));  // u = 128: q = 0
      std::fill(a, a + subs, 0.0f);
      std::fill(m, m + subs, 0.0f);
    }
    for (int i = 0; i < quads; i++) std::memcpy(&d.u[i][r], q + 4 * i, 4);
    for (int s = 0; s < subs; s++) {
      d.a[s][r] = a[s];
      d.m[s][r] = m[s];
    }
  }
}

// SIMD decoders of the interleaved types (quant.h): dword p of the 16 rows is one 64-byte load
// at gb + 64 p. Scales are computed lane-wise exactly as decode_block computes them (the same
// float32 products; the hardware half -> float conversion is exact, as f16_to_f32).
PW_VNNI PW_INLINE __m512i dw(const uint8_t* gb, int p) { return _mm512_load_si512(gb + 64 * p); }
PW_VNNI PW_INLINE __m512 half_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
PW_VNNI PW_INLINE __m512 half_hi(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }
PW_VNNI PW_INLINE __m512i bits(__m512i v, int shift, int mask) {
  return _mm512_and_si512(_mm512_srli_epi32(v, shift), _mm512_set1_epi32(mask));
}

PW_VNNI void decode16_q8_0(const uint8_t* gb, Decoded& d) {
  for (int i = 0; i < 8; i++) _mm512_store_si512(d.u[i], _mm512_xor_si512(dw(gb, 1 + i), _mm512_set1_epi8(static_cast<char>(0x80))));
  _mm512_store_ps(d.a[0], half_lo(dw(gb, 0)));
  _mm512_store_ps(d.m[0], _mm512_setzero_ps());
}

PW_VNNI void decode16_q4_k(const uint8_t* gb, Decoded& d) {
  const __m512i low = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int pair = 0; pair < 4; pair++) {
    for (int j = 0; j < 8; j++) {
      const __m512i g = dw(gb, 4 + 8 * pair + j);
      _mm512_store_si512(d.u[16 * pair + j], _mm512_or_si512(_mm512_and_si512(g, low), top));
      _mm512_store_si512(d.u[16 * pair + 8 + j], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(g, 4), low), top));
    }
  }
  const __m512i d0 = dw(gb, 0), s0 = dw(gb, 1), s1 = dw(gb, 2), s2 = dw(gb, 3);
  const __m512 dd = half_lo(d0), dmin = half_hi(d0);
  for (int j = 0; j < 8; j++) {
    __m512i sc, mn;
    if (j < 4) {
      sc = bits(s0, 8 * j, 63);
      mn = bits(s1, 8 * j, 63);
    } else {
      const int jj = j - 4;
      sc = _mm512_or_si512(bits(s2, 8 * jj, 15), _mm512_slli_epi32(bits(s0, 8 * jj + 6, 3), 4));
      mn = _mm512_or_si512(bits(s2, 8 * jj + 4, 15), _mm512_slli_epi32(bits(s1, 8 * jj + 6, 3), 4));
    }
    _mm512_store_ps(d.a[j], _mm512_mul_ps(dd, _mm512_cvtepi32_ps(sc)));
    _mm512_store_ps(d.m[j], _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn)));
  }
}

PW_VNNI void decode16_q6_k(const uint8_t* gb, Decoded& d) {
  const __m512i low = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3), off = _mm512_set1_epi8(96);
  for (int n = 0; n < 2; n++) {
    for (int j = 0; j < 8; j++) {
      const __m512i l0 = dw(gb, 16 * n + j), l1 = dw(gb, 16 * n + 8 + j), h = dw(gb, 32 + 8 * n + j);
      // Quarter qt: low nibbles of l0 (0), l1 (1), high nibbles of l0 (2), l1 (3); high bits 2 qt.
      const __m512i lows[4] = {_mm512_and_si512(l0, low), _mm512_and_si512(l1, low),
                               _mm512_and_si512(_mm512_srli_epi16(l0, 4), low), _mm512_and_si512(_mm512_srli_epi16(l1, 4), low)};
      for (int qt = 0; qt < 4; qt++) {
        const __m512i hb = _mm512_and_si512(_mm512_srli_epi16(h, 2 * qt), three);
        const __m512i q6 = _mm512_or_si512(lows[qt], _mm512_slli_epi16(hb, 4));
        _mm512_store_si512(d.u[32 * n + 8 * qt + j], _mm512_add_epi8(q6, off));  // q - 32 + 128
      }
    }
  }
  const __m512 dd = half_lo(dw(gb, 52));
  for (int j = 0; j < 16; j++) {
    const __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(dw(gb, 48 + j / 4), 24 - 8 * (j % 4)), 24);
    _mm512_store_ps(d.a[j], _mm512_mul_ps(dd, _mm512_cvtepi32_ps(sc)));
    _mm512_store_ps(d.m[j], _mm512_setzero_ps());
  }
}

// acc[i][16 lanes] for activation rows m0 .. m0 + MR over one decoded block.
template <int MR>
PW_VNNI PW_INLINE void block_rows(const TypeInfo& ti, const Decoded& d, const Task& t, int64_t blk, int64_t m0, float* accp) {
  const int abs_per_blk = ti.block / kActBlock;
  const int subs_per_ab = kActBlock / ti.sub;
  const int quads_per_sub = ti.sub / 4;
  __m512 acc[MR];
  for (int i = 0; i < MR; i++) acc[i] = _mm512_load_ps(accp + (m0 + i) * kTileRows);
  for (int ab = 0; ab < abs_per_blk; ab++) {
    const int64_t kb = blk * abs_per_blk + ab;
    __m512 ts[MR];
    for (int sb = 0; sb < subs_per_ab; sb++) {
      const int si = ab * subs_per_ab + sb;
      const int64_t k0 = blk * ti.block + si * ti.sub;
      __m512i hi[MR], lo[MR];
      for (int i = 0; i < MR; i++) hi[i] = lo[i] = _mm512_setzero_si512();
      for (int qd = 0; qd < quads_per_sub; qd++) {
        const __m512i wv = _mm512_load_si512(d.u[si * quads_per_sub + qd]);
        for (int i = 0; i < MR; i++) {
          const ActRow& x = t.act[m0 + i];
          int32_t h4, l4;
          std::memcpy(&h4, x.hi + k0 + 4 * qd, 4);
          std::memcpy(&l4, x.lo + k0 + 4 * qd, 4);
          hi[i] = _mm512_dpbusd_epi32(hi[i], wv, _mm512_set1_epi32(h4));
          lo[i] = _mm512_dpbusd_epi32(lo[i], wv, _mm512_set1_epi32(l4));
        }
      }
      const __m512 av = _mm512_load_ps(d.a[si]), mv = _mm512_load_ps(d.m[si]);
      for (int i = 0; i < MR; i++) {
        const ActRow& x = t.act[m0 + i];
        const int32_t X = ti.sub == 32 ? x.sum16[2 * kb] + x.sum16[2 * kb + 1] : x.sum16[2 * kb + sb];
        const __m512i xv = _mm512_set1_epi32(X);
        const __m512i I = _mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(hi[i], 8), lo[i]), _mm512_slli_epi32(xv, 7));
        const __m512 c = _mm512_sub_ps(_mm512_mul_ps(av, _mm512_cvtepi32_ps(I)), _mm512_mul_ps(mv, _mm512_cvtepi32_ps(xv)));
        ts[i] = sb == 0 ? c : _mm512_add_ps(ts[i], c);
      }
    }
    for (int i = 0; i < MR; i++) acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(t.act[m0 + i].s[kb]), ts[i]));
  }
  for (int i = 0; i < MR; i++) _mm512_store_ps(accp + (m0 + i) * kTileRows, acc[i]);
}

PW_VNNI void tile16(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  TypeInfo ti;
  type_info(t.type, &ti);
  thread_local std::vector<float> accbuf;
  thread_local Decoded dec;
  const size_t need = static_cast<size_t>(t.M) * kTileRows + 16;
  if (accbuf.size() < need) accbuf.resize(need);
  float* accp = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(accbuf.data()) + 63) & ~uintptr_t(63));
  std::fill(accp, accp + t.M * kTileRows, 0.0f);
  const int64_t nblk = t.K / ti.block;
  for (int64_t blk = 0; blk < nblk; blk++) {
    const uint8_t* gb = part.ib ? part.group_block(data, lr / kGroupRows, blk) : nullptr;
    switch (part.ib ? t.type : -1) {
      case Q8_0: decode16_q8_0(gb, dec); break;
      case Q4_K: decode16_q4_k(gb, dec); break;
      case Q6_K: decode16_q6_k(gb, dec); break;
      default: decode16(ti, t.type, data + part.offset + static_cast<size_t>(lr) * part.row_bytes, part.row_bytes, blk, nr, dec); break;
    }
    int64_t m = 0;
    for (; m + kMR <= t.M; m += kMR) block_rows<kMR>(ti, dec, t, blk, m, accp);
    for (; m < t.M; m++) block_rows<1>(ti, dec, t, blk, m, accp);
  }
  for (int64_t i = 0; i < nr; i++)
    for (int64_t m = 0; m < t.M; m++) out[i * t.M + m] = accp[m * kTileRows + i];
}

}  // namespace

int rows_fast(Isa isa, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* acc) {
  if (isa < Isa::Avx512 || !has_vnni()) return 0;
  tile16(t, part, data, lr, nr, acc);
  return static_cast<int>(nr);
}

}  // namespace quant
}  // namespace pw
