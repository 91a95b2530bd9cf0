// Bindings of the paged KV cache: sizing, creation (a tagged handle), commit, writes, block copies
// and slot reads.
#include <string>

#include "bind_kv.h"
#include "binding.h"
#include "ops.h"

namespace pw {

const napi_type_tag kKvCacheTag = {0x7061676577697365ull, 0x6b76636163686531ull};  // "pagewise" "kvcache1"

KvCache& cache_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Napi::Value v = info[i];
  if (!v.IsExternal() || !v.As<Napi::External<KvCache>>().CheckTypeTag(&kKvCacheTag)) {
    type_error(std::string(op) + ": cache must be a handle returned by kvCacheCreate");
  }
  KvCache* c = v.As<Napi::External<KvCache>>().Data();
  if (c->freed) plain_error(std::string(op) + ": the KV cache has been freed");
  return *c;
}

namespace {

struct KvShape {
  int64_t layers, blocks, block_size, kv_heads, head_dim;
  DType dtype;
};

// Reads (numLayers, [numBlocks,] blockSize, kvHeads, headDim, dtype) starting at argument 0.
KvShape kv_shape(const Args& a, bool with_blocks) {
  KvShape s{};
  size_t i = 0;
  s.layers = a.integer(i++, "numLayers", 1, 1 << 20);
  s.blocks = with_blocks ? a.integer(i++, "numBlocks", 1, kMaxDim) : 1;
  s.block_size = a.integer(i++, "blockSize", 1, 1 << 20);
  s.kv_heads = a.integer(i++, "kvHeads", 1, 1 << 20);
  s.head_dim = a.integer(i++, "headDim", 1, 1 << 20);
  s.dtype = a.dtype(i++, "dtype");
  if (s.dtype == DType::F16) a.range_fail("dtype", "must be F32 or BF16 for a KV cache");
  if (s.blocks * s.block_size > kMaxDim) {
    a.range_fail("numBlocks", "* blockSize must fit in an Int32 slot index (< 2^31)");
  }
  return s;
}

Napi::Value KvCacheBlockBytes(const Napi::CallbackInfo& info) {
  // kvCacheBlockBytes(numLayers, blockSize, kvHeads, headDim, dtype)
  Args a(info, "kvCacheBlockBytes", 5);
  KvShape s = kv_shape(a, false);
  const size_t per = mul_checked(a.op(), "block", {s.layers, 2, s.block_size, s.kv_heads, s.head_dim,
                                                   static_cast<int64_t>(dtype_bytes(s.dtype))});
  return Napi::Number::New(info.Env(), static_cast<double>(per));
}

Napi::Value KvCacheCreate(const Napi::CallbackInfo& info) {
  // kvCacheCreate(numLayers, numBlocks, blockSize, kvHeads, headDim, dtype)
  Napi::Env env = info.Env();
  Args a(info, "kvCacheCreate", 6);
  KvShape s = kv_shape(a, true);
  const size_t pool = mul_checked(a.op(), "cache", {s.blocks, 2, s.block_size, s.kv_heads, s.head_dim,
                                                    static_cast<int64_t>(dtype_bytes(s.dtype))});
  mul_checked(a.op(), "cache", {static_cast<int64_t>(pool), s.layers});
  auto* c = new KvCache();
  c->num_layers = s.layers;
  c->num_blocks = s.blocks;
  c->block_size = s.block_size;
  c->kv_heads = s.kv_heads;
  c->head_dim = s.head_dim;
  c->dtype = s.dtype;
  c->pool_bytes = pool;
  if (!kv_cache_alloc(*c)) {
    delete c;
    plain_error("kvCacheCreate: out of memory allocating " + std::to_string(pool * s.layers) + " bytes");
  }
  Napi::External<KvCache> h = Napi::External<KvCache>::New(env, c, [](Napi::Env, KvCache* p) {
    kv_cache_release(*p);
    delete p;
  });
  h.TypeTag(&kKvCacheTag);
  return h;
}

Napi::Value KvCacheFree(const Napi::CallbackInfo& info) {
  Args a(info, "kvCacheFree", 1);
  Napi::Value v = info[0];
  if (!v.IsExternal() || !v.As<Napi::External<KvCache>>().CheckTypeTag(&kKvCacheTag)) {
    type_error("kvCacheFree: cache must be a handle returned by kvCacheCreate");
  }
  kv_cache_release(*v.As<Napi::External<KvCache>>().Data());  // idempotent; the finalizer deletes
  return info.Env().Undefined();
}

Napi::Value KvCacheCommit(const Napi::CallbackInfo& info) {
  // kvCacheCommit(cache, maxBytes)
  Args a(info, "kvCacheCommit", 2);
  KvCache& c = cache_arg(info, 0, a.op());
  const int64_t max_bytes = a.integer(1, "maxBytes", 1, int64_t(1) << 40);
  return Napi::Boolean::New(info.Env(), kv_cache_commit(c, static_cast<size_t>(max_bytes)));
}

Napi::Value KvCacheWrite(const Napi::CallbackInfo& info) {
  // kvCacheWrite(cache, layer, k, v, slotMapping, T)
  Args a(info, "kvCacheWrite", 6);
  KvCache& c = cache_arg(info, 0, a.op());
  const int64_t layer = a.integer(1, "layer", 0, kMaxDim);
  if (layer >= c.num_layers) a.range_fail("layer", "= " + std::to_string(layer) + " is out of range [0, " + std::to_string(c.num_layers) + ")");
  auto k = a.f32(2, "k");
  auto v = a.f32(3, "v");
  auto slots = a.i32(4, "slotMapping");
  const int64_t T = a.integer(5, "T", 0, kMaxDim);
  const size_t n = mul_checked(a.op(), "k", {T, c.kv_heads, c.head_dim});
  a.need_at_least(k, "k", n, "T*kvHeads*headDim");
  a.need_at_least(v, "v", n, "T*kvHeads*headDim");
  a.need_at_least(slots, "slotMapping", static_cast<size_t>(T), "T");
  const int64_t ns = c.num_slots();
  for (int64_t t = 0; t < T; t++) {
    a.need_index("slotMapping", {t}, slots.data[t], -1, ns);
  }
  kv_cache_write(c, layer, k.data, v.data, slots.data, T);
  return info.Env().Undefined();
}

Napi::Value KvCacheCopyBlocks(const Napi::CallbackInfo& info) {
  // kvCacheCopyBlocks(cache, src, dst)
  Args a(info, "kvCacheCopyBlocks", 3);
  KvCache& c = cache_arg(info, 0, a.op());
  auto src = a.i32(1, "src");
  auto dst = a.i32(2, "dst");
  if (src.len != dst.len) {
    a.range_fail("dst", "has " + std::to_string(dst.len) + " elements, src has " + std::to_string(src.len));
  }
  for (size_t i = 0; i < src.len; i++) {
    a.need_index("src", {static_cast<int64_t>(i)}, src.data[i], 0, c.num_blocks, "is not a block id in");
    a.need_index("dst", {static_cast<int64_t>(i)}, dst.data[i], 0, c.num_blocks, "is not a block id in");
  }
  kv_cache_copy_blocks(c, src.data, dst.data, static_cast<int64_t>(src.len));
  return info.Env().Undefined();
}

Napi::Value KvCacheReadSlot(const Napi::CallbackInfo& info) {
  // kvCacheReadSlot(cache, layer, which, slot)
  Napi::Env env = info.Env();
  Args a(info, "kvCacheReadSlot", 4);
  KvCache& c = cache_arg(info, 0, a.op());
  const int64_t layer = a.integer(1, "layer", 0, kMaxDim);
  if (layer >= c.num_layers) a.range_fail("layer", "= " + std::to_string(layer) + " is out of range [0, " + std::to_string(c.num_layers) + ")");
  if (!info[2].IsString()) a.type_fail("which", "must be 'k' or 'v'");
  const std::string which = info[2].As<Napi::String>().Utf8Value();
  if (which != "k" && which != "v") a.range_fail("which", "must be 'k' or 'v', got '" + which + "'");
  const int64_t slot = a.integer(3, "slot", 0, kMaxDim);
  if (slot >= c.num_slots()) a.range_fail("slot", "= " + std::to_string(slot) + " is out of range [0, " + std::to_string(c.num_slots()) + ")");
  const size_t n = static_cast<size_t>(c.kv_heads * c.head_dim);
  Napi::Float32Array out = Napi::Float32Array::New(env, n);
  kv_cache_read_slot(c, layer, which == "v", slot, out.Data());
  return out;
}

}  // namespace

void InitKv(Napi::Env env, Napi::Object exports) {
  bind<KvCacheCreate>(env, exports, "kvCacheCreate");
  bind<KvCacheBlockBytes>(env, exports, "kvCacheBlockBytes");
  bind<KvCacheFree>(env, exports, "kvCacheFree");
  bind<KvCacheCommit>(env, exports, "kvCacheCommit");
  bind<KvCacheWrite>(env, exports, "kvCacheWrite");
  bind<KvCacheCopyBlocks>(env, exports, "kvCacheCopyBlocks");
  bind<KvCacheReadSlot>(env, exports, "kvCacheReadSlot");
}

}  // namespace pw
