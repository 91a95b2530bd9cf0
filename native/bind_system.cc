// Bindings of the runtime: CPU features and ISA choice, the thread pool, file mapping, aligned
// allocation, and the machine-limit microbenchmarks (microbench.cc).
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "binding.h"
#include "ops.h"
#include "scratch.h"

namespace pw {
namespace {

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Scalar: return "Scalar";
    case Isa::Avx2: return "Avx2";
    case Isa::Avx512: return "Avx512";
    case Isa::Avx512Bf16: return "Avx512Bf16";
    case Isa::Neon: return "Neon";
    case Isa::NeonBf16: return "NeonBf16";
    case Isa::AmxBf16: return "AmxBf16";
  }
  return "?";
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("f16c", f.f16c);
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bw", f.avx512bw);
  o.Set("avx512bf16", f.avx512bf16);
  o.Set("neon", f.neon);
  o.Set("bf16", f.bf16);
  o.Set("dotprod", f.dotprod);
  o.Set("amxBf16", f.amx_bf16);
  o.Set("detectedIsa", static_cast<int>(detected_isa()));
  o.Set("activeIsa", static_cast<int>(active_isa()));
  return o;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Args a(info, "setIsa", 1);
  const int64_t v = a.integer(0, "isa", -1000000, 1000000);
  if (v < 0 || v > 6) {
    a.range_fail("isa", "is not an Isa (Scalar=0, Avx2=1, Avx512=2, Avx512Bf16=3, Neon=4, NeonBf16=5, AmxBf16=6): " + std::to_string(v));
  }
  const Isa isa = static_cast<Isa>(v);
  if (!isa_supported(isa)) {
    range_error(std::string("setIsa: this CPU does not support ") + isa_name(isa) + " (best: " +
                isa_name(detected_isa()) + ")");
  }
  set_active_isa(isa);
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setThreads", 1);
  set_num_threads(static_cast<int>(a.integer(0, "n", 1, 1024)));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

// The live file mappings (start -> size), so releaseMappedPages can drop their resident pages
// without ever touching memory that is not a file mapping.
std::mutex g_maps_mu;
std::map<void*, size_t> g_maps;

Napi::Value MmapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) type_error("mmapFile: path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.find('\0') != std::string::npos) type_error("mmapFile: path contains a NUL character");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) plain_error("mmapFile: cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    plain_error("mmapFile: cannot stat '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    plain_error("mmapFile: '" + path + "' is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  // Private mapping: the file is never modified. PROT_WRITE only makes an accidental write from
  // JS land in a private copy-on-write page instead of killing the process with SIGSEGV; pages
  // that are only read stay shared with the page cache.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  const int e = errno;
  close(fd);
  if (p == MAP_FAILED) plain_error("mmapFile: cannot map '" + path + "': " + std::strerror(e));
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps[p] = size;
  }
  return Napi::ArrayBuffer::New(env, p, size, [size](Napi::Env, void* data) {
    {
      std::lock_guard<std::mutex> lock(g_maps_mu);
      g_maps.erase(data);
    }
    munmap(data, size);
  });
}

// Drops every file mapping's pages from this process's resident set (MADV_DONTNEED). The
// mappings are private and never written, so nothing is lost: the pages stay in the OS page
// cache and a later read faults them back in. Called once the model has copied (packed) what it
// computes from, so the file's bytes are not counted twice. Returns the bytes advised.
Napi::Value ReleaseMappedPages(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_maps_mu);
  double bytes = 0;
  for (const auto& [p, size] : g_maps) {
    if (madvise(p, size, MADV_DONTNEED) == 0) bytes += static_cast<double>(size);
  }
  return Napi::Number::New(info.Env(), bytes);
}

