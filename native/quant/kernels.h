// Per-family row kernels of the quantized linear op (linear.cc holds the numerics contract).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common.h"
#include "act_quant.h"

namespace pw {
namespace quant {

// Output rows handed to a thread at a time (a multiple of the fast kernels' row group).
constexpr int64_t kRowsPerItem = 16;

struct Task {
  int type;
  int64_t K;
  int64_t M;
  const ActRow* act;  // M quantized activation rows
};

// Computes acc[i * M + m] for the first rows of [0, nr) the family has a kernel for (weight row
// i at w + i * row_bytes); returns how many (the scalar kernel does the rest).
int rows_fast(Isa isa, const Task& t, const uint8_t* w, size_t row_bytes, int64_t nr, float* acc);

}  // namespace quant
}  // namespace pw
