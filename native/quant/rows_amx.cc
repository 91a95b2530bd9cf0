// The AMX-INT8 kernels of the quantized linear op's blocked path (prefill, large batches), one per
// numerics contract (kernels.h). Both take the weights from the AVX-512 decoders
// (decode_group_signed: signed q, quad-major, which is the layout of a tile's B operand: one
// 64-byte row per value quad, 4 bytes per weight row) and the activations from a copy laid out for
// the tiles (amx_tile_row, amx_tile_row_k).
//
// 32-value types (8 blocks decoded at a time), per block of 32:
//   C_hi = TDPBSSD(A_hi, B), C_lo = TDPBSSD(A_lo, B)
// with A_hi / A_lo the activations' hi / lo bytes (act_quant.h) of 16 activation rows and B the
// weights. Signed times signed bytes, so no offset term: I = 256 C_hi + C_lo = sum(q v) exactly,
// the same integer as every other family's. C row i holds the 16 weight rows' sums of activation
// row i, one per 32-bit lane: the float epilogue runs lane-wise on it, the same operations in the
// same order as the VNNI kernel's, so the outputs are the same bits. Cost per round of 16 x 16
// outputs and 32 values (a replica of this loop on a 2.1 GHz Sapphire Rapids VM core): ~28 ns of
// tile work (three tile loads, two TDPBSSD, two TILESTORED) and ~23 ns of epilogue (about 8 vector
// ops per activation row), which do not overlap: the sums of every block must leave the tiles.
//
// 256-value types: the super-block contract, the whole block's sums in the tiles (below, "The
// 256-value types").
#include <cstring>

#include "kernels.h"

namespace pw {
namespace quant {

// The tile layout of the activations (linear.cc calls these only when use_amx): per 16 rows and
// activation block, a record of the hi bytes (16 x 32), the lo bytes, then the floats the
// epilogue reads per row, contiguous (read through each row's ActRow they were the kernel's
// slowest loads: two dependent loads a row, from as many pages as rows): s[16], sumf32[16].
size_t amx_tiles_bytes(int64_t M, int64_t K) { return static_cast<size_t>((M + 15) / 16 * (K / kActBlock)) * kAmxRecord; }

void amx_tile_row(const ActRow* r, int64_t m, int64_t K, int8_t* tiles) {
  const int64_t nkb = K / kActBlock;
  const int i = static_cast<int>(m % 16);
  int8_t* t = tiles + (m / 16) * nkb * kAmxRecord;
  for (int64_t kb = 0; kb < nkb; kb++, t += kAmxRecord) {
    float* f = reinterpret_cast<float*>(t + 1024);
    if (r) {
      std::memcpy(t + i * kActBlock, r->hi + kb * kActBlock, kActBlock);
      std::memcpy(t + 512 + i * kActBlock, r->lo + kb * kActBlock, kActBlock);
      f[i] = r->s[kb];
      f[16 + i] = r->sumf32[kb];
    } else {
      std::memset(t + i * kActBlock, 0, kActBlock);
      std::memset(t + 512 + i * kActBlock, 0, kActBlock);
      f[i] = f[16 + i] = 0.0f;
    }
  }
}

size_t amx_tiles_k_bytes(int64_t M, int64_t K) { return static_cast<size_t>((M + 15) / 16 * (K / 256)) * kAmxRecordK; }

void amx_tile_row_k(const ActRow* r, int64_t m, int64_t K, int8_t* tiles) {
  const int64_t nb = K / 256;
  const int i = static_cast<int>(m % 16);
  int8_t* t = tiles + (m / 16) * nb * kAmxRecordK;
  for (int64_t b = 0; b < nb; b++, t += kAmxRecordK) {
    float* f = reinterpret_cast<float*>(t + 8192);
    for (int c = 0; c < 4; c++) {
      int8_t* h = t + c * 1024 + i * 64;
      int8_t* l = t + 4096 + c * 1024 + i * 64;
      if (r) {
        std::memcpy(h, r->hi + b * 256 + c * 64, 64);
        std::memcpy(l, r->lo + b * 256 + c * 64, 64);
      } else {
        std::memset(h, 0, 64);
        std::memset(l, 0, 64);
      }
    }
    f[i] = r ? r->s[b * 8] : 0.0f;
    for (int j = 0; j < 8; j++) f[16 + j * 16 + i] = r ? r->sumf32[b * 8 + j] : 0.0f;
    for (int j = 0; j < 16; j++) f[16 + 128 + j * 16 + i] = r ? r->sumf16[b * 16 + j] : 0.0f;
  }
}

}  // namespace quant
}  // namespace pw

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "../amx.h"
#include "../simd.h"

