#include "engine/image/normalize.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/base/context.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

NormalizeOptions Percentile(double low, double high) {
  NormalizeOptions o;
  o.method = NormalizeOptions::Method::kPercentile;
  o.low_percentile = low;
  o.high_percentile = high;
  return o;
}

cv::Mat MustNormalize(const cv::Mat& frame, const NormalizeOptions& options = {}) {
  absl::StatusOr<cv::Mat> out = NormalizeFrame(frame, options);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return cv::Mat();
  EXPECT_EQ(out->type(), CV_32FC1);
  EXPECT_EQ(out->size(), frame.size());
  return *out;
}

// A 2x3 frame of `depth` holding {lo, lo + 10, lo + 50; lo + 100, lo + 25, lo + 75}: min lo,
// max lo + 100, so by hand the normalised values are {0, 0.1, 0.5; 1, 0.25, 0.75}.
cv::Mat AffineFrame(int depth, double lo) {
  cv::Mat d = (cv::Mat_<double>(2, 3) << 0, 10, 50, 100, 25, 75);
  d += lo;
  cv::Mat out;
  d.convertTo(out, depth);
  return out;
}

struct DepthCase {
  int depth;
  double lo;
};

void PrintTo(const DepthCase& c, std::ostream* os) {
  *os << "depth " << c.depth << ", min " << c.lo;
}

class MinMaxDepthTest : public ::testing::TestWithParam<DepthCase> {};

TEST_P(MinMaxDepthTest, MinToZeroMaxToOneExactlyAndAffineBetween) {
  const cv::Mat out = MustNormalize(AffineFrame(GetParam().depth, GetParam().lo));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.at<float>(0, 0), 0.0f);
  EXPECT_EQ(out.at<float>(1, 0), 1.0f);
  EXPECT_FLOAT_EQ(out.at<float>(0, 1), 0.1f);
  EXPECT_FLOAT_EQ(out.at<float>(0, 2), 0.5f);
  EXPECT_FLOAT_EQ(out.at<float>(1, 1), 0.25f);
  EXPECT_FLOAT_EQ(out.at<float>(1, 2), 0.75f);
}

INSTANTIATE_TEST_SUITE_P(AllDepths, MinMaxDepthTest,
                         ::testing::Values(DepthCase{CV_8U, 7}, DepthCase{CV_16U, 1000},
                                           DepthCase{CV_16S, -60}, DepthCase{CV_32F, -0.5},
                                           DepthCase{CV_64F, 1e6}));

TEST(NormalizeTest, MinMaxOfNonRoundRange) {
  // min 3, max 10: (v - 3) / 7, by hand.
  const cv::Mat frame = (cv::Mat_<uint16_t>(1, 4) << 3, 10, 4, 8);
  const cv::Mat out = MustNormalize(frame);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.at<float>(0, 0), 0.0f);
  EXPECT_EQ(out.at<float>(0, 1), 1.0f);
  EXPECT_FLOAT_EQ(out.at<float>(0, 2), 1.0f / 7.0f);
  EXPECT_FLOAT_EQ(out.at<float>(0, 3), 5.0f / 7.0f);
}

TEST(NormalizeTest, ConstantFrameIsAllZeros) {
  for (const NormalizeOptions& o : {NormalizeOptions{}, Percentile(0.1, 99.9)}) {
    const cv::Mat out = MustNormalize(cv::Mat(5, 7, CV_16U, cv::Scalar(1234)), o);
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(cv::countNonZero(out), 0);
  }
}

TEST(NormalizeTest, NanPixelIsInvalidArgumentWithPosition) {
  cv::Mat frame(3, 5, CV_32F, cv::Scalar(0.5));
  frame.at<float>(1, 3) = std::numeric_limits<float>::quiet_NaN();
  for (const NormalizeOptions& o : {NormalizeOptions{}, Percentile(0.1, 99.9)}) {
    absl::StatusOr<cv::Mat> out = NormalizeFrame(frame, o);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(out.status().message()), HasSubstr("x=3, y=1"));
  }
}

