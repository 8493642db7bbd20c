#include "engine/log/log_detector.h"
#include "engine/image/normalize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/base/context.h"
#include "engine/log/log_kernels.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

// Adds A·exp(-r²/2s²) centred on pixel (cx, cy).
void AddGaussian(cv::Mat& frame, double cx, double cy, double s, double a = 1.0) {
  for (int y = 0; y < frame.rows; ++y) {
    for (int x = 0; x < frame.cols; ++x) {
      const double r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      frame.at<float>(y, x) += static_cast<float>(a * std::exp(-r2 / (2 * s * s)));
    }
  }
}

cv::Mat Zeros(int rows, int cols) { return cv::Mat(rows, cols, CV_32F, cv::Scalar(0)); }

// Uniform noise in [0, amplitude), reproducible.
cv::Mat Noise(int rows, int cols, double amplitude, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, static_cast<float>(amplitude));
  cv::Mat m(rows, cols, CV_32F);
  for (int i = 0; i < rows * cols; ++i) m.at<float>(i) = u(rng);
  return m;
}

LogOptions Opts(double min_sigma, double max_sigma, int num_sigma, double threshold,
                double overlap = 0.5) {
  LogOptions o;
  o.scale.min_sigma = min_sigma;
  o.scale.max_sigma = max_sigma;
  o.scale.num_sigma = num_sigma;
  o.detect.threshold = threshold;
  o.detect.overlap = overlap;
  return o;
}

std::unique_ptr<ExecutionContext> MakeContext(int threads) {
  auto c = ExecutionContext::Create({.num_threads = threads});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

std::vector<Blob> MustDetect(const cv::Mat& image, const LogOptions& options,
                             ExecutionContext* context = ExecutionContext::Default()) {
  absl::StatusOr<std::vector<Blob>> blobs = DetectBlobsLog(image, options, context);
  EXPECT_TRUE(blobs.ok()) << blobs.status();
  return blobs.ok() ? *blobs : std::vector<Blob>{};
}

std::string ErrorOf(const cv::Mat& image, const LogOptions& options,
                    ExecutionContext* context = ExecutionContext::Default()) {
  absl::StatusOr<std::vector<Blob>> blobs = DetectBlobsLog(image, options, context);
  EXPECT_FALSE(blobs.ok());
  if (blobs.ok()) return "";
  EXPECT_EQ(blobs.status().code(), absl::StatusCode::kInvalidArgument) << blobs.status();
  return std::string(blobs.status().message());
}

void ExpectSameBlobs(const std::vector<Blob>& a, const std::vector<Blob>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].x, b[i].x) << i;
    EXPECT_EQ(a[i].y, b[i].y) << i;
    EXPECT_EQ(a[i].sigma, b[i].sigma) << i;
    EXPECT_EQ(a[i].response, b[i].response) << i;
    EXPECT_EQ(a[i].scale_index, b[i].scale_index) << i;
  }
}

void ExpectSigmas(const LogScaleOptions& o, const std::vector<double>& want) {
  const std::vector<double> got = o.Sigmas();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-12 * want[i]) << i;
  }
}

// --- sigma list ---------------------------------------------------------------------------

TEST(LogScaleOptionsTest, SigmasMatchNumpyLinspace) {
  // repr(numpy.linspace(2, 6, 10)), numpy 1.24.
  ExpectSigmas({.min_sigma = 2, .max_sigma = 6, .num_sigma = 10},
               {2.0, 2.4444444444444446, 2.888888888888889, 3.333333333333333, 3.7777777777777777,
                4.222222222222222, 4.666666666666666, 5.111111111111111, 5.555555555555555, 6.0});
}

TEST(LogScaleOptionsTest, SigmasMatchNumpyLogspace) {
  // repr(numpy.logspace(numpy.log10(0.5), numpy.log10(8), 10)), numpy 1.24.
  ExpectSigmas({.min_sigma = 0.5, .max_sigma = 8, .num_sigma = 10, .log_scale = true},
               {0.5, 0.6803950000871885, 0.9258747122872905, 1.2599210498948732, 1.7144879657061456,
                2.333058079152233, 3.1748021039363987, 4.320238955569224, 5.878937969102395,
                7.999999999999999});
}

