// SIMD row kernels of the quantized linear op on x86 (AVX-512 VNNI; AVX2 at the end of the file;
// rows_neon.cc is the AArch64 twin, and other targets run the scalar kernel): 16
// weight rows at a time, one row per 32-bit lane, so the float steps of linear.cc's contract run
// lane-wise on 16 outputs at once (the same operations as the scalar kernel, in the same order:
// the same bits).
//
// AVX-512: the weights of a 16-row group are interleaved at pack time (quant.h), so one 64-byte
// load holds the same 4 bytes of the 16 rows. A type's Src turns such loads into u = q + off,
// the unsigned bytes vpdpbusd multiplies, for value quad qi (values 4 qi .. 4 qi + 3) of the 16
// rows; a vpdpbusd against a broadcast quad of activation bytes adds it to all 16 rows' sums.
// Integer sums per sub-block: sum(u hi) and sum(u lo) in two accumulators, then I = 256 sum(u hi)
// + sum(u lo) - off X = sum(q v) exactly (every term < 2^29 in magnitude). Then the type's
// contract (kernels.h): a float epilogue per block of 32, or for the 256-value types the block's
// S = sum isc I summed exactly (int32 over a few sub-blocks, then doubles) and one epilogue.
//   - One pass over a block (at most 4 activation rows, decode): u decoded in registers, straight
//     from the streamed weights (the "streaming path").
//   - More rows (prefill, batches): the block is decoded once into L1 (Decoded.u) and each group
//     of 4 activation rows shares every weight load; activation rows go in chunks that stay in L2
//     across the K blocks (the "blocked path"). Where the CPU has AMX-INT8, the blocked path runs
//     on tiles instead (rows_amx.cc), from the same decoders (decode_group_signed).
//
// AVX2 (no VNNI): a 32-byte load holds the same 4 bytes of 8 rows, so each half of the group runs
// on its own (the Src2 decoders, the AVX-512 ones' bit fields), and the products are vpmaddwd of
// 16-bit weights and the activations' 16-bit v (no hi / lo split). The same two paths: fewer than
// 4 activation rows stream the block from registers (FromSrc), more widen it to 16 bits once, into
// L1 (FromWide). Every interleaved type has an AVX2 decoder.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "../simd.h"
#include "kernels.h"
#include "quant.h"

#if PW_X86
#include <immintrin.h>

#define PW_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace pw {
namespace quant {
namespace {

bool has_vnni() {
  static const bool v = __builtin_cpu_supports("avx512vnni");
  return v;
}

constexpr int kMR = 4;  // activation rows per pass over a decoded block

// Decodes block blk of rows lr .. lr + nr of the part, either layout, with decode_block (rows nr..15
// get zeros): u = q + 128 quad-major, a and m per sub-block.
void decode16(const TypeInfo& ti, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk, int64_t nr, Decoded& d) {
  int8_t q[kMaxBlock];
  float a[kMaxSubs], m[kMaxSubs];
  uint8_t fb[kMaxBlock];
  KScales ks;
  const int subs = ti.block / ti.sub, quads = ti.block / 4;
  for (int r = 0; r < kTileRows; r++) {
    if (r < nr) {
      const uint8_t* b;
      if (part.ib) {
        deinterleave_block(part.type, part.group_block(data, lr / kGroupRows, blk), r, fb);
        b = fb;
      } else {
        b = data + part.offset + static_cast<size_t>(lr + r) * part.row_bytes + static_cast<size_t>(blk) * ti.bytes;
      }
      if (ti.block == 256) {
        decode_block_k(part.type, b, q, ks);
        for (int s = 0; s < subs; s++) d.isc[s][r] = static_cast<int32_t>(ks.isc[s]);
        std::fill(a, a + subs, 0.0f);  // (unused by this contract)
        std::copy(ks.imn, ks.imn + subs, m);
        d.d[r] = ks.d;
        d.dmin[r] = ks.dmin;
      } else {
        decode_block(part.type, b, q, a, m);
      }
      for (int j = 0; j < ti.block; j++) q[j] = static_cast<int8_t>(static_cast<uint8_t>(q[j]) ^ 0x80);  // + 128
    } else {
      std::memset(q, 0x80, static_cast<size_t>(ti.block));  // u = 128: q = 0
      std::fill(a, a + subs, 0.0f);
      std::fill(m, m + subs, 0.0f);
      for (int s = 0; s < subs; s++) d.isc[s][r] = 0;
      d.d[r] = d.dmin[r] = 0.0f;
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

PW_VNNI void scales_q8_0(const uint8_t* gb, Decoded& d) {
  _mm512_store_ps(d.a[0], half_lo(dw(gb, 0)));
}

// The 256-value types' scales (KScales, quant.h): isc and imn per sub-block, d and dmin per row.
// Q4_K / Q5_K: d and dmin here; sub-block j's 6-bit scale and min (k4_sc, k4_mn) where they are
// used (Q4KSrc, Q5KSrc), as Q6_K's.
PW_VNNI void scales_q4_k(const uint8_t* gb, Decoded& d) {
  const __m512i d0 = dw(gb, 0);
  _mm512_store_ps(d.d, half_lo(d0));
  _mm512_store_ps(d.dmin, half_hi(d0));
}
PW_VNNI PW_INLINE __m512i k4_sc(const uint8_t* gb, int j) {
  if (j < 4) return bits(dw(gb, 1), 8 * j, 63);
  return _mm512_or_si512(bits(dw(gb, 3), 8 * (j - 4), 15), _mm512_slli_epi32(bits(dw(gb, 1), 8 * (j - 4) + 6, 3), 4));
}
PW_VNNI PW_INLINE __m512 k4_mn(const uint8_t* gb, int j) {
  if (j < 4) return _mm512_cvtepi32_ps(bits(dw(gb, 2), 8 * j, 63));
  return _mm512_cvtepi32_ps(_mm512_or_si512(bits(dw(gb, 3), 8 * (j - 4) + 4, 15), _mm512_slli_epi32(bits(dw(gb, 2), 8 * (j - 4) + 6, 3), 4)));
}

PW_VNNI void scales_d(const uint8_t* gb, Decoded& d) {  // Q4_0, IQ4_NL: a = d, m = 0
  _mm512_store_ps(d.a[0], half_lo(dw(gb, 0)));
}

PW_VNNI PW_INLINE __m512 neg(__m512 v) {  // exact negation (sign bit), as -x
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}

PW_VNNI void scales_dm(const uint8_t* gb, Decoded& d) {  // Q4_1, Q5_1: a = d, m = -min
  const __m512i d0 = dw(gb, 0);
  _mm512_store_ps(d.a[0], half_lo(d0));
  _mm512_store_ps(d.m[0], neg(half_hi(d0)));
}

PW_VNNI void scales_iq4_xs(const uint8_t* gb, Decoded& d) {  // isc = ls - 32
  const __m512i d0 = dw(gb, 0), sl = dw(gb, 1);
  _mm512_store_ps(d.d, half_lo(d0));
  _mm512_store_ps(d.dmin, _mm512_setzero_ps());
  for (int ib = 0; ib < 8; ib++) {
    const __m512i ls = _mm512_or_si512(bits(sl, 4 * ib, 15), _mm512_slli_epi32(bits(d0, 16 + 2 * ib, 3), 4));
    _mm512_store_si512(d.isc[ib], _mm512_sub_epi32(ls, _mm512_set1_epi32(32)));
  }
}

PW_VNNI void scales_q2_k(const uint8_t* gb, Decoded& d) {  // isc = sc & 15, imn = sc >> 4
  const __m512i d0 = dw(gb, 20);
  _mm512_store_ps(d.d, half_lo(d0));
  _mm512_store_ps(d.dmin, half_hi(d0));
  for (int j = 0; j < 16; j++) {
    const __m512i s = dw(gb, j / 4);
    _mm512_store_si512(d.isc[j], bits(s, 8 * (j % 4), 15));
    _mm512_store_ps(d.m[j], _mm512_cvtepi32_ps(bits(s, 8 * (j % 4) + 4, 15)));
  }
}

PW_VNNI void scales_q3_k(const uint8_t* gb, Decoded& d) {  // isc = sc - 32, 6-bit sc split in 4 + 2 bits
  _mm512_store_ps(d.d, half_lo(dw(gb, 27)));
  _mm512_store_ps(d.dmin, _mm512_setzero_ps());
  for (int j = 0; j < 16; j++) {
    const int lb = j < 8 ? j : j - 8;  // byte holding the low 4 bits (low nibble for j < 8)
    const __m512i low = bits(dw(gb, 24 + lb / 4), 8 * (lb % 4) + (j < 8 ? 0 : 4), 15);
    const __m512i high = bits(dw(gb, 26), 8 * (j & 3) + 2 * (j >> 2), 3);
    const __m512i sc = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
    _mm512_store_si512(d.isc[j], sc);
  }
}

PW_VNNI void scales_q6_k(const uint8_t* gb, Decoded& d) {  // isc: Q6KSrc::isc
  _mm512_store_ps(d.d, half_lo(dw(gb, 52)));
  _mm512_store_ps(d.dmin, _mm512_setzero_ps());
}

// Weight sources: quad(qi) = the unsigned bytes u of values 4 qi .. 4 qi + 3 of the 16 rows,
// u = q + kOff (q the decode_block integers), decoded in registers from the interleaved block.
// kHasMin false: the type's m is always 0, and c = a * I skips "- 0 * X" (which can only turn a
// zero c's sign, and no zero's sign survives into acc: acc starts at +0, so the outputs' bits are
// the same as the full formula's).
// (kBatch: the sub-blocks whose isc * I stay in int32 summed, from |v| <= 8191 (act_quant.h):
// batch * max|isc| * sub * max|q| * 8191 < 2^31, e.g. Q6_K 4 * 128 * 16 * 32 * 8191 = 2147221504,
// Q4_K 8 * 63 * 32 * 15 * 8191, IQ4_XS 2 * 32 * 32 * 127 * 8191. The type's source gives it
// (k_batch, also the AVX2 kernel's); 2 fits any 256-value type, IQ4_XS's bound being the tightest.)
constexpr int k_batch(int type) {
  switch (type) {
    case Q4_K: return 8;
    case Q5_K: return 4;
    case Q6_K: return 4;
    case Q2_K: return 16;
    case Q3_K: return 16;
    default: return 2;  // IQ4_XS
  }
}
template <class S, class = void>
struct BatchOf {
  static constexpr int value = 2;
};
template <class S>
struct BatchOf<S, std::void_t<decltype(S::kBatch)>> {
  static constexpr int value = S::kBatch;
};
// Whether a source gives its sub-block scales itself (isc(j), from the streamed block) instead of
// the scales decoder storing them in Decoded.isc; isc_of reads either.
template <class S, class = void>
struct IscOf : std::false_type {};
template <class S>
struct IscOf<S, std::void_t<decltype(std::declval<const S&>().isc(0))>> : std::true_type {};
template <class Src>
PW_VNNI PW_INLINE __m512i isc_of(const Src& src, const Decoded& d, int j) {
  if constexpr (IscOf<Src>::value) return src.isc(j);
  else return _mm512_load_si512(d.isc[j]);
}
// The same for the sub-blocks' mins (m(j), as floats) of the types with a min term.
template <class S, class = void>
struct MinOf : std::false_type {};
template <class S>
struct MinOf<S, std::void_t<decltype(std::declval<const S&>().m(0))>> : std::true_type {};
template <class Src>
PW_VNNI PW_INLINE __m512 m_of(const Src& src, const Decoded& d, int j) {
  if constexpr (MinOf<Src>::value) return src.m(j);
  else return _mm512_load_ps(d.m[j]);
}
// A block decoded into L1 for the blocked paths keeps its scales and mins there too.
template <int BLOCK, int SUB, class Src>
PW_VNNI PW_INLINE void store_scales(const Src& src, Decoded& d) {
  if constexpr (IscOf<Src>::value)
    for (int j = 0; j < BLOCK / SUB; j++) _mm512_store_si512(d.isc[j], src.isc(j));
  if constexpr (MinOf<Src>::value)
    for (int j = 0; j < BLOCK / SUB; j++) _mm512_store_ps(d.m[j], src.m(j));
}
// Whether a source reads the streamed block itself (the streaming path) or a decoded copy.
template <class S, class = void>
struct Streams : std::true_type {};
template <class S>
struct Streams<S, std::void_t<decltype(S::kDecoded)>> : std::false_type {};
template <int OFF_SHIFT, bool HAS_MIN, int BATCH = 2>
struct FromDecodedT {
  static constexpr bool kDecoded = true;  // reads a block decoded into L1 (the blocked path)
  const Decoded& d;
  static constexpr int kOffShift = OFF_SHIFT;
  static constexpr bool kHasMin = HAS_MIN;
  static constexpr int kBatch = BATCH;
  PW_VNNI PW_INLINE __m512i quad(int qi) const { return _mm512_load_si512(d.u[qi]); }
};

struct Q8Src {
  const uint8_t* gb;
  static constexpr int kOffShift = 7;
  static constexpr bool kHasMin = false;
  PW_VNNI PW_INLINE __m512i quad(int qi) const { return _mm512_xor_si512(dw(gb, 1 + qi), _mm512_set1_epi8(static_cast<char>(0x80))); }
};
struct Q4KSrc {
  const uint8_t* gb;
  static constexpr int kBatch = k_batch(Q4_K);
  static constexpr int kOffShift = -1;  // u = q (0..15)
  static constexpr bool kHasMin = true;
  PW_VNNI PW_INLINE __m512i isc(int j) const { return k4_sc(gb, j); }
  PW_VNNI PW_INLINE __m512 m(int j) const { return k4_mn(gb, j); }
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const int sub = qi >> 3;
    const __m512i g = dw(gb, 4 + 8 * (sub >> 1) + (qi & 7));
    return _mm512_and_si512(sub & 1 ? _mm512_srli_epi16(g, 4) : g, _mm512_set1_epi8(0x0F));
  }
};
// Values 0..15: low nibbles of dwords 1..4, 16..31: their high nibbles. Q4_0: u = q + 8; Q4_1: u = q.
template <int OFF_SHIFT>
struct Nib32Src {
  const uint8_t* gb;
  static constexpr int kOffShift = OFF_SHIFT;
  static constexpr bool kHasMin = OFF_SHIFT < 0;  // Q4_1
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const __m512i g = dw(gb, 1 + (qi & 3));
    return _mm512_and_si512(qi >= 4 ? _mm512_srli_epi16(g, 4) : g, _mm512_set1_epi8(0x0F));
  }
};
// The IQ4 values (decode.cc's kIq4Values) + 128, the bytes a vpshufb of the nibbles looks up.
PW_INLINE __m128i iq4_table() {
  return _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, static_cast<char>(129), static_cast<char>(141), static_cast<char>(153),
                       static_cast<char>(166), static_cast<char>(181), static_cast<char>(197), static_cast<char>(217), static_cast<char>(241));
}
struct Iq4NlSrc {  // the Q4_0 nibbles through the IQ4 table, + 128
  const uint8_t* gb;
  static constexpr int kOffShift = 7;
  static constexpr bool kHasMin = false;
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const __m512i table = _mm512_broadcast_i32x4(iq4_table());
    return _mm512_shuffle_epi8(table, Nib32Src<3>{gb}.quad(qi));
  }
};
using Q4_0Src = Nib32Src<3>;
using Q4_1Src = Nib32Src<-1>;

// Q5_0 / Q5_1: qh in dword 1, nibbles in dwords 2..5; quad qi takes qh bits 4 qi .. 4 qi + 3, one
// per value, as 16: the byte of each row's qh holding them is copied to the row's 4 bytes
// (vpshufb) and tested against 1, 2, 4, 8 (or 16 .. 128), and the values whose bit is set get
// 16 added (three instructions; a carry-free multiply spreading the bits took six, and the Q5
// decoder was what bounded the M = 1 kernel on these types). Q5_0: u = q + 16; Q5_1: u = q.
template <int OFF_SHIFT>
struct Q5Src {
  const uint8_t* gb;
  static constexpr int kOffShift = OFF_SHIFT;
  static constexpr bool kHasMin = OFF_SHIFT < 0;  // Q5_1
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const __m512i g = dw(gb, 2 + (qi & 3));
    const __m512i nib = _mm512_and_si512(qi >= 4 ? _mm512_srli_epi16(g, 4) : g, _mm512_set1_epi8(0x0F));
    const __m512i copy = _mm512_add_epi8(_mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12)),
                                         _mm512_set1_epi8(static_cast<char>(qi >> 1)));
    const __mmask64 high = _mm512_test_epi8_mask(_mm512_shuffle_epi8(dw(gb, 1), copy), _mm512_set1_epi32(qi & 1 ? static_cast<int>(0x80402010u) : 0x08040201));
    return _mm512_mask_add_epi8(nib, high, nib, _mm512_set1_epi8(16));
  }
};

