// rows_fast off x86 (rows_fast.cc is the x86 one): on AArch64 a NEON kernel, elsewhere none (the
// scalar kernel of linear.cc runs every row).
//
// NEON: each weight row's block is decoded once (decode_block, either layout) and serves every
// activation row; the exact integer sums I = sum q v of linear.cc's contract are widening
// multiply-accumulates (int8 q times int16 v into int32 lanes, exact: |I| < 2^28), and the float
// steps are the contract's, in its order, per output: the scalar kernel's bits.
#include <cstring>

#include "kernels.h"
#include "quant.h"

#if !PW_X86
#if PW_ARM64
#include <arm_neon.h>
#endif

namespace pw {
namespace quant {

#if PW_ARM64
namespace {

// sum q[j] * v[j] over n values (n a multiple of 16), exactly.
inline int32_t dot_qv(const int8_t* q, const int16_t* v, int n) {
  int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
  for (int j = 0; j < n; j += 16) {
    const int8x16_t qq = vld1q_s8(q + j);
    const int16x8_t q0 = vmovl_s8(vget_low_s8(qq)), q1 = vmovl_high_s8(qq);
    const int16x8_t v0 = vld1q_s16(v + j), v1 = vld1q_s16(v + j + 8);
    s0 = vmlal_s16(s0, vget_low_s16(q0), vget_low_s16(v0));
    s1 = vmlal_high_s16(s1, q0, v0);
    s0 = vmlal_s16(s0, vget_low_s16(q1), vget_low_s16(v1));
    s1 = vmlal_high_s16(s1, q1, v1);
  }
  return vaddvq_s32(vaddq_s32(s0, s1));
}

// Weight row lr of the part against every activation row: acc[m].
void row_neon(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, float* acc) {
  TypeInfo ti;
  type_info(t.type, &ti);
  const uint8_t* w = part.ib ? nullptr : data + part.offset + static_cast<size_t>(lr) * part.row_bytes;
  alignas(16) uint8_t fb[kMaxBlock + 64];
  alignas(16) int8_t q[kMaxBlock];
  float a[kMaxSubs], mm[kMaxSubs];
  const int64_t nblk = t.K / ti.block;
  const int abs_per_blk = ti.block / kActBlock;
  const int subs_per_ab = kActBlock / ti.sub;
  for (int64_t m = 0; m < t.M; m++) acc[m] = 0.0f;
  for (int64_t blk = 0; blk < nblk; blk++) {
    if (part.ib) {
      deinterleave_block(t.type, part.group_block(data, lr / kGroupRows, blk), static_cast<int>(lr % kGroupRows), fb);
      decode_block(t.type, fb, q, a, mm);
    } else {
      decode_block(t.type, w + static_cast<size_t>(blk) * ti.bytes, q, a, mm);
    }
    for (int64_t m = 0; m < t.M; m++) {
      const ActRow& x = t.act[m];
      float am = acc[m];
      for (int ab = 0; ab < abs_per_blk; ab++) {
        const int64_t kb = blk * abs_per_blk + ab;
        float ts = 0.0f;
        for (int sb = 0; sb < subs_per_ab; sb++) {
          const int si = ab * subs_per_ab + sb;
          const int32_t I = dot_qv(q + si * ti.sub, x.v + blk * ti.block + si * ti.sub, ti.sub);
          const int32_t X = ti.sub == 32 ? x.sum16[2 * kb] + x.sum16[2 * kb + 1] : x.sum16[2 * kb + sb];
          const float c = a[si] * static_cast<float>(I) - mm[si] * static_cast<float>(X);
          ts = sb == 0 ? c : ts + c;
        }
        am = am + x.s[kb] * ts;
      }
      acc[m] = am;
    }
  }
}

}  // namespace
#endif  // PW_ARM64

int rows_fast(Isa isa, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* acc) {
#if PW_ARM64
  if (isa >= Isa::Neon) {
    for (int64_t i = 0; i < nr; i++) row_neon(t, part, data, lr + i, acc + i * t.M);
    return static_cast<int>(nr);
  }
#else
  (void)isa, (void)t, (void)part, (void)data, (void)lr, (void)nr, (void)acc;
#endif
  return 0;
}

}  // namespace quant
}  // namespace pw
#endif  // !PW_X86
