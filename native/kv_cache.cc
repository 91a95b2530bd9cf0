// Paged KV cache storage: per layer one pool of num_blocks blocks, each block its K then its V as
// [kv_heads][block_size][head_dim] elements of F32 or BF16 (BF16 rounded to nearest even).
#include <algorithm>
#include <cstring>

#include "ops.h"
#include "simd.h"

namespace pw {

bool kv_cache_alloc(KvCache& c) {
  c.pools.assign(static_cast<size_t>(c.num_layers), nullptr);
  for (int64_t l = 0; l < c.num_layers; l++) {
    // 4 KiB pages: a pool is committed page by page, by kv_cache_commit or at a block's first write.
    // Transparent huge pages cost a 2 MiB clear (plus compaction) at each first touch instead:
    // ~30x slower writes of new blocks (256 tokens x 30 layers of a fresh sequence: 285 ms against
    // 10 ms), with no measurable gain in attention.
    c.pools[l] = aligned_alloc_zeroed(c.pool_bytes, false);
    if (!c.pools[l]) {
      kv_cache_release(c);
      c.freed = false;
      return false;
    }
  }
  // Heap-backed (small) pools are committed at allocation.
  if (c.pool_bytes < (size_t(1) << 20)) c.committed_blocks = c.num_blocks;
  return true;
}

bool kv_cache_commit(KvCache& c, size_t max_bytes) {
  const size_t bb = c.block_bytes() * static_cast<size_t>(c.num_layers);
  const int64_t n = std::min<int64_t>(c.num_blocks - c.committed_blocks, std::max<size_t>(1, max_bytes / bb));
  for (void* pool : c.pools) {
    if (n > 0 && !commit_pages(static_cast<uint8_t*>(pool) + static_cast<size_t>(c.committed_blocks) * c.block_bytes(),
                               static_cast<size_t>(n) * c.block_bytes())) {
      c.committed_blocks = c.num_blocks;  // the kernel cannot: pages commit at first write
      return false;
    }
  }
  c.committed_blocks += n;
  return c.committed_blocks < c.num_blocks;
}

void kv_cache_release(KvCache& c) {
  if (c.freed) return;
  for (void* p : c.pools) aligned_free(p, c.pool_bytes);
  c.pools.clear();
  c.freed = true;
}

#if PW_X86
namespace {

PW_AVX512 void to_bf16_avx512(uint16_t* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), simd::to_bf16x16(_mm512_loadu_ps(src + i)));
  for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

}  // namespace
#endif  // PW_X86

void kv_cache_write(KvCache& c, int64_t layer, const float* k, const float* v, const int32_t* slots, int64_t T) {
  const int64_t hd = c.head_dim, H = c.kv_heads;
#if PW_X86
  const bool vec = active_isa() >= Isa::Avx512;
#endif
  // Work unit u: K (u < H) or V (u >= H) of head u % H, every token in order, so even two tokens
  // mapped to one slot leave the same (last) value whatever the thread split.
  auto write = [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) {
      const bool is_v = u >= H;
      const int64_t h = u % H;
      const float* src = is_v ? v : k;
      void* pool = c.pools[layer];
      for (int64_t t = 0; t < T; t++) {
        const int32_t s = slots[t];
        if (s < 0) continue;
        const size_t idx = c.index(s / c.block_size, is_v, h, s % c.block_size);
        const float* row = src + (t * H + h) * hd;
        if (c.dtype == DType::F32) {
          std::memcpy(static_cast<float*>(pool) + idx, row, hd * sizeof(float));
        }
#if PW_X86
        else if (vec) {
          to_bf16_avx512(static_cast<uint16_t*>(pool) + idx, row, hd);
        }
#endif
        else {
          uint16_t* d = static_cast<uint16_t*>(pool) + idx;
          for (int64_t e = 0; e < hd; e++) d[e] = f32_to_bf16(row[e]);
        }
      }
    }
  };
  if (T * H * hd >= (int64_t(1) << 15)) parallel_for(2 * H, write);
  else write(0, 2 * H);
}

void kv_cache_copy_blocks(KvCache& c, const int32_t* src, const int32_t* dst, int64_t n) {
  const size_t block_bytes = c.block_bytes();
  for (int64_t l = 0; l < c.num_layers; l++) {
    auto* base = static_cast<uint8_t*>(c.pools[l]);
    for (int64_t i = 0; i < n; i++) {
      if (src[i] == dst[i]) continue;
      std::memcpy(base + static_cast<size_t>(dst[i]) * block_bytes, base + static_cast<size_t>(src[i]) * block_bytes,
                  block_bytes);
    }
  }
}

void kv_cache_read_slot(const KvCache& c, int64_t layer, bool value, int64_t slot, float* out) {
  const int64_t block = slot / c.block_size, off = slot % c.block_size;
  const void* pool = c.pools[layer];
  for (int64_t h = 0; h < c.kv_heads; h++) {
    const size_t idx = c.index(block, value, h, off);
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
