// Admission: what the daemon lets in, so that no flood of frames, calls or
// sessions takes the machine's memory (issue 16, item 3).
//
// MemoryBudget holds the bytes admitted frames may take. A frame reserves
// its message's bytes when it is accepted (the message stays in memory
// while it waits in a queue), and its estimated peak
// (engine/analysis/memory_estimate.h, plus the copy of pixels read from
// shared memory) before it is analysed; both are released when its answer is
// made. A reservation that does not fit is refused at once with
// RESOURCE_EXHAUSTED naming what was asked, the budget and what is in use:
// nothing waits for memory. The daemon's own baseline (code, sessions and
// their caches, gRPC's buffers) is outside the budget.
//
// Thread-safety: every method may be called from any thread.
#ifndef LOGSTAR_SERVER_ADMISSION_H_
#define LOGSTAR_SERVER_ADMISSION_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/base/mutex.h"

namespace logstar::server {

class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Bytes held until released (by Release, a move-assignment or the
  // destructor). Move-only; the budget must outlive it.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }

    void Release();
    uint64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    MemoryBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  // `bytes` more, or RESOURCE_EXHAUSTED: "<what> needs <bytes>; the memory
  // budget is <capacity> with <used> in use by <n> reservations".
  absl::StatusOr<Reservation> Reserve(uint64_t bytes, absl::string_view what);
  // Adds `bytes` to `r` (from this budget, or empty), on the same terms.
  absl::Status Grow(Reservation& r, uint64_t bytes, absl::string_view what);

  uint64_t capacity() const { return capacity_; }
  uint64_t used() const;

 private:
  void Return(uint64_t bytes);

  const uint64_t capacity_;
  mutable Mutex mu_;
  uint64_t used_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reservations_ ABSL_GUARDED_BY(mu_) = 0;
};

// Limits how many of something run at once (AnalyzeFrame calls admitted).
class ConcurrencyLimit {
 public:
  explicit ConcurrencyLimit(int limit) : limit_(limit) {}
  // Takes a place, or returns false when `limit` are taken.
  bool TryAcquire();
  void Release();
  int in_use() const;

 private:
  const int limit_;
  mutable Mutex mu_;
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;
};

// The memory budget when none is configured: half the memory the daemon may
// use, the smaller of the machine's (MemTotal in /proc/meminfo) and its
// cgroup's limit (memory.max, cgroup v2) when it has one. 1 GiB when neither
// can be read.
uint64_t DefaultMemoryBudget();

// "123.4 MiB", for messages.
std::string Mebibytes(uint64_t bytes);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_ADMISSION_H_
