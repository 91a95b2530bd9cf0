// Intel AMX (Advanced Matrix Extensions) availability, shared by every AMX kernel family (the
// BF16 linear kernels, ops_linear_amx.cc; quantized kernels may use it too).
#pragma once

#include <cstdint>

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

#if defined(__x86_64__)
// LDTILECFG's 64-byte operand, palette 1: per tile, its rows and bytes per row (unused tiles 0).
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  // Every one of the 8 tiles 16 rows of 64 bytes.
  static AmxTileConfig full() {
    AmxTileConfig c;
    for (int t = 0; t < 8; t++) {
      c.colsb[t] = 64;
      c.rows[t] = 16;
    }
    return c;
  }
};
static_assert(sizeof(AmxTileConfig) == 64, "LDTILECFG reads 64 bytes");

// Tile instructions as templates over their tile numbers (binutils assembles them without
// compiler flags; GCC's _tile_* intrinsics stringify their tile numbers, so they cannot take
// template parameters, and their asm has no memory operands). The memory clobbers order tile
// loads after the plain stores that fill their source, and tile stores before the loads that read
// them.
template <int T>
inline __attribute__((always_inline)) void tile_zero() {
  __asm__ volatile("tilezero %%tmm%c0" ::"i"(T));
}
template <int T>
inline __attribute__((always_inline)) void tile_load(const void* p, long stride) {
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(p), "r"(stride), "i"(T) : "memory");
}
template <int T>
inline __attribute__((always_inline)) void tile_store(void* p, long stride) {
  __asm__ volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(p), "r"(stride), "i"(T) : "memory");
}
// C[r][c] += sum over pairs p: A[r].bf16[2p + i] * B[p].bf16[2c + i]
template <int C, int A, int B>
inline __attribute__((always_inline)) void tile_dpbf16() {
  __asm__ volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
}
// C[r][c] += sum over quads p: A[r].int8[4p + i] * B[p].int8[4c + i] (signed x signed, int32 sums)
template <int C, int A, int B>
inline __attribute__((always_inline)) void tile_dpbssd() {
  __asm__ volatile("tdpbssd %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
}
// The same with B's bytes unsigned (signed x unsigned).
template <int C, int A, int B>
inline __attribute__((always_inline)) void tile_dpbsud() {
  __asm__ volatile("tdpbsud %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
}

// Every tile kernel's work item runs inside one: its configuration loaded on entry, the tiles
// released on exit. Other code configures the tiles differently (a configuration kept per thread
// across calls is released under it by the other family's items: SIGILL at the next tile
// instruction), and released tiles cost nothing at a context switch.
class AmxTileScope {
 public:
  explicit AmxTileScope(const AmxTileConfig& c) { __asm__ volatile("ldtilecfg %0" ::"m"(c)); }
  ~AmxTileScope() { __asm__ volatile("tilerelease" ::: "memory"); }
  AmxTileScope(const AmxTileScope&) = delete;
  AmxTileScope& operator=(const AmxTileScope&) = delete;
};
#endif

}  // namespace pw
