// CPU feature detection, the active kernel family, and portable dtype / memory helpers.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "amx.h"
#include "common.h"

#if PW_ARM64 && defined(__linux__)
#include <sys/auxv.h>
#elif PW_ARM64 && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace pw {

namespace {

#if PW_ARM64
CpuFeatures detect() {
  CpuFeatures f{};
  f.neon = true;  // Advanced SIMD is part of every AArch64 Linux and macOS target
#if defined(__linux__)
  // The kernel's HWCAP_ASIMDDP and HWCAP2_BF16 bits (asm/hwcap.h; spelled out for older headers).
  constexpr unsigned long kHwcapAsimdDp = 1ul << 20, kHwcap2Bf16 = 1ul << 14;
  f.dotprod = (getauxval(AT_HWCAP) & kHwcapAsimdDp) != 0;
  f.bf16 = (getauxval(AT_HWCAP2) & kHwcap2Bf16) != 0;
#elif defined(__APPLE__)
  auto has = [](const char* name) {
    int v = 0;
    size_t len = sizeof(v);
    return sysctlbyname(name, &v, &len, nullptr, 0) == 0 && v != 0;
  };
  f.dotprod = has("hw.optional.arm.FEAT_DotProd");
  f.bf16 = has("hw.optional.arm.FEAT_BF16");
#endif
  return f;
}

Isa best_isa(const CpuFeatures& f) { return f.bf16 ? Isa::NeonBf16 : Isa::Neon; }

#elif PW_X86
CpuFeatures detect() {
  CpuFeatures f{};
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  // GCC 12 has no "f16c" name for __builtin_cpu_supports; read CPUID.1:ECX bit 29 directly.
  {
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    f.f16c = (c >> 29) & 1u;
  }
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
  const AmxFeatures amx = amx_features();
  // Asks the OS for the tile state only on CPUs that have the BF16 tiles.
  f.amx_bf16 = amx.tile && amx.bf16 && amx_tile_data_granted();
  return f;
}

Isa best_isa(const CpuFeatures& f) {
  // The AVX2 kernels also use FMA and F16C; the AVX-512 kernels use F, BW and VL.
  if (!(f.avx2 && f.fma && f.f16c)) return Isa::Scalar;
  if (!(f.avx512f && f.avx512bw && f.avx512vl)) return Isa::Avx2;
  if (!f.avx512bf16) return Isa::Avx512;
  // The AMX family prepares activations and finishes tiles with AVX-512 (BF16 included).
  if (!f.amx_bf16) return Isa::Avx512Bf16;
  return Isa::AmxBf16;
}

#else
CpuFeatures detect() { return CpuFeatures{}; }
Isa best_isa(const CpuFeatures&) { return Isa::Scalar; }
#endif

// The family to start with: the detected one, or the one PAGEWISE_ISA names (see common.h) where
// this CPU can run it. A name that is no family is reported once on stderr and ignored.
Isa initial_isa() {
  const Isa best = detected_isa();
  const char* e = std::getenv("PAGEWISE_ISA");
  if (!e || !*e) return best;
  for (int i = 0; i <= static_cast<int>(Isa::AmxBf16); i++) {
    const Isa isa = static_cast<Isa>(i);
    if (std::strcmp(e, isa_short_name(isa)) == 0) return isa_supported(isa) ? isa : best;
  }
  std::fprintf(stderr, "pagewise: PAGEWISE_ISA=%s is not a kernel family (scalar, avx2, avx512, avx512bf16, amxbf16, neon, neonbf16); using %s\n",
               e, isa_short_name(best));
  return best;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

// Below this size plain aligned heap memory; above it anonymous pages, which the kernel hands
// out zeroed and commits only when touched (KV pools of several GiB cost nothing until used).
constexpr size_t kMmapThreshold = size_t(1) << 20;

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa detected_isa() {
  static const Isa isa = best_isa(cpu_features());
  return isa;
}

bool isa_supported(Isa isa) {
  const Isa best = detected_isa();
  if (isa == Isa::Scalar || isa == best) return true;
  // The families below the best one in the same chain (common.h).
  if (best == Isa::NeonBf16) return isa == Isa::Neon;
  if (best == Isa::AmxBf16) return isa <= Isa::Avx512Bf16;  // the x86 chain ends with AmxBf16
  return best <= Isa::Avx512Bf16 && isa < best;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) { active_slot().store(static_cast<int>(isa), std::memory_order_relaxed); }

const char* isa_short_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::AmxBf16: return "amxbf16";
    case Isa::Neon: return "neon";
    case Isa::NeonBf16: return "neonbf16";
  }
  return "?";
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float32.
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, or NaN with its payload
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504: inf
  if (a >= 0x38800000u) {  // normal half
    uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  if (a <= 0x33000000u) return sign;  // <= 2^-25 rounds (ties to even) to zero
  // Subnormal half: round(value * 2^24) with value = m * 2^(e - 150).
  const uint32_t e = a >> 23;
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const uint32_t s = 126u - e;  // 14..24
  uint32_t q = m >> s;
  const uint32_t rem = m & ((1u << s) - 1u);
  const uint32_t half = 1u << (s - 1u);
  if (rem > half || (rem == half && (q & 1u))) q++;
  return static_cast<uint16_t>(sign | q);
}

void* aligned_alloc_zeroed(size_t bytes, bool huge) {
  if (bytes == 0) bytes = 1;
  if (bytes >= kMmapThreshold) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    // Transparent huge pages where the system leaves it to us (THP "madvise" mode): large buffers
    // (packed weights, workspaces) are walked in big strides, 4 KiB pages would cost a TLB miss
    // per few rows. Not for memory first touched on the hot path (KV pools: kv_cache.cc).
#ifdef MADV_HUGEPAGE  // Linux
    if (huge && bytes >= (size_t(2) << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    return p;
  }
  void* p = nullptr;
  if (posix_memalign(&p, 64, bytes) != 0) return nullptr;
  std::memset(p, 0, bytes);
  return p;
}

bool commit_pages(void* p, size_t bytes) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older kernels answer EINVAL
#endif
  // The system's page (16 KiB or 64 KiB on some AArch64 kernels): madvise wants it aligned.
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t e = reinterpret_cast<uintptr_t>(p) + bytes;
  return madvise(reinterpret_cast<void*>(a), e - a, MADV_POPULATE_WRITE) == 0;
#else
  (void)p;
  (void)bytes;
  return false;  // no such call (macOS): pages commit at first touch
#endif
}

void aligned_free(void* p, size_t bytes) {
  if (!p) return;
  if (bytes == 0) bytes = 1;
  if (bytes >= kMmapThreshold) {
    munmap(p, bytes);
  } else {
    std::free(p);
  }
}

}  // namespace pw
