// Quantizers: float32 rows -> GGML block formats (the byte layouts GGUF files store).
// Scalar on purpose: quantization runs once per model, and the float operations follow the
// order of llama.cpp's reference quantizers so that the output is the same bytes as
// `llama-quantize` without an importance matrix.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pw {

// GGML type ids (src/backend/quant.ts is the TS source of truth for the same numbers).
enum class QType : int { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
                         Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30 };

// Block geometry of a type this file can write; false when it cannot.
bool quantize_type_info(int type, int* block_size, int* block_bytes);

// Quantizes `rows` rows of `k` floats each (k a multiple of the type's block size) into dst,
// which must hold rows * (k / block_size) * block_bytes bytes. Rows run on the thread pool.
void quantize_rows(int type, const float* src, int64_t rows, int64_t k, uint8_t* dst);

// IEEE half with round-to-nearest-even (what F16C's vcvtps2ph with imm 0 gives).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);

}  // namespace pw
