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
#include <type_traits>
#include <utility>

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/mutex.h"

namespace logstar {

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
    const Worker<std::remove_reference_t<Body>> worker(&next, &body, n);
    // Run may hand `loop` to one of the arena's threads.
    const auto loop = [&] {
      HappensAfter(&fork_join_token_);
      tbb::parallel_for(0, std::min(n, num_threads_), worker);
      HappensBefore(&fork_join_token_);
    };
    // The edges go through a fixed address: everything above is written
    // before this release, and a thread acquires before it reads any of it.
    HappensBefore(&fork_join_token_);
    Run(loop);
    HappensAfter(&fork_join_token_);
  }

 private:
  // ParallelFor's loop body. TBB copies it into its task objects, on
  // whichever thread splits the range and after ParallelFor's release: each
  // copy acquires before it reads its source and releases once written, so
  // that the thread which runs a copy (and acquires first) sees it whole.
  template <typename Body>
  class Worker {
   public:
    Worker(std::atomic<int>* next, Body* body, int n) : next_(next), body_(body), n_(n) {}
    Worker(const Worker& other) {
      HappensAfter(&fork_join_token_);
      next_ = other.next_;
      body_ = other.body_;
      n_ = other.n_;
      HappensBefore(&fork_join_token_);
    }
    Worker& operator=(const Worker&) = delete;

    void operator()(int /*worker*/) const {
      HappensAfter(&fork_join_token_);
      for (int i = next_->fetch_add(1); i < n_; i = next_->fetch_add(1)) (*body_)(i);
      HappensBefore(&fork_join_token_);
    }

   private:
    std::atomic<int>* next_;
    Body* body_;
    int n_;
  };

  explicit ExecutionContext(int num_threads);

  int num_threads_;
  tbb::task_arena arena_;
  static inline char fork_join_token_ = 0;  // only its address is used
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_BASE_CONTEXT_H_
