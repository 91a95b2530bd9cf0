// The AMX-INT8 kernel of the quantized linear op's blocked path (prefill, large batches): the
// integer sums of 16 activation rows x 16 weight rows per sub-block in one tile instruction.
//
// Per weight block (32-value types: 8 blocks at a time) the 16-row group is decoded once into L1
// by the AVX-512 decoders (decode_group_signed: signed q, quad-major, which is the layout of a
// tile's B operand: one 64-byte row per value quad, 4 bytes per weight row). Per sub-block of SUB
// values (32 or 16):
//   C_hi = TDPBSSD(A_hi, B), C_lo = TDPBSSD(A_lo, B)
// with A_hi / A_lo the activations' hi / lo bytes (act_quant.h) of 16 activation rows (SUB bytes
// each, from a copy laid out for the tiles: amx_tile_row) and B the weights (SUB / 4 quad rows).
// Signed times signed bytes, so no offset term: I = 256 C_hi + C_lo = sum(q v) exactly, the same
// integer as every other family's. C row i holds the 16 weight rows' sums of activation row i, one per
// 32-bit lane: the float epilogue runs lane-wise on it, the same operations in the same order as
// the VNNI kernel's (linear.cc's contract), so the outputs are the same bits.
//
// Cost, per round of 16 x 16 outputs and one sub-block of 32 (a replica of this loop on a 2.1 GHz
// Sapphire Rapids VM core): ~28 ns of tile work (three tile loads, two TDPBSSD, two TILESTORED) and
// ~23 ns of epilogue (about 8 vector ops per activation row: the contract's floats, which no tile
// can do), and the two do not overlap: ~54 ns. Reading each row's floats through its ActRow (two
// dependent loads a row) made it ~78 ns: the floats now travel in the tile record. The sums of
// every sub-block must leave the tiles (hi and lo: two 1 KiB stores), so this path is far from the
// TMUL peak (docs/PERFORMANCE.md, #14).
#include <cstring>

#include "kernels.h"

namespace pw {
namespace quant {

// The tile layout of the activations (linear.cc calls these only when use_amx): per 16 rows and
// activation block, a record of the hi bytes (16 x 32), the lo bytes, then the floats the
// epilogue reads per row, contiguous (read through each row's ActRow they were the kernel's
// slowest loads: two dependent loads a row, from as many pages as rows): s[16], sumf32[16],
// sumf16 of the first 16 values [16], of the second [16].
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
      f[32 + i] = r->sumf16[2 * kb];
      f[48 + i] = r->sumf16[2 * kb + 1];
    } else {
      std::memset(t + i * kActBlock, 0, kActBlock);
      std::memset(t + 512 + i * kActBlock, 0, kActBlock);
      f[i] = f[16 + i] = f[32 + i] = f[48 + i] = 0.0f;
    }
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

// Tiles 0..3: the int32 sums C (activation row x weight row) of two sub-blocks, hi and lo halves
// each; 4, 5: a sub-block's activation hi and lo bytes (16 rows x SUB); 6, 7: the weights of two
// sub-blocks (SUB / 4 quad rows x 64 bytes). Loaded per work item and released after it
// (AmxTileScope, amx.h), as the BF16 tile kernels do.
AmxTileConfig tile_config(int sub) {
  AmxTileConfig c = AmxTileConfig::full();
  for (int i = 4; i < 6; i++) c.colsb[i] = static_cast<uint16_t>(sub);
  for (int i = 6; i < 8; i++) c.rows[i] = static_cast<uint8_t>(sub / 4);
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

// A round's products: sub-block si's activations (hi bytes at a, lo at a + 512) against its
// weights into C tiles C0 (hi) and C0 + 1 (lo), with the weights in tile B. Rounds alternate
// between C tiles 0, 1 with B in 6 and 2, 3 with 7, so one round's sums can be stored while the
// next one's products run.
template <int SUB, int C0, int B>
PW_AMX PW_INLINE void issue(const Decoded& d, const int8_t* a, int si) {
  tile_zero<C0>();
  tile_zero<C0 + 1>();
  tile_load<B>(d.u[si * (SUB / 4)], 64);
  tile_load<4>(a, 32);
  tile_load<5>(a + 512, 32);
  tile_dpbssd<C0, 4, B>();
  tile_dpbssd<C0 + 1, 5, B>();
}

// accp[m][16 lanes] += the terms of the nsubs sub-blocks in d (activation blocks from kb0 on) for
// activation rows mc .. me (mc a multiple of 16; the tiles hold 16 rows, the sums of rows past me
// are dropped). A software pipeline: round r + 1's tile products run while the vector units
// finish round r from its stored sums (C tiles and their buffers alternate), so the products'
// latency hides behind the epilogue. Rounds go activation tile by tile, sub-block by sub-block.
template <int SUB, bool HAS_MIN>
PW_AMX void block_tiles(const Decoded& d, const Task& t, int64_t kb0, int nsubs, int64_t mc, int64_t me, float* accp) {
  alignas(64) int32_t c[2][2][kTileRows][kTileRows];  // [round parity][hi, lo][activation row][weight row]
  alignas(64) float c0[kTileRows][kTileRows];         // SUB 16: the first sub-block's terms
  // The accumulators of the activation tile in its epilogue, one register per row (the loops over
  // rows are unrolled so they stay registers across its rounds: no load and store per round).
  __m512 acc[kTileRows];
  const int64_t nkb = t.K / kActBlock;
  // The record of activation tile T (in this chunk) and sub-block si (SUB 16: two per block).
  auto record = [&](int64_t T, int si) { return t.tiles + ((mc / kTileRows + T) * nkb + kb0 + (SUB == 32 ? si : si / 2)) * kAmxRecord; };
  // Sub-block si's hi tile (SUB 16: its half of the block); + 512: lo.
  auto a_tile = [&](int64_t T, int si) { return record(T, si) + (SUB == 16 ? (si % 2) * 16 : 0); };
  const int64_t rounds = (me - mc + kTileRows - 1) / kTileRows * nsubs;
  const bool prefetch = SUB == 32 && me - mc >= 64;
  issue<SUB, 0, 6>(d, a_tile(0, 0), 0);
  int64_t cT = 0, pT = 0;  // round r's activation tile and sub-block; round r - 1's
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
      if (r & 1) issue<SUB, 0, 6>(d, a_tile(nT, nsi), nsi);
      else issue<SUB, 2, 7>(d, a_tile(nT, nsi), nsi);
    }
    // Round r + 2's activation record into L1 meanwhile: with many rows, the tile loads stalled
    // on it from L2 (in-process A/B, 1 thread, M = 512: 1.12-1.25x on Q4_K and Q8_0). With few
    // rows (M = 32: 0.9-1.0x) and on the 16-value sub-blocks (0.93-1.05x) it costs more than it
    // gains.
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
      const float* xx = xs + (SUB == 32 ? 16 : 32 + 16 * (psi % 2));
      float* ap = accp + m0 * kTileRows;
      if (psi == 0) {  // the tile's rows enter registers for its nsubs rounds (rows past M: zeros)
#pragma GCC unroll 16
        for (int i = 0; i < kTileRows; i++) acc[i] = i < mr ? _mm512_load_ps(ap + i * kTileRows) : _mm512_setzero_ps();
      }
#pragma GCC unroll 16
      for (int i = 0; i < kTileRows; i++) {
        const __m512 ci = term<HAS_MIN>(cr[0][i], cr[1][i], d.a[psi], d.m[psi], xx[i]);
        if constexpr (SUB == 32) {  // a sub-block per activation block
          acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xs[i]), ci));
        } else if (psi % 2 == 0) {  // two sub-blocks per activation block: ts = c0 + c1
          _mm512_store_ps(c0[i], ci);
        } else {
          acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_set1_ps(xs[i]), _mm512_add_ps(_mm512_load_ps(c0[i]), ci)));
        }
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