#define PW_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace pw {
namespace quant {
namespace {

// The CPU has AMX-TILE and AMX-INT8 and Linux grants this process the tile data state (amx.h); a
// refusal leaves the VNNI kernels.
bool amx_granted() {
  static const bool granted = [] {
    const AmxFeatures f = amx_features();
    return f.tile && f.int8 && amx_tile_data_granted();
  }();
  return granted;
}

std::atomic<bool>& amx_switch() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("PAGEWISE_QUANT_AMX");
    return !(e && std::strcmp(e, "0") == 0);
  }()};
  return on;
}

// 32-value types. Tiles 0..3: the int32 sums C (activation row x weight row) of two blocks, hi and
// lo halves each; 4, 5: a block's activation hi and lo bytes (16 rows x 32); 6, 7: the weights of
// two blocks (8 quad rows x 64 bytes). Loaded per work item and released after it (AmxTileScope,
// amx.h), as the BF16 tile kernels do.
AmxTileConfig tile_config32() {
  AmxTileConfig c = AmxTileConfig::full();
  for (int i = 4; i < 6; i++) c.colsb[i] = 32;
  for (int i = 6; i < 8; i++) c.rows[i] = 8;
  return c;
}

// linear.cc's term of a sub-block, lane-wise over the 16 weight rows: c = a * float(I) - m *
// float(X) (no m term for a type whose m is always 0, as the VNNI kernel), I = 256 C_hi + C_lo.
template <bool HAS_MIN>
PW_AMX PW_INLINE __m512 term(const int32_t* chi, const int32_t* clo, const float* a, const float* m, float xf) {
  const __m512i I = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(chi), 8), _mm512_load_si512(clo));
  __m512 c = _mm512_mul_ps(_mm512_load_ps(a), _mm512_cvtepi32_ps(I));
  if constexpr (HAS_MIN) c = _mm512_sub_ps(c, _mm512_mul_ps(_mm512_load_ps(m), _mm512_set1_ps(xf)));
  return c;
}

// A round's products: block si's activations (hi bytes at a, lo at a + 512) against its weights
// into C tiles C0 (hi) and C0 + 1 (lo), with the weights in tile B. Rounds alternate between C
// tiles 0, 1 with B in 6 and 2, 3 with 7, so one round's sums can be stored while the next one's
// products run.
template <int C0, int B>
PW_AMX PW_INLINE void issue(const Decoded& d, const int8_t* a, int si) {
  tile_zero<C0>();
  tile_zero<C0 + 1>();
  tile_load<B>(d.u[si * 8], 64);
  tile_load<4>(a, 32);
  tile_load<5>(a + 512, 32);
  tile_dpbssd<C0, 4, B>();
  tile_dpbssd<C0 + 1, 5, B>();
}

