// Persistent thread pool. Workers are created once (set_num_threads resizes) and wait for work by
// spinning briefly, then sleeping on a condition variable; no thread is created per op.
//
// One job runs at a time: callers from different JS threads (the engine's worker_thread and the
// main thread) are serialized by `call_mu`. A job is a count of items; threads claim items with a
// CAS on `state` = (generation << 32 | next item), so a thread can only ever claim an item of the
// generation it read the job for. Which thread runs which item never changes a result: kernels
// make items independent outputs.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace pw {

namespace {

constexpr uint32_t kClosed = 0xffffffffu;
constexpr auto kSpinTime = std::chrono::microseconds(100);

thread_local bool tls_in_pool = false;
thread_local bool tls_pool_worker = false;

int default_threads() {
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}  // inside a job (worker, or caller while it runs one)

struct Pool {
  std::mutex call_mu;  // one job at a time; also guards `workers` and resizing
  std::mutex mu;       // sleeping workers + first exception
  std::condition_variable cv;
  std::vector<std::thread> workers;
  std::atomic<int> threads{0};  // including the caller; 0 = not configured yet
  bool started = false;

  std::atomic<uint64_t> state{0};
  std::atomic<bool> stop{false};
  std::atomic<int> sleepers{0};
  std::atomic<int64_t> done{0};
  std::atomic<int64_t> nitems{0};
  std::atomic<const FnRef<void(int64_t)>*> job{nullptr};
  std::exception_ptr error;

  static uint32_t gen_of(uint64_t s) { return static_cast<uint32_t>(s >> 32); }
  static uint32_t idx_of(uint64_t s) { return static_cast<uint32_t>(s); }

  // Claims and runs items of generation `gen` until none is left.
  void work(uint32_t gen) {
    uint64_t s = state.load();
    for (;;) {
      if (gen_of(s) != gen) return;
      const uint32_t idx = idx_of(s);
      const int64_t n = nitems.load();
      const FnRef<void(int64_t)>* fn = job.load();
      if (idx == kClosed || static_cast<int64_t>(idx) >= n) return;
      if (!state.compare_exchange_weak(s, s + 1)) continue;  // s reloaded
      try {
        (*fn)(idx);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
      }
      done.fetch_add(1);
      s = state.load();
    }
  }

  void worker_main() {
    tls_in_pool = true;
    tls_pool_worker = true;
    uint32_t seen = gen_of(state.load());
    for (;;) {
      uint64_t s;
      auto spin_start = std::chrono::steady_clock::now();
      int spins = 0;
      for (;;) {
        if (stop.load()) return;
        s = state.load();
        if (gen_of(s) != seen) break;
        if ((++spins & 63) != 0 || std::chrono::steady_clock::now() - spin_start < kSpinTime) {
          cpu_relax();
          continue;
        }
        std::unique_lock<std::mutex> lk(mu);
        sleepers.fetch_add(1);
        cv.wait(lk, [&] { return stop.load() || gen_of(state.load()) != seen; });
        sleepers.fetch_sub(1);
        spin_start = std::chrono::steady_clock::now();
      }
      seen = gen_of(s);
      work(seen);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop.store(true);
    }
    cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
    stop.store(false);
  }

  void start_workers() {
    if (threads.load() <= 0) threads.store(default_threads());
    for (int i = 1; i < threads.load(); i++) workers.emplace_back([this] { worker_main(); });
    started = true;
  }

  // Caller side: publish the job, take items too, wait for all of them.
  void run(int64_t n, const FnRef<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> call(call_mu);
    if (!started) start_workers();
    if (workers.empty() || n == 1) {
      for (int64_t i = 0; i < n; i++) fn(i);
      return;
    }
    const uint32_t prev = gen_of(state.load());
    // Close the old generation before touching the job fields (a late worker must not pair an old
    // generation with the new job), then publish the new one.
    state.store(static_cast<uint64_t>(prev + 1) << 32 | kClosed);
    error = nullptr;
    done.store(0);
    nitems.store(n);
    job.store(&fn);
    const uint32_t gen = prev + 2;
    state.store(static_cast<uint64_t>(gen) << 32);
    if (sleepers.load() > 0) {
      { std::lock_guard<std::mutex> lk(mu); }
      cv.notify_all();
    }
    work(gen);
    int spins = 0;
    while (done.load() < n) {
      if (++spins < 4096) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    job.store(nullptr);
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> lk(mu);
      e = error;
      error = nullptr;
    }
    if (e) std::rethrow_exception(e);
  }
};

// Never destroyed: worker threads may still be parked on its condition variable at process exit.
Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

void parallel_items(int64_t n, FnRef<void(int64_t item)> fn) {
  if (n <= 0) return;
  if (tls_in_pool || n == 1) {
    for (int64_t i = 0; i < n; i++) fn(i);
    return;
  }
  // Item indices travel in 32 bits; group items if there are more (no kernel does that).
  const int64_t kMaxItems = int64_t(1) << 30;
  struct Flag {
    Flag() { tls_in_pool = true; }
    ~Flag() { tls_in_pool = false; }
  } flag;
  if (n > kMaxItems) {
    const int64_t per = (n + kMaxItems - 1) / kMaxItems;
    const int64_t groups = (n + per - 1) / per;
    auto grouped_fn = [&](int64_t g) {
      const int64_t end = std::min(n, (g + 1) * per);
      for (int64_t i = g * per; i < end; i++) fn(i);
    };
    const FnRef<void(int64_t)> grouped(grouped_fn);
    pool().run(groups, grouped);
  } else {
    pool().run(n, fn);
  }
}

void parallel_for(int64_t n, FnRef<void(int64_t begin, int64_t end)> fn) {
  if (n <= 0) return;
  const int64_t chunks = std::min<int64_t>(n, tls_in_pool ? 1 : num_threads());
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  parallel_items(chunks, [&](int64_t c) {
    // Balanced contiguous split: chunk c covers [c*n/chunks, (c+1)*n/chunks).
    const int64_t b = static_cast<int64_t>((static_cast<__int128>(n) * c) / chunks);
    const int64_t e = static_cast<int64_t>((static_cast<__int128>(n) * (c + 1)) / chunks);
    if (e > b) fn(b, e);
  });
}

void parallel_pieces(int64_t n, int64_t share, int64_t min_piece, FnRef<void(int64_t begin, int64_t end)> fn) {
  if (n <= 0) return;
  const int64_t threads = tls_in_pool ? 1 : num_threads();
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  const int64_t per = std::max<int64_t>(1, share) * threads;
  // The cuts, fixed before any piece runs (a nested call never gets here: tls_in_pool).
  thread_local std::vector<int64_t> cuts;
  cuts.assign(1, 0);
  for (int64_t b = 0; b < n;) {
    b = std::min(n, b + std::max(std::max<int64_t>(1, min_piece), (n - b + per - 1) / per));
    cuts.push_back(b);
  }
  const int64_t* c = cuts.data();
  parallel_items(static_cast<int64_t>(cuts.size()) - 1, [&](int64_t i) { fn(c[i], c[i + 1]); });
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  Pool& p = pool();
  std::lock_guard<std::mutex> call(p.call_mu);
  if (p.started && p.threads.load() == n) return;
  if (p.started) p.stop_workers();
  p.threads.store(n);
  p.start_workers();
}

void while_pool_idle(FnRef<void()> fn) {
  std::lock_guard<std::mutex> call(pool().call_mu);
  fn();
}

bool is_pool_worker() { return tls_pool_worker; }

int num_threads() {
  const int t = pool().threads.load();
  return t > 0 ? t : default_threads();
}

}  // namespace pw
