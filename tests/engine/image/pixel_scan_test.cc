#include "engine/image/pixel_scan.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "gtest/gtest.h"

namespace logstar {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Every variant this build and CPU run, by name.
std::vector<std::pair<std::string, internal::ScanFloatFn>> Variants() {
  std::vector<std::pair<std::string, internal::ScanFloatFn>> v = {
      {"generic", &internal::ScanFloatGeneric}};
  if (internal::ScanFloatFn f = internal::ScanFloatAvx2OrNull()) v.emplace_back("avx2", f);
  return v;
}

// The reference: a plain loop with std::isfinite and std::min/max.
struct Expected {
  bool bad = false;
  float lo = kInf, hi = -kInf;
};
Expected Reference(const std::vector<float>& p) {
  Expected e;
  for (float v : p) {
    if (!std::isfinite(v)) {
      e.bad = true;
      continue;
    }
    e.lo = std::min(e.lo, v);
    e.hi = std::max(e.hi, v);
  }
  return e;
}

// Lengths around the kernel's 32 lanes and its tail, values of both signs,
// the extrema and a non-finite value at every kind of place: the first
// pixel, in the vector body, in the tail, the last.
TEST(PixelScanTest, KernelsMatchAPlainLoopAtEveryPlaceAndLength) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> value(-1000.0f, 1000.0f);
  for (const auto& [name, scan] : Variants()) {
    for (int64_t n : {1, 2, 31, 32, 33, 63, 64, 65, 100, 1000, 4099}) {
      std::vector<float> p(n);
      for (float& v : p) v = value(rng);
      std::vector<int64_t> places = {0, n / 2, n - 1};
      if (n > 40) places.push_back(n - 3);  // in the tail past the last full 32
      for (int64_t at : places) {
        for (float extreme : {-5000.0f, 5000.0f}) {
          std::vector<float> q = p;
          q[at] = extreme;
          const Expected e = Reference(q);
          float lo = kInf, hi = -kInf;
          ASSERT_FALSE(scan(q.data(), n, &lo, &hi)) << name << " n " << n;
          EXPECT_EQ(lo, e.lo) << name << " n " << n << " at " << at;
          EXPECT_EQ(hi, e.hi) << name << " n " << n << " at " << at;
        }
        for (float bad : {std::nanf(""), kInf, -kInf}) {
          std::vector<float> q = p;
          q[at] = bad;
          float lo = kInf, hi = -kInf;
          EXPECT_TRUE(scan(q.data(), n, &lo, &hi)) << name << " n " << n << " at " << at;
        }
      }
    }
  }
}

// The extrema carry over from earlier calls (the scan folds runs of rows).
TEST(PixelScanTest, KernelsFoldIntoTheRangeSoFar) {
  const std::vector<float> p(100, 2.0f);
  for (const auto& [name, scan] : Variants()) {
    float lo = -3.0f, hi = 1.0f;
    ASSERT_FALSE(scan(p.data(), 100, &lo, &hi));
    EXPECT_EQ(lo, -3.0f) << name;
    EXPECT_EQ(hi, 2.0f) << name;
  }
}

// The largest finite floats are finite; the smallest subnormal counts.
TEST(PixelScanTest, FloatLimitsAreFinite) {
  const float big = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  std::vector<float> p(70, 1.0f);
  p[3] = -big;
  p[68] = big;
  p[40] = tiny;
  for (const auto& [name, scan] : Variants()) {
    float lo = kInf, hi = -kInf;
    ASSERT_FALSE(scan(p.data(), 70, &lo, &hi)) << name;
    EXPECT_EQ(lo, -big) << name;
    EXPECT_EQ(hi, big) << name;
  }
}

// ScanPixels names the first non-finite pixel in row-major order, also in
// a region of interest whose rows are not contiguous, and measures every
// supported type like a plain loop over its values as doubles.
TEST(PixelScanTest, ScanPixelsNamesTheFirstBadPixelAndMeasuresEveryType) {
  cv::Mat frame(300, 200, CV_32FC1, cv::Scalar(0.25f));
  frame.at<float>(299, 199) = std::nanf("");  // the last pixel alone
  EXPECT_EQ(ScanPixels(frame).first_non_finite, 299 * 200 + 199);
  frame.at<float>(120, 7) = -kInf;
  EXPECT_EQ(ScanPixels(frame).first_non_finite, 120 * 200 + 7);

  const cv::Mat roi = frame(cv::Rect(5, 100, 50, 30));  // rows 100..129, columns 5..54
  ASSERT_FALSE(roi.isContinuous());
  EXPECT_EQ(ScanPixels(roi).first_non_finite, 20 * 50 + 2);
  const PixelScan clean = ScanPixels(frame(cv::Rect(10, 0, 20, 100)));
  EXPECT_EQ(clean.first_non_finite, -1);
  EXPECT_EQ(clean.min, 0.25);
  EXPECT_EQ(clean.max, 0.25);

  for (int depth : {CV_8U, CV_16U, CV_16S, CV_32F, CV_64F}) {
    cv::Mat image(37, 41, CV_MAKETYPE(depth, 1));
    cv::randu(image, 0, 200);
    if (depth == CV_16S || depth == CV_32F || depth == CV_64F) image.at<uchar>(0) = 0;
    cv::Mat as_double;
    image.convertTo(as_double, CV_64F);
    if (depth == CV_16S || depth == CV_32F || depth == CV_64F) {
      as_double.at<double>(36, 40) = -12.5 * (depth == CV_16S ? 2 : 1);
      as_double.convertTo(image, image.type());
      image.convertTo(as_double, CV_64F);
    }
    double lo = as_double.at<double>(0, 0), hi = lo;
    for (int y = 0; y < as_double.rows; ++y) {
      for (int x = 0; x < as_double.cols; ++x) {
        lo = std::min(lo, as_double.at<double>(y, x));
        hi = std::max(hi, as_double.at<double>(y, x));
      }
    }
    const PixelScan s = ScanPixels(image);
    EXPECT_EQ(s.first_non_finite, -1) << depth;
    EXPECT_EQ(s.min, lo) << depth;
    EXPECT_EQ(s.max, hi) << depth;
  }
  cv::Mat doubles(4, 4, CV_64FC1, cv::Scalar(1.0));
  doubles.at<double>(3, 3) = std::nan("");
  EXPECT_EQ(ScanPixels(doubles).first_non_finite, 15);
}

}  // namespace
}  // namespace logstar
