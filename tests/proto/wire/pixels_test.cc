// proto/wire/pixels.h: the dtype table against the proto's list and
// OpenCV's own types, images to bytes against hand-packed bytes, bytes to
// images, the checks and their field names, and the finiteness scan against
// std::isfinite at every position.
#include "proto/wire/pixels.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar::wire {
namespace {

using ::testing::HasSubstr;

// The image's pixels row-major with no padding, from OpenCV's accessors.
std::string RowMajorBytes(const cv::Mat& image) {
  std::string out;
  for (int y = 0; y < image.rows; ++y) {
    out.append(reinterpret_cast<const char*>(image.ptr(y)), image.cols * image.elemSize());
  }
  return out;
}

v1::PixelData Pixels(v1::DType dtype, uint32_t width, uint32_t height, std::string data) {
  v1::PixelData px;
  px.set_dtype(dtype);
  px.set_width(width);
  px.set_height(height);
  px.set_data(std::move(data));
  return px;
}

TEST(DtypeTest, TheTableIsTheProtosListWithOpenCvsTypes) {
  // frame.proto's DType values, and OpenCV's depth and size of each C type.
  auto expect = [](v1::DType dtype, int depth, size_t size) {
    SCOPED_TRACE(v1::DType_Name(dtype));
    const std::optional<Dtype> by_wire = FromWire(dtype);
    ASSERT_TRUE(by_wire.has_value());
    EXPECT_EQ(by_wire->cv_depth, depth);
    EXPECT_EQ(by_wire->bytes, static_cast<int>(size));
    EXPECT_EQ(static_cast<size_t>(CV_ELEM_SIZE(depth)), size);
    const std::optional<Dtype> by_depth = FromDepth(depth);
    ASSERT_TRUE(by_depth.has_value());
    EXPECT_EQ(by_depth->dtype, dtype);
  };
  expect(v1::DTYPE_UINT8, cv::DataType<uint8_t>::depth, sizeof(uint8_t));
  expect(v1::DTYPE_UINT16, cv::DataType<uint16_t>::depth, sizeof(uint16_t));
  expect(v1::DTYPE_INT16, cv::DataType<int16_t>::depth, sizeof(int16_t));
  expect(v1::DTYPE_FLOAT32, cv::DataType<float>::depth, sizeof(float));
  expect(v1::DTYPE_FLOAT64, cv::DataType<double>::depth, sizeof(double));

  EXPECT_FALSE(FromWire(v1::DTYPE_UNSPECIFIED).has_value());
  EXPECT_FALSE(FromWire(static_cast<v1::DType>(77)).has_value());
  for (int depth : {CV_8S, CV_32S, CV_16F}) EXPECT_FALSE(FromDepth(depth).has_value()) << depth;
}

TEST(ImageToPixelsTest, BytesAreRowMajorWithoutPadding) {
  // x = column, y = row: pixel (x, y) is element y × width + x.
  cv::Mat full(6, 9, CV_16S);
  for (int y = 0; y < full.rows; ++y) {
    for (int x = 0; x < full.cols; ++x) full.at<int16_t>(y, x) = static_cast<int16_t>(-100 * y - x);
  }
  const cv::Mat roi = full(cv::Rect(2, 1, 4, 3));  // rows 9 elements apart
  ASSERT_FALSE(roi.isContinuous());
  absl::StatusOr<v1::PixelData> px = ImageToPixels(roi);
  ASSERT_TRUE(px.ok()) << px.status();
  EXPECT_EQ(px->dtype(), v1::DTYPE_INT16);
  EXPECT_EQ(px->width(), 4u);
  EXPECT_EQ(px->height(), 3u);
  std::string expected;
  for (int y = 1; y < 4; ++y) {
    for (int x = 2; x < 6; ++x) {
      const int16_t v = static_cast<int16_t>(-100 * y - x);
      expected.append(reinterpret_cast<const char*>(&v), sizeof(v));
    }
  }
  EXPECT_EQ(px->data(), expected);

  std::string rows(roi.total() * roi.elemSize(), '\0');
  CopyRows(roi, rows.data());
  EXPECT_EQ(rows, expected);
  EXPECT_EQ(RowMajorBytes(roi), expected);
}

TEST(ImageToPixelsTest, OnlySingleChannelImagesOfTheWiresTypes) {
  EXPECT_THAT(ImageToPixels(cv::Mat(4, 4, CV_32FC3)).status().message(),
              HasSubstr("single-channel"));
  EXPECT_THAT(ImageToPixels(cv::Mat(4, 4, CV_32S)).status().message(),
              HasSubstr("not supported on the wire"));
  const int sizes[] = {2, 2, 2};
  EXPECT_THAT(ImageToPixels(cv::Mat(3, sizes, CV_8U)).status().message(), HasSubstr("2-D"));
  EXPECT_EQ(CheckImage(cv::Mat(4, 4, CV_64F))->dtype, v1::DTYPE_FLOAT64);
}

TEST(PixelsToImageTest, EveryDtypeRoundTrips) {
  cv::RNG rng(3);
  for (int depth : {CV_8U, CV_16U, CV_16S, CV_32F, CV_64F}) {
    SCOPED_TRACE(depth);
    cv::Mat image(7, 5, CV_MAKETYPE(depth, 1));
    rng.fill(image, cv::RNG::UNIFORM, -1000, 1000);
    absl::StatusOr<v1::PixelData> px = ImageToPixels(image);
    ASSERT_TRUE(px.ok()) << px.status();
    absl::StatusOr<cv::Mat> back = PixelsToImage(*px);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->type(), image.type());
    EXPECT_EQ(back->size(), image.size());
    EXPECT_EQ(cv::norm(*back, image, cv::NORM_INF), 0.0);
    // A copy: the image outlives the message.
    EXPECT_NE(static_cast<const void*>(back->data), static_cast<const void*>(px->data().data()));
  }
}