TEST(LogScaleOptionsTest, OneSigmaIsMinSigma) {
  ExpectSigmas({.min_sigma = 1.7, .max_sigma = 9, .num_sigma = 1}, {1.7});
  ExpectSigmas({.min_sigma = 1.7, .max_sigma = 9, .num_sigma = 1, .log_scale = true}, {1.7});
}

// --- a single Gaussian blob ---------------------------------------------------------------
//
// For I = A·exp(-r²/2s²) = 2πs²A·G_s, the scale-normalised response at the centre is
// -σ²∇²(G_σ ∗ I)(0) = 2Aσ²s²/(s² + σ²)², largest at σ = s where it is A/2.

TEST(LogDetectorTest, SingleGaussianFoundAtItsCentreAndSize) {
  cv::Mat frame = Zeros(64, 64);
  AddGaussian(frame, /*cx=*/33, /*cy=*/30, /*s=*/3.0);
  // Sigmas 1.0, 1.1, ..., 5.0: index 20 is 3.0.
  const std::vector<Blob> blobs = MustDetect(frame, Opts(1, 5, 41, 0.2));
  ASSERT_EQ(blobs.size(), 1u);
  EXPECT_EQ(blobs[0].x, 33);
  EXPECT_EQ(blobs[0].y, 30);
  EXPECT_NEAR(blobs[0].sigma, 3.0, 1e-9);
  EXPECT_EQ(blobs[0].scale_index, 20);
  EXPECT_NEAR(blobs[0].response, 0.5, 0.5 * 0.02);
}

TEST(LogDetectorTest, ResponseOffPeakScaleMatchesClosedForm) {
  // With a single scale σ = 2 the centre response is 2·4·9/(9 + 4)² = 72/169.
  cv::Mat frame = Zeros(64, 64);
  AddGaussian(frame, 31, 32, 3.0);
  const std::vector<Blob> blobs = MustDetect(frame, Opts(2, 2, 1, 0.1));
  ASSERT_EQ(blobs.size(), 1u);
  EXPECT_NEAR(blobs[0].response, 72.0 / 169.0, 0.02 * 72.0 / 169.0);
}

TEST(LogDetectorTest, ThresholdIsAnAbsoluteResponseLevel) {
  cv::Mat frame = Zeros(64, 64);
  AddGaussian(frame, 33, 30, 3.0, /*a=*/1.0);  // peak response A/2 = 0.5
  EXPECT_EQ(MustDetect(frame, Opts(1, 5, 41, 0.45)).size(), 1u);
  EXPECT_TRUE(MustDetect(frame, Opts(1, 5, 41, 0.55)).empty());
  // Scaling the frame scales the response: A = 2 peaks at 1.0.
  cv::Mat doubled = frame * 2;
  EXPECT_EQ(MustDetect(doubled, Opts(1, 5, 41, 0.95)).size(), 1u);
  EXPECT_TRUE(MustDetect(doubled, Opts(1, 5, 41, 1.05)).empty());
}

TEST(LogDetectorTest, BlobsOfSeveralSizesEachFoundAtTheirSigma) {
  struct Truth {
    double x, y, s;
  };
  const std::vector<Truth> truth = {{40, 40, 2.0}, {140, 50, 3.0}, {90, 140, 5.0}};
  cv::Mat frame = Zeros(200, 200);
  for (const Truth& t : truth) AddGaussian(frame, t.x, t.y, t.s);
  // Sigmas 1.0, 1.1, ..., 8.0. scikit-image finds exactly (40,40,2), (50,140,3), (140,90,5).
  const std::vector<Blob> blobs = MustDetect(frame, Opts(1, 8, 71, 0.3));
  ASSERT_EQ(blobs.size(), truth.size());
  for (const Truth& t : truth) {
    auto it = std::find_if(blobs.begin(), blobs.end(),
                           [&](const Blob& b) { return b.x == t.x && b.y == t.y; });
    ASSERT_NE(it, blobs.end()) << "no blob at x=" << t.x << ", y=" << t.y;
    EXPECT_NEAR(it->sigma, t.s, 1e-9);
    // Each peaks at A/2 (closed form above).
    EXPECT_NEAR(it->response, 0.5, 0.01);
  }
  for (size_t i = 1; i < blobs.size(); ++i) {
    EXPECT_GE(blobs[i - 1].response, blobs[i].response);
  }
}

