// Sampling kernels over rows of logits (ops_sampling.cc), dispatched on the active ISA. Each row is
// processed in a fixed order, so a result depends only on the row and the random number given.
// Callers (bind_sampling.cc) have checked every argument.
#pragma once
#include <cstdint>

namespace pw {

// Index of the largest value (ties: the lowest index); -1 when every value is -inf or NaN.
int64_t row_argmax(const float* x, int64_t n);
// Inverse-CDF draw with u in [0, 1) from softmax(x * inv_t); -1 when the row has no mass.
int64_t row_softmax_sample(const float* x, int64_t n, float inv_t, double u);
double row_logsumexp(const float* x, int64_t n);
// How many values are > v.
int64_t row_count_greater(const float* x, int64_t n, float v);
// Top-p preparation: w[i] = exp((x[i] - maxv) * inv_t), each id's log-weight bucket (per_nat
// buckets per nat, clamped to the last of nb) and every bucket's mass added into hist. Returns the
// total mass.
double row_nucleus_weights(const float* x, int64_t n, double maxv, double inv_t, double* w, uint16_t* bucket,
                           double* hist, double per_nat, int64_t nb);
// out[i] = the draw of row rows[i] (logits[rows[i] * n, rows[i] * n + n)): argmax where inv_t[i] is
// 0, else row_softmax_sample with u[i]. Rows run on the thread pool; each result is what the
// one-row ops give.
void draw_rows(const float* logits, int64_t n, const int32_t* rows, const double* inv_t, const double* u, int32_t* out,
               int64_t count);

}  // namespace pw