TEST(PixelsToImageTest, BadPixelsNameTheField) {
  const std::string eight(8, '\0');
  EXPECT_THAT(PixelsToImage(Pixels(v1::DTYPE_UNSPECIFIED, 2, 1, eight)).status().message(),
              HasSubstr("frame.pixels.dtype"));
  EXPECT_THAT(PixelsToImage(Pixels(v1::DTYPE_FLOAT32, 0, 2, eight)).status().message(),
              HasSubstr("positive width"));
  EXPECT_THAT(PixelsToImage(Pixels(v1::DTYPE_FLOAT32, 3, 1, eight)).status().message(),
              HasSubstr("frame.pixels.data holds 8 bytes, but 3 x 1 pixels of DTYPE_FLOAT32"));
  EXPECT_THAT(
      PixelsToImage(Pixels(v1::DTYPE_UINT16, 3, 1, std::string(7, '\0'))).status().message(),
      HasSubstr("frame.pixels.data holds 7 bytes"));

  v1::PixelData shared = Pixels(v1::DTYPE_UINT8, 2, 2, "");
  shared.mutable_shared_memory()->set_region("frames");
  EXPECT_TRUE(CheckPixels(shared).ok()) << "no bytes in the message to count";
  const absl::Status s = PixelsToImage(shared).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("frame.pixels.shared_memory is not available here"));
  EXPECT_EQ(s, SharedMemoryUnavailable());
}

// Found by tests/fuzz/fuzz_frame: a shape cv::Mat cannot hold, and 2^60
// float64 pixels, whose 2^63 bytes overflowed int64.
TEST(PixelsToImageTest, HugeShapesAreRejectedWithoutOverflow) {
  v1::PixelData px = Pixels(v1::DTYPE_FLOAT32, 1u << 31, 1, std::string(8, '\0'));
  EXPECT_THAT(PixelsToImage(px).status().message(), HasSubstr("at most 2^31 - 1"));
  px.set_width(0xFFFFFFFFu);
  px.set_height(0xFFFFFFFFu);
  EXPECT_THAT(PixelsToImage(px).status().message(), HasSubstr("at most 2^31 - 1"));
  px.set_dtype(v1::DTYPE_FLOAT64);
  px.set_width(1u << 30);
  px.set_height(1u << 30);
  EXPECT_THAT(PixelsToImage(px).status().message(), HasSubstr("frame.pixels.data holds 8 bytes"));
}