// --- overlap pruning ----------------------------------------------------------------------
//
// Two single bright pixels 5 px apart, one scale σ = 2: the LoG responses are separate peaks
// (each pixel's response is ~1/(πσ²) times its value; the other pixel, past σ√2, only lowers
// it). Both disks have radius R = 2√2, so by hand the overlap is the lens area
// 2R²·acos(d/2R) - (d/2)·√(4R² - d²) over πR², i.e. 0.0466619 of a disk.

cv::Mat TwoPixels() {
  cv::Mat frame = Zeros(40, 40);
  frame.at<float>(20, 15) = 1.0f;
  frame.at<float>(20, 20) = 0.8f;
  return frame;
}

TEST(LogDetectorTest, OverlapZeroKeepsOneOfTwoOverlappingBlobs) {
  const std::vector<Blob> blobs = MustDetect(TwoPixels(), Opts(2, 2, 1, 0.01, /*overlap=*/0.0));
  ASSERT_EQ(blobs.size(), 1u);
  // Equal sigmas: scikit-image removes the first of the pair in decreasing-response order,
  // i.e. the brighter one (scikit-image 0.19 keeps (20, 20)).
  EXPECT_EQ(blobs[0].x, 20);
  EXPECT_EQ(blobs[0].y, 20);
}

TEST(LogDetectorTest, OverlapOneKeepsBoth) {
  const std::vector<Blob> blobs = MustDetect(TwoPixels(), Opts(2, 2, 1, 0.01, /*overlap=*/1.0));
  ASSERT_EQ(blobs.size(), 2u);
  EXPECT_EQ(blobs[0].x, 15);  // brighter first
  EXPECT_EQ(blobs[1].x, 20);
  // Each response is close to 1/(πσ²) times the pixel value (scipy: 0.0736, 0.0562).
  EXPECT_NEAR(blobs[0].response, 0.07363619800269752, 1e-5);
  EXPECT_NEAR(blobs[1].response, 0.05623412693607199, 1e-5);
}

TEST(LogDetectorTest, OverlapThresholdIsTheLensAreaFraction) {
  EXPECT_EQ(MustDetect(TwoPixels(), Opts(2, 2, 1, 0.01, 0.045)).size(), 1u);
  EXPECT_EQ(MustDetect(TwoPixels(), Opts(2, 2, 1, 0.01, 0.048)).size(), 2u);
}

TEST(LogDetectorTest, DisjointDisksAreNeverPruned) {
  // 6 px apart > 2R = 5.66: no overlap even with overlap = 0.
  cv::Mat frame = Zeros(40, 40);
  frame.at<float>(20, 15) = 1.0f;
  frame.at<float>(20, 21) = 0.8f;
  EXPECT_EQ(MustDetect(frame, Opts(2, 2, 1, 0.01, 0.0)).size(), 2u);
}

TEST(LogDetectorTest, SmallerBlobInsideLargerOneIsPruned) {
  // s = 4 at x = 30 and s = 1 at x = 34 (scikit-image 0.19: (32, 31, 4) and (32, 34, 1)). The
  // small disk (radius √2) lies inside the large one (radius 4√2, 3 px away), so their overlap
  // is 1: any overlap < 1 removes the smaller sigma, overlap = 1 keeps both.
  cv::Mat frame = Zeros(64, 64);
  AddGaussian(frame, 30, 32, 4.0);
  AddGaussian(frame, 34, 32, 1.0);
  const std::vector<Blob> pruned = MustDetect(frame, Opts(1, 5, 9, 0.2, 0.5));
  ASSERT_EQ(pruned.size(), 1u);
  EXPECT_EQ(pruned[0].x, 31);
  EXPECT_EQ(pruned[0].y, 32);
  EXPECT_EQ(pruned[0].sigma, 4.0);
  const std::vector<Blob> kept = MustDetect(frame, Opts(1, 5, 9, 0.2, 1.0));
  ASSERT_EQ(kept.size(), 2u);
  auto small = std::find_if(kept.begin(), kept.end(), [](const Blob& b) { return b.sigma == 1.0; });
  ASSERT_NE(small, kept.end());
  EXPECT_EQ(small->x, 34);
  EXPECT_EQ(small->y, 32);
}

// --- borders, flat frames -----------------------------------------------------------------

