// A fixed set of threads that run frame analyses, so that gRPC's reactions
// only queue work and return. Each analysis then runs its parallel parts in
// the engine's oneTBB arena (ExecutionContext). How many frames are
// analysed at once across all streams is bounded by a Gate, not by the
// pool's size: the pool has a thread more per place, so that a frame's
// answer (steering, encoding, gRPC's write) runs while the stream's next
// frame is already analysed.
//
// Thread-safety: Submit may be called from any thread, including from a task.
#ifndef LOGSTAR_SERVER_WORKER_POOL_H_
#define LOGSTAR_SERVER_WORKER_POOL_H_

#include <algorithm>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/base/mutex.h"

namespace logstar::server {

class WorkerPool {
 public:
  explicit WorkerPool(int num_threads);  // >= 1
  // Runs the tasks still queued, then joins the threads.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Tasks start in submission order. The queue is unbounded: its callers
  // bound it (a stream has at most one task queued or running).
  void Submit(std::function<void()> task);
  int queued() const;  // not yet started

 private:
  void Loop();

  mutable Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CondVar wake_;  // signalled when a task is queued or stopping_ is set
  std::vector<std::thread> threads_;
};

// At most `places` holders at once: Enter waits for a place.
class Gate {
 public:
  explicit Gate(int places) : free_(std::max(places, 1)) {}
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  // A place, until released (Release, or destruction). Move-only; the gate
  // must outlive it.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    Hold& operator=(Hold&& other) noexcept {
      Release();
      gate_ = std::exchange(other.gate_, nullptr);
      return *this;
    }
    ~Hold() { Release(); }
    void Release();

   private:
    friend class Gate;
    explicit Hold(Gate* gate) : gate_(gate) {}
    Gate* gate_ = nullptr;
  };

  Hold Enter();

 private:
  Mutex mu_;
  int free_ ABSL_GUARDED_BY(mu_);
  CondVar freed_;  // signalled when a place is released
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_WORKER_POOL_H_
