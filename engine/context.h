// ExecutionContext: the threads the engine may use.
//
// Every engine call that runs in parallel takes an ExecutionContext* and runs
// its work inside that context's oneTBB arena, so the caller (the daemon, a
// test, the CLI) decides how many cores analysis may occupy. Results never
// depend on the thread count: parallel work is split into fixed pieces whose
// outputs are combined in a fixed order.
//
// Thread-safety: an ExecutionContext may be shared by any number of threads.
#ifndef LOGSTAR_ENGINE_CONTEXT_H_
#define LOGSTAR_ENGINE_CONTEXT_H_

#include <memory>
#include <utility>

#include <tbb/task_arena.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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

 private:
  explicit ExecutionContext(int num_threads);

  int num_threads_;
  tbb::task_arena arena_;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_CONTEXT_H_