// IQ4_XS: sub-block ib's 16 bytes in dwords 2 + 4 ib .. 5 + 4 ib, low nibbles then high, through
// the IQ4 table (+ 128).
struct Iq4XsSrc {
  const uint8_t* gb;
  static constexpr int kBatch = k_batch(IQ4_XS);
  static constexpr int kOffShift = 7;
  static constexpr bool kHasMin = false;
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const int ib = qi >> 3, r = qi & 7;
    const __m512i g = dw(gb, 2 + 4 * ib + (r & 3));
    const __m512i nib = _mm512_and_si512(r >= 4 ? _mm512_srli_epi16(g, 4) : g, _mm512_set1_epi8(0x0F));
    const __m512i table = _mm512_broadcast_i32x4(iq4_table());
    return _mm512_shuffle_epi8(table, nib);
  }
};

// Q2_K: value quad qi is 2 bits (shift 2 ((qi >> 3) & 3)) of qs dword 4 + 8 (qi >> 5) + (qi & 7).
struct Q2KSrc {
  const uint8_t* gb;
  static constexpr int kBatch = k_batch(Q2_K);
  static constexpr int kOffShift = -1;  // u = q (0..3)
  static constexpr bool kHasMin = true;
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const __m512i g = dw(gb, 4 + 8 * (qi >> 5) + (qi & 7));
    return _mm512_and_si512(_mm512_srli_epi16(g, 2 * ((qi >> 3) & 3)), _mm512_set1_epi8(3));
  }
};

// Q3_K: Q2_K's 2 bits from qs dwords 8.., plus 4 when hmask bit (4 (qi >> 5) + ((qi >> 3) & 3)) of
// hmask dword (qi & 7) is set: u = q + 4.
struct Q3KSrc {
  const uint8_t* gb;
  static constexpr int kBatch = k_batch(Q3_K);
  static constexpr int kOffShift = 2;
  static constexpr bool kHasMin = false;
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const int n = qi >> 5, j = (qi >> 3) & 3;
    const __m512i g = dw(gb, 8 + 8 * n + (qi & 7)), h = dw(gb, qi & 7);
    const __m512i q2 = _mm512_and_si512(_mm512_srli_epi16(g, 2 * j), _mm512_set1_epi8(3));
    const __m512i hb = _mm512_and_si512(_mm512_srli_epi16(h, 4 * n + j), _mm512_set1_epi8(1));
    return _mm512_or_si512(q2, _mm512_slli_epi16(hb, 2));
  }
};

struct Q5KSrc {  // Q4_K's nibbles plus bit (sub) of qh byte l as 16
  const uint8_t* gb;
  static constexpr int kBatch = k_batch(Q5_K);
  static constexpr int kOffShift = -1;
  static constexpr bool kHasMin = true;
  PW_VNNI PW_INLINE __m512i isc(int j) const { return k4_sc(gb, j); }
  PW_VNNI PW_INLINE __m512 m(int j) const { return k4_mn(gb, j); }
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const int sub = qi >> 3, j = qi & 7;
    const __m512i g = dw(gb, 12 + 8 * (sub >> 1) + j), h = dw(gb, 4 + j);
    const __m512i nib = _mm512_and_si512(sub & 1 ? _mm512_srli_epi16(g, 4) : g, _mm512_set1_epi8(0x0F));
    const __m512i hb = _mm512_and_si512(_mm512_srli_epi16(h, sub), _mm512_set1_epi8(1));
    return _mm512_or_si512(nib, _mm512_slli_epi16(hb, 4));
  }
};
struct Q6KSrc {
  const uint8_t* gb;
  static constexpr int kBatch = k_batch(Q6_K);
  static constexpr int kOffShift = 5;  // u = q + 32 (the stored 6 bits)
  static constexpr bool kHasMin = false;
  // Sub-block j's scale, the signed byte, computed where it is used: stored by the scales decoder
  // and loaded back, 16 a block, it cost the M = 1 stream 2-14 % (in-process A/B, from memory).
  PW_VNNI PW_INLINE __m512i isc(int j) const { return _mm512_srai_epi32(_mm512_slli_epi32(dw(gb, 48 + j / 4), 24 - 8 * (j % 4)), 24); }
  PW_VNNI PW_INLINE __m512i quad(int qi) const {
    const int n = qi >> 5, qt = (qi >> 3) & 3, j = qi & 7;
    const __m512i l = dw(gb, 16 * n + 8 * (qt & 1) + j), h = dw(gb, 32 + 8 * n + j);
    // The high bits 2 qt, 2 qt + 1 masked first, then moved to bits 4, 5 (a 16-bit shift of masked
    // bytes carries nothing into the next byte), and u = (low nibble) | that in one ternary-logic
    // op. Every caller unrolls its block, so qi is a constant and this is three or four
    // instructions where shift, mask, shift, or took five or six.
    const __m512i lowbits = qt >= 2 ? _mm512_srli_epi16(l, 4) : l;
    const __m512i hm = _mm512_and_si512(h, _mm512_set1_epi8(static_cast<char>(3 << (2 * qt))));
    const __m512i hs = qt == 0 ? _mm512_slli_epi16(hm, 4) : qt == 1 ? _mm512_slli_epi16(hm, 2) : qt == 2 ? hm : _mm512_srli_epi16(hm, 2);
    return _mm512_ternarylogic_epi32(lowbits, _mm512_set1_epi8(0x0F), hs, 0xEA);  // (a & b) | c
  }
};