TEST(LogDetectorTest, ExcludeBorderDropsBlobsNearTheEdge) {
  cv::Mat frame = Zeros(40, 40);
  frame.at<float>(20, 3) = 1.0f;   // x = 3: 3 px from the left edge
  frame.at<float>(36, 20) = 1.0f;  // y = 36: 3 px from the bottom edge
  frame.at<float>(10, 10) = 1.0f;  // 10 px from the top and left edges
  frame.at<float>(30, 29) = 1.0f;  // 10 px from the right edge
  LogOptions o = Opts(1, 2, 3, 0.1);
  EXPECT_EQ(MustDetect(frame, o).size(), 4u);
  o.scale.exclude_border = 5;
  std::vector<Blob> blobs = MustDetect(frame, o);
  ASSERT_EQ(blobs.size(), 2u);
  std::sort(blobs.begin(), blobs.end(), [](const Blob& a, const Blob& b) { return a.y < b.y; });
  EXPECT_EQ(blobs[0].x, 10);
  EXPECT_EQ(blobs[0].y, 10);
  EXPECT_EQ(blobs[1].x, 29);
  EXPECT_EQ(blobs[1].y, 30);
}

TEST(LogDetectorTest, ConstantFrameHasNoBlobs) {
  const cv::Mat frame(30, 30, CV_32F, cv::Scalar(0.7));
  EXPECT_TRUE(MustDetect(frame, Opts(1, 5, 5, 0.01)).empty());
  EXPECT_TRUE(MustDetect(frame, LogOptions{}).empty());
}

TEST(LogDetectorTest, ZeroFrameHasNoBlobsEvenAtThresholdZero) {
  EXPECT_TRUE(MustDetect(Zeros(30, 30), Opts(1, 5, 5, 0.0)).empty());
}

// --- validation ---------------------------------------------------------------------------

TEST(LogDetectorTest, BadScaleOptionsNameTheField) {
  const cv::Mat f = Zeros(8, 8);
  LogOptions o = Opts(1, 5, 5, 0.1);
  o.scale.min_sigma = 0;
  EXPECT_THAT(ErrorOf(f, o), HasSubstr("min_sigma"));
  o.scale.min_sigma = -1;
  EXPECT_THAT(ErrorOf(f, o), HasSubstr("min_sigma"));
  o = Opts(3, 2, 5, 0.1);
  EXPECT_THAT(ErrorOf(f, o), HasSubstr("max_sigma"));
  o = Opts(1, 5, 0, 0.1);
  EXPECT_THAT(ErrorOf(f, o), HasSubstr("num_sigma"));
  o = Opts(1, 5, 5, 0.1);
  o.scale.exclude_border = -1;
  EXPECT_THAT(ErrorOf(f, o), HasSubstr("exclude_border"));
}

TEST(LogDetectorTest, BadDetectOptionsNameTheField) {
  const cv::Mat f = Zeros(8, 8);
  EXPECT_THAT(ErrorOf(f, Opts(1, 5, 5, std::numeric_limits<double>::quiet_NaN())),
              HasSubstr("threshold"));
  EXPECT_THAT(ErrorOf(f, Opts(1, 5, 5, 0.1, 1.5)), HasSubstr("overlap"));
  EXPECT_THAT(ErrorOf(f, Opts(1, 5, 5, 0.1, -0.1)), HasSubstr("overlap"));
}

TEST(LogDetectorTest, BadImagesAndContextAreRejected) {
  const LogOptions o = Opts(1, 5, 5, 0.1);
  EXPECT_THAT(ErrorOf(cv::Mat(8, 8, CV_64F, cv::Scalar(0)), o), HasSubstr("image"));
  EXPECT_THAT(ErrorOf(cv::Mat(8, 8, CV_8U, cv::Scalar(0)), o), HasSubstr("image"));
  EXPECT_THAT(ErrorOf(cv::Mat(8, 8, CV_32FC2, cv::Scalar(0)), o), HasSubstr("image"));
  EXPECT_THAT(ErrorOf(cv::Mat(), o), HasSubstr("image"));
  cv::Mat nan = Zeros(8, 8);
  nan.at<float>(3, 4) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(ErrorOf(nan, o), HasSubstr("image"));
  cv::Mat inf = Zeros(8, 8);
  inf.at<float>(0, 0) = std::numeric_limits<float>::infinity();
  EXPECT_THAT(ErrorOf(inf, o), HasSubstr("image"));
  cv::Mat minus_inf = Zeros(8, 8);
  minus_inf.at<float>(7, 7) = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(ErrorOf(minus_inf, o), HasSubstr("NaN or infinite"));
  // The largest finite float is not rejected.
  cv::Mat big = Zeros(8, 8);
  big.at<float>(2, 2) = std::numeric_limits<float>::max();
  EXPECT_TRUE(LogScaleSpace::Compute(big, o.scale, ExecutionContext::Default()).ok());
  EXPECT_THAT(ErrorOf(Zeros(8, 8), o, nullptr), HasSubstr("context"));
}

