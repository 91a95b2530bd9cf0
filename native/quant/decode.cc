// Block decoding of the GGML quantized formats (layouts: ggml-common.h of llama.cpp; written
// from the format description). Each decoder yields small signed integers q and per sub-block
// floats a, m with value = a * q - m, computed exactly as ggml's dequantization computes it
// (the same float32 products; a subtraction of m = 0 or of a negated offset gives the same bits
// as ggml's plain product or its addition).
#include <cstring>

#include "../common.h"
#include "quant.h"

namespace pw {
namespace quant {
namespace {

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

const int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block's 12 scale bytes.
inline void scale_min_k4(int j, const uint8_t* s, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

}  // namespace

bool type_info(int type, TypeInfo* out) {
  switch (type) {
    case Q4_0: *out = {"Q4_0", 32, 18, 32}; return true;
    case Q4_1: *out = {"Q4_1", 32, 20, 32}; return true;
    case Q5_0: *out = {"Q5_0", 32, 22, 32}; return true;
    case Q5_1: *out = {"Q5_1", 32, 24, 32}; return true;
    case Q8_0: *out = {"Q8_0", 32, 34, 32}; return true;
    case Q2_K: *out = {"Q2_K", 256, 84, 16}; return true;
    case Q3_K: *out = {"Q3_K", 256, 110, 16}; return true;
    case Q4_K: *out = {"Q4_K", 256, 144, 32}; return true;
    case Q5_K: *out = {"Q5_K", 256, 176, 32}; return true;
    case Q6_K: *out = {"Q6_K", 256, 210, 16}; return true;
    case IQ4_NL: *out = {"IQ4_NL", 32, 18, 32}; return true;
    case IQ4_XS: *out = {"IQ4_XS", 256, 136, 32}; return true;
    default: return false;
  }
}

void decode_block(int type, const uint8_t* b, int8_t* q, float* a, float* m) {
  switch (type) {
    case Q8_0: {
      a[0] = h2f(b);
      m[0] = 0.0f;
      std::memcpy(q, b + 2, 32);
      return;
    }
    case Q4_0:
    case IQ4_NL: {
      a[0] = h2f(b);
      m[0] = 0.0f;
      const uint8_t* qs = b + 2;
      for (int j = 0; j < 16; j++) {
        if (type == Q4_0) {
          q[j] = static_cast<int8_t>((qs[j] & 0xF) - 8);
          q[j + 16] = static_cast<int8_t>((qs[j] >> 4) - 8);
        } else {
          q[j] = kIq4Values[qs[j] & 0xF];
          q[j + 16] = kIq4Values[qs[j] >> 4];
        }
      }
      return;
    }
    case Q4_1: {  // d * q + min
      a[0] = h2f(b);
      m[0] = -h2f(b + 2);
      const uint8_t* qs = b + 4;
      for (int j = 0; j < 16; j++) {
        q[j] = static_cast<int8_t>(qs[j] & 0xF);
        q[j + 16] = static_cast<int8_t>(qs[j] >> 4);
      }
      return;
    }
    case Q5_0:
    case Q5_1: {
      const bool one = type == Q5_1;
      a[0] = h2f(b);
      m[0] = one ? -h2f(b + 2) : 0.0f;
      const uint8_t* p = b + (one ? 4 : 2);
      uint32_t qh;
      std::memcpy(&qh, p, 4);
      const uint8_t* qs = p + 4;
      const int off = one ? 0 : 16;
      for (int j = 0; j < 16; j++) {
        const int h0 = ((qh >> j) << 4) & 0x10;
        const int h1 = (qh >> (j + 12)) & 0x10;
        q[j] = static_cast<int8_t>(((qs[j] & 0xF) | h0) - off);
        q[j + 16] = static_cast<int8_t>(((qs[j] >> 4) | h1) - off);
      }
      return;
    }
    case Q2_K:
    case Q3_K:
    case Q4_K:
    case Q5_K:
    case Q6_K:
    case IQ4_XS: {
      KScales ks;
      TypeInfo ti;
      type_info(type, &ti);
      decode_block_k(type, b, q, ks);
      for (int s = 0; s < ti.block / ti.sub; s++) {
        a[s] = ks.d * ks.isc[s];
        m[s] = ks.dmin * ks.imn[s];
      }
      return;
    }
    default: return;
  }
}

void decode_block_k(int type, const uint8_t* b, int8_t* q, KScales& ks) {
  switch (type) {
    case Q2_K: {  // scales[16] qs[64] d dmin; sub-blocks of 16: value = d*(sc&15) * q - dmin*(sc>>4)
      const uint8_t* sc = b;
      const uint8_t* qs = b + 16;
      ks.d = h2f(b + 80);
      ks.dmin = h2f(b + 82);
      int is = 0, y = 0;
      for (int n = 0; n < 256; n += 128, qs += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
          for (int half = 0; half < 2; half++, is++) {
            ks.isc[is] = static_cast<float>(sc[is] & 0xF);
            ks.imn[is] = static_cast<float>(sc[is] >> 4);
            for (int l = 0; l < 16; l++) q[y++] = static_cast<int8_t>((qs[l + 16 * half] >> shift) & 3);
          }
        }
      }
      return;
    }
    case Q3_K: {  // hmask[32] qs[64] scales[12] d; value = d*(sc-32) * (q - (high bit ? 0 : 4))
      const uint8_t* hm = b;
      const uint8_t* qs = b + 32;
      ks.d = h2f(b + 108);
      ks.dmin = 0.0f;
      uint32_t aux[4];
      std::memcpy(aux, b + 96, 12);
      const uint32_t k1 = 0x03030303u, k2 = 0x0f0f0f0fu, tmp = aux[2];
      aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
      aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
      aux[0] = (aux[0] & k2) | (((tmp >> 0) & k1) << 4);
      aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
      int8_t scales[16];
      std::memcpy(scales, aux, 16);
      int is = 0, y = 0;
      uint8_t mask = 1;
      for (int n = 0; n < 256; n += 128, qs += 32) {
        for (int shift = 0; shift < 8; shift += 2, mask = static_cast<uint8_t>(mask << 1)) {
          for (int half = 0; half < 2; half++, is++) {
            ks.isc[is] = static_cast<float>(scales[is] - 32);
            ks.imn[is] = 0.0f;
            for (int l = 0; l < 16; l++) {
              const int i = l + 16 * half;
              q[y++] = static_cast<int8_t>(((qs[i] >> shift) & 3) - ((hm[i] & mask) ? 0 : 4));
            }
          }
        }
      }
      return;
    }
    case Q4_K:
    case Q5_K: {  // d dmin scales[12] (qh[32] for Q5_K) qs[128]; sub-blocks of 32
      const bool five = type == Q5_K;
      ks.d = h2f(b);
      ks.dmin = h2f(b + 2);
      const uint8_t* s = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* qs = b + (five ? 48 : 16);
      int y = 0;
      for (int j = 0; j < 4; j++, qs += 32) {
        for (int half = 0; half < 2; half++) {
          const int is = 2 * j + half;
          int sc, mn;
          scale_min_k4(is, s, &sc, &mn);
          ks.isc[is] = static_cast<float>(sc);
          ks.imn[is] = static_cast<float>(mn);
          for (int l = 0; l < 32; l++) {
            int v = half ? qs[l] >> 4 : qs[l] & 0xF;
            if (five && (qh[l] & (1 << is))) v += 16;
            q[y++] = static_cast<int8_t>(v);
          }
        }
      }
      return;
    }
    case Q6_K: {  // ql[128] qh[64] scales[16] (int8) d; value = (d*sc) * (q - 32), sub-blocks of 16
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
      ks.d = h2f(b + 208);
      ks.dmin = 0.0f;
      for (int i = 0; i < 16; i++) {
        ks.isc[i] = static_cast<float>(sc[i]);
        ks.imn[i] = 0.0f;
      }
      for (int n = 0; n < 2; n++, ql += 64, qh += 32) {
        int8_t* y = q + 128 * n;
        for (int l = 0; l < 32; l++) {
          y[l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
          y[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
          y[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
          y[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
      }
      return;
    }
    case IQ4_XS: {  // d scales_h(u16) scales_l[4] qs[128]; value = d*(ls-32) * kvalues[nibble]
      ks.d = h2f(b);
      ks.dmin = 0.0f;
      uint16_t sh;
      std::memcpy(&sh, b + 2, 2);
      const uint8_t* sl = b + 4;
      const uint8_t* qs = b + 8;
      for (int ib = 0; ib < 8; ib++, qs += 16) {
        const int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
        ks.isc[ib] = static_cast<float>(ls - 32);
        ks.imn[ib] = 0.0f;
        for (int j = 0; j < 16; j++) {
          q[32 * ib + j] = kIq4Values[qs[j] & 0xF];
          q[32 * ib + j + 16] = kIq4Values[qs[j] >> 4];
        }
      }
      return;
    }
    default: return;
  }
}

void dequantize_rows(int type, const uint8_t* src, int64_t rows, int64_t k, float* out) {
  TypeInfo t;
  if (!type_info(type, &t)) return;
  const int64_t nb = rows * (k / t.block);
  int8_t q[kMaxBlock];
  float a[kMaxSubs], m[kMaxSubs];
  for (int64_t i = 0; i < nb; i++, src += t.bytes, out += t.block) {
    decode_block(type, src, q, a, m);
    for (int j = 0; j < t.block; j++) out[j] = a[j / t.sub] * static_cast<float>(q[j]) - m[j / t.sub];
  }
}

void embedding_quant(float* out, const uint8_t* table, int type, const int32_t* ids, int64_t T, int64_t hidden) {
  TypeInfo t;
  if (!type_info(type, &t)) return;
  const size_t row_bytes = static_cast<size_t>(hidden / t.block) * t.bytes;
  for (int64_t i = 0; i < T; i++) {
    dequantize_rows(type, table + static_cast<size_t>(ids[i]) * row_bytes, 1, hidden, out + i * hidden);
  }
}

}  // namespace quant
}  // namespace pw