// The integer sums of sub-block si (SUB values from value k0 on) for activation rows m0 .. m0 + MR,
// one lane per weight row: I = 256 sum(u hi) + sum(u lo) - off X = sum(q v), exactly.
template <int SUB, int MR, class Src>
PW_VNNI PW_INLINE void sub_block_sums(const Src& src, const Task& t, int64_t m0, int64_t k0, int si, __m512i* I) {
  constexpr int quads = SUB / 4;
  __m512i hi[MR], lo[MR];
  for (int i = 0; i < MR; i++) hi[i] = lo[i] = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int qd = 0; qd < quads; qd++) {
    const int qi = si * quads + qd;
    const __m512i wv = src.quad(qi);
    for (int i = 0; i < MR; i++) {
      int32_t h4, l4;
      std::memcpy(&h4, t.act[m0 + i].hi + k0 + 4 * qi, 4);
      std::memcpy(&l4, t.act[m0 + i].lo + k0 + 4 * qi, 4);
      hi[i] = _mm512_dpbusd_epi32(hi[i], wv, _mm512_set1_epi32(h4));
      lo[i] = _mm512_dpbusd_epi32(lo[i], wv, _mm512_set1_epi32(l4));
    }
  }
  for (int i = 0; i < MR; i++) {
    I[i] = _mm512_add_epi32(_mm512_slli_epi32(hi[i], 8), lo[i]);
    if constexpr (Src::kOffShift >= 0) {
      const int32_t* s16 = t.act[m0 + i].sum16 + (k0 + si * SUB) / 16;
      const int32_t X = SUB == 32 ? s16[0] + s16[1] : s16[0];
      I[i] = _mm512_sub_epi32(I[i], _mm512_slli_epi32(_mm512_set1_epi32(X), Src::kOffShift));
    }
  }
}

// The 32-value contract (kernels.h) for one block, activation rows m0 .. m0 + MR.
template <int MR, class Src>
PW_VNNI PW_INLINE void block_rows32(const Src& src, const Decoded& d, const Task& t, int64_t blk, int64_t m0, float* accp) {
  __m512i I[MR];
  sub_block_sums<32, MR>(src, t, m0, blk * 32, 0, I);
  const __m512 av = _mm512_load_ps(d.a[0]);
  for (int i = 0; i < MR; i++) {
    const ActRow& x = t.act[m0 + i];
    __m512 c = _mm512_mul_ps(av, _mm512_cvtepi32_ps(I[i]));
    if constexpr (Src::kHasMin) {
      const int32_t X = x.sum16[2 * blk] + x.sum16[2 * blk + 1];
      c = _mm512_sub_ps(c, _mm512_mul_ps(_mm512_load_ps(d.m[0]), _mm512_cvtepi32_ps(_mm512_set1_epi32(X))));
    }
    float* a = accp + (m0 + i) * kTileRows;
    _mm512_store_ps(a, _mm512_add_ps(_mm512_load_ps(a), _mm512_mul_ps(_mm512_set1_ps(x.s[blk]), c)));
  }
}

// The lanes of two doubles x 8 as 16 floats, each rounded once (nearest-even, as static_cast).
PW_VNNI PW_INLINE __m512 pd_to_ps16(__m512d lo, __m512d hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo))), _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
}

// One sub-block's step of block_rows_k: its exact I (sub_block_sums) times isc into the int32 batch
// B, a batch into the doubles S, and the min term's fma into tm.
template <int SUB, int MR, class Src>
PW_VNNI PW_INLINE void k_sub_block(const Src& src, const Decoded& d, const Task& t, int64_t blk, int64_t m0, int si, __m512i* B,
                                   __m512d (*S)[2], __m512* tm) {
  __m512i I[MR];
  sub_block_sums<SUB, MR>(src, t, m0, blk * 256, si, I);
  const __m512i isc = isc_of(src, d, si);
  for (int i = 0; i < MR; i++) {
    // isc * I summed in int32 over kBatch sub-blocks (the type's bound keeps that exact), then
    // into the doubles.
    const __m512i P = _mm512_mullo_epi32(isc, I[i]);
    B[i] = si % Src::kBatch == 0 ? P : _mm512_add_epi32(B[i], P);
    if (si % Src::kBatch == Src::kBatch - 1) {
      S[i][0] = _mm512_add_pd(S[i][0], _mm512_cvtepi32_pd(_mm512_castsi512_si256(B[i])));
      S[i][1] = _mm512_add_pd(S[i][1], _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(B[i], 1)));
    }
    if constexpr (Src::kHasMin) {
      const ActRow& x = t.act[m0 + i];
      const __m512 X = _mm512_set1_ps(SUB == 32 ? x.sumf32[blk * 8 + si] : x.sumf16[blk * 16 + si]);
      const __m512 mv = m_of(src, d, si);
      tm[i] = si == 0 ? _mm512_mul_ps(X, mv) : _mm512_fmadd_ps(X, mv, tm[i]);
    }
  }
}

// The super-block contract (kernels.h) for a 256-value block: per activation row, each sub-block's
// exact I times isc into S, exact in two doubles x 8 lanes; the min's fma chain; then one float
// epilogue per block.
template <int SUB, int MR, class Src>
PW_VNNI PW_INLINE void block_rows_k(const Src& src, const Decoded& d, const Task& t, int64_t blk, int64_t m0, float* accp) {
  constexpr int subs = 256 / SUB;
  static_assert(subs % Src::kBatch == 0, "int32 batches of whole sub-blocks");
  __m512d S[MR][2];
  __m512i B[MR];
  __m512 tm[MR];
  for (int i = 0; i < MR; i++) {
    B[i] = _mm512_setzero_si512();
    S[i][0] = S[i][1] = _mm512_setzero_pd();
    tm[i] = _mm512_setzero_ps();
  }
  if constexpr (Streams<Src>::value) {
    // Streamed straight from the weights: the whole block unrolled, so every value quad's position
    // is a constant and the decoders' shifts and masks fold (Q6_K at M = 1: 1.09x from the unrolling,
    // 1.12x with its decoder's constant form; in cache, 1 thread). The blocked path's passes over a
    // decoded block stay rolled: unrolled, its code grew and ran 0.88-0.90x at M = 8.
#pragma GCC unroll 16
    for (int si = 0; si < subs; si++) k_sub_block<SUB, MR>(src, d, t, blk, m0, si, B, S, tm);
  } else {
#pragma GCC unroll 2
    for (int si = 0; si < subs; si++) k_sub_block<SUB, MR>(src, d, t, blk, m0, si, B, S, tm);
  }
  const __m512 dd = _mm512_load_ps(d.d);
  for (int i = 0; i < MR; i++) {
    const __m512 Sf = pd_to_ps16(S[i][0], S[i][1]);
    __m512 c;
    if constexpr (Src::kHasMin) c = _mm512_fmsub_ps(dd, Sf, _mm512_mul_ps(_mm512_load_ps(d.dmin), tm[i]));
    else c = _mm512_mul_ps(dd, Sf);
    float* a = accp + (m0 + i) * kTileRows;
    _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(t.act[m0 + i].s[blk * 8]), c, _mm512_load_ps(a)));
  }
}

// Either contract's pass over one block for activation rows m0 .. m0 + MR.
template <int BLOCK, int SUB, int MR, class Src>
PW_VNNI PW_INLINE void rows_pass(const Src& src, const Decoded& d, const Task& t, int64_t blk, int64_t m0, float* accp) {
  if constexpr (BLOCK == 256) block_rows_k<SUB, MR>(src, d, t, blk, m0, accp);
  else block_rows32<MR>(src, d, t, blk, m0, accp);
}

template <int BLOCK, int SUB, class Src>
PW_VNNI PW_INLINE void all_rows(const Src& src, Decoded& d, const Task& t, int64_t blk, float* accp) {
  if (t.M > kMR) {
    // Several passes over the block: decode it once into L1 (the same u bytes). Unrolled, every
    // quad's bit fields are constants (1.03-1.56x at M = 8-64 with the AMX decode below).
#pragma GCC unroll 64
    for (int qi = 0; qi < BLOCK / 4; qi++) _mm512_store_si512(d.u[qi], src.quad(qi));
    store_scales<BLOCK, SUB>(src, d);
    FromDecodedT<Src::kOffShift, Src::kHasMin, BatchOf<Src>::value> dec{d};
    int64_t m = 0;
    for (; m + kMR <= t.M; m += kMR) rows_pass<BLOCK, SUB, kMR>(dec, d, t, blk, m, accp);
    for (; m < t.M; m++) rows_pass<BLOCK, SUB, 1>(dec, d, t, blk, m, accp);
    return;
  }
  int64_t m = 0;
  for (; m + kMR <= t.M; m += kMR) rows_pass<BLOCK, SUB, kMR>(src, d, t, blk, m, accp);
  for (; m < t.M; m++) rows_pass<BLOCK, SUB, 1>(src, d, t, blk, m, accp);
}

