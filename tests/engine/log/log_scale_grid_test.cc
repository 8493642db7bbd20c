#include "engine/log/log_scale_grid.h"

#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/base/context.h"
#include "engine/log/log_detector.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<ExecutionContext> MakeContext(int threads) {
  auto c = ExecutionContext::Create({.num_threads = threads});
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(c).value();
}

// A noisy generated YBCO-like frame, normalised to [0, 1].
cv::Mat Frame(int size, double noise, uint64_t seed) {
  SynthOptions o;
  o.width = o.height = size;
  o.noise = noise;
  o.amorphous_fraction = 0.15;
  o.seed = seed;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  absl::StatusOr<cv::Mat> n = NormalizeFrame(f->image, NormalizeOptions{});
  EXPECT_TRUE(n.ok()) << n.status();
  return *n;
}

LogScaleOptions Scales(double lo, double hi, int num, bool log_scale = false) {
  LogScaleOptions s;
  s.min_sigma = lo;
  s.max_sigma = hi;
  s.num_sigma = num;
  s.log_scale = log_scale;
  return s;
}

LogDetectOptions Detection(double threshold, double overlap) {
  LogDetectOptions d;
  d.threshold = threshold;
  d.overlap = overlap;
  return d;
}

std::vector<Blob> Exact(const cv::Mat& image, const LogScaleOptions& s, const LogDetectOptions& d) {
  LogOptions o;
  o.scale = s;
  o.detect = d;
  absl::StatusOr<std::vector<Blob>> b = DetectBlobsLog(image, o, ExecutionContext::Default());
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *b : std::vector<Blob>{};
}

// When a candidate's sigmas are grid sigmas, the grid must give exactly
// what blob_log gives: same peaks, same responses, same pruning.
TEST(LogScaleGridTest, SigmasOnTheGridMatchBlobLogExactly) {
  const cv::Mat image = Frame(200, 0.3, 7);
  LogGridOptions go;
  go.min_sigma = 1.0;
  go.max_sigma = 8.0;
  go.spacing = 0.05;
  go.response_floor = 0.02;
  absl::StatusOr<LogScaleGrid> grid = LogScaleGrid::Compute(image, go, ExecutionContext::Default());
  ASSERT_TRUE(grid.ok()) << grid.status();
  const std::vector<double>& g = grid->sigmas();
  // log_scale sigmas from grid point i to grid point i + 3·(n - 1), n scales,
  // are grid points (up to rounding far below the half-spacing).
  for (auto [first, num, threshold, overlap] : std::vector<std::tuple<int, int, double, double>>{
           {5, 10, 0.05, 0.5}, {0, 8, 0.02, 0.3}, {10, 4, 0.1, 0.0}, {3, 1, 0.05, 0.5}}) {
    const int last = first + 3 * (num - 1);
    ASSERT_LT(last, static_cast<int>(g.size()));
    const LogScaleOptions s = Scales(g[first], g[last], num, /*log_scale=*/true);
    const LogDetectOptions d = Detection(threshold, overlap);
    absl::StatusOr<std::vector<Blob>> fast = grid->Detect(s, d);
    ASSERT_TRUE(fast.ok()) << fast.status();
    const std::vector<Blob> exact = Exact(image, s, d);
    ASSERT_EQ(fast->size(), exact.size()) << "first " << first << " num " << num;
    ASSERT_GT(exact.size(), 10u);
    for (size_t i = 0; i < exact.size(); ++i) {
      EXPECT_EQ((*fast)[i].x, exact[i].x);
      EXPECT_EQ((*fast)[i].y, exact[i].y);
      EXPECT_EQ((*fast)[i].scale_index, exact[i].scale_index);
      EXPECT_NEAR((*fast)[i].sigma, exact[i].sigma, 1e-9 * exact[i].sigma);
      EXPECT_FLOAT_EQ((*fast)[i].response, exact[i].response);
    }
  }
}

// Off the grid, sigmas move by at most half the spacing: the blobs found
// stay nearly all the same.
TEST(LogScaleGridTest, OffGridSigmasGiveNearlyTheSameBlobs) {
  const cv::Mat image = Frame(256, 0.3, 3);
  LogGridOptions go;
  go.min_sigma = 0.8;
  go.max_sigma = 8.0;
  go.response_floor = 0.01;
  absl::StatusOr<LogScaleGrid> grid = LogScaleGrid::Compute(image, go, ExecutionContext::Default());
  ASSERT_TRUE(grid.ok()) << grid.status();
  for (auto [lo, hi, threshold, overlap] : std::vector<std::tuple<double, double, double, double>>{
           {1.1, 5.3, 0.05, 0.5}, {2.0, 4.1, 0.1, 0.2}, {0.9, 7.7, 0.03, 0.45}}) {
    const LogScaleOptions s = Scales(lo, hi, 10);
    const LogDetectOptions d = Detection(threshold, overlap);
    absl::StatusOr<std::vector<Blob>> fast = grid->Detect(s, d);
    ASSERT_TRUE(fast.ok()) << fast.status();
    const std::vector<Blob> exact = Exact(image, s, d);
    int matched = 0;
    for (const Blob& e : exact) {
      for (const Blob& f : *fast) {
        if (std::abs(e.x - f.x) <= 1 && std::abs(e.y - f.y) <= 1) {
          ++matched;
          break;
        }
      }
    }
    EXPECT_GE(matched, 0.97 * exact.size()) << lo << "-" << hi;
    EXPECT_NEAR(static_cast<double>(fast->size()), static_cast<double>(exact.size()),
                0.03 * exact.size());
  }
}

