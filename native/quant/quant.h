// Quantized weights (GGML block formats) kept quantized in memory, and the linear op on them.
//
// Every supported type decodes a block to small signed integers q[j] with, per sub-block of
// 16 or 32 values, two floats a and m: value j = a * q[j] - m (float32 arithmetic; this is
// bit for bit ggml's own dequantization, see decode_block). The linear op multiplies those
// integers with activations quantized per group of 256 values (the scheme: act_quant.h) in exact
// integer arithmetic, and scales the integer sums in float32 in one fixed order per output: per
// block of 32 values for the 32-value types, per block of 256 for the 256-value ones, whose
// sub-block scales are integers (KScales; the contracts: kernels.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace pw {
namespace quant {

// GGML type ids (src/backend/quant.ts).
enum Type : int {
  Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14,
  IQ4_NL = 20, IQ4_XS = 23,
};

struct TypeInfo {
  const char* name;
  int block;  // values per block
  int bytes;  // bytes per block
  int sub;    // values per sub-block (one a, m pair): 16 or 32
};

// False for a type this module does not run.
bool type_info(int type, TypeInfo* out);

// Largest block: 256 values, 16 sub-blocks.
constexpr int kMaxBlock = 256;
constexpr int kMaxSubs = 16;

// Decodes one block: q[block] and per sub-block a[], m[] (value j = a[j / sub] * q[j] - m[j / sub]).
void decode_block(int type, const uint8_t* src, int8_t* q, float* a, float* m);

// The 256-value types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) as the linear op's super-block
// contract reads them: a[s] = d * isc[s] and m[s] = dmin * imn[s], with isc and imn small integers
// (held as floats, exactly) and d, dmin the block's two scales (dmin = 0, imn = 0: no min).
struct KScales {
  float d, dmin;
  float isc[kMaxSubs], imn[kMaxSubs];
};
void decode_block_k(int type, const uint8_t* src, int8_t* q, KScales& ks);
// Whether a 256-value type has a min term (Q2_K, Q4_K, Q5_K).
inline bool k_has_min(int type) { return type == Q2_K || type == Q4_K || type == Q5_K; }

// rows x k values (k a multiple of the block size) to float32, exactly ggml's dequantization.
void dequantize_rows(int type, const uint8_t* src, int64_t rows, int64_t k, float* out);

// Interleaved layout of every type (the SIMD decoders read it): rows in groups of 16;
// per (group, block) the 16 rows' blocks, each padded to ib bytes (a multiple of 4; Q8_0, Q4_0, Q5_0 and
// IQ4_NL get two zero bytes after their scale so their values start on a 4-byte boundary), stored dword-major: dword
// p of row r at (p * 16 + r) * 4. One 64-byte load then holds the same 4 bytes of 16 rows, what
// the row kernels multiply; the bytes per weight stay the file's (+6% Q8_0, +11% Q4_0 / IQ4_NL, +9% Q5_0, +2% Q3_K, +1% Q6_K).
constexpr int kGroupRows = 16;
// Padded block bytes of an interleaved type; 0 for a type kept in the file's row layout.
int interleaved_block_bytes(int type);
// The file's block bytes of (row r of a group, block) from an interleaved group block.
void deinterleave_block(int type, const uint8_t* group_block, int r, uint8_t* file_block);

// A pack of quantized weight matrices sharing K (q/k/v, or a gate/up pair), copied into native
// memory, interleaved (above) or in the file's row layout.
struct QuantLinear {
  struct Part {
    int type;
    int64_t n;         // rows (output columns)
    size_t row_bytes;  // bytes of one row of K values in the file
    size_t offset;     // into data
    int ib;            // interleaved padded block bytes, 0: row layout
    int64_t nblk;      // blocks per row
    // Interleaved: the 16-row group block (g, blk); rows r: row layout, row r.
    const uint8_t* group_block(const uint8_t* data, int64_t g, int64_t blk) const {
      return data + offset + static_cast<size_t>(g * nblk + blk) * static_cast<size_t>(ib) * kGroupRows;
    }
    std::vector<float> bias;  // empty: none
  };
  int64_t K = 0;
  bool gate_up = false;  // parts[0] = gate, parts[1] = up; one output silu(gate) * up
  std::vector<Part> parts;
  uint8_t* data = nullptr;
  size_t bytes = 0;
  bool freed = false;
};

// Allocates and copies; false when memory runs out (nothing left allocated).
bool quant_linear_init(QuantLinear& p, int64_t K, bool gate_up, const std::vector<int>& types,
                       const std::vector<int64_t>& ns, const std::vector<const uint8_t*>& src,
                       const std::vector<const float*>& bias);
void quant_linear_release(QuantLinear& p);  // idempotent
// outs[s] = x . part_s^T (+ bias); gate/up: outs[0] = silu(x . gate^T) * (x . up^T). accumulate: +=.
void quant_linear(const QuantLinear& p, const float* x, int64_t M, float* const* outs, bool accumulate);

// out[t, :] = dequantized row ids[t] of a [vocab, hidden] table of `type`.
void embedding_quant(float* out, const uint8_t* table, int type, const int32_t* ids, int64_t T, int64_t hidden);
// The same rows read from a one-part pack of such a table (the same bits): a head tied to the
// embedding then holds the table once.
void embedding_packed(float* out, const QuantLinear& p, const int32_t* ids, int64_t T);

}  // namespace quant
}  // namespace pw