// decode16's blocks (u = q + 128), with the type's min term or not (the other families' choice).
template <int BLOCK, int SUB, bool HAS_MIN>
PW_VNNI PW_INLINE void rows_decoded(Decoded& d, const Task& t, int64_t blk, float* accp) {
  const FromDecodedT<7, HAS_MIN> dec{d};
  int64_t m = 0;
  for (; m + kMR <= t.M; m += kMR) rows_pass<BLOCK, SUB, kMR>(dec, d, t, blk, m, accp);
  for (; m < t.M; m++) rows_pass<BLOCK, SUB, 1>(dec, d, t, blk, m, accp);
}

// The SIMD decoder of each interleaved type: computes the block's floats into d, then runs
// f.run<BLOCK, SUB>(src) with the type's weight source; false (f not run) for a type without one.
template <class F>
PW_VNNI PW_INLINE bool with_src(int type, const uint8_t* gb, Decoded& d, F& f) {
  switch (type) {
    case Q8_0: scales_q8_0(gb, d); f.template run<32, 32>(Q8Src{gb}); return true;
    case Q4_0: scales_d(gb, d); f.template run<32, 32>(Q4_0Src{gb}); return true;
    case IQ4_NL: scales_d(gb, d); f.template run<32, 32>(Iq4NlSrc{gb}); return true;
    case Q4_1: scales_dm(gb, d); f.template run<32, 32>(Q4_1Src{gb}); return true;
    case Q5_0: scales_d(gb, d); f.template run<32, 32>(Q5Src<4>{gb}); return true;
    case Q5_1: scales_dm(gb, d); f.template run<32, 32>(Q5Src<-1>{gb}); return true;
    case IQ4_XS: scales_iq4_xs(gb, d); f.template run<256, 32>(Iq4XsSrc{gb}); return true;
    case Q4_K: scales_q4_k(gb, d); f.template run<256, 32>(Q4KSrc{gb}); return true;
    case Q5_K: scales_q4_k(gb, d); f.template run<256, 32>(Q5KSrc{gb}); return true;
    case Q6_K: scales_q6_k(gb, d); f.template run<256, 16>(Q6KSrc{gb}); return true;
    case Q2_K: scales_q2_k(gb, d); f.template run<256, 16>(Q2KSrc{gb}); return true;
    case Q3_K: scales_q3_k(gb, d); f.template run<256, 16>(Q3KSrc{gb}); return true;
    default: return false;
  }
}

}  // namespace

namespace {

// Group block blk of the part (nullptr in the row layout), its group_ahead prefetched at once.
PW_VNNI PW_INLINE const uint8_t* group_block_prefetch(const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk) {
  if (!part.ib) return nullptr;
  const GroupAhead a = group_ahead(part, data, lr, blk);
  if (a.next)
    for (int c = 0; c < a.lines; c++) _mm_prefetch(reinterpret_cast<const char*>(a.next + 64 * c), _MM_HINT_T0);
  if (a.far)
    for (int c = 0; c < a.lines; c++) _mm_prefetch(reinterpret_cast<const char*>(a.far + 64 * c), _MM_HINT_T1);
  return part.group_block(data, lr / kGroupRows, blk);
}

struct AllRows {
  Decoded& d;
  const Task& t;
  int64_t blk;
  float* accp;
  template <int BLOCK, int SUB, class Src>
  PW_VNNI PW_INLINE void run(const Src& src) { all_rows<BLOCK, SUB>(src, d, t, blk, accp); }
};

PW_VNNI void tile16(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* out) {
  TypeInfo ti;
  type_info(t.type, &ti);
  Decoded d;  // on the stack: a thread_local costs a __tls_get_addr call per use in an addon
  float* const accp = out;
  std::fill(accp, accp + t.M * kTileRows, 0.0f);
  const int64_t nblk = t.K / ti.block;
  // Activation rows in chunks whose quantized rows stay in L2 across the blocks (64 rows of K =
  // 2048: 256 KiB); each chunk decodes the weights again (a small cost next to 64 rows' products).
  const int64_t chunk = std::max<int64_t>(kMR, ((int64_t(256) << 10) / (2 * t.K)) / kMR * kMR);
  for (int64_t mc = 0; mc < t.M; mc += chunk) {
    const Task tc{t.type, t.K, std::min(chunk, t.M - mc), t.act + mc, nullptr, nullptr};
    float* const accc = accp + mc * kTileRows;
    for (int64_t blk = 0; blk < nblk; blk++) {
      const uint8_t* gb = group_block_prefetch(part, data, lr, blk);
      AllRows f{d, tc, blk, accc};
      if (with_src(part.ib ? t.type : -1, gb, d, f)) continue;
      // A type without a SIMD decoder: decode_block per row.
      decode16(ti, part, data, lr, blk, nr, d);
      const bool mn = k_has_min(t.type);
      if (ti.block == 32) rows_decoded<32, 32, true>(d, tc, blk, accc);
      else if (ti.sub == 16) mn ? rows_decoded<256, 16, true>(d, tc, blk, accc) : rows_decoded<256, 16, false>(d, tc, blk, accc);
      else mn ? rows_decoded<256, 32, true>(d, tc, blk, accc) : rows_decoded<256, 32, false>(d, tc, blk, accc);
    }
  }
}

// Stores the block's signed q (u minus the source's offset, exact in int8) for the AMX path.
struct StoreSigned {
  Decoded& d;
  bool has_min;
  template <int BLOCK, int SUB, class Src>
  PW_VNNI PW_INLINE void run(const Src& src) {
    // Unrolled over the block, as all_rows' decode: each quad's bit fields are constants.
#pragma GCC unroll 64
    for (int qi = 0; qi < BLOCK / 4; qi++) {
      __m512i u = src.quad(qi);
      if constexpr (Src::kOffShift >= 0) u = _mm512_sub_epi8(u, _mm512_set1_epi8(static_cast<char>(1 << Src::kOffShift)));
      _mm512_store_si512(d.u[qi], u);
    }
    store_scales<BLOCK, SUB>(src, d);
    has_min = Src::kHasMin;
  }
};

// ---------------------------------------------------------------------------------------------
// AVX2 decoders of the interleaved types: what decode_group_signed computes (the signed q
// quad-major, the scales lane-wise), from 32-byte loads that hold the same dword of 8 rows (half
// h: rows 8 h .. 8 h + 7), with the AVX-512 decoders' bit fields. (decode16 decodes each row's
// block with the scalar decode_block, ~10x the instructions: with it alone, batch-1 decode of a
// Q4_K_M model read 3-7 % of its bandwidth bound on a Zen 3 host, and IQ4_XS, Q2_K and Q3_K,
// before they had decoders here, ran 13-21x slower at M = 1.)

PW_AVX2 PW_INLINE __m256i dw2(const uint8_t* gb, int p, int h) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(gb + 64 * p + 32 * h)); }
// The f16 in the low (or high) 16 bits of each lane, as float (exact, as f16_to_f32).
PW_AVX2 PW_INLINE __m256 half_lo2(__m256i v) {
  const __m256i m = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
  return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1)));
}
PW_AVX2 PW_INLINE __m256 half_hi2(__m256i v) { return half_lo2(_mm256_srli_epi32(v, 16)); }
PW_AVX2 PW_INLINE __m256i bits2(__m256i v, int shift, int mask) { return _mm256_and_si256(_mm256_srli_epi32(v, shift), _mm256_set1_epi32(mask)); }
PW_AVX2 PW_INLINE __m256i nibbles2(__m256i g, bool high) { return _mm256_and_si256(high ? _mm256_srli_epi16(g, 4) : g, _mm256_set1_epi8(0x0F)); }

// Each source: quad(qi) = the 8 rows' bytes of value quad qi of half h with the type's own offset
// (as the AVX-512 sources), kTo128 = what turns them into q + 128; scales2 gives the half's floats.
struct Q8Src2 {
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 0;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const { return _mm256_xor_si256(dw2(gb, 1 + qi, h), _mm256_set1_epi8(static_cast<char>(0x80))); }
};
// The nibble types' sources also give raw(qi), the bytes whose low (high(qi): high) nibbles are
// quad qi, so a streamed block can widen them before splitting (FromSrc).
template <int TO128>  // Q4_0 (q = u - 8), Q4_1 (q = u)
struct Nib32Src2 {
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = TO128;
  PW_AVX2 PW_INLINE __m256i raw(int qi) const { return dw2(gb, 1 + (qi & 3), h); }
  static constexpr bool high(int qi) { return qi >= 4; }
  PW_AVX2 PW_INLINE __m256i quad(int qi) const { return nibbles2(raw(qi), high(qi)); }
};
struct Iq4NlSrc2 {  // the nibbles through the IQ4 table, + 128
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 0;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const __m256i table = _mm256_broadcastsi128_si256(iq4_table());
    return _mm256_shuffle_epi8(table, Nib32Src2<0>{gb, h}.quad(qi));
  }
};
template <int TO128>  // Q5_0 (q = u - 16), Q5_1 (q = u): the high bits from qh
struct Q5Src2 {
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = TO128;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const __m256i nib = nibbles2(dw2(gb, 2 + (qi & 3), h), qi >= 4);
    // Each row's qh byte holding quad qi's 4 bits, in the quad's 4 bytes; for an even quad (the
    // byte's low nibble) moved up 4 bits, so the quad's bit k is bit 4 + k of byte k either way
    // (the bits a 16-bit shift carries in from the byte below stay under bit 4). Byte k's bit
    // alone, then min(., 16): 16 where it is set, 0 where not.
    const __m256i copy = _mm256_add_epi8(_mm256_broadcastsi128_si256(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12)),
                                         _mm256_set1_epi8(static_cast<char>(qi >> 1)));
    __m256i b = _mm256_shuffle_epi8(dw2(gb, 1, h), copy);
    if (!(qi & 1)) b = _mm256_slli_epi16(b, 4);
    const __m256i bit = _mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(0x80402010u)));
    return _mm256_add_epi8(nib, _mm256_min_epu8(bit, _mm256_set1_epi8(16)));
  }
};
struct Q4KSrc2 {
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 128;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const int sub = qi >> 3;
    return nibbles2(dw2(gb, 4 + 8 * (sub >> 1) + (qi & 7), h), sub & 1);
  }
};
// Each byte's bits from `at` up moved to start at bit 4, then masked (mask: the wanted bits, from
// bit 4): one shift of the 16-bit lanes (what crosses into a neighbouring byte lands outside the
// mask) and an and, where shifting the field down and back up took two shifts.
PW_AVX2 PW_INLINE __m256i bits_to4(__m256i g, int at, int mask) {
  const __m256i sh = at <= 4 ? _mm256_slli_epi16(g, 4 - at) : _mm256_srli_epi16(g, at - 4);
  return _mm256_and_si256(sh, _mm256_set1_epi8(static_cast<char>(mask)));
}
struct Iq4XsSrc2 {  // sub-block ib's 16 bytes in dwords 2 + 4 ib .., through the IQ4 table (+ 128)
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 0;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const int ib = qi >> 3, r = qi & 7;
    const __m256i table = _mm256_broadcastsi128_si256(iq4_table());
    return _mm256_shuffle_epi8(table, nibbles2(dw2(gb, 2 + 4 * ib + (r & 3), h), r >= 4));
  }
};
struct Q2KSrc2 {  // u = q (0..3)
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 128;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const __m256i g = dw2(gb, 4 + 8 * (qi >> 5) + (qi & 7), h);
    return _mm256_and_si256(_mm256_srli_epi16(g, 2 * ((qi >> 3) & 3)), _mm256_set1_epi8(3));
  }
};
struct Q3KSrc2 {  // u = q + 4: Q2_K's 2 bits from qs dwords 8.., plus the hmask bit as 4
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 124;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const int n = qi >> 5, j = (qi >> 3) & 3;
    const __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(dw2(gb, 8 + 8 * n + (qi & 7), h), 2 * j), _mm256_set1_epi8(3));
    return _mm256_or_si256(q2, bits_to4(dw2(gb, qi & 7, h), 4 * n + j + 2, 0x04));
  }
};
struct Q5KSrc2 {
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 128;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const int sub = qi >> 3, j = qi & 7;
    const __m256i nib = nibbles2(dw2(gb, 12 + 8 * (sub >> 1) + j, h), sub & 1);
    return _mm256_or_si256(nib, bits_to4(dw2(gb, 4 + j, h), sub, 0x10));
  }
};
struct Q6KSrc2 {  // u = q + 32
  const uint8_t* gb;
  int h;
  static constexpr int kTo128 = 96;
  PW_AVX2 PW_INLINE __m256i quad(int qi) const {
    const int n = qi >> 5, qt = (qi >> 3) & 3, j = qi & 7;
    const __m256i low = nibbles2(dw2(gb, 16 * n + 8 * (qt & 1) + j, h), qt >= 2);
    return _mm256_or_si256(low, bits_to4(dw2(gb, 32 + 8 * n + j, h), 2 * qt, 0x30));
  }
};

