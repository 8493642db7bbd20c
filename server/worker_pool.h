// A fixed set of threads that run frame analyses, so that gRPC's reactions
// only queue work and return. Each analysis then runs its parallel parts in
// the engine's oneTBB arena (ExecutionContext); the pool's size bounds how
// many frames are analysed at once across all streams.
//
// Thread-safety: Submit may be called from any thread, including from a task.
#ifndef LOGSTAR_SERVER_WORKER_POOL_H_
#define LOGSTAR_SERVER_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <thread>
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

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_WORKER_POOL_H_
