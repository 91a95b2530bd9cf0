// The activation scheme of the quantized linear op, in one place.
//
// Each activation row is cut into blocks of 32 values; a block with largest magnitude amax gets
// the scale s = amax / kVMax and integers v = round_to_nearest_even(x * (kVMax / amax)), |v| <=
// kVMax (an all-zero block: s = 0, v = 0). That is a 16-bit quantization (step amax / 32512,
// about 128 times finer than llama.cpp's int8 Q8_0 / Q8_K activations, whose rounding is most of
// its error against a float reference). The integer kernels use v split into two int8 halves,
// v = 256 * hi + lo (hi in [-127, 127], lo in [-128, 127]): two vpdpbusd passes over the same
// weight bytes give sum(u * hi) and sum(u * lo), combined exactly as 256 * first + second.
#pragma once
#include <cstdint>

namespace pw {
namespace quant {

constexpr int kActBlock = 32;
constexpr int kVMax = 32512;  // 127 * 256: hi never leaves [-127, 127]

// One activation row quantized: v[K], hi[K], lo[K], s[K / 32], sum16[K / 16] (sum of v over each
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