PW_AVX2 PW_INLINE __m256 neg2(__m256 v) { return _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)))); }

// The scales of half h, lane-wise as decode_block / decode_block_k compute them (see the AVX-512
// scale decoders above).
template <int TYPE>
PW_AVX2 PW_INLINE void scales2(const uint8_t* gb, int h, Decoded& d) {
  const int o = 8 * h;
  const __m256 zero = _mm256_setzero_ps();
  if constexpr (TYPE == Q8_0 || TYPE == Q4_0 || TYPE == IQ4_NL || TYPE == Q5_0) {
    _mm256_store_ps(d.a[0] + o, half_lo2(dw2(gb, 0, h)));
    _mm256_store_ps(d.m[0] + o, zero);
  } else if constexpr (TYPE == Q4_1 || TYPE == Q5_1) {
    const __m256i d0 = dw2(gb, 0, h);
    _mm256_store_ps(d.a[0] + o, half_lo2(d0));
    _mm256_store_ps(d.m[0] + o, neg2(half_hi2(d0)));
  } else if constexpr (TYPE == Q4_K || TYPE == Q5_K) {
    const __m256i d0 = dw2(gb, 0, h), s1 = dw2(gb, 1, h), s2 = dw2(gb, 2, h), s3 = dw2(gb, 3, h);
    _mm256_store_ps(d.d + o, half_lo2(d0));
    _mm256_store_ps(d.dmin + o, half_hi2(d0));
    for (int j = 0; j < 8; j++) {
      __m256i sc, mn;
      if (j < 4) {
        sc = bits2(s1, 8 * j, 63);
        mn = bits2(s2, 8 * j, 63);
      } else {
        sc = _mm256_or_si256(bits2(s3, 8 * (j - 4), 15), _mm256_slli_epi32(bits2(s1, 8 * (j - 4) + 6, 3), 4));
        mn = _mm256_or_si256(bits2(s3, 8 * (j - 4) + 4, 15), _mm256_slli_epi32(bits2(s2, 8 * (j - 4) + 6, 3), 4));
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(d.isc[j] + o), sc);
      _mm256_store_ps(d.m[j] + o, _mm256_cvtepi32_ps(mn));
    }
  } else if constexpr (TYPE == IQ4_XS) {  // isc = ls - 32
    const __m256i d0 = dw2(gb, 0, h), sl = dw2(gb, 1, h);
    _mm256_store_ps(d.d + o, half_lo2(d0));
    _mm256_store_ps(d.dmin + o, zero);
    for (int ib = 0; ib < 8; ib++) {
      const __m256i ls = _mm256_or_si256(bits2(sl, 4 * ib, 15), _mm256_slli_epi32(bits2(d0, 16 + 2 * ib, 3), 4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(d.isc[ib] + o), _mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
    }
  } else if constexpr (TYPE == Q2_K) {  // isc = sc & 15, imn = sc >> 4
    const __m256i d0 = dw2(gb, 20, h);
    _mm256_store_ps(d.d + o, half_lo2(d0));
    _mm256_store_ps(d.dmin + o, half_hi2(d0));
    for (int j = 0; j < 16; j++) {
      const __m256i sc = dw2(gb, j / 4, h);
      _mm256_store_si256(reinterpret_cast<__m256i*>(d.isc[j] + o), bits2(sc, 8 * (j % 4), 15));
      _mm256_store_ps(d.m[j] + o, _mm256_cvtepi32_ps(bits2(sc, 8 * (j % 4) + 4, 15)));
    }
  } else if constexpr (TYPE == Q3_K) {  // isc = sc - 32, the 6-bit sc split in 4 + 2 bits
    _mm256_store_ps(d.d + o, half_lo2(dw2(gb, 27, h)));
    _mm256_store_ps(d.dmin + o, zero);
    for (int j = 0; j < 16; j++) {
      const int lb = j < 8 ? j : j - 8;  // the byte holding the low 4 bits (its low nibble for j < 8)
      const __m256i low = bits2(dw2(gb, 24 + lb / 4, h), 8 * (lb % 4) + (j < 8 ? 0 : 4), 15);
      const __m256i high = bits2(dw2(gb, 26, h), 8 * (j & 3) + 2 * (j >> 2), 3);
      _mm256_store_si256(reinterpret_cast<__m256i*>(d.isc[j] + o), _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)), _mm256_set1_epi32(32)));
    }
  } else {
    static_assert(TYPE == Q6_K, "a type with an AVX2 decoder");
    _mm256_store_ps(d.d + o, half_lo2(dw2(gb, 52, h)));
    _mm256_store_ps(d.dmin + o, zero);
    for (int j = 0; j < 16; j++) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(d.isc[j] + o), _mm256_srai_epi32(_mm256_slli_epi32(dw2(gb, 48 + j / 4, h), 24 - 8 * (j % 4)), 24));
      _mm256_store_ps(d.m[j] + o, zero);
    }
  }
}

// The block decoded into d: u = the signed q (as decode_group_signed stores them), so the kernels
// reading it have no offset term to take off each sub-block's sums, and the scales.
template <int TYPE, int BLOCK, class Src>
PW_AVX2 PW_INLINE void values2(const uint8_t* gb, Decoded& d) {
  for (int h = 0; h < 2; h++) {
    const Src src{gb, h};
#pragma GCC unroll 64
    for (int qi = 0; qi < BLOCK / 4; qi++) {
      __m256i q = src.quad(qi);
      if constexpr (Src::kTo128 != 128) q = _mm256_add_epi8(q, _mm256_set1_epi8(static_cast<char>(Src::kTo128 - 128)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(&d.u[qi][8 * h]), q);
    }
    scales2<TYPE>(gb, h, d);
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2 kernels: 16-bit products (vpmaddwd: 16-bit weights times v, pairs summed in int32 without
// saturation), 4 rows x 4 values per vector; the float steps lane-wise on two halves of 8 rows,
// the same operations as the other families.

// A block's q widened to 16 bits once (vpmaddwd multiplies signed words), for the passes of many
// activation rows over it (widened per pass, the widening took as many instructions as the
// products). w[qi][half] holds the half's 8 rows as in-lane unpacks leave them: rows 0, 1 | 4, 5
// (4 values each), then rows 2, 3 | 6, 7 (the order of every weight provider below).
struct Wide {
  alignas(32) int16_t w[kMaxBlock / 4][2][32];
};

// Widens the block at gb straight from its source's registers (no byte copy in L1 first). A
// 256-value block (SUB: its sub-block size) is widened with each q times its sub-block's isc (read
// from d, so scales2 runs first): the passes then sum isc * q * v straight into a batch's int32
// sums (block_rows_avx2_k), with no product by isc and no reduction per sub-block. |isc * q| <=
// 4096 fits a word for every such type (Q6_K's -128 * -32 the largest), and the sums obey k_batch's
// bound, being the same products.
template <int BLOCK, int SUB, class Src>
PW_AVX2 PW_INLINE void widen(const uint8_t* gb, const Decoded& d, Wide& wd) {
  // isc of rows 0, 1 | 4, 5 (rep0) and 2, 3 | 6, 7 (rep1), each word over its row's 4 values, from
  // the half's 8 isc packed to words in each lane.
  const __m256i rep0 = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);
  const __m256i rep1 = _mm256_setr_epi8(4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7);
  constexpr int kRun = SUB > 0 ? SUB / 4 : BLOCK / 4;  // quads sharing one isc
  // Types whose q is never negative (Q4_K, Q5_K, Q2_K, Q4_1, Q5_1) widen with zeros.
  constexpr bool kUnsigned = Src::kTo128 == 128;
  for (int h = 0; h < 2; h++) {
    const Src src{gb, h};
    __m256i isc0 = _mm256_setzero_si256(), isc1 = isc0;
#pragma GCC unroll 64
    for (int qi = 0; qi < BLOCK / 4; qi++) {
      if (SUB > 0 && qi % kRun == 0) {
        const __m256i i32 = _mm256_load_si256(reinterpret_cast<const __m256i*>(d.isc[qi / kRun] + 8 * h));
        const __m256i i16 = _mm256_packs_epi32(i32, i32);
        isc0 = _mm256_shuffle_epi8(i16, rep0);
        isc1 = _mm256_shuffle_epi8(i16, rep1);
      }
      __m256i q = src.quad(qi);
      if constexpr (Src::kTo128 != 128) q = _mm256_add_epi8(q, _mm256_set1_epi8(static_cast<char>(Src::kTo128 - 128)));
      const __m256i sign = kUnsigned ? _mm256_setzero_si256() : _mm256_cmpgt_epi8(_mm256_setzero_si256(), q);
      __m256i w0 = _mm256_unpacklo_epi8(q, sign), w1 = _mm256_unpackhi_epi8(q, sign);
      if constexpr (SUB > 0) {
        w0 = _mm256_mullo_epi16(w0, isc0);
        w1 = _mm256_mullo_epi16(w1, isc1);
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(wd.w[qi][h]), w0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(wd.w[qi][h] + 16), w1);
    }
  }
}

// The weights of the AVX2 sums, three ways: w(qi, half, w0, w1) gives value quad qi of the half's
// 8 rows as 16-bit u = q + kOff (kOff 0: the signed q), as in-lane unpacks leave them: rows 0, 1 |
// 4, 5 in w0, rows 2, 3 | 6, 7 in w1. vpmaddwd against the quad's activations then leaves two pair
// sums per row, which reduce_pairs adds with the rows in order.
//
// A block decoded into L1 (values2), widened here by in-lane unpacks with the sign from a compare:
// M = 1 1.09-1.13x, M = 2-3 1.01-1.06x its widening by sign-extending 16-byte loads (which cross
// lanes, slow on Zen 3), and level with unpacking q + 128 and taking the offset's term off each
// sub-block's sums.
struct FromU {
  const Decoded& d;
  static constexpr int kOff = 0;
  PW_AVX2 PW_INLINE void w(int qi, int half, __m256i& w0, __m256i& w1) const {
    const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint8_t*>(d.u[qi]) + 32 * half));
    const __m256i sign = _mm256_cmpgt_epi8(_mm256_setzero_si256(), q);
    w0 = _mm256_unpacklo_epi8(q, sign);
    w1 = _mm256_unpackhi_epi8(q, sign);
  }
};
struct FromWide {  // widened once (Wide; a 256-value block's q times isc)
  const Wide& wd;
  static constexpr int kOff = 0;
  PW_AVX2 PW_INLINE void w(int qi, int half, __m256i& w0, __m256i& w1) const {
    w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wd.w[qi][half]));
    w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wd.w[qi][half] + 16));
  }
};
template <class Src, class = void>
struct NibbleSrc : std::false_type {};
template <class Src>
struct NibbleSrc<Src, std::void_t<decltype(&Src::raw)>> : std::true_type {};

