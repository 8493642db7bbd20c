// ExecutionContext: the threads the engine may use.
//
// Every engine call that runs in parallel takes an ExecutionContext* and runs
// its work inside that context's oneTBB arena, so the caller (the daemon, a
// test, the CLI) decides how many cores analysis may occupy. Results never
// depend on the thread count: parallel work is split into fixed pieces whose
// outputs are combined in a fixed order.
//
// Thread-safety: an ExecutionContext may be shared by any number of threads.
#ifndef LOGSTAR_ENGINE_BASE_CONTEXT_H_
#define LOGSTAR_ENGINE_BASE_CONTEXT_H_

#include <algorithm>
#include <atomic>
#include <memory>
#include <utility>

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace logstar {
namespace internal {

// Happens-before edges for ThreadSanitizer; no-ops otherwise.
inline void AnnotateAcquire([[maybe_unused]] void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(addr);
#endif
}
inline void AnnotateRelease([[maybe_unused]] void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(addr);
#endif
}

}  // namespace internal

class ExecutionContext {
 public:
  struct Options {
    // Worker threads of the arena; 0 means one per hardware thread.
    int num_threads = 0;

    absl::Status Validate() const;
  };

  static absl::StatusOr<std::unique_ptr<ExecutionContext>> Create(const Options& options);

  // A process-wide context using every hardware thread, for tools and tests.
  static ExecutionContext* Default();

  ExecutionContext(const ExecutionContext&) = delete;
  ExecutionContext& operator=(const ExecutionContext&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs `f` inside the arena and returns its result; parallel algorithms
  // called from `f` use only this arena's threads.
  template <typename F>
  auto Run(F&& f) -> decltype(f()) {
    return arena_.execute(std::forward<F>(f));
  }

  // Calls body(i) for i in [0, n), in parallel within the arena, and returns
  // when all are done. Whatever the caller wrote before is visible to every
  // body(i), and everything the bodies wrote is visible after. (Those edges are stated to
  // ThreadSanitizer too: Debian's oneTBB is not instrumented, so it cannot see them itself.)
  template <typename Body>
  void ParallelFor(int n, Body&& body) {
    // Workers take indices from a shared counter, so tasks are balanced
    // whatever each costs and no index travels inside TBB's task objects.
    std::atomic<int> next{0};
    // The edges go through a fixed address: a worker must acquire before it
    // reads anything of the caller's, its closure included.
    internal::AnnotateRelease(&fork_join_token_);
    Run([&] {
      tbb::parallel_for(0, std::min(n, num_threads_), [&](int /*worker*/) {
        internal::AnnotateAcquire(&fork_join_token_);
        for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) body(i);
        internal::AnnotateRelease(&fork_join_token_);
      });
    });
    internal::AnnotateAcquire(&fork_join_token_);
  }

 private:
  explicit ExecutionContext(int num_threads);

  int num_threads_;
  tbb::task_arena arena_;
  static inline char fork_join_token_ = 0;  // only its address is used
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_BASE_CONTEXT_H_
