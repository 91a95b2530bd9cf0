// Intel AMX (Advanced Matrix Extensions) availability, shared by every AMX kernel family (the
// BF16 linear kernels, ops_linear_amx.cc; quantized kernels may use it too).
#pragma once

namespace pw {

// CPUID leaf 7 (sub-leaf 0) EDX bits: the tile architecture and its BF16 / INT8 dot products.
struct AmxFeatures {
  bool tile, bf16, int8;
};
AmxFeatures amx_features();

// True once the kernel has granted this process the AMX tile data state. Linux keeps it off
// until a process asks (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); the first call asks,
// once per process (the permission covers every thread), and every call returns that answer.
// False without AMX-TILE, off x86-64, or when the kernel refuses (older than 5.16, seccomp,
// signal stacks too small for the tile state): callers fall back to their non-AMX kernels.
bool amx_tile_data_granted();

}  // namespace pw