// --- re-thresholding a scale-space --------------------------------------------------------

cv::Mat BlobsOnNoise() {
  cv::Mat frame = Noise(96, 80, 0.3, 7);
  const double spots[][4] = {{12, 15, 1.5, 0.8}, {40, 22, 2.5, 1.0}, {65, 70, 2.0, 0.6},
                             {20, 60, 3.0, 0.9}, {50, 50, 1.2, 0.5}, {70, 30, 4.0, 1.0}};
  for (const auto& s : spots) AddGaussian(frame, s[0], s[1], s[2], s[3]);
  return frame;
}

TEST(LogScaleSpaceTest, RethresholdingEqualsFreshDetection) {
  const cv::Mat frame = BlobsOnNoise();
  LogScaleOptions scale{.min_sigma = 1, .max_sigma = 5, .num_sigma = 9, .response_floor = 0.05};
  absl::StatusOr<LogScaleSpace> space =
      LogScaleSpace::Compute(frame, scale, ExecutionContext::Default());
  ASSERT_TRUE(space.ok()) << space.status();
  size_t previous = std::numeric_limits<size_t>::max();
  for (double threshold : {0.05, 0.1, 0.2}) {
    for (double overlap : {0.0, 0.5, 1.0}) {
      SCOPED_TRACE(testing::Message() << "threshold " << threshold << " overlap " << overlap);
      absl::StatusOr<std::vector<Blob>> again = space->Detect({threshold, overlap});
      ASSERT_TRUE(again.ok()) << again.status();
      LogOptions fresh;
      fresh.scale = scale;
      fresh.detect = {threshold, overlap};
      ExpectSameBlobs(*again, MustDetect(frame, fresh));
      if (overlap == 0.5) {
        EXPECT_FALSE(again->empty());
        EXPECT_LE(again->size(), previous);
        previous = again->size();
      }
    }
  }
}

