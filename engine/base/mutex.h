// logstar::Mutex, MutexLock, CondVar and Notification: the project's locks;
// HappensBefore/HappensAfter: orderings a third-party library makes, stated
// to ThreadSanitizer.
//
// Thin wrappers over std::mutex and std::condition_variable that carry
// Abseil's thread-safety annotations, so that clang's -Wthread-safety still
// checks every ABSL_GUARDED_BY and ABSL_EXCLUSIVE_LOCKS_REQUIRED
// (tests/check_thread_safety.sh).
//
// Why not absl::Mutex: ThreadSanitizer sees synchronisation only in code it
// instruments or in the functions it intercepts (pthread_mutex_*,
// pthread_cond_*). Debian's Abseil is built without TSan, so absl::Mutex's
// hand-offs were invisible to it and every field guarded by one was
// reported as a race. The standard library's mutex and condition variable
// are pthreads underneath, which TSan intercepts (tests/run_tsan.sh).
//
// Header-only, over the standard library and absl/base/thread_annotations.h
// alone: the engine, the daemon and the C++ client library (clients/cpp,
// which links no engine code) share this one header, and it is installed
// with the client library's headers.
//
// Unlike absl::Mutex: no Await/Condition (wait on a CondVar in a loop over
// the condition, and signal it where the condition's inputs change), no
// reader locks, no deadlock detection. Not recursive.
//
// Thread-safety: every function and member may be called from any thread.
#ifndef LOGSTAR_ENGINE_BASE_MUTEX_H_
#define LOGSTAR_ENGINE_BASE_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

#if defined(__SANITIZE_THREAD__)
#define LOGSTAR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LOGSTAR_TSAN 1
#endif
#endif
#if defined(LOGSTAR_TSAN)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace logstar {

// For orderings that a library TSan cannot see makes (Debian's oneTBB and
// gRPC are not built with it): everything a thread did before
// HappensBefore(addr) happens before whatever another thread does after a
// later HappensAfter(addr) on the same address, as a release and an acquire
// would. Only where the library guarantees that order (ExecutionContext's
// fork and join, a gRPC reactor's creation and its reactions). No-ops
// without TSan.
inline void HappensBefore([[maybe_unused]] const void* addr) {
#if defined(LOGSTAR_TSAN)
  __tsan_release(const_cast<void*>(addr));
#endif
}
inline void HappensAfter([[maybe_unused]] const void* addr) {
#if defined(LOGSTAR_TSAN)
  __tsan_acquire(const_cast<void*>(addr));
#endif
}

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `*mu` from construction to destruction.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }

  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable for a logstar::Mutex. Waits may wake without a
// signal: callers wait in a loop over their condition, e.g.
//   MutexLock lock(&mu_);
//   while (queue_.empty()) ready_.Wait(&mu_);
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases `*mu`, blocks until signalled, and holds `*mu` again on return.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // the caller's lock again
  }
  // As Wait, but for at most `timeout` (steady clock). True when the
  // timeout expired, false when signalled (or woken spuriously).
  bool WaitWithTimeout(Mutex* mu, std::chrono::nanoseconds timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool expired = cv_.wait_for(lock, timeout) == std::cv_status::timeout;
    lock.release();
    return expired;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// A one-time event: Notify() once, any number of threads wait for it.
// Everything the notifying thread did before Notify() happens before
// WaitForNotification() returns.
class Notification {
 public:
  Notification() = default;
  Notification(const Notification&) = delete;
  Notification& operator=(const Notification&) = delete;

  void Notify() {
    MutexLock lock(&mu_);
    notified_ = true;
    notified_cv_.SignalAll();
  }
  void WaitForNotification() {
    MutexLock lock(&mu_);
    while (!notified_) notified_cv_.Wait(&mu_);
  }
  bool HasBeenNotified() const {
    MutexLock lock(&mu_);
    return notified_;
  }

 private:
  mutable Mutex mu_;
  CondVar notified_cv_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_BASE_MUTEX_H_