// Gives the C allocator's free pages back to the OS: glibc keeps each thread's arena after the
// thread exits, with whatever it freed still resident (a tokenizer worker left ~12 MB of a 1B
// model's server that way); malloc_trim releases the free pages of every arena. Returns whether
// the C library has such a call.
Napi::Value ReleaseFreeMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  malloc_trim(0);
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// ComputeBackend.releaseWorkingMemory: drops the pages of the given working arrays (the model's
// activation buffers, sized for the largest step) and of the ops' scratch of this thread and the
// pool's workers (release_scratch_pages). Contents are lost; the engine calls it between steps once
// it has been idle, so a long prompt's working memory does not stay resident. Returns the bytes
// advised.
Napi::Value ReleaseWorkingMemory(const Napi::CallbackInfo& info) {
  Args a(info, "releaseWorkingMemory", 1);
  if (!info[0].IsArray()) a.type_fail("arrays", "must be an array of typed arrays");
  const Napi::Array arrays = info[0].As<Napi::Array>();
  const uint32_t n = arrays.Length();
  for (uint32_t i = 0; i < n; i++) {
    if (!arrays.Get(i).IsTypedArray()) a.type_fail("arrays", "must hold only typed arrays (element " + std::to_string(i) + ")");
  }
  double bytes = 0;
  for (uint32_t i = 0; i < n; i++) {
    const Napi::TypedArray t = arrays.Get(i).As<Napi::TypedArray>();
    uint8_t* data = static_cast<uint8_t*>(t.ArrayBuffer().Data());
    if (data) bytes += static_cast<double>(release_pages(data + t.ByteOffset(), t.ByteLength()));
  }
  bytes += static_cast<double>(release_scratch_pages());
  return Napi::Number::New(info.Env(), bytes);
}

Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "allocAligned", 1);
  const int64_t bytes = a.integer(0, "bytes", 0, int64_t(1) << 48);
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  const size_t n = static_cast<size_t>(bytes);
  void* p = aligned_alloc_zeroed(n);
  if (!p) plain_error("allocAligned: out of memory allocating " + std::to_string(n) + " bytes");
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(n));
  return Napi::ArrayBuffer::New(env, p, n, [n](Napi::Env e, void* data) {
    aligned_free(data, n);
    Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(n));
  });
}

Napi::Value BenchMemoryBandwidth(const Napi::CallbackInfo& info) {
  // benchMemoryBandwidth(bytes, iters)
  Args a(info, "benchMemoryBandwidth", 2);
  const int64_t bytes = a.integer(0, "bytes", int64_t(1) << 16, int64_t(1) << 40);
  const int64_t iters = a.integer(1, "iters", 1, 1000);
  const double gbs = bench_memory_bandwidth(static_cast<size_t>(bytes), static_cast<int>(iters));
  if (gbs < 0) plain_error("benchMemoryBandwidth: out of memory allocating " + std::to_string(bytes) + " bytes");
  return Napi::Number::New(info.Env(), gbs);
}

Napi::Value BenchPeakFlops(const Napi::CallbackInfo& info) {
  // benchPeakFlops(accumulators = 16)
  int accumulators = 16;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    Args a(info, "benchPeakFlops", 1);
    const int64_t n = a.integer(0, "accumulators", 1, 64);
    if (n != 1 && n != 2 && n != 4 && n != 8 && n != 12 && n != 16 && n != 24) {
      a.range_fail("accumulators", "must be 1, 2, 4, 8, 12, 16 or 24, got " + std::to_string(n));
    }
    accumulators = static_cast<int>(n);
  }
  double f32 = 0, bf16 = 0;
  bench_peak_flops(&f32, &bf16, accumulators);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("f32Gflops", f32);
  o.Set("bf16Gflops", bf16);
  return o;
}

}  // namespace

void InitSystem(Napi::Env env, Napi::Object exports) {
  bind<CpuInfo>(env, exports, "cpuInfo");
  bind<SetIsa>(env, exports, "setIsa");
  bind<SetThreads>(env, exports, "setThreads");
  bind<GetThreads>(env, exports, "getThreads");
  bind<MmapFile>(env, exports, "mmapFile");
  bind<ReleaseMappedPages>(env, exports, "releaseMappedPages");
  bind<ReleaseFreeMemory>(env, exports, "releaseFreeMemory");
  bind<ReleaseWorkingMemory>(env, exports, "releaseWorkingMemory");
  bind<AllocAligned>(env, exports, "allocAligned");
  bind<BenchMemoryBandwidth>(env, exports, "benchMemoryBandwidth");
  bind<BenchPeakFlops>(env, exports, "benchPeakFlops");
}

}  // namespace pw
