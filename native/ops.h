// Kernel entry points behind the N-API bindings (native/bind_*.cc validate every argument before
// calling these, so kernels trust their inputs). Each entry dispatches on active_isa().
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"

namespace pw {

enum class MatmulPrecision : int { F32 = 0, BF16 = 1 };

inline size_t dtype_bytes(DType d) { return d == DType::F32 ? 4 : 2; }

// ---- elementwise (ops_elementwise.cc) ----
void embedding(float* out, const void* table, DType dtype, const int32_t* ids, int64_t T, int64_t hidden);
void rmsnorm(float* out, const float* x, const float* weight, int64_t M, int64_t H, float eps);
// Rotary embedding in two steps: the angles of a step's positions once (cos then sin, [T][head_dim],
// evaluated in double), then every layer's q and k rotated with them (rotate_half convention).
void rope_table(float* cos_sin, const int32_t* positions, int64_t T, int64_t half, const float* inv_freq);
void rope(float* q, float* k, const float* cos_sin, int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);
void silu_mul(float* out, const float* gate, const float* up, int64_t M, int64_t I, int64_t gate_stride,
              int64_t up_stride);
void add(float* out, const float* a, const float* b, int64_t n);
// One row's out[i] = silu(g[i]) * u[i] (accumulate: out[i] += that), on the calling thread: each
// value the same bits as silu_mul gives it, wherever it sits in the row.
void silu_mul_row(float* out, const float* g, const float* u, int64_t n, bool accumulate);

// ---- linear (ops_linear.cc) ----
// out[M,N] = x[M,K] . w[N,K]^T (+ bias). precision BF16 requires dtype BF16.
void linear(float* out, const float* x, const void* w, DType dtype, const float* bias, int64_t M, int64_t N,
            int64_t K, MatmulPrecision precision);

// ---- pre-packed linear (ops_linear_packed.cc) ----
// Weights re-laid out once into contiguous superpanels (see the file's header): one or more
// segments (weight matrices with the same K, each with its own output) or one gate/up pair whose
// output is silu(gate) * up. Results equal linear()'s (and siluMul's, add's) bit for bit.
struct PackedLinear {
  struct Segment {
    int64_t n;       // output columns
    int64_t group0;  // first group
    int64_t ngroups;
  };
  struct Group {  // 4 weight rows: 4 output columns, or (gate/up) 2 gate + the same 2 up columns
    int seg;
    int64_t col0;  // first output column in its segment
    int ncols;     // valid output columns (1..4, gate/up 1..2)
  };
  int64_t K = 0;
  int64_t kb = 16;            // elements per k block: 32 for BF16 precision, 16 for F32
  int64_t nkb = 0, kpad = 0;  // k blocks, K padded to them
  DType dtype = DType::F32;
  MatmulPrecision precision = MatmulPrecision::F32;
  bool silu_pairs = false;
  std::vector<Segment> segs;
  std::vector<Group> groups;
  int64_t ngroups = 0;
  size_t super_bytes = 0;  // a full superpanel (4 groups: [nkb][16][kb] elements); the last may hold fewer
  size_t bytes = 0;
  uint8_t* data = nullptr;
  float* bias = nullptr;  // [ngroups * 4], zero padded; null without bias
  bool freed = false;

