// Working memory of the compute ops that the engine can hand back while it is idle.
#pragma once
#include <cstddef>
#include <cstdint>
#include <thread>

namespace pw {

// One op's grow-only scratch on one thread (declare it thread_local), 64-byte aligned. A long
// prompt's step grows it to that step's size, and it would stay resident for the life of the
// server: release_scratch_pages drops its pages while it keeps the allocation, and they come back
// zero-filled at the next touch. Every op writes the scratch bytes it reads within the call (a
// pool worker's, within the job), so nothing it needs is lost. Contents are undefined after get()
// when it grows.
class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  uint8_t* bytes(size_t n);
  template <class T>
  T* get(size_t count) {
    return reinterpret_cast<T*>(bytes(count * sizeof(T)));
  }

 private:
  friend size_t release_scratch_pages();
  uint8_t* p_ = nullptr;
  size_t cap_ = 0;
  const std::thread::id owner_;
  const bool pool_worker_;
};

// Drops the resident pages of the calling thread's Scratches and of the pool workers' (between two
// jobs: it waits for the running one). The caller must be between its own ops (the engine calls it
// between steps); other JS threads' engines keep theirs, as their ops may be running. Returns the
// bytes advised.
size_t release_scratch_pages();

// Drops the resident pages wholly inside [p, p + bytes) (the system's page size; partial pages at
// the ends stay). The range must be memory whose contents may be lost: later reads see zeros.
// Returns the bytes advised (0 where the system has no such call).
size_t release_pages(void* p, size_t bytes);

}  // namespace pw