TEST(LogScaleSpaceTest, ThresholdBelowFloorIsFailedPrecondition) {
  absl::StatusOr<LogScaleSpace> space = LogScaleSpace::Compute(
      BlobsOnNoise(), {.min_sigma = 1, .max_sigma = 5, .num_sigma = 9, .response_floor = 0.05},
      ExecutionContext::Default());
  ASSERT_TRUE(space.ok()) << space.status();
  absl::StatusOr<std::vector<Blob>> blobs = space->Detect({0.04, 0.5});
  ASSERT_FALSE(blobs.ok());
  EXPECT_EQ(blobs.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LogScaleSpaceTest, CandidatesAreAboveTheFloorAndSorted) {
  absl::StatusOr<LogScaleSpace> space = LogScaleSpace::Compute(
      BlobsOnNoise(), {.min_sigma = 1, .max_sigma = 5, .num_sigma = 9, .response_floor = 0.05},
      ExecutionContext::Default());
  ASSERT_TRUE(space.ok()) << space.status();
  ASSERT_GT(space->num_candidates(), 0u);
  EXPECT_EQ(space->width(), 80);
  EXPECT_EQ(space->height(), 96);
  const auto& peaks = space->peaks();
  for (size_t i = 0; i < peaks.size(); ++i) {
    EXPECT_GT(peaks[i].response, 0.05f);
    if (i > 0) {
      EXPECT_GE(peaks[i - 1].response, peaks[i].response);
    }
  }
}

// --- thread invariance --------------------------------------------------------------------

TEST(LogDetectorTest, OneAndTwoThreadsGiveIdenticalBlobs) {
  cv::Mat frame = Noise(300, 257, 1.0, 11);
  AddGaussian(frame, 128, 150, 3.0, 2.0);
  const LogOptions o = Opts(1, 6, 11, 0.1);
  std::unique_ptr<ExecutionContext> one = MakeContext(1);
  std::unique_ptr<ExecutionContext> two = MakeContext(2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  const std::vector<Blob> a = MustDetect(frame, o, one.get());
  EXPECT_GT(a.size(), 20u);
  ExpectSameBlobs(a, MustDetect(frame, o, two.get()));
}

// Frames in any memory layout give the same blobs: a view into a larger
// image (rows not contiguous), a 1024-float stride (the aliasing case the
// engine copies away from) and NormalizeFrame's padded layout.
TEST(LogDetectorTest, MemoryLayoutDoesNotChangeResults) {
  cv::Mat frame = Noise(70, 1024, 1.0, 12);
  AddGaussian(frame, 35, 500, 3.0, 2.0);
  const LogOptions o = Opts(1, 6, 11, 0.1);
  const std::vector<Blob> base = MustDetect(frame, o, ExecutionContext::Default());
  EXPECT_GT(base.size(), 20u);
  cv::Mat wide = cv::Mat::zeros(80, 1100, CV_32F);
  frame.copyTo(wide(cv::Rect(30, 5, 1024, 70)));
  ExpectSameBlobs(base,
                  MustDetect(wide(cv::Rect(30, 5, 1024, 70)), o, ExecutionContext::Default()));
  absl::StatusOr<cv::Mat> normalized = NormalizeFrame(frame, {});
  ASSERT_TRUE(normalized.ok());
  absl::StatusOr<cv::Mat> copy = NormalizeFrame(frame.clone(), {});
  ASSERT_TRUE(copy.ok());
  ExpectSameBlobs(MustDetect(copy->clone(), o, ExecutionContext::Default()),
                  MustDetect(*normalized, o, ExecutionContext::Default()));
}

// --- tiny frames (expected blobs from scikit-image 0.19 blob_log(img, 1, 3, 5, 0.1)) ------

TEST(LogDetectorTest, OnePixelFrameHasNoBlobs) {
  EXPECT_TRUE(MustDetect(cv::Mat(1, 1, CV_32F, cv::Scalar(1)), Opts(1, 3, 5, 0.1)).empty());
}

TEST(LogDetectorTest, SingleRowAndColumnFindTheBrightPixel) {
  cv::Mat row = Zeros(1, 9), col = Zeros(9, 1);
  row.at<float>(0, 4) = 1.0f;
  col.at<float>(4, 0) = 1.0f;
  // Reflection makes a line; its response is σ²·g''... = g(0) ≈ 1/√(2π) at σ = 1.
  for (const auto& [frame, x, y] : {std::tuple{row, 4, 0}, std::tuple{col, 0, 4}}) {
    const std::vector<Blob> blobs = MustDetect(frame, Opts(1, 3, 5, 0.1));
    ASSERT_EQ(blobs.size(), 1u);
    EXPECT_EQ(blobs[0].x, x);
    EXPECT_EQ(blobs[0].y, y);
    EXPECT_EQ(blobs[0].sigma, 1.0);
    EXPECT_NEAR(blobs[0].response, 0.39897219335488027, 1e-5);  // scipy, float64
  }
}

TEST(LogDetectorTest, ThreeByThreeFindsTheCentre) {
  cv::Mat frame = Zeros(3, 3);
  frame.at<float>(1, 1) = 1.0f;
  const std::vector<Blob> blobs = MustDetect(frame, Opts(1, 3, 5, 0.1));
  ASSERT_EQ(blobs.size(), 1u);
  EXPECT_EQ(blobs[0].x, 1);
  EXPECT_EQ(blobs[0].y, 1);
  EXPECT_EQ(blobs[0].sigma, 1.0);
  EXPECT_NEAR(blobs[0].response, 0.26754899103769714, 1e-5);  // scipy, float64
}

TEST(LogDetectorTest, BrightPixelInFiveByFiveFoundAtMinSigma) {
  cv::Mat frame = Zeros(5, 5);
  frame.at<float>(2, 2) = 1.0f;
  const std::vector<Blob> blobs = MustDetect(frame, Opts(1, 3, 5, 0.1));
  ASSERT_EQ(blobs.size(), 1u);
  EXPECT_EQ(blobs[0].x, 2);
  EXPECT_EQ(blobs[0].y, 2);
  EXPECT_EQ(blobs[0].sigma, 1.0);
  // ~1/π, the continuous value for a unit impulse at σ = 1 (scipy: 0.31831178348375944).
  EXPECT_NEAR(blobs[0].response, 1.0 / M_PI, 1e-3);
  EXPECT_NEAR(blobs[0].response, 0.31831178348375944, 1e-5);
}

// --- kernel variants ----------------------------------------------------------------------

// Sampled, normalised Gaussian and its second derivative (centre first), as scipy builds
// them: g_i = φ_i / Σφ, d_i = (i²/σ⁴ - 1/σ²)·g_i, radius int(4σ + 0.5).
struct TestKernel {
  int radius;
  std::vector<float> g, d;
};

TestKernel MakeTestKernel(double sigma) {
  TestKernel k;
  k.radius = static_cast<int>(4 * sigma + 0.5);
  double sum = 0;
  for (int i = -k.radius; i <= k.radius; ++i) sum += std::exp(-0.5 * i * i / (sigma * sigma));
  for (int i = 0; i <= k.radius; ++i) {
    const double p = std::exp(-0.5 * i * i / (sigma * sigma)) / sum;
    k.g.push_back(static_cast<float>(p));
    k.d.push_back(static_cast<float>((i * i / std::pow(sigma, 4) - 1 / (sigma * sigma)) * p));
  }
  return k;
}

std::vector<const internal::LogKernelFns*> AllKernels() {
  std::vector<const internal::LogKernelFns*> out = {&internal::GenericKernels()};
  if (const auto* k = internal::Avx2KernelsOrNull()) out.push_back(k);
  if (const auto* k = internal::Avx512KernelsOrNull()) out.push_back(k);
  return out;
}

std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = 0.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = u(rng);
  return v;
}

constexpr int kWidths[] = {1, 7, 33, 257};

int RoundUp(int n, int m) { return (n + m - 1) / m * m; }

// scipy's 'reflect' index, the border rule the engine feeds the kernels.
int ReflectIndex(int i, int n) {
  while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
  return i;
}

TEST(LogKernelsTest, VerticalMatchesDoubleReferenceInEveryVariant) {
  const TestKernel k = MakeTestKernel(2.3);  // radius 9
  const int r = k.radius, height = 12;
  for (int width : kWidths) {
    for (const internal::LogKernelFns* fns : AllKernels()) {
      const int lanes = fns->lanes;
      const int nrows = 2 * lanes;
      const size_t stride = RoundUp(width, lanes) + 5, out_stride = nrows + 3;
      const std::vector<float> image = RandomFloats(height * stride, width);
      std::vector<int> rows(nrows + 2 * r + 2);
      for (size_t i = 0; i < rows.size(); ++i)
        rows[i] = ReflectIndex(static_cast<int>(i) - r + 4, height);
      const size_t out_rows = RoundUp(width, lanes);
      std::vector<float> out_g(out_rows * out_stride, -7.0f), out_d(out_rows * out_stride, -7.0f);
      fns->vertical(image.data(), stride, rows.data(), nrows, r, k.g.data(), k.d.data(), width,
                    out_g.data(), out_d.data(), out_stride);
      for (int x = 0; x < width; ++x) {
        for (int y = 0; y < nrows; ++y) {
          double want_g = 0, want_d = 0, scale_g = 0, scale_d = 0;
          for (int t = -r; t <= r; ++t) {
            const double v = image[rows[y + r + t] * stride + x];
            want_g += k.g[std::abs(t)] * v;
            want_d += k.d[std::abs(t)] * v;
            scale_g += std::abs(k.g[std::abs(t)] * v);
            scale_d += std::abs(k.d[std::abs(t)] * v);
          }
          // Transposed: one output row per image column.
          EXPECT_NEAR(out_g[x * out_stride + y], want_g, 1e-5 * scale_g) << width << " " << x;
          EXPECT_NEAR(out_d[x * out_stride + y], want_d, 1e-5 * scale_d) << width << " " << x;
        }
        // Nothing written past nrows in a row.
        for (size_t y = nrows; y < out_stride; ++y) EXPECT_EQ(out_g[x * out_stride + y], -7.0f);
      }
    }
  }
}

TEST(LogKernelsTest, HorizontalMatchesDoubleReferenceInEveryVariant) {
  const TestKernel k = MakeTestKernel(1.6);  // radius 6
  const int r = k.radius;
  const float scale = -1.6f * 1.6f;
  for (int width : kWidths) {
    for (const internal::LogKernelFns* fns : AllKernels()) {
      const int ncols = 2 * fns->lanes;
      const size_t stride = ncols + 5, out_stride = ncols + 2;
      const std::vector<float> gt = RandomFloats(width * stride, 100 + width, -1, 1);
      const std::vector<float> dt = RandomFloats(width * stride, 200 + width, -1, 1);
      std::vector<int> xrows(width + 2 * r + 3);
      for (size_t i = 0; i < xrows.size(); ++i)
        xrows[i] = ReflectIndex(static_cast<int>(i) - r, width);
      std::vector<float> out((width + 1) * out_stride, -7.0f);
      fns->horizontal(gt.data(), dt.data(), stride, xrows.data(), r, k.g.data(), k.d.data(), scale,
                      width, ncols, out.data(), out_stride);
      for (int x = 0; x < width; ++x) {
        for (int y = 0; y < ncols; ++y) {
          double want = 0, mag = 0;
          for (int t = -r; t <= r; ++t) {
            const int row = ReflectIndex(x + t, width);
            const double a = k.d[std::abs(t)] * gt[row * stride + y];
            const double b = k.g[std::abs(t)] * dt[row * stride + y];
            want += a + b;
            mag += std::abs(a) + std::abs(b);
          }
          EXPECT_NEAR(out[x * out_stride + y], scale * want, 1e-5 * std::abs(scale) * mag)
              << width << " " << x << " " << y;
        }
      }
      // Nothing written for x = width.
      for (size_t y = 0; y < out_stride; ++y) EXPECT_EQ(out[width * out_stride + y], -7.0f);
    }
  }
}

TEST(LogKernelsTest, PlaneCandidatesAgreeExactlyWithTheContract) {
  for (int rows : {1, 3, 40}) {
    for (int valid : {1, 2, 17, 30, 32}) {
      const int cols = 32;
      // Few distinct values, so ties with neighbours are common.
      // The contract lets the scan read one vector past the last row.
      std::vector<float> plane = RandomFloats(rows * cols + 16, 300 + rows * 7 + valid);
      for (float& v : plane) v = std::floor(v * 5) / 4;
      for (float floor : {0.0f, 0.3f, 0.5f}) {
        std::vector<int> want;
        for (int x = 0; x < rows; ++x) {
          const float* row = &plane[x * cols];
          for (int j = 0; j < valid; ++j) {
            const float v = row[j];
            if (v > floor && (j == 0 || row[j - 1] <= v) && (j == valid - 1 || row[j + 1] <= v) &&
                (x == 0 || row[j - cols] <= v) && (x == rows - 1 || row[j + cols] <= v)) {
              want.push_back(x * cols + j);
            }
          }
        }
        for (const internal::LogKernelFns* fns : AllKernels()) {
          std::vector<int> got(rows * cols, -1);
          got.resize(fns->plane_candidates(plane.data(), rows, cols, valid, floor, got.data()));
          std::sort(got.begin(), got.end());
          EXPECT_EQ(got, want) << "rows " << rows << " valid " << valid << " floor " << floor;
        }
      }
    }
  }
}

TEST(LogKernelsTest, VariantsAgreeWithEachOther) {
  const std::vector<const internal::LogKernelFns*> fns = AllKernels();
  if (fns.size() < 2) GTEST_SKIP() << "only the generic kernels run on this CPU";
  const TestKernel k = MakeTestKernel(3.0);
  const int r = k.radius;
  const int ncols = 32;  // a multiple of every variant's lanes
  for (int width : kWidths) {
    const std::vector<float> gt = RandomFloats(width * ncols, 400 + width, -1, 1);
    const std::vector<float> dt = RandomFloats(width * ncols, 500 + width, -1, 1);
    std::vector<int> xrows(width + 2 * r + 3);
    for (size_t i = 0; i < xrows.size(); ++i)
      xrows[i] = ReflectIndex(static_cast<int>(i) - r, width);
    std::vector<float> base(width * ncols), other(width * ncols);
    fns[0]->horizontal(gt.data(), dt.data(), ncols, xrows.data(), r, k.g.data(), k.d.data(), -9.0f,
                       width, ncols, base.data(), ncols);
    for (size_t i = 1; i < fns.size(); ++i) {
      fns[i]->horizontal(gt.data(), dt.data(), ncols, xrows.data(), r, k.g.data(), k.d.data(),
                         -9.0f, width, ncols, other.data(), ncols);
      for (int j = 0; j < width * ncols; ++j) {
        EXPECT_NEAR(other[j], base[j], 1e-5 * std::max(1.0f, std::abs(base[j])))
            << "variant " << i << " width " << width << " at " << j;
      }
    }
  }
}

}  // namespace
}  // namespace logstar
