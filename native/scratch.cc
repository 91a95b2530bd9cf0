#include "scratch.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "common.h"

namespace pw {
namespace {

// Every live Scratch, for release_scratch_pages. Never destroyed: thread_local Scratches of other
// threads may be destroyed after static destructors have run.
struct Registry {
  std::mutex mu;
  std::vector<Scratch*> all;
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace

Scratch::Scratch() : owner_(std::this_thread::get_id()), pool_worker_(is_pool_worker()) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.all.push_back(this);
}

Scratch::~Scratch() {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    r.all.erase(std::find(r.all.begin(), r.all.end(), this));
  }
  aligned_free(p_, cap_);
}

uint8_t* Scratch::bytes(size_t n) {
  if (n <= cap_) return p_;
  // Whole pages: the allocation is page-aligned from kMmapThreshold up, and its tail page would
  // otherwise stay resident through release_pages.
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t cap = (n + page - 1) / page * page;
  uint8_t* p = static_cast<uint8_t*>(aligned_alloc_zeroed(cap, false));
  if (!p) throw std::bad_alloc();
  aligned_free(p_, cap_);
  p_ = p;
  cap_ = cap;
  return p_;
}

size_t release_scratch_pages() {
  Registry& r = registry();
  const std::thread::id self = std::this_thread::get_id();
  size_t bytes = 0;
  while_pool_idle([&] {
    std::lock_guard<std::mutex> lock(r.mu);
    for (Scratch* s : r.all) {
      if (s->pool_worker_ || s->owner_ == self) bytes += release_pages(s->p_, s->cap_);
    }
  });
  return bytes;
}

size_t release_pages(void* p, size_t bytes) {
#if defined(__linux__)
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
  if (!p || e <= a) return 0;
  // MADV_DONTNEED: private anonymous pages are freed now and read back as zeros.
  return madvise(reinterpret_cast<void*>(a), e - a, MADV_DONTNEED) == 0 ? e - a : 0;
#else
  (void)p;
  (void)bytes;
  return 0;  // macOS's MADV_DONTNEED does not promise to free the pages; they stay.
#endif
}

}  // namespace pw
