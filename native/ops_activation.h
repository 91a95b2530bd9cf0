// Activation ops of the Gemma family (ops_activation.cc): the tanh-GELU gate, soft-capping and a
// scalar multiply. Rows are independent; each element's arithmetic depends only on its inputs
// (and the active ISA), so splitting over threads never changes a result.
#pragma once
#include <cstdint>

namespace pw {

// out[m, i] = gelu_tanh(gate[m, i]) * up[m, i] (gate / up rows at their strides, out [M, I]).
void gelu_tanh_mul(float* out, const float* gate, const float* up, int64_t M, int64_t I, int64_t gate_stride,
                   int64_t up_stride);
// out[i] = cap * tanh(x[i] / cap) for i < n (out may alias x).
void softcap(float* out, const float* x, int64_t n, float cap);
// out[i] = x[i] * s for i < n (out may alias x).
void scale(float* out, const float* x, int64_t n, float s);

}  // namespace pw
