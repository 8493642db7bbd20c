#include "engine/amorphous/patches.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::Status PatchOptions::Validate() const {
  if (size_px < 3 || size_px % 2 == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("patch size_px must be odd and >= 3, got ", size_px));
  }
  return absl::OkStatus();
}

bool PatchInside(int width, int height, double x, double y, int half_px) {
  return x - half_px >= 0.0 && y - half_px >= 0.0 && x + half_px <= width - 1.0 &&
         y + half_px <= height - 1.0;
}

void SamplePatch(const cv::Mat& image, double x, double y, int size_px, double* out) {
  const int half = size_px / 2;
  // The sub-pixel offset is the same for every sample of the patch, so the
  // bilinear weights are computed once.
  const double fx = std::floor(x), fy = std::floor(y);
  const double ax = x - fx, ay = y - fy;
  const int x0 = static_cast<int>(fx) - half, y0 = static_cast<int>(fy) - half;
  const int width = image.cols, height = image.rows;
  if (x0 >= 0 && y0 >= 0 && x0 + size_px < width && y0 + size_px < height) {
    // Inside with a pixel to spare right and below (the common case): no
    // clamping, so the compiler can vectorise the row.
    // The same arithmetic as below, sample for sample.
    for (int j = 0; j < size_px; ++j) {
      const float* a = image.ptr<float>(y0 + j) + x0;
      const float* b = image.ptr<float>(y0 + j + 1) + x0;
      double* o = out + j * size_px;
      for (int i = 0; i < size_px; ++i) {
        const double top = (1.0 - ax) * a[i] + ax * a[i + 1];
        const double bottom = (1.0 - ax) * b[i] + ax * b[i + 1];
        o[i] = (1.0 - ay) * top + ay * bottom;
      }
    }
    return;
  }
  for (int j = 0; j < size_px; ++j) {
    const int r0 = y0 + j, r1 = std::min(r0 + 1, height - 1);
    const float* a = image.ptr<float>(r0);
    const float* b = image.ptr<float>(r1);
    for (int i = 0; i < size_px; ++i) {
      const int c0 = x0 + i, c1 = std::min(c0 + 1, width - 1);
      const double top = (1.0 - ax) * a[c0] + ax * a[c1];
      const double bottom = (1.0 - ax) * b[c0] + ax * b[c1];
      out[j * size_px + i] = (1.0 - ay) * top + ay * bottom;
    }
  }
}

absl::StatusOr<Patches> ExtractPatches(const cv::Mat& image, absl::Span<const PointXY> centers,
                                       const PatchOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (image.empty() || image.type() != CV_32FC1) {
    return absl::InvalidArgumentError(
        "patches: the image must be a non-empty single-channel CV_32F");
  }
  const int half = options.size_px / 2, d = options.size_px * options.size_px;
  Patches p;
  for (size_t i = 0; i < centers.size(); ++i) {
    if (!std::isfinite(centers[i].x) || !std::isfinite(centers[i].y)) {
      return absl::InvalidArgumentError(
          absl::StrCat("patches: atom ", i, " has a non-finite position"));
    }
    if (PatchInside(image.cols, image.rows, centers[i].x, centers[i].y, half)) {
      p.kept.push_back(static_cast<int>(i));
    }
  }
  // Row-major so that each patch is one contiguous row.
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> v(p.kept.size(), d);
  for (size_t r = 0; r < p.kept.size(); ++r) {
    const PointXY& c = centers[p.kept[r]];
    SamplePatch(image, c.x, c.y, options.size_px, v.row(r).data());
    if (options.normalize) {
      const double mean = v.row(r).mean();
      v.row(r).array() -= mean;
      const double sd = std::sqrt(v.row(r).squaredNorm() / d);
      if (sd > 0.0) v.row(r) /= sd;
    }
  }
  p.values = v;
  return p;
}

}  // namespace logstar
