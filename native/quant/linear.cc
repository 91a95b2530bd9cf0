// The linear op on quantized weights: out[m, r] = sum over k of w[r, k] * x[m, k], with w kept in
// its GGML block format and x quantized by the scheme of act_quant.h.
//
// Numerics, the same on every kernel family and whatever M, the other rows or the threads: for
// output (m, r), over the activation blocks b of 32 values in k order,
//   t_b = c_1 (+ c_2)        c_i = a_i * float(I_i) - m_i * float(X_i)  per weight sub-block i in b
//   acc = acc + s_b * t_b    (acc starts at 0; the first block gives 0 + s_0 * t_0)
// where I_i = sum q * v over the sub-block (exact int32), X_i = sum v over it, and a_i, m_i are
// the sub-block's floats of decode_block. Then out = acc (+ bias). The integer sums are exact
// whatever instructions compute them, and the float steps are the same per output, so each
// family's output row m of a batch equals its M = 1 result bit for bit (and every family gives
// the same bits as the scalar one).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../ops.h"
#include "../scratch.h"
#include "act_quant.h"
#include "kernels.h"
#include "quant.h"

namespace pw {
namespace quant {

void quantize_act_row(const float* x, int64_t K, const ActRow& r) {
  const int64_t group = act_group(K);
  float amax = 0.0f;
  for (int64_t b = 0; b < K / kActBlock; b++) {
    const float* xb = x + b * kActBlock;
    if (b * kActBlock % group == 0) {  // a group's first block: its scale
      amax = 0.0f;
      for (int64_t j = 0; j < group; j++) amax = std::max(amax, std::fabs(xb[j]));
    }
    const float is = amax > 0.0f ? static_cast<float>(kVMax) / amax : 0.0f;
    r.s[b] = amax / static_cast<float>(kVMax);
    int32_t sum[2] = {0, 0};
    for (int j = 0; j < kActBlock; j++) {
      const int v = static_cast<int>(std::nearbyint(xb[j] * is));
      const int hi = (v + 128) >> 8;  // floor division: lo = v - 256 hi in [-128, 127]
      r.v[b * kActBlock + j] = static_cast<int16_t>(v);
      r.hi[b * kActBlock + j] = static_cast<int8_t>(hi);
      r.lo[b * kActBlock + j] = static_cast<int8_t>(v - 256 * hi);
      sum[j / 16] += v;
    }
    r.sum16[2 * b] = sum[0];
    r.sum16[2 * b + 1] = sum[1];
    r.sumf16[2 * b] = static_cast<float>(sum[0]);
    r.sumf16[2 * b + 1] = static_cast<float>(sum[1]);
    r.sumf32[b] = static_cast<float>(sum[0] + sum[1]);
  }
}

namespace {

// Scalar reference kernel (any type, either layout): the contract's loop (kernels.h) with plain
// integer sums.
void row_scalar(const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, float* acc) {
  row_reference(t, part, data, lr, acc, [](const int8_t* q, const ActRow& x, int64_t k0, int subs, int sub, int32_t* I) {
    for (int s = 0; s < subs; s++) {
      const int16_t* v = x.v + k0 + s * sub;
      const int8_t* qq = q + s * sub;
      int32_t sum = 0;
      for (int j = 0; j < sub; j++) sum += static_cast<int32_t>(qq[j]) * v[j];
      I[s] = sum;
    }
  });
}

// Types whose block is a half scale then 4-byte-aligned payload: two pad bytes after the scale.
bool pads_after_scale(int type) { return type == Q8_0 || type == Q4_0 || type == IQ4_NL || type == Q5_0; }

inline size_t align64(size_t n) { return (n + 63) & ~size_t(63); }

}  // namespace

bool quant_linear_init(QuantLinear& p, int64_t K, bool gate_up, const std::vector<int>& types,
                       const std::vector<int64_t>& ns, const std::vector<const uint8_t*>& src,
                       const std::vector<const float*>& bias) {
  p.K = K;
  p.gate_up = gate_up;
  p.parts.clear();
  size_t off = 0;
  for (size_t i = 0; i < types.size(); i++) {
    TypeInfo ti;
    type_info(types[i], &ti);
    QuantLinear::Part part;
    part.type = types[i];
    part.n = ns[i];
    part.row_bytes = static_cast<size_t>(K / ti.block) * ti.bytes;
    part.offset = off;
    part.ib = interleaved_block_bytes(types[i]);
    part.nblk = K / ti.block;
    if (bias[i]) part.bias.assign(bias[i], bias[i] + ns[i]);
    const int64_t groups = (ns[i] + kGroupRows - 1) / kGroupRows;
    off += align64(part.ib ? static_cast<size_t>(groups * part.nblk) * part.ib * kGroupRows : part.row_bytes * static_cast<size_t>(ns[i]));
    p.parts.push_back(std::move(part));
  }
  p.bytes = off;
  // 4 KiB pages, as the float packs (first-touch compaction stalls with huge pages at load).
  p.data = static_cast<uint8_t*>(aligned_alloc_zeroed(p.bytes, false));
  if (!p.data) {
    p.parts.clear();
    return false;
  }
  for (size_t i = 0; i < p.parts.size(); i++) {
    const QuantLinear::Part& part = p.parts[i];
    const size_t n = part.row_bytes * static_cast<size_t>(part.n);
    uint8_t* dst = p.data + part.offset;
    const uint8_t* s = src[i];
    if (part.ib) {
      TypeInfo ti;
      type_info(part.type, &ti);
      parallel_for(part.n, [&](int64_t rb, int64_t re) {
        uint8_t pad[kMaxBlock];
        for (int64_t r = rb; r < re; r++) {
          for (int64_t blk = 0; blk < part.nblk; blk++) {
            const uint8_t* fb = s + static_cast<size_t>(r) * part.row_bytes + static_cast<size_t>(blk) * ti.bytes;
            std::memset(pad, 0, static_cast<size_t>(part.ib));
            if (pads_after_scale(part.type)) {
              std::memcpy(pad, fb, 2);
              std::memcpy(pad + 4, fb + 2, static_cast<size_t>(ti.bytes - 2));
            } else {
              std::memcpy(pad, fb, static_cast<size_t>(ti.bytes));
            }
            uint8_t* gb = const_cast<uint8_t*>(part.group_block(p.data, r / kGroupRows, blk));
            for (int d = 0; d < part.ib / 4; d++) std::memcpy(gb + (d * kGroupRows + r % kGroupRows) * 4, pad + 4 * d, 4);
          }
        }
      });
      continue;
    }
    parallel_for(static_cast<int64_t>((n + (1 << 20) - 1) >> 20), [&](int64_t b, int64_t e) {
      const size_t lo = static_cast<size_t>(b) << 20, hi = std::min(n, static_cast<size_t>(e) << 20);
      std::memcpy(dst + lo, s + lo, hi - lo);
    });
  }
  return true;
}

int interleaved_block_bytes(int type) {
  switch (type) {
    case Q8_0: return 36;
    case Q4_0:
    case IQ4_NL:
    case Q4_1: return 20;
    case Q5_0:
    case Q5_1: return 24;
    case IQ4_XS: return 136;
    case Q2_K: return 84;
    case Q3_K: return 112;
    case Q5_K: return 176;
    case Q4_K: return 144;
    case Q6_K: return 212;
    default: return 0;
  }
}

void deinterleave_block(int type, const uint8_t* gb, int r, uint8_t* fb) {
  uint8_t pad[kMaxBlock];
  const int ib = interleaved_block_bytes(type);
  for (int d = 0; d < ib / 4; d++) std::memcpy(pad + 4 * d, gb + (d * kGroupRows + r) * 4, 4);
  if (pads_after_scale(type)) {
    TypeInfo ti;
    type_info(type, &ti);
    std::memcpy(fb, pad, 2);
    std::memcpy(fb + 2, pad + 4, static_cast<size_t>(ti.bytes - 2));
  } else {
    TypeInfo ti;
    type_info(type, &ti);
    std::memcpy(fb, pad, static_cast<size_t>(ti.bytes));
  }
}

void embedding_packed(float* out, const QuantLinear& p, const int32_t* ids, int64_t T) {
  const QuantLinear::Part& part = p.parts[0];
  TypeInfo ti;
  type_info(part.type, &ti);
  uint8_t fb[kMaxBlock];  // one file block (at most 210 bytes)
  for (int64_t t = 0; t < T; t++) {
    const int64_t r = ids[t];
    float* o = out + t * p.K;
    if (!part.ib) {
      dequantize_rows(part.type, p.data + part.offset + static_cast<size_t>(r) * part.row_bytes, 1, p.K, o);
      continue;
    }
    for (int64_t blk = 0; blk < part.nblk; blk++) {
      deinterleave_block(part.type, part.group_block(p.data, r / kGroupRows, blk), static_cast<int>(r % kGroupRows), fb);
      dequantize_rows(part.type, fb, 1, ti.block, o + blk * ti.block);
    }
  }
}

void quant_linear_release(QuantLinear& p) {
  if (p.data) aligned_free(p.data, p.bytes);
  p.data = nullptr;
  p.freed = true;
}

void quant_linear(const QuantLinear& p, const float* x, int64_t M, float* const* outs, bool accumulate) {
  if (M == 0) return;
  const int64_t K = p.K;
  // Rows in slices of at most kSliceRows. The scratch below (the quantized activations, their tile
  // copies, gate/up's products) grows with M and stays resident while the engine works: a
  // 2048-token prefill chunk through a 1B model's MLP took 310 MB of it (a slice's share stays in
  // the caches, and prefill got faster with slices). Every output row is computed alone (the batch
  // invariance), so slices change no bit; each slice streams the weights again, a small cost next
  // to 512 rows' products (the kernels already decode them again per L2-sized chunk of rows).
  constexpr int64_t kSliceRows = 512;
  if (M > kSliceRows) {
    std::vector<float*> slice(p.parts.size());
    for (int64_t m0 = 0; m0 < M; m0 += kSliceRows) {
      for (size_t i = 0; i < p.parts.size(); i++)
        slice[i] = p.gate_up ? (i == 0 ? outs[0] + m0 * p.parts[0].n : nullptr) : outs[i] + m0 * p.parts[i].n;
      quant_linear(p, x + m0 * K, std::min(kSliceRows, M - m0), slice.data(), accumulate);
    }
    return;
  }
  // Activations, quantized once per call (and copied into the AMX kernel's layout when it runs).
  thread_local Scratch act_buf;
  const size_t kk = static_cast<size_t>(K);
  const size_t row_bytes = align64(kk * 2) + 2 * align64(kk) + 2 * align64(kk / 32 * 4) + 2 * align64(kk / 16 * 4);
  uint8_t* base = act_buf.bytes(static_cast<size_t>(M) * row_bytes + static_cast<size_t>(M) * sizeof(ActRow));
  ActRow* act = reinterpret_cast<ActRow*>(base + static_cast<size_t>(M) * row_bytes);
  for (int64_t m = 0; m < M; m++) {
    uint8_t* r = base + static_cast<size_t>(m) * row_bytes;
    act[m].v = reinterpret_cast<int16_t*>(r);
    r += align64(kk * 2);
    act[m].hi = reinterpret_cast<int8_t*>(r);
    r += align64(kk);
    act[m].lo = reinterpret_cast<int8_t*>(r);
    r += align64(kk);
    act[m].s = reinterpret_cast<float*>(r);
    r += align64(kk / 32 * 4);
    act[m].sumf32 = reinterpret_cast<float*>(r);
    r += align64(kk / 32 * 4);
    act[m].sum16 = reinterpret_cast<int32_t*>(r);
    r += align64(kk / 16 * 4);
    act[m].sumf16 = reinterpret_cast<float*>(r);
  }
  const Isa isa = active_isa();
  // The AMX kernels' copies of the activations, one layout per contract the parts use.
  thread_local Scratch tiles_buf, tiles_k_buf;
  int8_t* tiles = nullptr;
  int8_t* tiles_k = nullptr;
  for (const QuantLinear::Part& part : p.parts) {
    TypeInfo ti;
    type_info(part.type, &ti);
    if (!use_amx(isa, M, ti.block)) continue;
    if (ti.block == 256 && !tiles_k) tiles_k = tiles_k_buf.get<int8_t>(amx_tiles_k_bytes(M, K));
    if (ti.block == 32 && !tiles) tiles = tiles_buf.get<int8_t>(amx_tiles_bytes(M, K));
  }
  auto prep = [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; m++) {
      if (!quantize_act_fast(isa, x + m * K, K, act[m])) quantize_act_row(x + m * K, K, act[m]);
      if (tiles) amx_tile_row(&act[m], m, K, tiles);
      if (tiles_k) amx_tile_row_k(&act[m], m, K, tiles_k);
    }
  };
  for (int64_t m = M; m % kGroupRows; m++) {
    if (tiles) amx_tile_row(nullptr, m, K, tiles);
    if (tiles_k) amx_tile_row_k(nullptr, m, K, tiles_k);
  }
  if (M * K >= (int64_t(1) << 16)) parallel_for(M, prep);
  else prep(0, M);

