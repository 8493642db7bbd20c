#include "engine/base/context.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<ExecutionContext> MustCreate(int num_threads) {
  absl::StatusOr<std::unique_ptr<ExecutionContext>> c =
      ExecutionContext::Create({.num_threads = num_threads});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// The largest number of loop bodies of a parallel_for over `n` iterations,
// run inside `context`, that were ever executing at the same time. Each body
// sleeps briefly so that concurrent bodies, if any, overlap.
int MaxConcurrency(ExecutionContext& context, int n) {
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  context.Run([&] {
    tbb::parallel_for(tbb::blocked_range<int>(0, n, 1), [&](const tbb::blocked_range<int>& r) {
      for (int i = r.begin(); i != r.end(); ++i) {
        const int now = running.fetch_add(1) + 1;
        int seen = max_running.load();
        while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        running.fetch_sub(1);
      }
    });
  });
  return max_running.load();
}

TEST(ExecutionContextTest, CreateReportsOneThread) {
  std::unique_ptr<ExecutionContext> c = MustCreate(1);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->num_threads(), 1);
}

TEST(ExecutionContextTest, CreateReportsTwoThreads) {
  std::unique_ptr<ExecutionContext> c = MustCreate(2);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->num_threads(), 2);
}

TEST(ExecutionContextTest, ZeroThreadsMeansAtLeastOne) {
  std::unique_ptr<ExecutionContext> c = MustCreate(0);
  ASSERT_NE(c, nullptr);
  EXPECT_GE(c->num_threads(), 1);
}

TEST(ExecutionContextTest, NegativeThreadsIsInvalidArgumentNamingField) {
  absl::StatusOr<std::unique_ptr<ExecutionContext>> c =
      ExecutionContext::Create({.num_threads = -1});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("num_threads"));
}

TEST(ExecutionContextTest, DefaultIsNonNullAndStable) {
  ExecutionContext* d = ExecutionContext::Default();
  ASSERT_NE(d, nullptr);
  EXPECT_GE(d->num_threads(), 1);
  EXPECT_EQ(ExecutionContext::Default(), d);
}

TEST(ExecutionContextTest, RunReturnsTheLambdasValue) {
  std::unique_ptr<ExecutionContext> c = MustCreate(2);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Run([] { return 42; }), 42);
  EXPECT_EQ(c->Run([] { return std::string("abc"); }), "abc");
}

TEST(ExecutionContextTest, OneThreadContextNeverRunsBodiesConcurrently) {
  std::unique_ptr<ExecutionContext> c = MustCreate(1);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(MaxConcurrency(*c, 200), 1);
}

TEST(ExecutionContextTest, TwoThreadContextUsesAtMostTwoThreads) {
  std::unique_ptr<ExecutionContext> c = MustCreate(2);
  ASSERT_NE(c, nullptr);
  const int m = MaxConcurrency(*c, 200);
  EXPECT_GE(m, 1);
  EXPECT_LE(m, 2);
}

}  // namespace
}  // namespace logstar