  size_t elem_bytes() const;
};

// Sets the shape and allocates (zeroed); false when memory runs out (nothing left allocated).
// seg_n: output columns per segment (silu_pairs: {I}, the gate and up sources are src[0], src[1]).
bool packed_linear_init(PackedLinear& p, const std::vector<int64_t>& seg_n, int64_t K, DType dtype,
                        MatmulPrecision precision, bool silu_pairs, bool has_bias);
// Copies the [n, K] Hugging Face layout sources (and biases, nullptr for none) into the pack.
void packed_linear_fill(PackedLinear& p, const std::vector<const void*>& src, const std::vector<const float*>& bias);
void packed_linear_release(PackedLinear& p);  // idempotent
// Where row r's elements [kb * P.kb, (kb + 1) * P.kb) of a one-segment plain pack lie (its group's
// k block kb: ops_linear_packed.cc's layout), in the source's dtype P.dtype.
const uint8_t* packed_linear_block(const PackedLinear& P, int64_t r, int64_t kb);
// out[t, :] = row ids[t] of a one-segment plain pack, widened to float: the bits embedding() gives
// from the table the pack was filled from (a head tied to the embedding holds the table once).
void embedding_packed(float* out, const PackedLinear& P, const int32_t* ids, int64_t T);
// outs[s] is segment s's [M, n_s] output (silu pairs: one [M, I] output). accumulate: out += result.
void linear_packed(const PackedLinear& p, const float* x, int64_t M, float* const* outs, bool accumulate);

#if PW_X86
// ---- AMX-BF16 linear (ops_linear_amx.cc): what linear() and linear_packed() run at BF16 precision
// when the active family is Isa::AmxBf16 (the caller checks). w: bf16 [N, K]. ----
void linear_amx(float* out, const float* x, const uint16_t* w, const float* bias, int64_t M, int64_t N, int64_t K);
void linear_packed_amx(const PackedLinear& p, const float* x, int64_t M, float* const* outs, bool accumulate);
#endif

// ---- paged KV cache (kv_cache.cc) ----
// One pool per layer. A block holds its K then its V, each [kv_heads][block_size][head_dim]: one
// head's keys of a block are contiguous, and a decode step that reads every head of a block reads
// one contiguous run (the hardware prefetcher's case) instead of two far apart.
struct KvCache {
  int64_t num_layers = 0, num_blocks = 0, block_size = 0, kv_heads = 0, head_dim = 0;
  DType dtype = DType::F32;
  size_t pool_bytes = 0;  // bytes of one layer's pool (K and V of every block)
  std::vector<void*> pools;
  bool freed = false;
  int64_t committed_blocks = 0;  // blocks [0, committed_blocks) have their pages committed

  size_t elem_bytes() const { return dtype_bytes(dtype); }
  int64_t num_slots() const { return num_blocks * block_size; }
  // Elements of one block's K (or V) part, and of a whole block.
  size_t half_elems() const { return static_cast<size_t>(kv_heads * block_size * head_dim); }
  size_t block_bytes() const { return 2 * half_elems() * elem_bytes(); }
  // Element offset of K (value = false) or V of (block, head, offset-in-block) inside a layer pool.
  size_t index(int64_t block, bool value, int64_t head, int64_t off) const {
    return (static_cast<size_t>(2 * block + (value ? 1 : 0)) * kv_heads + head) * block_size * head_dim +
           static_cast<size_t>(off * head_dim);
  }
};

// Allocates the pools (zeroed); returns false (and leaves nothing allocated) when memory runs out.
bool kv_cache_alloc(KvCache& c);
void kv_cache_release(KvCache& c);  // idempotent
// Commits the pages of the next blocks in id order (every layer), about max_bytes in all (at least
// one block). A fresh page costs a fault at its first write, on a VM several microseconds (64 new
// sequences of 256 tokens spent ~0.5 s of a 10 s run faulting in kvCacheWrite); the engine calls
// this while idle, in the order its block pool hands blocks out. True while blocks remain.
bool kv_cache_commit(KvCache& c, size_t max_bytes);
void kv_cache_write(KvCache& c, int64_t layer, const float* k, const float* v, const int32_t* slots, int64_t T);
void kv_cache_copy_blocks(KvCache& c, const int32_t* src, const int32_t* dst, int64_t n);
void kv_cache_read_slot(const KvCache& c, int64_t layer, bool value, int64_t slot, float* out);

// ---- attention (ops_attention.cc) ----
struct AttentionArgs {
  float* out;
  const float* q;
  const KvCache* cache;
  int64_t layer;
  const int32_t* block_tables;
  int64_t max_blocks_per_seq;
  const int32_t* query_start_loc;
  const int32_t* seq_lens;
  int64_t num_seqs, n_heads, n_kv_heads, head_dim;
  float scale;
  int64_t sliding_window;  // > 0: a query at p sees keys p - sliding_window < j <= p only
  float softcap;           // > 0: scores become softcap * tanh(score / softcap)
};
void paged_attention(const AttentionArgs& a);

// ---- machine limits (microbench.cc) ----
// Best-of-`iters` read bandwidth (GB/s) over a `bytes` buffer with every pool thread; < 0 if the
// buffer cannot be allocated.
double bench_memory_bandwidth(size_t bytes, int iters);
// Peak float32 FMA and vdpbf16ps throughput (GFLOP/s) with every pool thread, each thread running
// `accumulators` independent chains (1, 2, 4, 8, 12, 16 or 24; others mean 16; AVX2 caps at 14);
// bf16 is 0 without AVX512_BF16.
void bench_peak_flops(double* f32_gflops, double* bf16_gflops, int accumulators = 16);

}  // namespace pw