// accp[m][16 lanes] += the terms of the nsubs blocks in d (activation blocks from kb0 on) for
// activation rows mc .. me (mc a multiple of 16; the tiles hold 16 rows, the sums of rows past me
// are dropped). A software pipeline: round r + 1's tile products run while the vector units
// finish round r from its stored sums (C tiles and their buffers alternate), so the products'
// latency hides behind the epilogue. Rounds go activation tile by tile, block by block.
template <bool HAS_MIN>
PW_AMX void block_tiles(const Decoded& d, const Task& t, int64_t kb0, int nsubs, int64_t mc, int64_t me, float* accp) {
  alignas(64) int32_t c[2][2][kTileRows][kTileRows];  // [round parity][hi, lo][activation row][weight row]
  // The accumulators of the activation tile in its epilogue, one register per row (the loops over
  // rows are unrolled so they stay registers across its rounds: no load and store per round).
  __m512 acc[kTileRows];
  const int64_t nkb = t.K / kActBlock;
  // The record of activation tile T (in this chunk) and block si: its hi tile; + 512: lo.
  auto record = [&](int64_t T, int si) { return t.tiles + ((mc / kTileRows + T) * nkb + kb0 + si) * kAmxRecord; };
  const int64_t rounds = (me - mc + kTileRows - 1) / kTileRows * nsubs;
  const bool prefetch = me - mc >= 64;
  issue<0, 6>(d, record(0, 0), 0);
  int64_t cT = 0, pT = 0;  // round r's activation tile and block; round r - 1's
  int csi = 0, psi = 0;
  for (int64_t r = 0; r <= rounds; r++) {
    if (r < rounds) {  // round r's sums out, round r + 1's products in
      if (r & 1) {
        tile_store<2>(c[1][0], 64);
        tile_store<3>(c[1][1], 64);
      } else {
        tile_store<0>(c[0][0], 64);
        tile_store<1>(c[0][1], 64);
      }
    }
    int64_t nT = cT;
    int nsi = csi + 1;
    if (nsi == nsubs) {
      nsi = 0;
      nT++;
    }
    if (r + 1 < rounds) {
      if (r & 1) issue<0, 6>(d, record(nT, nsi), nsi);
      else issue<2, 7>(d, record(nT, nsi), nsi);
    }
    // Round r + 2's activation record into L1 meanwhile: with many rows, the tile loads stalled
    // on it from L2 (in-process A/B, 1 thread, M = 512: 1.12-1.25x on Q8_0). With few rows (M =
    // 32: 0.9-1.0x) it costs more than it gains.
    if (prefetch && r + 2 < rounds) {
      const int64_t fT = nsi + 1 == nsubs ? nT + 1 : nT;
      const int fsi = nsi + 1 == nsubs ? 0 : nsi + 1;
      const int8_t* f = record(fT, fsi);
      for (int l = 0; l < kAmxRecord; l += 64) _mm_prefetch(reinterpret_cast<const char*>(f + l), _MM_HINT_T0);
    }
    // The epilogue of round r - 1 (activation tile pT, sub-block psi), whose sums were stored an
    // iteration ago (reading them right after the tile stores would wait for those to complete).
    if (r > 0) {
      const int32_t(*cr)[kTileRows][kTileRows] = c[(r - 1) & 1];
      const int64_t m0 = mc + pT * kTileRows, mr = std::min<int64_t>(kTileRows, me - m0);
      // The record's floats of this activation block: s, then the X sums (act_quant.h).
      const float* xs = reinterpret_cast<const float*>(record(pT, psi) + 1024);
      const float* xx = xs + 16;
      float* ap = accp + m0 * kTileRows;
      if (psi == 0) {  // the tile's rows enter registers for its nsubs rounds (rows past M: zeros)
#pragma GCC unroll 16
        for (int i = 0; i < kTileRows; i++) acc[i] = i < mr ? _mm512_load_ps(ap + i * kTileRows) : _mm512_setzero_ps();
      }
#pragma GCC unroll 16
      for (int i = 0; i < kTileRows; i++) {
        const __m512 ci = term<HAS_MIN>(cr[0][i], cr[1][i], d.a[psi], d.m[psi], xx[i]);
        acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xs[i]), ci));
      }
      if (psi == nsubs - 1) {
#pragma GCC unroll 16
        for (int i = 0; i < kTileRows; i++)
          if (i < mr) _mm512_store_ps(ap + i * kTileRows, acc[i]);
      }
    }
    pT = cT;
    psi = csi;
    cT = nT;
    csi = nsi;
  }
}

// Blocks blk .. blk + nb of the group (32-value types, nb * 32 <= kMaxBlock) decoded into d one
// after another, as one block of nb sub-blocks: the pipeline then runs over all of them instead of
// starting again every 32 values (at M = 32 a block is only two rounds). Returns whether any has m.
PW_AMX bool decode_blocks32(const TypeInfo& ti, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk, int nb,
                            int64_t nr, Decoded& d) {
  Decoded one;
  bool any_min = false;
  for (int j = 0; j < nb; j++) {
    const bool has_min = decode_group_signed(ti, part, data, lr, blk + j, nr, one);
    for (int qi = 0; qi < 32 / 4; qi++) _mm512_store_si512(d.u[8 * j + qi], _mm512_load_si512(one.u[qi]));
    _mm512_store_ps(d.a[j], _mm512_load_ps(one.a[0]));
    _mm512_store_ps(d.m[j], has_min ? _mm512_load_ps(one.m[0]) : _mm512_setzero_ps());
    any_min = any_min || has_min;
  }
  return any_min;
}

