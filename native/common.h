// Shared declarations of the Pagewise CPU backend: thread pool, ISA dispatch, dtype helpers.
// Every kernel file includes this; nothing here depends on N-API.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

// Target architecture: x86-64 kernels (AVX2 / AVX-512, cpuid) or AArch64 kernels (NEON, BF16 dot
// products); every other file tests these instead of compiler-specific macros. Other
// architectures build the scalar kernels only.
#if defined(__x86_64__) || defined(_M_X64)
#define PW_X86 1
#else
#define PW_X86 0
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define PW_ARM64 1
#else
#define PW_ARM64 0
#endif

namespace pw {

// Element types of weights / caches. Values are part of the JS contract (src/backend/native.ts).
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };

// Kernel families. Values are part of the JS contract. Each architecture has its own chain, best
// last: x86-64 Scalar < Avx2 < Avx512 < Avx512Bf16 < AmxBf16, AArch64 Scalar < Neon < NeonBf16 (so an
// x86 comparison such as isa >= Isa::Avx512 only ever runs, under PW_X86, on x86 families).
// AmxBf16: the AVX512_BF16 family with BF16-precision linear ops on AMX tiles (ops_linear_amx.cc).
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3, Neon = 4, NeonBf16 = 5, AmxBf16 = 6 };

// CPU features found by detect (once, at first use); those of the other architecture stay false.
struct CpuFeatures {
  bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512bf16;
  bool neon, bf16, dotprod;  // AArch64: Advanced SIMD, FEAT_BF16 (BFDOT / BFMMLA), FEAT_DotProd (SDOT)
  bool amx_bf16;  // AMX-TILE and AMX-BF16, and the OS granted this process the tile data (amx.h)
};
const CpuFeatures& cpu_features();

// Best ISA this CPU supports (detected once).
Isa detected_isa();
// True for the families this CPU can run: Scalar and the detected family's chain up to it.
bool isa_supported(Isa isa);
// ISA the kernels currently dispatch on (isa_supported; tests lower it to exercise every path).
// It starts at detected_isa(), or lower where the environment variable PAGEWISE_ISA names a family
// (isa_short_name) that isa_supported: the one switch benchmarks use to compare families.
Isa active_isa();
void set_active_isa(Isa isa);
// Lower-case name of a family ("scalar", "avx2", "avx512", "avx512bf16", "amxbf16", "neon", "neonbf16").
const char* isa_short_name(Isa isa);

// Spin-wait hint for busy loops (pause / yield).
inline void cpu_relax() {
#if PW_X86
  __builtin_ia32_pause();
#elif PW_ARM64
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

// A non-owning reference to a callable (what std::function would be without the copy, and so
// without a heap allocation when the callable is bigger than its small buffer): valid while the
// callable lives, i.e. for the duration of the call it is passed to.
template <typename Sig>
class FnRef;
template <typename R, typename... A>
class FnRef<R(A...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FnRef>>>
  FnRef(F&& f)  // NOLINT: implicit, like std::function
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// Persistent thread pool. parallel_for splits [0, n) into at most num_threads() contiguous
// chunks and runs fn(begin, end) on each, the calling thread taking one; it returns when all are
// done. How the range is split must never change a result: kernels partition over independent
// outputs (rows, columns, heads), never over a reduction.
void parallel_for(int64_t n, FnRef<void(int64_t begin, int64_t end)> fn);
// Runs fn(i) for every i in [0, n), items handed out one at a time to whichever thread is free
// (load balancing for items of unequal cost, e.g. causal attention tiles). Same rule: the
// assignment of items to threads must never change a result.
void parallel_items(int64_t n, FnRef<void(int64_t item)> fn);
// Runs fn(begin, end) over contiguous pieces of [0, n) that shrink as the range runs out (guided
// scheduling), handed out as threads come free: each piece takes 1 / (share · threads) of what is
// left, at least min_piece. The long first pieces keep each thread's reads one stream; the short
// last ones let the threads finish together. Same rule as above.
void parallel_pieces(int64_t n, int64_t share, int64_t min_piece, FnRef<void(int64_t begin, int64_t end)> fn);
void set_num_threads(int n);
int num_threads();
// Runs fn while no pool job runs (none starts until it returns). Not from inside a job.
void while_pool_idle(FnRef<void()> fn);
// Whether this thread is one of the pool's workers (not a caller taking items of its job).
bool is_pool_worker();

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE binary16 <-> binary32, exact widening; narrowing rounds to nearest even. Subnormals,
// infinities and NaN (quiet, payload kept where it fits) are handled.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Zeroed memory aligned to 64 bytes (page-aligned, lazily committed for large sizes; `huge`:
// transparent huge pages from 2 MiB up). Returns nullptr when the system cannot provide it. Free
// with aligned_free(p, bytes).
void* aligned_alloc_zeroed(size_t bytes, bool huge = true);
void aligned_free(void* p, size_t bytes);
// Commits the pages of [p, p + bytes) inside a buffer of 1 MiB or more from aligned_alloc_zeroed
// (smaller ones come from the heap, committed at allocation) without changing its contents, so it
// is safe while other threads write there. False where the kernel cannot (Linux < 5.14).
bool commit_pages(void* p, size_t bytes);

}  // namespace pw
