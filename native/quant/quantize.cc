// Reference quantizers for the GGML block formats. See quantize.h.
//
// To give the same bytes as llama.cpp's `llama-quantize` (no importance matrix), each function
// reproduces the arithmetic of ggml's quantize_row_*_ref in the same order: the same float
// expressions, the same rounding helpers (round-half-away for Q8_0, the 1.5*2^23 trick for the
// K-quants, truncating casts for Q4_0/Q5_x), the same searches over candidate scales. This file is
// compiled with -ffp-contract=off like the rest of the addon, so no expression is fused.
#include "quantize.h"

#include "../common.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace pw {

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a >= 0x38800000u) {                                               // normal half
    uint32_t h = (a - 0x38000000u) >> 13;
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
    return static_cast<uint16_t>(sign | h);
  }
  // Subnormal half: adding 0.5 puts the value's 2^-24 units in the low mantissa bits, rounded
  // to nearest even by the FPU.
  float af;
  std::memcpy(&af, &a, 4);
  const float v = af + 0.5f;
  uint32_t vb;
  std::memcpy(&vb, &v, 4);
  return static_cast<uint16_t>(sign | (vb - 0x3f000000u));
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  uint32_t bits;
  if (e == 0x1f) {
    bits = sign | 0x7f800000u | (m << 13);
  } else if (e != 0) {
    bits = sign | ((e + 112u) << 23) | (m << 13);
  } else {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24, exact
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

constexpr int QK = 32;     // Q4_0 / Q5_x / Q8_0 block
constexpr int QK_K = 256;  // K-quant super-block
constexpr float GROUP_MAX_EPS = 1e-15f;

void put_f16(uint8_t* p, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}
float get_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

// Round to nearest (ties to even) for |v| < 2^22, by adding 1.5 * 2^23: the rounding ggml's
// K-quant code uses (not roundf, whose ties go away from zero).
inline int nearest_int(float v) {
  const float t = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &t, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Value and sign of the entry of largest magnitude (first one on ties).
inline float signed_absmax(const float* x, int n, float* amax_out) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (amax < a) {
      amax = a;
      max = x[i];
    }
  }
  *amax_out = amax;
  return max;
}

// ---- 32-value blocks --------------------------------------------------------------------------

// Q8_0: fp16 d, 32 x int8. d = absmax / 127.
void q8_0_block(const float* x, uint8_t* y) {
  float amax = 0;
  for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  put_f16(y, d);
  int8_t* qs = reinterpret_cast<int8_t*>(y + 2);
  for (int j = 0; j < QK; ++j) qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
}

// Q4_0: fp16 d, 16 bytes of nibbles (value j low, j+16 high). d = -(signed absmax) / 8, so the
// extreme value maps to -8 exactly and the other side gets 7 levels.
void q4_0_block(const float* x, uint8_t* y) {
  float amax;
  const float max = signed_absmax(x, QK, &amax);
  const float d = max / -8.f;
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  put_f16(y, d);
  for (int j = 0; j < QK / 2; ++j) {
    const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min<int8_t>(15, static_cast<int8_t>(x0 + 8.5f)));
    const uint8_t q1 = static_cast<uint8_t>(std::min<int8_t>(15, static_cast<int8_t>(x1 + 8.5f)));
    y[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

// Q5_0: fp16 d, 32 high bits, 16 bytes of low nibbles. d = -(signed absmax) / 16.
void q5_0_block(const float* x, uint8_t* y) {
  float amax;
  const float max = signed_absmax(x, QK, &amax);
  const float d = max / -16.f;
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  put_f16(y, d);
  uint32_t qh = 0;
  for (int j = 0; j < QK / 2; ++j) {
    const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min<int8_t>(31, static_cast<int8_t>(x0 + 16.5f)));
    const uint8_t q1 = static_cast<uint8_t>(std::min<int8_t>(31, static_cast<int8_t>(x1 + 16.5f)));
    y[6 + j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10u) >> 4) << (j + QK / 2);
  }
  std::memcpy(y + 2, &qh, 4);
}

// Q5_1: fp16 d, fp16 min, 32 high bits, 16 bytes of low nibbles; x = d * q + min.
void q5_1_block(const float* x, uint8_t* y) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < QK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 31.f;
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  put_f16(y, d);
  put_f16(y + 2, min);
  uint32_t qh = 0;
  for (int j = 0; j < QK / 2; ++j) {
    const float x0 = (x[j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
    const uint8_t q0 = static_cast<uint8_t>(x0 + 0.5f);
    const uint8_t q1 = static_cast<uint8_t>(x1 + 0.5f);
    y[8 + j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10u) >> 4) << (j + QK / 2);
  }
  std::memcpy(y + 4, &qh, 4);
}

// ---- K-quant scale searches -------------------------------------------------------------------

// Symmetric scale for n values on levels [-nmax, nmax-1] minimizing the x²-weighted squared error:
// start from -nmax / (signed absmax), then try 18 nearby inverse scales and keep the one with the
// largest sumlx² / suml2 (the least-squares optimum for that level assignment). L gets l + nmax.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float amax;
  const float max = signed_absmax(x, n, &amax);
  if (amax < GROUP_MAX_EPS) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Asymmetric (scale, min) for n values on levels [0, nmax] minimizing the weighted squared error:
// start from the min/max range, then for nstep+1 candidate inverse scales solve the weighted
// least-squares (scale, min) for that level assignment (min clamped to <= 0) and keep the best.
// Returns the scale; *the_min gets -min (>= 0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = diff * diff;
        err += weights[i] * diff;
      }
      if (err < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = err;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Q4_K / Q5_K share the 12-byte packing of eight 6-bit (scale, min) pairs.
void pack_scale_mins(uint8_t* s, const float* scales, const float* mins, float max_scale, float max_min) {
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < QK_K / 32; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      s[j] = ls;
      s[j + 4] = lm;
    } else {
      s[j + 4] = static_cast<uint8_t>((ls & 0xf) | ((lm & 0xf) << 4));
      s[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      s[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
}

void unpack_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// The common part of Q4_K and Q5_K: per 32-value sub-block a (scale, min) fit weighted by
// rms + |x|, quantized to 6 bits against the super-block maxima, then every value re-quantized
// with the scale and min as stored. Fills d, dmin, scales (bytes 0..15) and L.
void kquant_scale_min_block(const float* x, uint8_t* y, int nmax, float rmin, int nstep, uint8_t* L) {
  float scales[QK_K / 32], mins[QK_K / 32], weights[32];
  uint8_t Laux[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  uint8_t* s = y + 4;
  pack_scale_mins(s, scales, mins, max_scale, max_min);
  put_f16(y, max_scale / 63.f);
  put_f16(y + 2, max_min / 63.f);
  const float d_all = get_f16(y), dmin_all = get_f16(y + 2);
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    unpack_scale_min(j, s, &sc, &m);
    const float d = d_all * sc;
    if (d == 0.f) continue;
    const float dm = dmin_all * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

// Q4_K: fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles (in each 64-value
// chunk, value l low and l+32 high).
void q4_k_block(const float* x, uint8_t* y) {
  uint8_t L[QK_K];
  kquant_scale_min_block(x, y, 15, -1.f, 20, L);
  uint8_t* q = y + 16;
  for (int j = 0; j < QK_K; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

// Q5_K: as Q4_K plus 32 bytes of fifth bits (bit 2c / 2c+1 of qh[l] for chunk c's value l / l+32).
void q5_k_block(const float* x, uint8_t* y) {
  uint8_t L[QK_K];
  kquant_scale_min_block(x, y, 31, -0.5f, 15, L);
  uint8_t* qh = y + 16;
  uint8_t* ql = y + 48;
  std::memset(qh, 0, QK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, fp16 d (last).
// Sixteen 16-value sub-blocks, each with a symmetric scale from make_qx_quants, quantized to
// int8 against the largest-magnitude one.
void q6_k_block(const float* x, uint8_t* y) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  uint8_t* ql = y;
  uint8_t* qh = y + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
  if (max_abs_scale < GROUP_MAX_EPS) {
    std::memset(y, 0, 210);
    return;
  }
  const float iscale = -128.f / max_scale;
  put_f16(y + 208, 1 / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  const float d_all = get_f16(y + 208);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = d_all * sc[j];
    if (d == 0.f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = nearest_int(x[16 * j + ii] / d);
      l = std::max(-32, std::min(31, l));
      L[16 * j + ii] = static_cast<int8_t>(l + 32);
    }
  }
  for (int j = 0; j < QK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0xf, q2 = L[j + l + 32] & 0xf;
      const uint8_t q3 = L[j + l + 64] & 0xf, q4 = L[j + l + 96] & 0xf;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

using BlockFn = void (*)(const float*, uint8_t*);

void f16_block(const float* x, uint8_t* y) { put_f16(y, x[0]); }
void f32_block(const float* x, uint8_t* y) { std::memcpy(y, x, 4); }
// BF16 rounds to nearest even (NaN kept quiet), as ggml's fp32 -> bf16.
void bf16_block(const float* x, uint8_t* y) {
  uint32_t u;
  std::memcpy(&u, x, 4);
  uint16_t h;
  if ((u & 0x7fffffffu) > 0x7f800000u) h = static_cast<uint16_t>((u >> 16) | 64);
  else h = static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
  std::memcpy(y, &h, 2);
}

struct TypeEntry {
  QType type;
  int block_size, block_bytes;
  BlockFn fn;
};

const TypeEntry kTypes[] = {
    {QType::F32, 1, 4, f32_block},       {QType::F16, 1, 2, f16_block},     {QType::BF16, 1, 2, bf16_block},
    {QType::Q4_0, QK, 18, q4_0_block},   {QType::Q5_0, QK, 22, q5_0_block}, {QType::Q5_1, QK, 24, q5_1_block},
    {QType::Q8_0, QK, 34, q8_0_block},   {QType::Q4_K, QK_K, 144, q4_k_block},
    {QType::Q5_K, QK_K, 176, q5_k_block}, {QType::Q6_K, QK_K, 210, q6_k_block},
};

const TypeEntry* find_type(int type) {
  for (const TypeEntry& e : kTypes) {
    if (static_cast<int>(e.type) == type) return &e;
  }
  return nullptr;
}

}  // namespace

bool quantize_type_info(int type, int* block_size, int* block_bytes) {
  const TypeEntry* e = find_type(type);
  if (!e) return false;
  *block_size = e->block_size;
  *block_bytes = e->block_bytes;
  return true;
}

void quantize_rows(int type, const float* src, int64_t rows, int64_t k, uint8_t* dst) {
  const TypeEntry* e = find_type(type);
  const int64_t blocks = k / e->block_size;
  // Rows on the thread pool: each block depends only on its own values, so the split cannot
  // change a byte.
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t b = 0; b < blocks; ++b) {
        e->fn(src + r * k + b * e->block_size, dst + (r * blocks + b) * e->block_bytes);
      }
    }
  });
}

}  // namespace pw