template <class Src>
struct FromSrc {  // streamed: the source's bytes in registers (u = q + the type's own offset)
  using Source = Src;
  const uint8_t* gb;
  static constexpr int kOff = 128 - Src::kTo128;
  PW_AVX2 PW_INLINE void w(int qi, int half, __m256i& w0, __m256i& w1) const {
    const Src src{gb, half};
    if constexpr (NibbleSrc<Src>::value) {
      // Widened first: a 16-bit lane then holds one byte, its high nibble is one shift away and
      // its low one a mask, and the two quads of a load share its two unpacks (6 ops for the pair
      // where splitting the bytes first took 7).
      const __m256i g = src.raw(qi);
      w0 = _mm256_unpacklo_epi8(g, _mm256_setzero_si256());
      w1 = _mm256_unpackhi_epi8(g, _mm256_setzero_si256());
      if (Src::high(qi)) {
        w0 = _mm256_srli_epi16(w0, 4);
        w1 = _mm256_srli_epi16(w1, 4);
      } else {
        w0 = _mm256_and_si256(w0, _mm256_set1_epi16(0x0F));
        w1 = _mm256_and_si256(w1, _mm256_set1_epi16(0x0F));
      }
    } else {
      const __m256i u = src.quad(qi);
      w0 = _mm256_unpacklo_epi8(u, _mm256_setzero_si256());
      w1 = _mm256_unpackhi_epi8(u, _mm256_setzero_si256());
    }
  }
};

// What a block prefetches for the blocks ahead (tile16_avx2_t's GroupAhead), as measured fastest
// from memory (kernel-ab, 2 threads):
//   - Q4_K, Q5_K and Q6_K: the next block's 36 to 53 lines spread over the kernel's first pass
//     over this one, a share per sub-block (prefetch_share). Issued at once before the block they
//     held the core's L1 miss buffers: spread, Q6_K ran 1.18-1.42x at M = 1 to 3, Q5_K 1.13-1.29x,
//     Q4_K 1.01-1.19x.
//   - The 32-value types: the block ~7 KB ahead (GroupAhead::far) at once, not the next one
//     (5 to 9 lines, a few hundred bytes ahead: less than the memory's latency at their speed):
//     M = 1 1.04-1.47x, M = 2 0.95-1.19x (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL).
//   - Q2_K, Q3_K and IQ4_XS: the next block at once. Spread, Q2_K and Q3_K ran 0.66-0.98x; the
//     far one, 0.81-1.15x.
enum class Ahead { Spread, Far, Next };
constexpr Ahead prefetch_plan(int type, int block) {
  if (type == Q4_K || type == Q5_K || type == Q6_K) return Ahead::Spread;
  return block == 32 ? Ahead::Far : Ahead::Next;
}
PW_INLINE void prefetch_lines(const uint8_t* p, int lines) {
  if (p)
    for (int c = 0; c < lines; c++) _mm_prefetch(reinterpret_cast<const char*>(p + 64 * c), _MM_HINT_T0);
}
PW_INLINE void prefetch_share(const GroupAhead& a, int step, int steps) {
  if (!a.next) return;
  const int per = (a.lines + steps - 1) / steps;
  for (int c = step * per; c < std::min(a.lines, (step + 1) * per); c++) _mm_prefetch(reinterpret_cast<const char*>(a.next + 64 * c), _MM_HINT_T0);
}

// p, as a value the compiler cannot see through. The rows' activation pointers of a block are
// formed once per block this way, and its quads read them at constant offsets: otherwise GCC
// hoisted one address per quad of the unrolled block out of the block loop, kept them on the
// stack and loaded one per quad.
template <class T>
PW_INLINE T* opaque(T* p) {
  asm("" : "+r"(p));
  return p;
}

// The block's activations (its first value) of rows m0 .. m0 + MR.
template <int MR>
PW_INLINE void block_acts(const Task& t, int64_t m0, int64_t k0, const int16_t** xv) {
  for (int i = 0; i < MR; i++) xv[i] = opaque(t.act[m0 + i].v + k0);
}

// Pair sums p[NH i + h] (w0's, w1's) of sub-block si for activation rows xv[i] (the block's
// values) and the weight rows of half half0 + h. With NH = 2 both halves' weights meet each
// broadcast activation quad (one broadcast for 4 products instead of 2).
template <int SUB, int MR, int NH, class W>
PW_AVX2 PW_INLINE void pair_sums(const W& wt, const int16_t* const* xv, int si, int half0, __m256i (*p)[2]) {
  for (int r = 0; r < MR * NH; r++) p[r][0] = p[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int qd = 0; qd < SUB / 4; qd++) {
    const int qi = si * (SUB / 4) + qd;
    __m256i w[NH][2];
    for (int h = 0; h < NH; h++) wt.w(qi, half0 + h, w[h][0], w[h][1]);
    for (int i = 0; i < MR; i++) {
      int64_t v4;
      std::memcpy(&v4, xv[i] + 4 * qi, 8);
      const __m256i xq = _mm256_set1_epi64x(v4);
      for (int h = 0; h < NH; h++) {
        __m256i* pr = p[NH * i + h];
        pr[0] = _mm256_add_epi32(pr[0], _mm256_madd_epi16(w[h][0], xq));
        pr[1] = _mm256_add_epi32(pr[1], _mm256_madd_epi16(w[h][1], xq));
        // Keeps the sums one running chain each: GCC reassociated the integer adds of an unrolled
        // block into trees whose partial sums spilled (on streamed and widened blocks 1.1-1.3x
        // without them; the decoded block's path, FromU, ran slower with this barrier: 0.8-0.9x
        // when it widened by sign-extending loads, 0.93x by unpacks).
        if constexpr (!std::is_same_v<W, FromU>) asm("" : "+x"(pr[0]), "+x"(pr[1]));
      }
    }
  }
}

// A row's two pair sums of each weight row, added: the 8 rows in order (w0's rows 0, 1 | 4, 5 and
// w1's 2, 3 | 6, 7 interleave so in each lane).
PW_AVX2 PW_INLINE __m256i reduce_pairs(__m256i p0, __m256i p1) { return _mm256_hadd_epi32(p0, p1); }

// The 32-value contract for one block, on two halves of 8 weight rows, NH halves a pass. Without
// HAS_MIN (the types whose m is always 0) c = a * I skips "- 0 * X", as the AVX-512 kernel: only a
// zero's sign can differ, and none survives into acc.
template <int MR, int NH, bool HAS_MIN, class W>
PW_AVX2 PW_INLINE void block_rows_avx2(const W& wt, const Decoded& d, const Task& t, int64_t blk, int64_t m0, float* accp) {
  const int16_t* xv[MR];
  block_acts<MR>(t, m0, blk * 32, xv);
  for (int half0 = 0; half0 < 2; half0 += NH) {
    __m256i p[MR * NH][2];
    pair_sums<32, MR, NH>(wt, xv, 0, half0, p);
    for (int i = 0; i < MR; i++) {
      const ActRow& x = t.act[m0 + i];
      const int32_t X = x.sum16[2 * blk] + x.sum16[2 * blk + 1];
      for (int h = 0; h < NH; h++) {
        const int half = half0 + h;
        // I = sum(u v) - off X = sum(q v), exactly.
        __m256i I = reduce_pairs(p[NH * i + h][0], p[NH * i + h][1]);
        if constexpr (W::kOff != 0) I = _mm256_sub_epi32(I, _mm256_set1_epi32(X * W::kOff));
        __m256 c = _mm256_mul_ps(_mm256_load_ps(d.a[0] + 8 * half), _mm256_cvtepi32_ps(I));
        if constexpr (HAS_MIN) c = _mm256_sub_ps(c, _mm256_mul_ps(_mm256_load_ps(d.m[0] + 8 * half), _mm256_cvtepi32_ps(_mm256_set1_epi32(X))));
        float* a = accp + (m0 + i) * kTileRows + 8 * half;
        _mm256_store_ps(a, _mm256_add_ps(_mm256_load_ps(a), _mm256_mul_ps(_mm256_set1_ps(x.s[blk]), c)));
      }
    }
  }
}

