// MakeFrame (clients/cpp/make_frame.h): the bytes, shape and pixel size of
// the frame against the caller's buffer, and the daemon's field names in
// its errors.
#include "clients/cpp/make_frame.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace logstar {
namespace {

using ::testing::HasSubstr;

TEST(MakeFrameTest, CopiesRowMajorPixelsOfEachDtype) {
  // 3 columns × 2 rows: element (x, y) = 10 y + x, so a transposed or
  // truncated copy shows.
  const std::vector<uint16_t> u16 = {0, 1, 2, 10, 11, 12};
  absl::StatusOr<v1::Frame> frame = MakeFrame(u16.data(), 3, 2, v1::DTYPE_UINT16, 0.0);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->pixels().dtype(), v1::DTYPE_UINT16);
  EXPECT_EQ(frame->pixels().width(), 3u);
  EXPECT_EQ(frame->pixels().height(), 2u);
  ASSERT_EQ(frame->pixels().data().size(), 12u);  // 6 pixels × 2 bytes
  std::vector<uint16_t> back(6);
  std::memcpy(back.data(), frame->pixels().data().data(), 12);
  EXPECT_EQ(back, u16);

  const std::vector<double> f64 = {0.5, -1.25, 3.0, 4.0};
  frame = MakeFrame(f64.data(), 2, 2, v1::DTYPE_FLOAT64, 0.0);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->pixels().data().size(), 32u);
  EXPECT_EQ(std::memcmp(frame->pixels().data().data(), f64.data(), 32), 0);

  const std::vector<uint8_t> u8 = {7, 8, 9};
  frame = MakeFrame(u8.data(), 1, 3, v1::DTYPE_UINT8, 0.0);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->pixels().data(), std::string("\x07\x08\x09", 3));
}

TEST(MakeFrameTest, PixelSizeIsSquareAndZeroLeavesThePriors) {
  const std::vector<float> f32(4, 1.0f);
  absl::StatusOr<v1::Frame> frame = MakeFrame(f32.data(), 2, 2, v1::DTYPE_FLOAT32, 0.125);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->pixel_size_x_angstrom(), 0.125);
  EXPECT_EQ(frame->pixel_size_y_angstrom(), 0.125);
  EXPECT_EQ(frame->sequence(), 0u);  // the caller's to set

  frame = MakeFrame(f32.data(), 2, 2, v1::DTYPE_FLOAT32, 0.0);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->pixel_size_x_angstrom(), 0.0);
  EXPECT_EQ(frame->pixel_size_y_angstrom(), 0.0);
}

TEST(MakeFrameTest, ErrorsNameTheField) {
  const std::vector<float> f32(4, 1.0f);
  absl::StatusOr<v1::Frame> frame = MakeFrame(f32.data(), 2, 2, v1::DTYPE_UNSPECIFIED, 0.0);
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(frame.status().message(), HasSubstr("frame.pixels.dtype"));
  frame = MakeFrame(f32.data(), 2, 2, static_cast<v1::DType>(99), 0.0);
  EXPECT_THAT(frame.status().message(), HasSubstr("frame.pixels.dtype"));

  for (const auto& [width, height] : {std::pair{0, 2}, {2, 0}, {-3, 2}, {2, -1}}) {
    frame = MakeFrame(f32.data(), width, height, v1::DTYPE_FLOAT32, 0.0);
    EXPECT_EQ(frame.status().code(), absl::StatusCode::kInvalidArgument) << width << "x" << height;
    EXPECT_THAT(frame.status().message(), HasSubstr("frame.pixels"));
    EXPECT_THAT(frame.status().message(), HasSubstr("positive width and height"));
  }

  frame = MakeFrame(nullptr, 2, 2, v1::DTYPE_FLOAT32, 0.0);
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(frame.status().message(), HasSubstr("frame.pixels.data"));
}

}  // namespace
}  // namespace logstar