// ---------------------------------------------------------------------------------------------
// The 256-value types: the super-block contract (kernels.h) on tiles. A block's weights enter the
// tiles already multiplied by their sub-block scales, p = isc * q (|p| <= 4096), as two bytes p =
// 256 ph + pl (ph = p >> 8 signed, pl = p & 255 unsigned: TDPBSUD); the activations as their two
// signed bytes v = 256 hi + lo. Then
//   S = 65536 sum(hi ph) + 256 (sum(hi pl) + sum(lo ph)) + sum(lo pl)
// with the three sums in three C tiles accumulated over the whole block (4 x 64 values): one store
// of three tiles and one float epilogue per 256 values, where the per-sub-block contract needed
// two stores and an epilogue per 16 or 32 values. Each sum stays in int32 (|hi| <= 32, |ph| <= 16,
// pl <= 255) and S is formed exactly (k_sum), as the other kernels sum it.

// The block's p = isc * q as the B tiles' bytes: bh[qi] and bl[qi] for value quad qi (quad-major,
// as Decoded.u). u holds the signed q, isc the sub-block scales (KScales).
PW_AMX void split_products(const Decoded& d, int sub, int8_t (*bh)[64], int8_t (*bl)[64], const GroupAhead& ah) {
  const __mmask64 odd = 0xAAAAAAAAAAAAAAAAull;
  const int quads_per_sub = sub / 4;
  for (int s = 0; s < 256 / sub; s++) {
    // isc of each row in both 16-bit words of its dword (the row's 4 values).
    const __m512i i32 = _mm512_load_si512(d.isc[s]);
    const __m512i iw = _mm512_or_si512(_mm512_and_si512(i32, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(i32, 16));
    for (int qd = 0; qd < quads_per_sub; qd++) {
      const int qi = s * quads_per_sub + qd;
      // The group_ahead prefetches, a line or two per quad (a burst of them stalled the core).
      if (qi < ah.lines) {
        if (ah.next) _mm_prefetch(reinterpret_cast<const char*>(ah.next + 64 * qi), _MM_HINT_T0);
        if (ah.far) _mm_prefetch(reinterpret_cast<const char*>(ah.far + 64 * qi), _MM_HINT_T1);
      }
      const __m512i q = _mm512_load_si512(d.u[qi]);
      // Each 16-bit word holds an even value's q (low byte) and an odd one's (high byte). With the
      // odd byte as the word's signed high half (qo = 256 q_odd) and the even byte moved there (qe):
      //   pl of the even value: the low byte of q * isc (mod 2^16 the odd byte only adds
      //   multiples of 256); of the odd value: the high byte of qo * isc;
      //   ph = floor(p / 256): the low byte of the high half of qe * isc, of qo * isc.
      const __m512i qo = _mm512_and_si512(q, _mm512_set1_epi16(static_cast<short>(0xFF00)));
      const __m512i qe = _mm512_slli_epi16(q, 8);
      _mm512_store_si512(bl[qi], _mm512_mask_blend_epi8(odd, _mm512_mullo_epi16(q, iw), _mm512_mullo_epi16(qo, iw)));
      _mm512_store_si512(bh[qi], _mm512_mask_blend_epi8(odd, _mm512_mulhi_epi16(qe, iw), _mm512_slli_epi16(_mm512_mulhi_epi16(qo, iw), 8)));
    }
  }
}

// Tiles: 0, 1, 2 the sums (hi ph), (hi pl + lo ph), (lo pl); 4, 5 the activations' hi and lo bytes
// of a 64-value chunk; 6, 7 the chunk's ph and pl. Every tile 16 x 64 bytes. (The two cross
// products in a tile each measured the same: the tile unit waits on the loads, not on a chain of
// products into one tile.)
PW_AMX PW_INLINE void k_products(const int8_t* rec, const int8_t (*bh)[64], const int8_t (*bl)[64]) {
  tile_zero<0>();
  tile_zero<1>();
  tile_zero<2>();
  for (int c = 0; c < 4; c++) {
    tile_load<4>(rec + c * 1024, 64);
    tile_load<5>(rec + 4096 + c * 1024, 64);
    tile_load<6>(bh[16 * c], 64);
    tile_load<7>(bl[16 * c], 64);
    tile_dpbssd<0, 4, 6>();
    tile_dpbsud<1, 4, 7>();
    tile_dpbssd<1, 5, 6>();
    tile_dpbsud<2, 5, 7>();
  }
}

// The exact S of the sums, lane-wise, rounded once to float: L = 256 c1 + c2 stays in int32 (below
// 2^30), and S = 65536 (c0 + (L >> 16)) + (L & 65535) with both parts exact floats, so one fma forms
// S exactly and rounds it once (as the double the other kernels convert).
PW_AMX PW_INLINE __m512 k_sum(const int32_t* c0, const int32_t* c1, const int32_t* c2) {
  const __m512i L = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(c1), 8), _mm512_load_si512(c2));
  const __m512i A = _mm512_add_epi32(_mm512_load_si512(c0), _mm512_srai_epi32(L, 16));
  const __m512i low = _mm512_and_si512(L, _mm512_set1_epi32(0xFFFF));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(A), _mm512_set1_ps(65536.0f), _mm512_cvtepi32_ps(low));
}

