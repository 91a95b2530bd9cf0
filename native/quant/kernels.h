// Per-family row kernels of the quantized linear op (linear.cc holds the numerics contract).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common.h"
#include "act_quant.h"
#include "quant.h"

namespace pw {
namespace quant {

struct Task {
  int type;
  int64_t K;
  int64_t M;
  const ActRow* act;  // M quantized activation rows
};

// Computes acc[i * M + m] for rows lr + i, i in [0, nr) (nr <= 16, lr a multiple of 16) of the
// part when the family has a kernel for it; returns how many (0 or nr; the scalar kernel does the
// rest).
int rows_fast(Isa isa, const Task& t, const QuantLinear::Part& part, const uint8_t* data, int64_t lr, int64_t nr, float* acc);

}  // namespace quant
}  // namespace pw