// The one-read scan (engine/image/pixel_scan.h) still refuses a lone bad
// pixel at the very end of a large frame, past the vector body of every
// block, with its position; the frame's range is not taken from it.
TEST(NormalizeTest, NanAtTheLastPixelOfALargeFrameIsRefused) {
  for (ExecutionContext* context :
       {static_cast<ExecutionContext*>(nullptr), ExecutionContext::Default()}) {
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      cv::Mat frame(2048, 2048, CV_32F, cv::Scalar(0.5));
      frame.at<float>(0, 0) = -1.0f;
      frame.at<float>(2047, 2047) = bad;
      absl::StatusOr<cv::Mat> out = NormalizeFrame(frame, {}, context);
      ASSERT_FALSE(out.ok());
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(out.status().message()), HasSubstr("x=2047, y=2047"));
    }
  }
}

TEST(NormalizeTest, InfPixelIsInvalidArgumentWithPosition) {
  cv::Mat frame(4, 4, CV_64F, cv::Scalar(2.0));
  frame.at<double>(2, 0) = -std::numeric_limits<double>::infinity();
  absl::StatusOr<cv::Mat> out = NormalizeFrame(frame, {});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("x=0, y=2"));
}

// With a context the frame is normalised by row blocks in parallel: every
// depth gives exactly the serial result and the closed form (v - min) /
// (max - min), also for a non-contiguous view, and the error names the
// first non-finite pixel in row order even when later blocks also hold one.
TEST(NormalizeTest, ParallelRowBlocksMatchTheClosedFormExactly) {
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create({.num_threads = 4});
  ASSERT_TRUE(context.ok()) << context.status();
  cv::RNG rng(11);
  for (int depth : {CV_8U, CV_16U, CV_16S, CV_32F, CV_64F}) {
    SCOPED_TRACE(depth);
    cv::Mat full(420, 710, CV_MAKETYPE(depth, 1));  // 92 rows a block: 5 blocks
    rng.fill(full, cv::RNG::UNIFORM, -200, 30000);
    for (const cv::Mat& frame : {full, full(cv::Rect(3, 5, 700, 400))}) {
      absl::StatusOr<cv::Mat> serial = NormalizeFrame(frame, {});
      absl::StatusOr<cv::Mat> parallel = NormalizeFrame(frame, {}, context->get());
      ASSERT_TRUE(serial.ok() && parallel.ok());
      double lo, hi;
      cv::minMaxLoc(frame, &lo, &hi);
      ASSERT_GT(hi, lo);
      for (int y = 0; y < frame.rows; ++y) {
        for (int x = 0; x < frame.cols; ++x) {
          cv::Mat pixel;
          frame(cv::Rect(x, y, 1, 1)).convertTo(pixel, CV_64F);
          const float expected = static_cast<float>((pixel.at<double>(0, 0) - lo) / (hi - lo));
          ASSERT_EQ(parallel->at<float>(y, x), expected) << "x=" << x << ", y=" << y;
          ASSERT_EQ(serial->at<float>(y, x), expected) << "x=" << x << ", y=" << y;
        }
      }
    }
  }
  cv::Mat frame(420, 710, CV_32F, cv::Scalar(0.5));
  frame.at<float>(400, 2) = std::numeric_limits<float>::infinity();   // last block
  frame.at<float>(200, 9) = std::numeric_limits<float>::quiet_NaN();  // a middle block
  absl::StatusOr<cv::Mat> out = NormalizeFrame(frame, {}, context->get());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("x=9, y=200"));
}

TEST(NormalizeTest, EmptyFrameIsError) {
  absl::StatusOr<cv::Mat> out = NormalizeFrame(cv::Mat(), {});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("empty"));
}

TEST(NormalizeTest, MultiChannelFrameIsError) {
  absl::StatusOr<cv::Mat> out = NormalizeFrame(cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)), {});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("channels"));
}

TEST(NormalizeTest, UnsupportedDepthIsError) {
  EXPECT_FALSE(NormalizeFrame(cv::Mat(4, 4, CV_32S, cv::Scalar(1)), {}).ok());
}

