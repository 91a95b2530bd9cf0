// Per-family row kernels of the quantized linear op (linear.cc holds the numerics contract).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../common.h"
#include "act_quant.h"
#include "quant.h"

namespace pw {
namespace quant {

struct Task {
  int type;
  int64_t K;
  int64_t M;
  const ActRow* act;      // M quantized activation rows
  const int8_t* tiles;    // the AMX path's copy of the activations for 32-value types (amx_tiles_bytes), or nullptr
  const int8_t* tiles_k;  // and for 256-value types (amx_tiles_k_bytes), or nullptr
};

// The numerics contract for one weight row lr of the part against every activation row, into
// acc[m * kGroupRows]: each block is decoded once; sums(q, x, k0, subs, sub, I) gives the block's
// exact integer sums I[s] = sum(q v) per sub-block (any order: integers); then the fixed float
// epilogue, the same operations in the same order on every family. The scalar kernel (linear.cc)
// and the NEON kernel (rows_neon.cc) differ only in their sums.
//
// 32-value types (one sub-block a block), per block kb: c = a * float(I) - m * float(X) (X the
// block's sum of v), acc = acc + s[kb] * c.
//
// 256-value types (the super-block contract): the activations share one scale s over the block
// (act_quant.h), so the block reduces to one exact integer S = sum_s isc[s] * I[s] (|S| < 2^34:
// exact in an int64 or a double, whatever order a kernel sums it in) and c = d * float(S), or with a
// min term c = fma(d, float(S), -(dmin * t)), t = the fma chain over s of float(X[s]) * imn[s] in
// sub-block order; then acc = fma(s, c, acc). One float epilogue per 256 values instead of one per
// sub-block: a tile kernel can keep a whole block's products in its accumulators (rows_amx.cc).
template <class Sums>
inline void row_reference(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, float* acc, Sums sums) {
  TypeInfo ti;
  type_info(t.type, &ti);
  const uint8_t* w = part.ib ? nullptr : data + part.offset + static_cast<size_t>(lr) * part.row_bytes;
  alignas(16) uint8_t fb[kMaxBlock + 64];
  alignas(16) int8_t q[kMaxBlock];
  float a[kMaxSubs], mm[kMaxSubs];
  const int64_t nblk = t.K / ti.block;
  if (ti.block == 256) {
    const int subs = ti.block / ti.sub;
    const bool has_min = k_has_min(t.type);
    KScales ks;
    for (int64_t m = 0; m < t.M; m++) acc[m * kGroupRows] = 0.0f;
    for (int64_t blk = 0; blk < nblk; blk++) {
      if (part.ib) {
        deinterleave_block(t.type, part.group_block(data, lr / kGroupRows, blk), static_cast<int>(lr % kGroupRows), fb);
        decode_block_k(t.type, fb, q, ks);
      } else {
        decode_block_k(t.type, w + static_cast<size_t>(blk) * ti.bytes, q, ks);
      }
      for (int64_t m = 0; m < t.M; m++) {
        const ActRow& x = t.act[m];
        int32_t I[kMaxSubs];
        sums(q, x, blk * ti.block, subs, ti.sub, I);
        int64_t S = 0;
        for (int s = 0; s < subs; s++) S += static_cast<int64_t>(ks.isc[s]) * I[s];
        float c;
        if (has_min) {
          float tm = 0.0f;
          for (int s = 0; s < subs; s++) {
            const float X = ti.sub == 32 ? x.sumf32[blk * 8 + s] : x.sumf16[blk * 16 + s];
            tm = s == 0 ? X * ks.imn[0] : std::fma(X, ks.imn[s], tm);
          }
          c = std::fma(ks.d, static_cast<float>(S), -(ks.dmin * tm));
        } else {
          c = ks.d * static_cast<float>(S);
        }
        acc[m * kGroupRows] = std::fma(x.s[blk * 8], c, acc[m * kGroupRows]);
      }
    }
    return;
  }
  for (int64_t m = 0; m < t.M; m++) acc[m * kGroupRows] = 0.0f;
  for (int64_t blk = 0; blk < nblk; blk++) {
    if (part.ib) {
      deinterleave_block(t.type, part.group_block(data, lr / kGroupRows, blk), static_cast<int>(lr % kGroupRows), fb);
      decode_block(t.type, fb, q, a, mm);
    } else {
      decode_block(t.type, w + static_cast<size_t>(blk) * ti.bytes, q, a, mm);
    }
    for (int64_t m = 0; m < t.M; m++) {
      const ActRow& x = t.act[m];
      int32_t I[1];
      sums(q, x, blk * 32, 1, 32, I);
      const int32_t X = x.sum16[2 * blk] + x.sum16[2 * blk + 1];
      const float c = a[0] * static_cast<float>(I[0]) - mm[0] * static_cast<float>(X);
      acc[m * kGroupRows] = acc[m * kGroupRows] + x.s[blk] * c;
    }
  }
}

// Computes acc[m * 16 + i] (acc 64-byte aligned) for rows lr + i, i in [0, nr) (nr <= 16, lr a
// multiple of 16) of the part when the family has a kernel for it; returns how many (0 or nr; the
// scalar kernel does the rest). With t.tiles the AMX kernel runs.
int rows_fast(Isa isa, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* acc);

// quantize_act_row (act_quant.h) on the family's SIMD units where it has a version (AVX-512, AVX2),
// the same bits (AVX2: v, s and the sums; its kernels never read hi and lo); returns false where
// the caller must run the plain one.
bool quantize_act_fast(Isa isa, const float* x, int64_t K, const ActRow& r);

// Whether a call of M activation rows runs the AMX kernel of a type with blocks of `block` values
// (rows_amx.cc): then the caller gives Task::tiles (32-value types), amx_tiles_bytes(M, K) bytes
// (64-byte aligned) filled by amx_tile_row for each row, or Task::tiles_k (256-value types) alike.
bool use_amx(Isa isa, int64_t M, int block);
// The AMX layout: per 16 activation rows (a tile; rows past M zero) and block kb of 32 values, a
// record of kAmxRecord bytes: the rows' hi bytes (16 x 32) then their lo bytes (a block's tile is
// one load at stride 32), then the rows' floats of the block (rows_amx.cc).
// amx_tile_row copies row m in (r nullptr: zeros, for the rows past M of the last tile).
constexpr int kAmxRecord = 1024 + 64 * 2;
size_t amx_tiles_bytes(int64_t M, int64_t K);
void amx_tile_row(const ActRow* r, int64_t m, int64_t K, int8_t* tiles);
// The 256-value types' layout: per 16 activation rows and 256-value block, a record of the rows'
// hi bytes as 4 tiles of 16 rows x 64 values, their lo bytes alike, then the floats the epilogue
// reads per row: s[16], the 32-value sums X32[8][16] and the 16-value sums X16[16][16].
constexpr int kAmxRecordK = 8192 + 64 + 512 + 1024;
size_t amx_tiles_k_bytes(int64_t M, int64_t K);
void amx_tile_row_k(const ActRow* r, int64_t m, int64_t K, int8_t* tiles);

// The AMX switch of the blocked path, read in one place (rows_amx.cc): PAGEWISE_QUANT_AMX=0 turns
// it off at start-up (the AVX-512 VNNI kernels run instead), unset or anything else leaves it on;
// it runs only where the CPU has AMX-INT8 and the kernel grants the process the tile state.
// quant_amx(1 / 0) switches it (tests, benchmarks), quant_amx(-1) only asks; each returns whether
// the AMX path is in use now. Every path gives the same bits.
bool quant_amx(int set);

#if defined(__x86_64__)
constexpr int kTileRows = 16;

// A 16-row weight group's block decoded into L1: u[qi][r] holds the 4 bytes of values 4 qi ..
// 4 qi + 3 of row r (quad-major: one 64-byte row per quad, what vpdpbusd and an AMX B tile
// read), a and m per sub-block with one lane per row. 256-value types (KScales): isc per
// sub-block, m = imn, and d, dmin per row; 32-value types: a and m of decode_block.
struct Decoded {
  alignas(64) uint32_t u[kMaxBlock / 4][kTileRows];
  alignas(64) float a[kMaxSubs][kTileRows];
  alignas(64) int32_t isc[kMaxSubs][kTileRows];
  alignas(64) float m[kMaxSubs][kTileRows];
  alignas(64) float d[kTileRows];
  alignas(64) float dmin[kTileRows];
};

// Block blk of the group at lr (rows lr .. lr + nr; rows nr..15 give q = 0, a = m = 0) decoded
// into d with u = q, the signed integers of decode_block (rows_fast.cc, AVX-512); with prefetch,
// its group_ahead blocks are prefetched (below). Returns false when the type's m is 0 in every block:
// then d.m is left unwritten (no kernel reads it; its 16 zero stores a block cost Q6_K's M = 1
// stream 3-8 %).
bool decode_group_signed(const TypeInfo& ti, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk,
                         int64_t nr, Decoded& d, bool prefetch = true);
// The blocks a kernel at block blk of the group at lr prefetches: the next one into
// L1 and a far one into L2, `lines` cache lines each (nullptr past the part's end; both nullptr in
// the row layout). decode_group_signed(prefetch = false) leaves them to the caller, which spreads
// them over its work: issued at once (a block's 36 to 53 lines), they stalled the core on its L1
// miss buffers.
struct GroupAhead {
  const uint8_t* next;
  const uint8_t* far;
  int lines;
};
// Where a kernel at block blk of a group prefetches: the next block (at a group's last block, the
// next group's first: usually this thread's next item; it used to start cold: M = 1, weights past
// the L3, 1.02-1.07x, most on K = 2048, 8 blocks a group), and the block ~7 KB ahead (into the
// next group at its end) into L2: the T0 prefetches alone hold a core's L1 miss buffers, ~9 GB/s
// per core from memory at M = 1; it measured +20-25 % there on Q4_K, 3 blocks of 2304 bytes ahead
// (2 or 6 ahead: no gain; 8 ahead for the AMX kernel's spread prefetches: no change either). The
// distance is in bytes: 3 Q8_0 blocks are only 1.7 KB.
// (Inline: the AVX2 kernels call it per block, and a 32-value type's block is only 6 lines.)
inline GroupAhead group_ahead(const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk) {
  GroupAhead a{nullptr, nullptr, 0};
  if (!part.ib) return a;
  const uint8_t* gb = part.group_block(data, lr / kGroupRows, blk);
  const size_t gbytes = static_cast<size_t>(part.ib) * kGroupRows;
  const uint8_t* end = data + part.offset + static_cast<size_t>((part.n + kGroupRows - 1) / kGroupRows * part.nblk) * gbytes;
  a.lines = static_cast<int>(gbytes / 64);
  if (gb + gbytes < end) a.next = gb + gbytes;
  const size_t ahead = std::max<size_t>(3, (3 * 2304 + gbytes - 1) / gbytes);
  if (gb + gbytes * ahead < end) a.far = gb + gbytes * ahead;
  return a;
}

// The AMX-INT8 kernel of the blocked path (rows_amx.cc): out as rows_fast, from t.tiles (32-value
// types) or t.tiles_k (256-value types).
void tile16_amx(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out);
#endif

}  // namespace quant
}  // namespace pw
