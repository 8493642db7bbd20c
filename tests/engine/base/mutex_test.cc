#include "engine/base/mutex.h"

#include <chrono>
#include <deque>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

// The counts below are closed forms. Under ThreadSanitizer (tests/run_tsan.sh)
// these tests also check that TSan sees each hand-off: the shared data are
// plain ints and containers, so an edge TSan could not see would be a report
// in logstar's code, which fails the run (tests/tsan_reports.py). (The
// counter of ExcludesOtherHolders under Debian's absl::Mutex is reported.)
namespace logstar {
namespace {

using Clock = std::chrono::steady_clock;

TEST(MutexTest, ExcludesOtherHolders) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 5000;
  Mutex mu;
  int count = 0;  // a plain int: a lost update shows without the lock
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        MutexLock lock(&mu);
        const int seen = count;
        std::this_thread::yield();  // widens the window a missing lock would leave
        count = seen + 1;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(count, kThreads * kIncrements);
}

TEST(CondVarTest, HandsEveryItemToTheWaiter) {
  constexpr int kItems = 2000;
  Mutex mu;
  CondVar ready;
  std::deque<int> queue;
  bool done = false;
  std::thread producer([&] {
    for (int i = 1; i <= kItems; ++i) {
      MutexLock lock(&mu);
      queue.push_back(i);
      ready.Signal();
    }
    MutexLock lock(&mu);
    done = true;
    ready.SignalAll();
  });
  long long sum = 0;
  int received = 0;
  {
    MutexLock lock(&mu);
    for (;;) {
      while (queue.empty() && !done) ready.Wait(&mu);
      if (queue.empty()) break;
      sum += queue.front();
      queue.pop_front();
      ++received;
    }
  }
  producer.join();
  EXPECT_EQ(received, kItems);
  EXPECT_EQ(sum, static_cast<long long>(kItems) * (kItems + 1) / 2);
}

TEST(CondVarTest, WaitWithTimeoutExpiresWithoutASignal) {
  Mutex mu;
  CondVar never;
  const auto timeout = std::chrono::milliseconds(50);
  MutexLock lock(&mu);
  const Clock::time_point start = Clock::now();
  bool expired = false;
  // Spurious wake-ups return false early: wait out the whole timeout.
  while (!expired && Clock::now() - start < timeout) {
    expired = never.WaitWithTimeout(&mu, timeout - (Clock::now() - start));
  }
  EXPECT_GE(Clock::now() - start, timeout);
}

TEST(CondVarTest, WaitWithTimeoutReturnsOnASignal) {
  Mutex mu;
  CondVar changed;
  bool flag = false;
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    MutexLock lock(&mu);
    flag = true;
    changed.SignalAll();
  });
  const Clock::time_point start = Clock::now();
  bool expired = false;
  {
    MutexLock lock(&mu);
    while (!flag && !expired) expired = changed.WaitWithTimeout(&mu, std::chrono::seconds(30));
    EXPECT_TRUE(flag);
  }
  setter.join();
  EXPECT_FALSE(expired);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

TEST(NotificationTest, PublishesWhatWasWrittenBeforeNotify) {
  constexpr int kWaiters = 3;
  Notification ready;
  int payload = 0;  // written before Notify, read after the wait, unlocked
  std::vector<int> seen(kWaiters, -1);
  std::vector<std::thread> waiters;
  for (int w = 0; w < kWaiters; ++w) {
    waiters.emplace_back([&, w] {
      ready.WaitForNotification();
      seen[w] = payload;
    });
  }
  EXPECT_FALSE(ready.HasBeenNotified());
  payload = 42;
  ready.Notify();
  for (std::thread& t : waiters) t.join();
  EXPECT_TRUE(ready.HasBeenNotified());
  for (int w = 0; w < kWaiters; ++w) EXPECT_EQ(seen[w], 42) << "waiter " << w;
  ready.WaitForNotification();  // returns at once once notified
}

}  // namespace
}  // namespace logstar
