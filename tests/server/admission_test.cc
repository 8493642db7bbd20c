// server/admission.h: the memory budget's reservations, the concurrency
// limit, and the default budget against /proc/meminfo read here.
#include "server/admission.h"

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;

TEST(MemoryBudgetTest, ReservationsAddUpAndReturnWhenReleased) {
  MemoryBudget budget(100 << 20);
  absl::StatusOr<MemoryBudget::Reservation> a = budget.Reserve(60 << 20, "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(budget.used(), uint64_t{60} << 20);
  const absl::Status refused = budget.Reserve(50 << 20, "frame 7").status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("frame 7 needs an estimated 50.0 MiB; the daemon's "
                                           "memory budget is 100.0 MiB with 60.0 MiB in use by "
                                           "1 frame reservations"));
  EXPECT_EQ(budget.used(), uint64_t{60} << 20);  // a refusal takes nothing
  absl::StatusOr<MemoryBudget::Reservation> b = budget.Reserve(40 << 20, "b");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(budget.Grow(*b, 1, "b").ok());
  MemoryBudget::Reservation moved = *std::move(a);
  EXPECT_EQ(budget.used(), uint64_t{100} << 20);
  moved.Release();
  EXPECT_EQ(budget.used(), uint64_t{40} << 20);
  ASSERT_TRUE(budget.Grow(*b, 10 << 20, "b").ok());
  EXPECT_EQ(b->bytes(), uint64_t{50} << 20);
  { MemoryBudget::Reservation gone = *std::move(b); }
  EXPECT_EQ(budget.used(), 0u);
  // More than the whole budget never fits.
  EXPECT_FALSE(budget.Reserve((100 << 20) + 1, "huge").ok());
}

TEST(MemoryBudgetTest, ConcurrentReservationsNeverExceedTheBudget) {
  MemoryBudget budget(10);
  std::atomic<int> held{0}, most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        absl::StatusOr<MemoryBudget::Reservation> r = budget.Reserve(3, "x");
        if (!r.ok()) continue;
        const int now = held.fetch_add(3) + 3;
        int m = most.load();
        while (now > m && !most.compare_exchange_weak(m, now)) {
        }
        held.fetch_sub(3);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), 9);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(ConcurrencyLimitTest, AdmitsUpToTheLimit) {
  ConcurrencyLimit limit(2);
  EXPECT_TRUE(limit.TryAcquire());
  EXPECT_TRUE(limit.TryAcquire());
  EXPECT_FALSE(limit.TryAcquire());
  limit.Release();
  EXPECT_TRUE(limit.TryAcquire());
  EXPECT_EQ(limit.in_use(), 2);
}

TEST(DefaultMemoryBudgetTest, IsAtMostHalfTheMachinesMemory) {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  while (in >> key && key != "MemTotal:") {
    in.ignore(1 << 10, '\n');
  }
  ASSERT_TRUE(in >> kb);
  const uint64_t half = kb * 1024 / 2;
  EXPECT_LE(DefaultMemoryBudget(), half);
  EXPECT_GT(DefaultMemoryBudget(), 0u);
}

}  // namespace
}  // namespace logstar::server