// A batch's exact int32 sums of 8 weight rows added into S (two registers of 4 doubles).
PW_AVX2 PW_INLINE void add_batch(__m256d* S, __m256i v) {
  S[0] = _mm256_add_pd(S[0], _mm256_cvtepi32_pd(_mm256_castsi256_si128(v)));
  S[1] = _mm256_add_pd(S[1], _mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1)));
}
// Sub-block si's step of the m term's fma chain tm (activation row x, the 8 rows of `half`).
template <int SUB>
PW_AVX2 PW_INLINE void min_step(const ActRow& x, const Decoded& d, int64_t blk, int si, int half, __m256& tm) {
  const __m256 Xf = _mm256_set1_ps(SUB == 32 ? x.sumf32[blk * 8 + si] : x.sumf16[blk * 16 + si]);
  const __m256 mv = _mm256_load_ps(d.m[si] + 8 * half);
  tm = si == 0 ? _mm256_mul_ps(Xf, mv) : _mm256_fmadd_ps(Xf, mv, tm);
}

// One sub-block's step of block_rows_avx2_k (state r = NH i + h: activation row i, half half0 + h),
// with its share of the next block's prefetches where `ahead` is given.
template <int SUB, int MR, int NH, bool HAS_MIN, int BATCH, class W>
PW_AVX2 PW_INLINE void k_sub_avx2(const W& wt, const Decoded& d, const Task& t, const int16_t* const* xv, int64_t blk, int64_t m0, int half0,
                                  int si, __m256d (*S)[2], __m256i* B, __m256* tm, const GroupAhead* ahead) {
  constexpr int kSubs = 256 / SUB;
  if (ahead) prefetch_share(*ahead, (half0 / NH) * kSubs + si, kSubs * (2 / NH));
  __m256i p[MR * NH][2];
  pair_sums<SUB, MR, NH>(wt, xv, si, half0, p);
  for (int i = 0; i < MR; i++) {
    const ActRow& x = t.act[m0 + i];
    for (int h = 0; h < NH; h++) {
      const int r = NH * i + h, half = half0 + h;
      __m256i I = reduce_pairs(p[r][0], p[r][1]);
      if constexpr (W::kOff != 0) {  // I = sum(u v) - off X = sum(q v), exactly
        const int32_t* s16 = x.sum16 + (blk * 256 + si * SUB) / 16;
        I = _mm256_sub_epi32(I, _mm256_set1_epi32((SUB == 32 ? s16[0] + s16[1] : s16[0]) * W::kOff));
      }
      const __m256i P = _mm256_mullo_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(d.isc[si] + 8 * half)), I);
      B[r] = si % BATCH == 0 ? P : _mm256_add_epi32(B[r], P);
      if (si % BATCH == BATCH - 1) add_batch(S[r], B[r]);
      if constexpr (HAS_MIN) min_step<SUB>(x, d, blk, si, half, tm[r]);
    }
  }
}

// The super-block contract (kernels.h) on AVX2: each sub-block's I times isc summed in int32 over
// BATCH sub-blocks (the AVX-512 sources' kBatch: the type's bound keeps that exact), each batch
// into S exactly (doubles, 4 lanes a register), the min's fma chain, one float epilogue; NH halves
// of 8 weight rows a pass. (Each sub-block's product converted to doubles took as many
// instructions as its integer sums; multiplying the pair sums by isc before reducing them, with
// the offset's term apart, ran 0.8-0.95x on Q6_K.)
template <int SUB, int MR, int NH, bool HAS_MIN, int BATCH, class W>
PW_AVX2 PW_INLINE void block_rows_avx2_k(const W& wt, const Decoded& d, const Task& t, int64_t blk, int64_t m0, float* accp,
                                         const GroupAhead* ahead) {
  static_assert((256 / SUB) % BATCH == 0, "int32 batches of whole sub-blocks");
  const int16_t* xv[MR];
  block_acts<MR>(t, m0, blk * 256, xv);
  for (int half0 = 0; half0 < 2; half0 += NH) {
    __m256d S[MR * NH][2];
    __m256i B[MR * NH];
    __m256 tm[MR * NH];
    for (int r = 0; r < MR * NH; r++) {
      S[r][0] = S[r][1] = _mm256_setzero_pd();
      tm[r] = _mm256_setzero_ps();
    }
    if constexpr (std::is_same_v<W, FromWide>) {
      // isc is in the weights (widen): a batch's pair sums stay in the registers, one reduction a
      // batch, S the same exact integer. The m term's chain after them, in the same order.
      constexpr int kBatches = 256 / SUB / BATCH;
      for (int b = 0; b < kBatches; b++) {
        if (ahead) prefetch_share(*ahead, (half0 / NH) * kBatches + b, kBatches * (2 / NH));
        __m256i p[MR * NH][2];
        pair_sums<SUB * BATCH, MR, NH>(wt, xv, b, half0, p);
        for (int r = 0; r < MR * NH; r++) add_batch(S[r], reduce_pairs(p[r][0], p[r][1]));
      }
      if constexpr (HAS_MIN)
        for (int si = 0; si < 256 / SUB; si++)
          for (int i = 0; i < MR; i++)
            for (int h = 0; h < NH; h++) min_step<SUB>(t.act[m0 + i], d, blk, si, half0 + h, tm[NH * i + h]);
    } else if constexpr (!std::is_same_v<W, FromU>) {
      // Streamed: the whole block unrolled, so each quad's bit fields are constants (as the AVX-512
      // streaming path; a run-time position costs shifts by a register and selects). A decoded
      // block has no bit fields: FromU unrolled so ran 0.68-0.73x.
#pragma GCC unroll 16
      for (int si = 0; si < 256 / SUB; si++) k_sub_avx2<SUB, MR, NH, HAS_MIN, BATCH>(wt, d, t, xv, blk, m0, half0, si, S, B, tm, ahead);
    } else {
      for (int si = 0; si < 256 / SUB; si++) k_sub_avx2<SUB, MR, NH, HAS_MIN, BATCH>(wt, d, t, xv, blk, m0, half0, si, S, B, tm, ahead);
    }
    for (int i = 0; i < MR; i++)
      for (int h = 0; h < NH; h++) {
        const int r = NH * i + h, half = half0 + h;
        const __m256 dd = _mm256_load_ps(d.d + 8 * half);
        const __m256 Sf = _mm256_set_m128(_mm256_cvtpd_ps(S[r][1]), _mm256_cvtpd_ps(S[r][0]));
        __m256 c;
        if constexpr (HAS_MIN) c = _mm256_fmsub_ps(dd, Sf, _mm256_mul_ps(_mm256_load_ps(d.dmin + 8 * half), tm[r]));
        else c = _mm256_mul_ps(dd, Sf);
        float* a = accp + (m0 + i) * kTileRows + 8 * half;
        _mm256_store_ps(a, _mm256_fmadd_ps(_mm256_set1_ps(t.act[m0 + i].s[blk * 8]), c, _mm256_load_ps(a)));
      }
  }
}

// Every activation row against one block, in passes of 2 rows; a widened 256-value block in
// passes of 4 (each weight load then serves 4 rows: 1.03-1.10x at M = 16-512; the 32-value types
// ran 0.91-1.05x that way, and before the running chains of pair_sums 4-row passes spilled). A
// lone row takes both halves of the weight rows in one pass where that measured faster (NH1).
template <class W>
constexpr int lone_row_halves() {
  if constexpr (std::is_same_v<W, FromU>) return 2;
  else if constexpr (std::is_same_v<W, FromWide>) return 1;
  else return NibbleSrc<typename W::Source>::value ? 2 : 1;
}
// (ahead: the next block's prefetches to spread over the first pass, or nullptr.)
template <int BLOCK, int SUB, bool HAS_MIN, int BATCH, class W>
PW_AVX2 PW_INLINE void rows_pass_avx2(const W& wt, const Decoded& d, const Task& t, int64_t blk, float* accp, const GroupAhead* ahead) {
  constexpr int NH1 = lone_row_halves<W>();
  int64_t m = 0;
  if constexpr (BLOCK == 256) {
    if constexpr (std::is_same_v<W, FromWide>)
      for (; m + 4 <= t.M; m += 4) block_rows_avx2_k<SUB, 4, 1, HAS_MIN, BATCH>(wt, d, t, blk, m, accp, m == 0 ? ahead : nullptr);
    for (; m + 2 <= t.M; m += 2) block_rows_avx2_k<SUB, 2, 1, HAS_MIN, BATCH>(wt, d, t, blk, m, accp, m == 0 ? ahead : nullptr);
    for (; m < t.M; m++) block_rows_avx2_k<SUB, 1, NH1, HAS_MIN, BATCH>(wt, d, t, blk, m, accp, m == 0 ? ahead : nullptr);
  } else {
    for (; m + 2 <= t.M; m += 2) block_rows_avx2<2, 1, HAS_MIN>(wt, d, t, blk, m, accp);
    for (; m < t.M; m++) block_rows_avx2<1, NH1, HAS_MIN>(wt, d, t, blk, m, accp);
  }
}

// A block of a type and its contract's parameters: its AVX2 decoder (a Src2 source) and whether
// fewer than 4 activation rows stream it from the weights' bytes.
template <int TYPE, int BLOCK, int SUB, bool HAS_MIN, int BATCH, class Src, bool STREAM>
struct Avx2Type {};

// With fewer than 4 activation rows (decode) a streaming type's block is streamed from the
// weights' bytes, another type's decoded into L1 (values2); from 4 rows on, the block is widened
// once for the passes.
template <int TYPE, int BLOCK, int SUB, bool HAS_MIN, int BATCH, class Src, bool STREAM>
PW_AVX2 void block_avx2(Avx2Type<TYPE, BLOCK, SUB, HAS_MIN, BATCH, Src, STREAM>, const uint8_t* gb, Decoded& d, Wide& wide, const Task& t,
                        int64_t blk, float* accp, const GroupAhead& a) {
  constexpr Ahead plan = prefetch_plan(TYPE, BLOCK);
  const GroupAhead* spread = plan == Ahead::Spread ? &a : nullptr;
  if constexpr (plan != Ahead::Spread) prefetch_lines(plan == Ahead::Far ? a.far : a.next, a.lines);
  if constexpr (STREAM) {
    if (t.M < 4) {
      for (int h = 0; h < 2; h++) scales2<TYPE>(gb, h, d);
      rows_pass_avx2<BLOCK, SUB, HAS_MIN, BATCH>(FromSrc<Src>{gb}, d, t, blk, accp, spread);
      return;
    }
  }
  if (t.M >= 4) {
    for (int h = 0; h < 2; h++) scales2<TYPE>(gb, h, d);
    widen<BLOCK, BLOCK == 256 ? SUB : 0, Src>(gb, d, wide);
    rows_pass_avx2<BLOCK, SUB, HAS_MIN, BATCH>(FromWide{wide}, d, t, blk, accp, spread);
  } else {
    values2<TYPE, BLOCK, Src>(gb, d);
    rows_pass_avx2<BLOCK, SUB, HAS_MIN, BATCH>(FromU{d}, d, t, blk, accp, spread);
  }
}

