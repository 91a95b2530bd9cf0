#include <stdexcept>
#include "ops.h"
namespace pw {
void embedding(float*, const void*, DType, const int32_t*, int64_t, int64_t) { throw std::runtime_error("embedding: not implemented"); }
void rmsnorm(float*, const float*, const float*, int64_t, int64_t, float) { throw std::runtime_error("rmsnorm: not implemented"); }
void rope(float*, float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, const float*) { throw std::runtime_error("rope: not implemented"); }
void silu_mul(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t) { throw std::runtime_error("siluMul: not implemented"); }
void add(float*, const float*, const float*, int64_t) { throw std::runtime_error("add: not implemented"); }
}
