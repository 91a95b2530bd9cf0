// AMX detection and the once-per-process request for the tile data state (amx.h).
#include "amx.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pw {

AmxFeatures amx_features() {
  AmxFeatures f{false, false, false};
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.bf16 = (d >> 22) & 1u;
    f.tile = (d >> 24) & 1u;
    f.int8 = (d >> 25) & 1u;
  }
#endif
  return f;
}

namespace {

bool request_tile_data() {
#if defined(__x86_64__)
  if (!amx_features().tile) return false;
  // Values of the Linux x86 ABI (asm/prctl.h, asm/fpu/types.h), spelled out for older headers.
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long perm = 0;
  return syscall(SYS_arch_prctl, kArchGetXcompPerm, &perm) == 0 && ((perm >> kXfeatureXtiledata) & 1u) != 0;
#else
  return false;
#endif
}

}  // namespace

bool amx_tile_data_granted() {
  static const bool granted = request_tile_data();  // thread-safe, asked once
  return granted;
}

}  // namespace pw