TEST(PixelsToImageTest, NonFinitePixelsAreNamedByXAndY) {
  cv::Mat image(6, 8, CV_64F, cv::Scalar(1.0));
  image.at<double>(4, 6) = -HUGE_VAL;  // x = 6, y = 4
  image.at<double>(5, 0) = std::numeric_limits<double>::quiet_NaN();
  absl::StatusOr<v1::PixelData> px = ImageToPixels(image);
  ASSERT_TRUE(px.ok());
  const absl::Status s = PixelsToImage(*px).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("frame.pixels.data pixel x=6 y=4 is NaN or infinite"));
}

// The scan works in blocks of 4096 with integer tests of the exponent;
// std::isfinite at every position of a longer image is the reference.
template <typename T>
void CheckScanFindsEveryPosition(int depth) {
  const int cols = 97, rows = 101;  // 9797 pixels: three blocks, the last partial
  const T specials[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity()};
  cv::Mat image(rows, cols, depth, cv::Scalar(0.5));
  // The largest finite values (exponent all ones but its last bit) and the
  // smallest (exponent zero) must not count.
  image.at<T>(0, 1) = std::numeric_limits<T>::max();
  image.at<T>(0, 2) = -std::numeric_limits<T>::max();
  image.at<T>(0, 3) = std::numeric_limits<T>::denorm_min();
  EXPECT_EQ(FirstNonFinite(image), -1);
  for (int i : {0, 4095, 4096, 8191, 8192, rows * cols - 1}) {
    for (T special : specials) {
      cv::Mat bad = image.clone();
      bad.at<T>(i / cols, i % cols) = special;
      bad.at<T>(rows - 1, cols - 1) = std::numeric_limits<T>::quiet_NaN();  // a later one
      int64_t reference = -1;
      for (int j = 0; j < rows * cols && reference < 0; ++j) {
        if (!std::isfinite(bad.at<T>(j / cols, j % cols))) reference = j;
      }
      EXPECT_EQ(FirstNonFinite(bad), reference) << i;
      EXPECT_EQ(reference, i);
    }
  }
}

TEST(FirstNonFiniteTest, FindsTheFirstNaNOrInfinityAnywhere) {
  CheckScanFindsEveryPosition<float>(CV_32F);
  CheckScanFindsEveryPosition<double>(CV_64F);
  // Integer pixels are always finite, whatever their bits.
  EXPECT_EQ(FirstNonFinite(cv::Mat(4, 4, CV_16U, cv::Scalar(0xFFFF))), -1);
  EXPECT_TRUE(CheckFinite(cv::Mat(4, 4, CV_8U, cv::Scalar(255)), "f").ok());
}

TEST(ViewPixelsTest, TheFirstRowsOfTheBytes) {
  std::vector<float> values(5 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.5f * static_cast<float>(i);
  const v1::PixelData px =
      Pixels(v1::DTYPE_FLOAT32, 5, 4,
             std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
  const absl::StatusOr<Dtype> type = CheckPixels(px);
  ASSERT_TRUE(type.ok()) << type.status();
  const cv::Mat view = ViewPixels(px, *type, 3);
  EXPECT_EQ(view.rows, 3);
  EXPECT_EQ(view.cols, 5);
  EXPECT_EQ(view.type(), CV_32F);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) EXPECT_EQ(view.at<float>(y, x), values[y * 5 + x]) << x << y;
  }
}

}  // namespace
}  // namespace logstar::wire
