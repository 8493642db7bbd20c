// The analyzer's support for the daemon: cancelling a frame, and saving
// and restoring the cache.
#include <atomic>
#include <memory>

#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

SynthFrame Make(int size, uint64_t seed) {
  SynthOptions o;
  o.width = o.height = size;
  o.noise = 0.1;
  o.seed = seed;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

AnalyzerOptions Small() {
  AnalyzerOptions o;
  o.window = 64;
  o.logstar.optimizer.num_evaluations = 8;
  o.logstar.optimizer.num_initial = 4;
  return o;
}

TEST(AnalyzerCancelTest, CancelledBeforeTheWindowsLeavesTheCacheEmpty) {
  const SynthFrame f = Make(128, 1);
  auto analyzer = *LogStarAnalyzer::Create(Small(), f.prior);
  std::atomic<bool> cancel{true};
  absl::StatusOr<FrameAnalysis> a =
      analyzer->Analyze(f.image, ExecutionContext::Default(), &cancel);
  EXPECT_TRUE(absl::IsCancelled(a.status())) << a.status();
  for (const auto& c : analyzer->Cache()) EXPECT_FALSE(c.has_value());
  // Not cancelled: the same analyzer still works, and a null flag is no flag.
  cancel = false;
  EXPECT_TRUE(analyzer->Analyze(f.image, ExecutionContext::Default(), &cancel).ok());
  EXPECT_TRUE(analyzer->Analyze(f.image, ExecutionContext::Default(), nullptr).ok());
}

TEST(AnalyzerRestoreTest, RestoredCacheMakesTheNextFrameAllHits) {
  const SynthFrame first = Make(128, 1), second = Make(128, 2);
  auto tuned = *LogStarAnalyzer::Create(Small(), first.prior);
  ASSERT_TRUE(tuned->Analyze(first.image, ExecutionContext::Default()).ok());
  const LogStarAnalyzer::CacheSnapshot saved = tuned->Snapshot();
  EXPECT_EQ(saved.width, 128);
  EXPECT_EQ(saved.layout.size(), 4u);
  ASSERT_EQ(saved.windows.size(), 4u);

  auto restored = *LogStarAnalyzer::Create(Small(), first.prior);
  ASSERT_TRUE(restored->RestoreCache(saved).ok());
  absl::StatusOr<FrameAnalysis> a = restored->Analyze(second.image, ExecutionContext::Default());
  ASSERT_TRUE(a.ok()) << a.status();
  // Every window ran with the restored parameters (unless it drifted).
  EXPECT_EQ(a->misses, 0);
  for (size_t i = 0; i < a->windows.size(); ++i) {
    if (a->windows[i].state == CacheState::kHit) {
      EXPECT_EQ(a->windows[i].parameters.threshold, saved.windows[i]->parameters.threshold);
    }
  }
}

TEST(AnalyzerRestoreTest, RejectsACacheOfAnotherLayoutOrWithBadEntries) {
  const SynthFrame f = Make(128, 1);
  auto tuned = *LogStarAnalyzer::Create(Small(), f.prior);
  ASSERT_TRUE(tuned->Analyze(f.image, ExecutionContext::Default()).ok());
  LogStarAnalyzer::CacheSnapshot saved = tuned->Snapshot();

  AnalyzerOptions other = Small();
  other.window = 128;
  auto wrong_layout = *LogStarAnalyzer::Create(other, f.prior);
  EXPECT_THAT(wrong_layout->RestoreCache(saved).message(), HasSubstr("windows"));

  auto target = *LogStarAnalyzer::Create(Small(), f.prior);
  LogStarAnalyzer::CacheSnapshot bad = saved;
  bad.windows[1]->chosen = 1000;
  EXPECT_THAT(target->RestoreCache(bad).message(), HasSubstr("cached window 1"));
  bad = saved;
  bad.windows[2]->parameters.min_sigma = -1;
  EXPECT_THAT(target->RestoreCache(bad).message(), HasSubstr("cached window 2"));
  // An empty snapshot empties the cache.
  ASSERT_TRUE(target->RestoreCache(saved).ok());
  ASSERT_TRUE(target->RestoreCache({}).ok());
  for (const auto& c : target->Cache()) EXPECT_FALSE(c.has_value());
}

}  // namespace
}  // namespace logstar
