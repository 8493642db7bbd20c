#include "engine/log/padded_frame.h"

namespace logstar::internal {
namespace {

constexpr int kVectorFloats = 16;
constexpr size_t kAliasingBytes = 256;

int PaddedCols(int cols) {
  // Whole vectors, plus one more so the stride is an odd number of 64-byte
  // lines whenever the vector count is even.
  int padded = (cols + kVectorFloats - 1) / kVectorFloats * kVectorFloats;
  if ((padded * sizeof(float)) % kAliasingBytes == 0) padded += kVectorFloats;
  return padded;
}

}  // namespace

cv::Mat NewPaddedFrame(int rows, int cols) {
  cv::Mat buffer = cv::Mat::zeros(rows, PaddedCols(cols), CV_32F);
  return buffer.colRange(0, cols);
}

bool HasPaddedLayout(const cv::Mat& m) {
  if (m.type() != CV_32FC1 || m.rows == 0) return false;
  if (m.step[0] % kAliasingBytes == 0) return false;
  const int readable = (m.cols + kVectorFloats - 1) / kVectorFloats * kVectorFloats;
  if (m.step[0] < readable * sizeof(float)) return false;
  // The last row must not run past the allocation either.
  return m.ptr<uchar>(m.rows - 1) + readable * sizeof(float) <= m.datalimit;
}

}  // namespace logstar::internal
