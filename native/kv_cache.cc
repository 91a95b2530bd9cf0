// Paged KV cache storage: per layer one K pool and one V pool of num_blocks blocks, each block
// [kv_heads][block_size][head_dim] elements of F32 or BF16 (BF16 rounded to nearest even).
#include <cstring>

#include "ops.h"

namespace pw {

bool kv_cache_alloc(KvCache& c) {
  c.k.assign(static_cast<size_t>(c.num_layers), nullptr);
  c.v.assign(static_cast<size_t>(c.num_layers), nullptr);
  for (int64_t l = 0; l < c.num_layers; l++) {
    c.k[l] = aligned_alloc_zeroed(c.pool_bytes);
    c.v[l] = aligned_alloc_zeroed(c.pool_bytes);
    if (!c.k[l] || !c.v[l]) {
      kv_cache_release(c);
      c.freed = false;
      return false;
    }
  }
  return true;
}

void kv_cache_release(KvCache& c) {
  if (c.freed) return;
  for (void* p : c.k) aligned_free(p, c.pool_bytes);
  for (void* p : c.v) aligned_free(p, c.pool_bytes);
  c.k.clear();
  c.v.clear();
  c.freed = true;
}

void kv_cache_write(KvCache& c, int64_t layer, const float* k, const float* v, const int32_t* slots, int64_t T) {
  const int64_t hd = c.head_dim, H = c.kv_heads;
  for (int64_t t = 0; t < T; t++) {
    const int32_t s = slots[t];
    if (s < 0) continue;
    const int64_t block = s / c.block_size, off = s % c.block_size;
    for (int64_t h = 0; h < H; h++) {
      const size_t idx = c.index(block, h, off);
      const float* ks = k + (t * H + h) * hd;
      const float* vs = v + (t * H + h) * hd;
      if (c.dtype == DType::F32) {
        std::memcpy(static_cast<float*>(c.k[layer]) + idx, ks, hd * sizeof(float));
        std::memcpy(static_cast<float*>(c.v[layer]) + idx, vs, hd * sizeof(float));
      } else {
        uint16_t* kd = static_cast<uint16_t*>(c.k[layer]) + idx;
        uint16_t* vd = static_cast<uint16_t*>(c.v[layer]) + idx;
        for (int64_t d = 0; d < hd; d++) {
          kd[d] = f32_to_bf16(ks[d]);
          vd[d] = f32_to_bf16(vs[d]);
        }
      }
    }
  }
}

void kv_cache_copy_blocks(KvCache& c, const int32_t* src, const int32_t* dst, int64_t n) {
  const size_t block_bytes = c.pool_bytes / static_cast<size_t>(c.num_blocks);
  for (int64_t l = 0; l < c.num_layers; l++) {
    for (void* pool : {c.k[l], c.v[l]}) {
      auto* base = static_cast<uint8_t*>(pool);
      for (int64_t i = 0; i < n; i++) {
        if (src[i] == dst[i]) continue;
        std::memcpy(base + static_cast<size_t>(dst[i]) * block_bytes, base + static_cast<size_t>(src[i]) * block_bytes,
                    block_bytes);
      }
    }
  }
}

void kv_cache_read_slot(const KvCache& c, int64_t layer, bool value, int64_t slot, float* out) {
  const int64_t block = slot / c.block_size, off = slot % c.block_size;
  const void* pool = value ? c.v[layer] : c.k[layer];
  for (int64_t h = 0; h < c.kv_heads; h++) {
    const size_t idx = c.index(block, h, off);
    float* o = out + h * c.head_dim;
    if (c.dtype == DType::F32) {
      std::memcpy(o, static_cast<const float*>(pool) + idx, c.head_dim * sizeof(float));
    } else {
      const uint16_t* p = static_cast<const uint16_t*>(pool) + idx;
      for (int64_t d = 0; d < c.head_dim; d++) o[d] = bf16_to_f32(p[d]);
    }
  }
}

}  // namespace pw
