// The activation scheme of the quantized linear op, in one place.
//
// Each activation row is cut into groups of 256 values (of 32 where K is not a multiple of 256);
// a group with largest magnitude amax gets the scale s = amax / kVMax and integers v =
// round_to_nearest_even(x * (kVMax / amax)), |v| <= kVMax (an all-zero group: s = 0, v = 0). That
// is a 14-bit quantization (step amax / 8191: 64 times finer than llama.cpp's int8 Q8_K
// activations on the same 256-value groups, whose rounding is most of its error against a float
// reference). One scale per 256 values lets the 256-value weight types sum a whole block in exact
// integers (linear.cc's contract); 14 bits keep every such sum exact in a double and each
// sub-block's sum in int32. The scale is stored per block of 32 (s[K / 32], the same value over a
// group). The integer kernels use v split into two int8 halves, v = 256 * hi + lo (hi in [-32,
// 32], lo in [-128, 127]): two vpdpbusd passes over the same weight bytes give sum(u * hi) and
// sum(u * lo), combined exactly as 256 * first + second.
#pragma once
#include <cstdint>

namespace pw {
namespace quant {

constexpr int kActBlock = 32;
constexpr int kVMax = 8191;
// Values sharing one scale: 256 where K allows.
inline int64_t act_group(int64_t K) { return K % 256 == 0 ? 256 : kActBlock; }

// One activation row quantized: v[K], hi[K], lo[K], s[K / 32] (per block of 32, equal over a group), sum16[K / 16] (sum of v over each
// 16 values, the offset terms of the weight formats), and those sums as floats, what the m terms
// multiply: sumf16[K / 16] = float(sum16[i]), sumf32[K / 32] = float(sum16[2 b] + sum16[2 b + 1])
// (exact: every such sum is below 2^20 in magnitude).
struct ActRow {
  int16_t* v;
  int8_t* hi;
  int8_t* lo;
  float* s;
  int32_t* sum16;
  float* sumf16;
  float* sumf32;
};

// Quantizes x[0, K) (K a multiple of 32) into r. The same bits on every kernel family.
void quantize_act_row(const float* x, int64_t K, const ActRow& r);

}  // namespace quant
}  // namespace pw