// acc rows m0 .. m0 + mr of one activation tile += the block's terms, from its stored sums.
template <int SUB, bool HAS_MIN>
PW_AMX PW_INLINE void k_epilogue(const Decoded& d, const int32_t (*c)[kTileRows][kTileRows], const int8_t* rec, int64_t mr, float* ap) {
  const float* f = reinterpret_cast<const float*>(rec + 8192);
  const float* X = f + 16 + (SUB == 32 ? 0 : 128);
  constexpr int subs = 256 / SUB;
  const __m512 dd = _mm512_load_ps(d.d), dmin = _mm512_load_ps(d.dmin);
  __m512 imn[HAS_MIN ? subs : 1];
  if constexpr (HAS_MIN)
    for (int s = 0; s < subs; s++) imn[s] = _mm512_load_ps(d.m[s]);
  for (int64_t i = 0; i < mr; i++) {
    const __m512 Sf = k_sum(c[0][i], c[1][i], c[2][i]);
    __m512 cv;
    if constexpr (HAS_MIN) {
      __m512 tm = _mm512_mul_ps(_mm512_set1_ps(X[i]), imn[0]);
      for (int s = 1; s < subs; s++) tm = _mm512_fmadd_ps(_mm512_set1_ps(X[s * 16 + i]), imn[s], tm);
      cv = _mm512_fmsub_ps(dd, Sf, _mm512_mul_ps(dmin, tm));
    } else {
      cv = _mm512_mul_ps(dd, Sf);
    }
    float* a = ap + i * kTileRows;
    _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(f[i]), cv, _mm512_load_ps(a)));
  }
}

// Activation tiles of rows mc .. me against one decoded block: tile T's products are issued, tile
// T - 1's epilogue runs meanwhile from its stored sums, then T's sums are stored (the sums alternate
// between two buffers).
template <int SUB, bool HAS_MIN>
PW_AMX void k_tiles(const Decoded& d, const int8_t (*bh)[64], const int8_t (*bl)[64], const Task& t, int64_t blk, int64_t mc, int64_t me,
                    float* accp) {
  alignas(64) int32_t c[2][3][kTileRows][kTileRows];
  const int64_t nb = t.K / 256;
  const int64_t tiles = (me - mc + kTileRows - 1) / kTileRows;
  auto rec = [&](int64_t T) { return t.tiles_k + ((mc / kTileRows + T) * nb + blk) * kAmxRecordK; };
  for (int64_t T = 0; T <= tiles; T++) {
    if (T < tiles) k_products(rec(T), bh, bl);
    if (T > 0) {
      const int64_t m0 = mc + (T - 1) * kTileRows;
      k_epilogue<SUB, HAS_MIN>(d, c[(T - 1) & 1], rec(T - 1), std::min<int64_t>(kTileRows, me - m0), accp + m0 * kTileRows);
    }
    if (T < tiles) {
      tile_store<0>(c[T & 1][0], 64);
      tile_store<1>(c[T & 1][1], 64);
      tile_store<2>(c[T & 1][2], 64);
    }
  }
}