// Percentiles of {3, 1, 4, 1, 5, 9, 2, 6} (sorted 1 1 2 3 4 5 6 9) with numpy's default linear
// interpolation, by hand: p25 at rank 0.25·7 = 1.75 -> 1 + 0.75·(2 - 1) = 1.75; p80 at rank
// 5.6 -> 5 + 0.6·(6 - 5) = 5.6. numpy.percentile gives 1.75 and 5.6000000000000005.
TEST(NormalizeTest, PercentilesMatchNumpyLinearInterpolation) {
  const cv::Mat frame = (cv::Mat_<uint8_t>(2, 4) << 3, 1, 4, 1, 5, 9, 2, 6);
  const cv::Mat out = MustNormalize(frame, Percentile(25, 80));
  ASSERT_FALSE(out.empty());
  // (v - 1.75) / 3.85; from numpy: 4 -> 0.5844155844155844, 2 -> 0.06493506493506493.
  EXPECT_FLOAT_EQ(out.at<float>(0, 2), 0.5844155844155844f);
  EXPECT_FLOAT_EQ(out.at<float>(1, 2), 0.06493506493506493f);
  EXPECT_FLOAT_EQ(out.at<float>(0, 0), static_cast<float>((3 - 1.75) / 3.85));
  EXPECT_FLOAT_EQ(out.at<float>(1, 0), static_cast<float>((5 - 1.75) / 3.85));
  // Below p25 and above p80: clipped.
  EXPECT_EQ(out.at<float>(0, 1), 0.0f);
  EXPECT_EQ(out.at<float>(0, 3), 0.0f);
  EXPECT_EQ(out.at<float>(1, 1), 1.0f);
  EXPECT_EQ(out.at<float>(1, 3), 1.0f);
}

// The values 0..99 shuffled over a 10x10 frame: p0.1 at rank 0.099 = 0.099 and p99.9 at rank
// 98.901 = 98.901 (numpy: 0.099 and 98.90100000000001).
TEST(NormalizeTest, DefaultPercentilesOfARampMatchNumpy) {
  cv::Mat frame(10, 10, CV_32F);
  for (int i = 0; i < 100; ++i) frame.at<float>((i * 37) % 100) = static_cast<float>(i);
  const cv::Mat out = MustNormalize(frame, Percentile(0.1, 99.9));
  ASSERT_FALSE(out.empty());
  auto at_value = [&](int v) { return out.at<float>((v * 37) % 100); };
  // numpy: (50 - lo) / (hi - lo) = 0.5050606263031113, (1 - lo) / (hi - lo) = 0.009119248598206514.
  EXPECT_FLOAT_EQ(at_value(50), 0.5050606263031113f);
  EXPECT_FLOAT_EQ(at_value(1), 0.009119248598206514f);
  EXPECT_EQ(at_value(0), 0.0f);
  EXPECT_EQ(at_value(99), 1.0f);
}

TEST(NormalizeTest, PercentileClipsHotPixelAndSpreadsTheBulk) {
  // 100x100 bulk in [100, 199] (each value 100 times) and one hot pixel of 60000. With
  // N = 10000, p0.1 is at rank 9.999 (value 100) and p99.9 at rank 9989.001 (value 199), so
  // the bulk maps onto exactly [0, 1] and the hot pixel is clipped to 1.
  cv::Mat frame(100, 100, CV_16U);
  for (int i = 0; i < 10000; ++i) frame.at<uint16_t>(i) = static_cast<uint16_t>(100 + i % 100);
  frame.at<uint16_t>(40, 60) = 60000;
  const cv::Mat out = MustNormalize(frame, Percentile(0.1, 99.9));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.at<float>(40, 60), 1.0f);
  EXPECT_EQ(out.at<float>(0, 0), 0.0f);                // value 100
  EXPECT_EQ(out.at<float>(0, 99), 1.0f);               // value 199
  EXPECT_FLOAT_EQ(out.at<float>(0, 33), 1.0f / 3.0f);  // value 133 -> 33 / 99
  double mn, mx;
  cv::minMaxLoc(out, &mn, &mx);
  EXPECT_EQ(mn, 0.0);
  EXPECT_EQ(mx, 1.0);
  // Min-max, by contrast, squeezes the bulk into [0, 99 / 59900].
  const cv::Mat minmax = MustNormalize(frame);
  ASSERT_FALSE(minmax.empty());
  EXPECT_FLOAT_EQ(minmax.at<float>(0, 99), 99.0f / 59900.0f);
}

TEST(NormalizeTest, LowNotBelowHighIsErrorNamingBothFields) {
  for (const NormalizeOptions& o : {Percentile(50, 50), Percentile(60, 40)}) {
    const absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()),
                AllOf(HasSubstr("low_percentile"), HasSubstr("high_percentile")));
    EXPECT_FALSE(NormalizeFrame(cv::Mat(2, 2, CV_8U, cv::Scalar(1)), o).ok());
  }
}