// DetectAtMost gives up only when pruning would certainly exceed the limit:
// otherwise it returns exactly Detect()'s blobs. Over a sweep from floods of
// noise peaks to sparse detections, every refusal must be a count that is
// really above the limit, and a flood well above it must be refused.
TEST(LogScaleGridTest, DetectAtMostRefusesOnlyWhatCertainlyExceedsTheLimit) {
  const cv::Mat image = Frame(256, 0.6, 5);
  LogGridOptions go;
  go.min_sigma = 0.9;
  go.max_sigma = 7.2;
  go.response_floor = 0.01;
  absl::StatusOr<LogScaleGrid> grid = LogScaleGrid::Compute(image, go, ExecutionContext::Default());
  ASSERT_TRUE(grid.ok()) << grid.status();
  const PixelRegion core{20, 20, 216, 216};
  auto in_core = [&](const std::vector<Blob>& blobs) {
    size_t n = 0;
    for (const Blob& b : blobs) {
      n += b.x >= core.col0 - 0.5 && b.x < core.col0 + core.cols - 0.5 && b.y >= core.row0 - 0.5 &&
           b.y < core.row0 + core.rows - 0.5;
    }
    return n;
  };
  int refused = 0;
  for (double threshold : {0.01, 0.015, 0.02, 0.04, 0.08}) {
    for (double overlap : {0.05, 0.3, 0.5}) {
      for (auto [lo, hi] : std::vector<std::pair<double, double>>{{0.9, 6.2}, {3.0, 4.0}}) {
        const LogScaleOptions s = Scales(lo, hi, 10);
        const LogDetectOptions d = Detection(threshold, overlap);
        absl::StatusOr<std::vector<Blob>> all = grid->Detect(s, d);
        ASSERT_TRUE(all.ok()) << all.status();
        const size_t truth = in_core(*all);
        for (size_t limit : {size_t{50}, size_t{200}, size_t{600}}) {
          absl::StatusOr<std::optional<std::vector<Blob>>> at_most =
              grid->DetectAtMost(s, d, core, limit);
          ASSERT_TRUE(at_most.ok()) << at_most.status();
          if (!at_most->has_value()) {
            ++refused;
            EXPECT_GT(truth, limit) << threshold << " " << overlap << " " << lo;
          } else {
            ASSERT_EQ((*at_most)->size(), all->size());
            for (size_t i = 0; i < all->size(); ++i) {
              EXPECT_EQ((**at_most)[i].x, (*all)[i].x);
              EXPECT_EQ((**at_most)[i].y, (*all)[i].y);
            }
          }
          // A count three times the limit is a flood the bound must see.
          if (truth > 3 * limit) {
            EXPECT_FALSE(at_most->has_value()) << truth << " > 3 x " << limit;
          }
        }
      }
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(LogScaleGridTest, SameResultWithOneAndTwoThreads) {
  const cv::Mat image = Frame(256, 0.6, 11);
  LogGridOptions go;
  go.min_sigma = 1.0;
  go.max_sigma = 7.0;
  auto one = MakeContext(1), two = MakeContext(2);
  absl::StatusOr<LogScaleGrid> a = LogScaleGrid::Compute(image, go, one.get());
  absl::StatusOr<LogScaleGrid> b = LogScaleGrid::Compute(image, go, two.get());
  ASSERT_TRUE(a.ok() && b.ok());
  const LogScaleOptions s = Scales(1.3, 5.5, 10);
  const LogDetectOptions d = Detection(0.03, 0.4);
  auto ba = a->Detect(s, d), bb = b->Detect(s, d);
  ASSERT_TRUE(ba.ok() && bb.ok());
  ASSERT_EQ(ba->size(), bb->size());
  for (size_t i = 0; i < ba->size(); ++i) {
    EXPECT_EQ((*ba)[i].x, (*bb)[i].x);
    EXPECT_EQ((*ba)[i].y, (*bb)[i].y);
    EXPECT_EQ((*ba)[i].response, (*bb)[i].response);
  }
}

TEST(LogScaleGridTest, RejectsWhatItCannotAnswer) {
  const cv::Mat image = Frame(64, 0.1, 1);
  LogGridOptions go;
  go.min_sigma = 1.0;
  go.max_sigma = 4.0;
  go.response_floor = 0.05;
  absl::StatusOr<LogScaleGrid> grid = LogScaleGrid::Compute(image, go, ExecutionContext::Default());
  ASSERT_TRUE(grid.ok());
  EXPECT_THAT(grid->Detect(Scales(1.0, 6.0, 10), Detection(0.1, 0.5)).status().message(),
              HasSubstr("outside the grid"));
  EXPECT_THAT(grid->Detect(Scales(0.5, 3.0, 10), Detection(0.1, 0.5)).status().message(),
              HasSubstr("outside the grid"));
  EXPECT_THAT(grid->Detect(Scales(1.0, 3.0, 10), Detection(0.01, 0.5)).status().message(),
              HasSubstr("response_floor"));

  go.spacing = 0.0;
  EXPECT_THAT(LogScaleGrid::Compute(image, go, ExecutionContext::Default()).status().message(),
              HasSubstr("spacing"));
  go.spacing = 0.02;
  cv::Mat bad = image.clone();
  bad.at<float>(3, 3) = std::nanf("");
  EXPECT_THAT(LogScaleGrid::Compute(bad, go, ExecutionContext::Default()).status().message(),
              HasSubstr("NaN"));
}

}  // namespace
}  // namespace logstar
