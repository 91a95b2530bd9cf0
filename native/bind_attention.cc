// Binding of paged attention: checks every block table, query range and sequence length against
// the cache before the kernel reads anything.
#include <algorithm>
#include <cmath>
#include <string>

#include "bind_kv.h"
#include "binding.h"
#include "ops.h"

namespace pw {
namespace {

Napi::Value PagedAttention(const Napi::CallbackInfo& info) {
  // pagedAttention(out, q, cache, layer, blockTables, maxBlocksPerSeq, queryStartLoc, seqLens,
  //                numSeqs, nHeads, nKvHeads, headDim, scale, slidingWindow, softcap)
  Args a(info, "pagedAttention", 15);
  auto out = a.f32(0, "out");
  auto q = a.f32(1, "q");
  KvCache& c = cache_arg(info, 2, a.op());
  const int64_t layer = a.integer(3, "layer", 0, kMaxDim);
  if (layer >= c.num_layers) a.range_fail("layer", "= " + std::to_string(layer) + " is out of range [0, " + std::to_string(c.num_layers) + ")");
  auto bt = a.i32(4, "blockTables");
  const int64_t mb = a.integer(5, "maxBlocksPerSeq", 0, kMaxDim);
  auto qsl = a.i32(6, "queryStartLoc");
  auto sl = a.i32(7, "seqLens");
  const int64_t S = a.integer(8, "numSeqs", 0, kMaxDim);
  const int64_t nh = a.integer(9, "nHeads", 1, 1 << 20);
  const int64_t nkv = a.integer(10, "nKvHeads", 1, 1 << 20);
  const int64_t hd = a.integer(11, "headDim", 1, 1 << 20);
  const double scale = a.number(12, "scale");
  if (!std::isfinite(scale)) a.range_fail("scale", "must be finite");
  const int64_t window = a.integer(13, "slidingWindow", 0, kMaxDim);
  const double softcap = a.number(14, "softcap");
  if (!std::isfinite(softcap) || softcap < 0) a.range_fail("softcap", "must be a finite number >= 0");
  if (nkv != c.kv_heads) a.range_fail("nKvHeads", "= " + std::to_string(nkv) + " does not match the cache's kvHeads = " + std::to_string(c.kv_heads));
  if (hd != c.head_dim) a.range_fail("headDim", "= " + std::to_string(hd) + " does not match the cache's headDim = " + std::to_string(c.head_dim));
  if (nh % nkv != 0) a.range_fail("nHeads", "= " + std::to_string(nh) + " is not a multiple of nKvHeads = " + std::to_string(nkv));
  a.need_at_least(qsl, "queryStartLoc", static_cast<size_t>(S + 1), "numSeqs+1");
  a.need_at_least(sl, "seqLens", static_cast<size_t>(S), "numSeqs");
  a.need_at_least(bt, "blockTables", mul_checked(a.op(), "blockTables", {S, mb}), "numSeqs*maxBlocksPerSeq");
  if (qsl.data[0] < 0) a.range_fail("queryStartLoc", "[0] must be >= 0");
  for (int64_t s = 0; s < S; s++) {
    const int64_t q0 = qsl.data[s], q1 = qsl.data[s + 1];
    const int64_t len = sl.data[s];
    if (q1 < q0) a.range_fail("queryStartLoc", "must be non-decreasing (at sequence " + std::to_string(s) + ")");
    if (len < q1 - q0) {
      a.range_fail("seqLens", "[" + std::to_string(s) + "] = " + std::to_string(len) + " is smaller than its " +
                                  std::to_string(q1 - q0) + " query tokens");
    }
    if (q1 == q0) continue;  // nothing to compute; its table is not read
    const int64_t nb = (len + c.block_size - 1) / c.block_size;
    if (nb > mb) {
      a.range_fail("seqLens", "[" + std::to_string(s) + "] = " + std::to_string(len) + " needs " + std::to_string(nb) +
                                  " blocks, more than maxBlocksPerSeq = " + std::to_string(mb));
    }
    const int32_t* row = bt.data + s * mb;
    // With a window, blocks wholly before the first query's window are never read (they may be freed).
    const int64_t first_key = window > 0 ? std::max<int64_t>(0, len - (q1 - q0) - window + 1) : 0;
    for (int64_t b = first_key / c.block_size; b < nb; b++) {
      a.need_index("blockTables", {s, b}, row[b], 0, c.num_blocks,
                   "is not a block id in");
    }
  }
  const int64_t total = qsl.data[S];
  const size_t n = mul_checked(a.op(), "q", {total, nh, hd});
  a.need_at_least(q, "q", n, "queryStartLoc[numSeqs]*nHeads*headDim");
  a.need_at_least(out, "out", n, "queryStartLoc[numSeqs]*nHeads*headDim");
  if (overlaps(out.data, n * 4, q.data, n * 4)) a.range_fail("out", "overlaps q");
  AttentionArgs args{};
  args.out = out.data;
  args.q = q.data;
  args.cache = &c;
  args.layer = layer;
  args.block_tables = bt.data;
  args.max_blocks_per_seq = mb;
  args.query_start_loc = qsl.data;
  args.seq_lens = sl.data;
  args.num_seqs = S;
  args.n_heads = nh;
  args.n_kv_heads = nkv;
  args.head_dim = hd;
  args.scale = static_cast<float>(scale);
  args.sliding_window = window;
  args.softcap = static_cast<float>(softcap);
  paged_attention(args);
  return info.Env().Undefined();
}

}  // namespace

void InitAttention(Napi::Env env, Napi::Object exports) {
  bind<PagedAttention>(env, exports, "pagedAttention");
}

}  // namespace pw