TEST(NormalizeTest, OutOfRangePercentilesAreErrors) {
  for (const NormalizeOptions& o : {Percentile(1, 100.5), Percentile(-1, 50)}) {
    const absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("percentile"));
  }
  EXPECT_TRUE(Percentile(0, 100).Validate().ok());
}

// Finite float64 pixels of ±1.7e308 are a range a double cannot hold, not
// NaN or infinite pixels: the error says so (issue 16, item 6).
TEST(NormalizeTest, ARangeBeyondFloat64IsNamedAsSuch) {
  cv::Mat frame(4, 4, CV_64F, cv::Scalar(0.0));
  frame.at<double>(1, 2) = 1.7e308;
  frame.at<double>(3, 0) = -1.7e308;
  for (const NormalizeOptions& o : {NormalizeOptions{}, Percentile(0, 100)}) {
    const absl::Status s = NormalizeFrame(frame, o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("a range larger than float64 holds"));
  }
  frame.at<double>(3, 0) = 0.0;  // [0, 1.7e308] fits
  EXPECT_TRUE(NormalizeFrame(frame, {}).ok());
}

// The one-pass path (a range the caller measured, issue 21 item 2) maps
// every pixel as (v - min) / (max - min), the closed form computed here in
// double, and equals the two-pass path bit for bit, with and without
// threads, for the wire's common types.
TEST(NormalizeTest, KnownRangeMapsInOnePassAsTheTwoPassPath) {
  cv::RNG rng(21);
  for (int depth : {CV_8U, CV_16U, CV_32F}) {
    cv::Mat frame(301, 257, CV_MAKETYPE(depth, 1));  // several row blocks, odd sizes
    rng.fill(frame, cv::RNG::UNIFORM, 3, depth == CV_8U ? 250 : 60000);
    double lo = 0.0, hi = 0.0;
    for (int y = 0; y < frame.rows; ++y) {
      for (int x = 0; x < frame.cols; ++x) {
        cv::Mat one;
        frame(cv::Rect(x, y, 1, 1)).convertTo(one, CV_64F);
        const double v = one.at<double>(0, 0);
        lo = (x == 0 && y == 0) ? v : std::min(lo, v);
        hi = (x == 0 && y == 0) ? v : std::max(hi, v);
      }
    }
    cv::Mat as_double;
    frame.convertTo(as_double, CV_64F);
    for (ExecutionContext* context :
         {static_cast<ExecutionContext*>(nullptr), ExecutionContext::Default()}) {
      absl::StatusOr<cv::Mat> fused = NormalizeFrame(frame, {}, PixelRange{lo, hi}, context);
      ASSERT_TRUE(fused.ok()) << fused.status();
      ASSERT_EQ(fused->type(), CV_32FC1);
      ASSERT_EQ(fused->size(), frame.size());
      double worst = 0.0;
      for (int y = 0; y < frame.rows; ++y) {
        for (int x = 0; x < frame.cols; ++x) {
          const double expected = (as_double.at<double>(y, x) - lo) / (hi - lo);
          worst = std::max(worst, std::abs(fused->at<float>(y, x) - expected));
        }
      }
      EXPECT_LE(worst, 1e-6) << "depth " << depth;
      const cv::Mat two_pass = MustNormalize(frame);
      EXPECT_EQ(cv::norm(*fused, two_pass, cv::NORM_INF), 0.0) << "depth " << depth;
    }
  }
}

// Percentile normalisation needs more than the range: it ignores the one
// given and clips at the frame's own percentiles.
TEST(NormalizeTest, KnownRangeIsIgnoredByPercentiles) {
  cv::Mat frame(10, 10, CV_32FC1);
  for (int i = 0; i < 100; ++i) frame.at<float>(i / 10, i % 10) = static_cast<float>(i);
  const NormalizeOptions p = Percentile(10, 90);
  absl::StatusOr<cv::Mat> out = NormalizeFrame(frame, p, PixelRange{-1000, 1000}, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  // numpy.percentile(range(100), [10, 90]) = 9.9, 89.1: pixel 50 maps to
  // (50 - 9.9) / 79.2.
  EXPECT_NEAR(out->at<float>(5, 0), (50 - 9.9) / 79.2, 1e-6);
  EXPECT_EQ(out->at<float>(0, 0), 0.0f);
  EXPECT_EQ(out->at<float>(9, 9), 1.0f);
}

}  // namespace
}  // namespace logstar