template <class Ty>
PW_AVX2 void tile16_avx2_t(Ty ty, const TypeInfo& ti, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, float* out) {
  Decoded d;  // on the stack: a thread_local costs a __tls_get_addr call per use in an addon
  Wide wide;
  std::fill(out, out + t.M * kTileRows, 0.0f);
  for (int64_t blk = 0; blk < t.K / ti.block; blk++) {
    // Blocks ahead into L1 (block_avx2 issues them: prefetch_plan). Not both the next and the far
    // one, as the AVX-512 kernels do: on a Zen 3 host that ran M = 1 Q4_K 0.73-0.92x, Q6_K 0.85x
    // (in-process A/B; no prefetch at all: 0.6-0.9x).
    block_avx2(ty, part.group_block(data, lr / kGroupRows, blk), d, wide, t, blk, out, group_ahead(part, data, lr, blk));
  }
}

// false (nothing done) for a part the AVX2 kernel does not read: every interleaved type has one.
PW_AVX2 bool tile16_avx2(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, float* out) {
  if (!part.ib) return false;
  TypeInfo ti;
  type_info(t.type, &ti);
  switch (t.type) {
    case Q8_0: tile16_avx2_t(Avx2Type<Q8_0, 32, 32, false, 1, Q8Src2, true>{}, ti, t, part, data, lr, out); return true;
    case Q4_0: tile16_avx2_t(Avx2Type<Q4_0, 32, 32, false, 1, Nib32Src2<120>, true>{}, ti, t, part, data, lr, out); return true;
    case Q4_1: tile16_avx2_t(Avx2Type<Q4_1, 32, 32, true, 1, Nib32Src2<128>, true>{}, ti, t, part, data, lr, out); return true;
    case IQ4_NL: tile16_avx2_t(Avx2Type<IQ4_NL, 32, 32, false, 1, Iq4NlSrc2, true>{}, ti, t, part, data, lr, out); return true;
    case Q5_0: tile16_avx2_t(Avx2Type<Q5_0, 32, 32, false, 1, Q5Src2<112>, true>{}, ti, t, part, data, lr, out); return true;
    case Q5_1: tile16_avx2_t(Avx2Type<Q5_1, 32, 32, true, 1, Q5Src2<128>, true>{}, ti, t, part, data, lr, out); return true;
    case Q4_K: tile16_avx2_t(Avx2Type<Q4_K, 256, 32, true, k_batch(Q4_K), Q4KSrc2, true>{}, ti, t, part, data, lr, out); return true;
    case Q5_K: tile16_avx2_t(Avx2Type<Q5_K, 256, 32, true, k_batch(Q5_K), Q5KSrc2, true>{}, ti, t, part, data, lr, out); return true;
    // Q6_K streamed ran 0.82-0.99x its block decoded into L1 at M = 1 and 2 (in-process A/B, with
    // either prefetch scheme), and 0.92-0.94x once a lone row's pass took both halves.
    case Q6_K: tile16_avx2_t(Avx2Type<Q6_K, 256, 16, false, k_batch(Q6_K), Q6KSrc2, false>{}, ti, t, part, data, lr, out); return true;
    case IQ4_XS: tile16_avx2_t(Avx2Type<IQ4_XS, 256, 32, false, k_batch(IQ4_XS), Iq4XsSrc2, true>{}, ti, t, part, data, lr, out); return true;
    case Q2_K: tile16_avx2_t(Avx2Type<Q2_K, 256, 16, true, k_batch(Q2_K), Q2KSrc2, true>{}, ti, t, part, data, lr, out); return true;
    case Q3_K: tile16_avx2_t(Avx2Type<Q3_K, 256, 16, false, k_batch(Q3_K), Q3KSrc2, true>{}, ti, t, part, data, lr, out); return true;
    default: return false;
  }
}

PW_VNNI bool decode_signed(const TypeInfo& ti, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk, int64_t nr,
                           Decoded& d, bool prefetch) {
  const uint8_t* gb = prefetch ? group_block_prefetch(part, data, lr, blk) : part.ib ? part.group_block(data, lr / kGroupRows, blk) : nullptr;
  StoreSigned f{d, true};
  if (with_src(part.ib ? part.type : -1, gb, d, f)) return f.has_min;
  decode16(ti, part, data, lr, blk, nr, d);
  for (int qi = 0; qi < ti.block / 4; qi++)
    _mm512_store_si512(d.u[qi], _mm512_xor_si512(_mm512_load_si512(d.u[qi]), _mm512_set1_epi8(static_cast<char>(0x80))));
  return true;
}

}  // namespace

bool decode_group_signed(const TypeInfo& ti, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t blk,
                         int64_t nr, Decoded& d, bool prefetch) {
  return decode_signed(ti, part, data, lr, blk, nr, d, prefetch);
}

// quantize_act_row (linear.cc) on AVX-512, the same bits: the group's amax by max (exact; a NaN
// value is skipped as std::max skips it, being the first operand), is = kVMax / amax and
// v = round-to-nearest-even(x * is) by the same float division and product (cvtps_epi32 rounds by
// MXCSR, whose default is nearest-even, as nearbyint), and the same integer splits and sums.
PW_VNNI void quantize_act_row_avx512(const float* x, int64_t K, const ActRow& r) {
  const int64_t group = act_group(K);
  float amax = 0.0f;
  for (int64_t b = 0; b < K / kActBlock; b++) {
    const float* xb = x + b * kActBlock;
    const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
    if (b * kActBlock % group == 0) {  // a group's first block: its scale
      __m512 mx = _mm512_setzero_ps();
      for (int64_t j = 0; j < group; j += 16) mx = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + j)), mx);
      amax = _mm512_reduce_max_ps(mx);
    }
    const float is = amax > 0.0f ? static_cast<float>(kVMax) / amax : 0.0f;
    r.s[b] = amax / static_cast<float>(kVMax);
    const __m512 vis = _mm512_set1_ps(is);
    int32_t sum[2];
    for (int h = 0; h < 2; h++) {
      const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(h ? x1 : x0, vis));
      const __m512i hi = _mm512_srai_epi32(_mm512_add_epi32(v, _mm512_set1_epi32(128)), 8);
      const __m512i lo = _mm512_sub_epi32(v, _mm512_slli_epi32(hi, 8));
      const int64_t k = b * kActBlock + 16 * h;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(r.v + k), _mm512_cvtepi32_epi16(v));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(r.hi + k), _mm512_cvtepi32_epi8(hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(r.lo + k), _mm512_cvtepi32_epi8(lo));
      sum[h] = _mm512_reduce_add_epi32(v);
    }
    r.sum16[2 * b] = sum[0];
    r.sum16[2 * b + 1] = sum[1];
    r.sumf16[2 * b] = static_cast<float>(sum[0]);
    r.sumf16[2 * b + 1] = static_cast<float>(sum[1]);
    r.sumf32[b] = static_cast<float>(sum[0] + sum[1]);
  }
}

// The same on AVX2, 8 lanes at a time (the same operations; the int16 store undoes the pack's
// per-128-bit-lane order), without hi and lo: the AVX2 kernels multiply the 16-bit v, and the
// rows' hi and lo, which only the VNNI, AMX and NEON kernels read, stay unwritten.
PW_AVX2 void quantize_act_row_avx2(const float* x, int64_t K, const ActRow& r) {
  const int64_t group = act_group(K);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  float amax = 0.0f;
  for (int64_t b = 0; b < K / kActBlock; b++) {
    const float* xb = x + b * kActBlock;
    if (b * kActBlock % group == 0) {  // a group's first block: its scale
      __m256 mx = _mm256_setzero_ps();
      for (int64_t j = 0; j < group; j += 8) mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb + j), abs_mask), mx);
      const __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      const __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
    }
    const float is = amax > 0.0f ? static_cast<float>(kVMax) / amax : 0.0f;
    r.s[b] = amax / static_cast<float>(kVMax);
    const __m256 vis = _mm256_set1_ps(is);
    __m256i v[4];
    for (int i = 0; i < 4; i++) v[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * i), vis));
    const int64_t k = b * kActBlock;
    for (int h = 0; h < 2; h++)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(r.v + k + 16 * h),
                          _mm256_permute4x64_epi64(_mm256_packs_epi32(v[2 * h], v[2 * h + 1]), _MM_SHUFFLE(3, 1, 2, 0)));
    int32_t sum[2];
    for (int h = 0; h < 2; h++) {
      const __m256i s8 = _mm256_add_epi32(v[2 * h], v[2 * h + 1]);
      const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
      const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
      sum[h] = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
    }
    r.sum16[2 * b] = sum[0];
    r.sum16[2 * b + 1] = sum[1];
    r.sumf16[2 * b] = static_cast<float>(sum[0]);
    r.sumf16[2 * b + 1] = static_cast<float>(sum[1]);
    r.sumf32[b] = static_cast<float>(sum[0] + sum[1]);
  }
}

bool quantize_act_fast(Isa isa, const float* x, int64_t K, const ActRow& r) {
  if (isa >= Isa::Avx512 && has_vnni()) {
    quantize_act_row_avx512(x, K, r);
    return true;
  }
  if (isa < Isa::Avx2) return false;
  quantize_act_row_avx2(x, K, r);
  return true;
}

int rows_fast(Isa isa, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* acc) {
  if (isa >= Isa::Avx512 && has_vnni()) {
    // The AMX kernel where the caller laid the activations out for this type's contract.
    TypeInfo ti;
    type_info(t.type, &ti);
    if (ti.block == 256 ? t.tiles_k : t.tiles) tile16_amx(t, part, data, lr, nr, acc);
    else tile16(t, part, data, lr, nr, acc);
    return static_cast<int>(nr);
  }
  if (isa >= Isa::Avx2) return tile16_avx2(t, part, data, lr, acc) ? static_cast<int>(nr) : 0;
  return 0;
}

}  // namespace quant
}  // namespace pw
#endif  // PW_X86