  // Work items: a group of 16 rows of one part; for gate/up, the same 16 rows of both parts,
  // whose products the item's thread then turns into silu(gate) * up (and adds): the same bits as
  // two linear ops followed by siluMul (and add), with no [M, I] scratch and no serial pass after.
  struct Item {
    int part;
    int64_t row0;
  };
  thread_local std::vector<Item> item_list;
  item_list.clear();
  int64_t total = 0;
  for (size_t i = 0; i < p.parts.size(); i++) {
    if (!p.gate_up || i == 0)
      for (int64_t r = 0; r < p.parts[i].n; r += kGroupRows) item_list.push_back(Item{static_cast<int>(i), r});
    total += p.parts[i].n;
  }
  const Item* item_of = item_list.data();
  const int64_t items = static_cast<int64_t>(item_list.size());
  // acc[m * kGroupRows + i] = output (m, lr + i) of the part's rows lr .. lr + nr.
  auto group = [&](const QuantLinear::Part& part, int64_t lr, int64_t nr, float* acc) {
    Task t{part.type, K, M, act, tiles, tiles_k};
    const int done = rows_fast(isa, t, part, p.data, lr, nr, acc);
    for (int64_t i = done; i < nr; i++) row_scalar(t, part, p.data, lr + i, acc + i);
  };
  auto run = [&](int64_t ib, int64_t ie) {
    thread_local Scratch accv;
    float* acc = accv.get<float>(static_cast<size_t>(M) * kGroupRows * (p.gate_up ? 2 : 1));
    for (int64_t it = ib; it < ie; it++) {
      const size_t pi = static_cast<size_t>(item_of[it].part);
      const QuantLinear::Part& part = p.parts[pi];
      const int64_t lr = item_of[it].row0;
      const int64_t nr = std::min<int64_t>(kGroupRows, part.n - lr);
      group(part, lr, nr, acc);
      if (p.gate_up) {
        float* acc_up = acc + M * kGroupRows;
        group(p.parts[1], lr, nr, acc_up);
        for (int64_t m = 0; m < M; m++) silu_mul_row(outs[0] + m * part.n + lr, acc + m * kGroupRows, acc_up + m * kGroupRows, nr, accumulate);
        continue;
      }
      const float* bias = part.bias.empty() ? nullptr : part.bias.data() + lr;
      for (int64_t m = 0; m < M; m++) {
        const float* a = acc + m * kGroupRows;
        float* o = outs[pi] + m * part.n + lr;
        // One plain loop per case (the compiler vectorizes these; the per-value branches of one
        // loop for all cases took ~8 % of a batch-32 step): o = a (+ bias) (+ o before).
        if (accumulate) {
          if (bias)
            for (int64_t i = 0; i < nr; i++) o[i] = o[i] + (a[i] + bias[i]);
          else
            for (int64_t i = 0; i < nr; i++) o[i] = o[i] + a[i];
        } else if (bias) {
          for (int64_t i = 0; i < nr; i++) o[i] = a[i] + bias[i];
        } else {
          std::memcpy(o, a, static_cast<size_t>(nr) * sizeof(float));
        }
      }
    }
  };
  const bool tiny = M * total * K < (int64_t(1) << 15);
  if (tiny) {
    run(0, items);
  } else {
    // Contiguous pieces handed out as threads come free, shrinking as the items run out: with
    // one piece each, a thread that joins late (woken, or descheduled on a shared machine) left
    // the caller both halves of short decode-step ops (the caller ran ~1.8x the other thread's
    // share); with four equal pieces each, the thread that finished first still waited for up to a
    // piece (~4 % of a llama-1b Q4_K_M decode step's samples waiting, ~2 % with these).
    parallel_pieces(items, 2, 1, run);
  }
}

}  // namespace quant
}  // namespace pw
