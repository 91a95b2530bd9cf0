// rows_fast off x86 (rows_fast.cc is the x86 one): on AArch64 a NEON kernel, elsewhere none (the
// scalar kernel of linear.cc runs every row).
//
// NEON: each weight row's block is decoded once (decode_block, either layout) and serves every
// activation row. The exact integer sums I = sum q v of linear.cc's contract come from SDOT where
// the CPU has FEAT_DotProd (int8 q against the int8 halves of v = 256 hi + lo, as the x86 VNNI
// kernel does: I = 256 sum(q hi) + sum(q lo)), else from widening multiply-accumulates (int8 q
// times int16 v into int32 lanes); both exact (|I| < 2^28). The float steps are the contract's, in
// its order, per output: the scalar kernel's bits either way.
#include <cstring>

#include "../simd_neon.h"
#include "kernels.h"
#include "quant.h"

#if !PW_X86
namespace pw {
namespace quant {

#if PW_ARM64
namespace {

#if defined(__clang__)
#define PW_NEON_DOT __attribute__((target("dotprod")))
#else
#define PW_NEON_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

// I[s] = sum over sub-block s (subs of `sub` values, sub a multiple of 16) of q * v, exactly.
void block_sums_mlal(const int8_t* q, const ActRow& x, int64_t k0, int subs, int sub, int32_t* I) {
  const int16_t* v = x.v + k0;
  for (int s = 0; s < subs; s++) {
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
    for (int j = s * sub; j < (s + 1) * sub; j += 16) {
      const int8x16_t qq = vld1q_s8(q + j);
      const int16x8_t q0 = vmovl_s8(vget_low_s8(qq)), q1 = vmovl_high_s8(qq);
      const int16x8_t v0 = vld1q_s16(v + j), v1 = vld1q_s16(v + j + 8);
      s0 = vmlal_s16(s0, vget_low_s16(q0), vget_low_s16(v0));
      s1 = vmlal_high_s16(s1, q0, v0);
      s0 = vmlal_s16(s0, vget_low_s16(q1), vget_low_s16(v1));
      s1 = vmlal_high_s16(s1, q1, v1);
    }
    I[s] = vaddvq_s32(vaddq_s32(s0, s1));
  }
}

PW_NEON_DOT void block_sums_sdot(const int8_t* q, const ActRow& x, int64_t k0, int subs, int sub, int32_t* I) {
  const int8_t* hi = x.hi + k0;
  const int8_t* lo = x.lo + k0;
  for (int s = 0; s < subs; s++) {
    int32x4_t h = vdupq_n_s32(0), l = h;
    for (int j = s * sub; j < (s + 1) * sub; j += 16) {
      const int8x16_t qq = vld1q_s8(q + j);
      h = vdotq_s32(h, qq, vld1q_s8(hi + j));
      l = vdotq_s32(l, qq, vld1q_s8(lo + j));
    }
    I[s] = 256 * vaddvq_s32(h) + vaddvq_s32(l);
  }
}

// Weight row lr of the part against every activation row: the contract's loop (kernels.h) with
// SDOT or widening multiply-accumulate integer sums.
void row_neon(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, float* acc, bool dotprod) {
  if (dotprod) row_reference(t, part, data, lr, acc, block_sums_sdot);
  else row_reference(t, part, data, lr, acc, block_sums_mlal);
}

}  // namespace
#endif  // PW_ARM64

int rows_fast(Isa isa, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* acc) {
#if PW_ARM64
  if (isa >= Isa::Neon) {
    const bool dotprod = cpu_features().dotprod;
    for (int64_t i = 0; i < nr; i++) row_neon(t, part, data, lr + i, acc + i, dotprod);
    return static_cast<int>(nr);
  }
#else
  (void)isa, (void)t, (void)part, (void)data, (void)lr, (void)nr, (void)acc;
#endif
  return 0;
}

bool quantize_act_fast(Isa, const float*, int64_t, const ActRow&) { return false; }

}  // namespace quant
}  // namespace pw
#endif  // !PW_X86
