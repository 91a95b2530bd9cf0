#include <stdexcept>
#include "ops.h"
namespace pw {
void paged_attention(const AttentionArgs&) { throw std::runtime_error("pagedAttention: not implemented"); }
}