template <int SUB>
PW_AMX void rows_tiles(bool has_min, const Decoded& d, const Task& t, int64_t kb0, int nsubs, int64_t mc, int64_t me, float* accp) {
  if (has_min) block_tiles<SUB, true>(d, t, kb0, nsubs, mc, me, accp);
  else block_tiles<SUB, false>(d, t, kb0, nsubs, mc, me, accp);
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

PW_AMX void amx_group(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  TypeInfo ti;
  type_info(t.type, &ti);
  const AmxTileScope scope(tile_config(ti.sub));
  // On the stack: as a thread_local, GCC's clone of the kernel bound to it computed its address
  // by a __tls_get_addr call every round (an addon is a shared object: general-dynamic TLS).
  Decoded dec;
  float* const accp = out;
  std::fill(accp, accp + t.M * kTileRows, 0.0f);
  const int64_t nblk = t.K / ti.block;
  const int per_pass = ti.block == 32 ? kMaxBlock / 32 : 1;  // blocks decoded per pass
  // Activation rows in chunks whose tiles stay in L2 across the blocks (1 MiB of the 2 MiB L2:
  // 256 rows of K = 2048, 64 of K = 8192); each chunk decodes the weights again, and starts the
  // pipeline again per pass: with 256 KiB (16 rows of K = 8192) the down projection ran at
  // ~0.86x the VNNI kernel.
  const int64_t chunk = std::max<int64_t>(kTileRows, ((int64_t(1) << 20) / (2 * t.K)) / kTileRows * kTileRows);
  for (int64_t mc = 0; mc < t.M; mc += chunk) {
    const int64_t me = std::min(t.M, mc + chunk);
    for (int64_t blk = 0; blk < nblk; blk += per_pass) {
      const int nb = static_cast<int>(std::min<int64_t>(per_pass, nblk - blk));
      const bool has_min = per_pass > 1 ? decode_blocks32(ti, part, data, lr, blk, nb, nr, dec) : decode_group_signed(ti, part, data, lr, blk, nr, dec);
      const int64_t kb0 = blk * ti.block / kActBlock;
      const int nsubs = nb * ti.block / ti.sub;
      if (ti.sub == 16) rows_tiles<16>(has_min, dec, t, kb0, nsubs, mc, me, accp);
      else rows_tiles<32>(has_min, dec, t, kb0, nsubs, mc, me, accp);
    }
  }
}

}  // namespace

bool quant_amx(int set) {
  if (set >= 0) amx_switch().store(set != 0, std::memory_order_relaxed);
  return amx_switch().load(std::memory_order_relaxed) && amx_granted();
}

// From 16 rows (a full tile): below, a round's fixed cost (two products, two tile stores) is
// shared by too few rows (measured at M = 8: 0.7-1.1x the VNNI kernel, depending on the type).
bool use_amx(Isa isa, int64_t M) {
  static const bool vnni = __builtin_cpu_supports("avx512vnni");
  return M >= 16 && isa >= Isa::Avx512 && vnni && quant_amx(-1);
}

void tile16_amx(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  amx_group(t, part, data, lr, nr, out);
}

}  // namespace quant
}  // namespace pw

#else  // no AMX off x86-64

namespace pw {
namespace quant {
bool quant_amx(int) { return false; }
bool use_amx(Isa, int64_t) { return false; }
}  // namespace quant
}  // namespace pw

#endif