PW_AMX void amx_group_k(const TypeInfo& ti, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  const AmxTileScope scope(AmxTileConfig::full());
  Decoded dec;
  alignas(64) int8_t bh[64][64], bl[64][64];
  std::fill(out, out + t.M * kTileRows, 0.0f);
  const int64_t nblk = t.K / 256;
  const bool has_min = k_has_min(t.type);
  // Activation rows in chunks whose records stay in L2 across the blocks (about 1 MiB).
  const int64_t chunk = std::max<int64_t>(kTileRows, ((int64_t(1) << 20) / (nblk * kAmxRecordK / kTileRows)) / kTileRows * kTileRows);
  for (int64_t mc = 0; mc < t.M; mc += chunk) {
    const int64_t me = std::min(t.M, mc + chunk);
    for (int64_t blk = 0; blk < nblk; blk++) {
      decode_group_signed(ti, part, data, lr, blk, nr, dec, false);
      split_products(dec, ti.sub, bh, bl, group_ahead(part, data, lr, blk));
      if (ti.sub == 16) {
        if (has_min) k_tiles<16, true>(dec, bh, bl, t, blk, mc, me, out);
        else k_tiles<16, false>(dec, bh, bl, t, blk, mc, me, out);
      } else {
        if (has_min) k_tiles<32, true>(dec, bh, bl, t, blk, mc, me, out);
        else k_tiles<32, false>(dec, bh, bl, t, blk, mc, me, out);
      }
    }
  }
}

PW_AMX void amx_group(const TypeInfo& ti, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  const AmxTileScope scope(tile_config32());
  // On the stack: as a thread_local, GCC's clone of the kernel bound to it computed its address
  // by a __tls_get_addr call every round (an addon is a shared object: general-dynamic TLS).
  Decoded dec;
  float* const accp = out;
  std::fill(accp, accp + t.M * kTileRows, 0.0f);
  const int64_t nblk = t.K / 32;
  constexpr int per_pass = kMaxBlock / 32;  // blocks decoded per pass
  // Activation rows in chunks whose tiles stay in L2 across the blocks (1 MiB of the 2 MiB L2:
  // 256 rows of K = 2048, 64 of K = 8192); each chunk decodes the weights again, and starts the
  // pipeline again per pass: with 256 KiB (16 rows of K = 8192) the down projection ran at
  // ~0.86x the VNNI kernel.
  const int64_t chunk = std::max<int64_t>(kTileRows, ((int64_t(1) << 20) / (2 * t.K)) / kTileRows * kTileRows);
  for (int64_t mc = 0; mc < t.M; mc += chunk) {
    const int64_t me = std::min(t.M, mc + chunk);
    for (int64_t blk = 0; blk < nblk; blk += per_pass) {
      const int nb = static_cast<int>(std::min<int64_t>(per_pass, nblk - blk));
      if (decode_blocks32(ti, part, data, lr, blk, nb, nr, dec)) block_tiles<true>(dec, t, blk, nb, mc, me, accp);
      else block_tiles<false>(dec, t, blk, nb, mc, me, accp);
    }
  }
}

}  // namespace

bool quant_amx(int set) {
  if (set >= 0) amx_switch().store(set != 0, std::memory_order_relaxed);
  return amx_switch().load(std::memory_order_relaxed) && amx_granted();
}

// From 10 rows (256-value types) or 11 (32-value types): below, a round's fixed cost is shared by
// too few rows of a tile. Measured against the VNNI kernel (in-process A/B, 1 thread, 2048 x 2048
// and 2048 x 8192): Q4_K / Q6_K 0.90-0.99x at M = 8, 1.12-1.20x at 10; Q8_0 0.98-1.07x at 10,
// 1.06-1.15x at 11; every type 0.43-0.52x at M = 4.
bool use_amx(Isa isa, int64_t M, int block) {
  static const bool vnni = __builtin_cpu_supports("avx512vnni");
  return M >= (block == 256 ? 10 : 11) && isa >= Isa::Avx512 && vnni && quant_amx(-1);
}

void tile16_amx(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  TypeInfo ti;
  type_info(t.type, &ti);
  if (ti.block == 256) amx_group_k(ti, t, part, data, lr, nr, out);
  else amx_group(ti, t, part, data, lr, nr, out);
}

}  // namespace quant
}  // namespace pw

#else  // no AMX off x86-64

namespace pw {
namespace quant {
bool quant_amx(int) { return false; }
bool use_amx(Isa, int64_t, int) { return false; }
}  // namespace quant
}  // namespace pw

#endif
