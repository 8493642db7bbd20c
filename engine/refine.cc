#include "engine/refine.h"

#include <algorithm>
#include <cmath>

#include <Eigen/Dense>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::Status RefineOptions::Validate() const {
  if (iterations < 1 || iterations > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("refine iterations must be in [1, 100], got ", iterations));
  }
  if (!(std::isfinite(weight_sigmas) && weight_sigmas > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("refine weight_sigmas must be positive, got ", weight_sigmas));
  }
  if (!(std::isfinite(max_shift_sigmas) && max_shift_sigmas > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("refine max_shift_sigmas must be positive, got ", max_shift_sigmas));
  }
  return absl::OkStatus();
}

namespace {

// Weighted least-squares fit of I ≈ c0 + c1·dx + c2·dy + c3·dx² + c4·dx·dy +
// c5·dy² around (cx, cy) (Gaussian weight of width s, out to 2s); writes the
// paraboloid's apex. False when the fit is not a single maximum: a flat or
// saddle-shaped neighbourhood has no centre to give.
bool QuadraticPeak(const cv::Mat& image, double cx, double cy, double s, double* nx, double* ny) {
  const int r = std::max(1, static_cast<int>(std::ceil(2.0 * s)));
  const int ix = static_cast<int>(std::lround(cx)), iy = static_cast<int>(std::lround(cy));
  const double inv = 1.0 / (2.0 * s * s);
  Eigen::Matrix<double, 6, 6> a = Eigen::Matrix<double, 6, 6>::Zero();
  Eigen::Matrix<double, 6, 1> b = Eigen::Matrix<double, 6, 1>::Zero();
  int used = 0;
  for (int y = std::max(iy - r, 0); y <= std::min(iy + r, image.rows - 1); ++y) {
    const float* row = image.ptr<float>(y);
    const double dy = y - cy;
    for (int x = std::max(ix - r, 0); x <= std::min(ix + r, image.cols - 1); ++x) {
      const double dx = x - cx;
      const double d2 = dx * dx + dy * dy;
      if (d2 > 4.0 * s * s) continue;
      const double w = std::exp(-d2 * inv);
      Eigen::Matrix<double, 6, 1> f;
      f << 1.0, dx, dy, dx * dx, dx * dy, dy * dy;
      a.selfadjointView<Eigen::Lower>().rankUpdate(f, w);
      b += w * row[x] * f;
      ++used;
    }
  }
  if (used < 9) return false;
  a.triangularView<Eigen::Upper>() = a.transpose();
  const Eigen::Matrix<double, 6, 1> c = a.ldlt().solve(b);
  // Apex: gradient zero, i.e. [2c3 c4; c4 2c5]·(x, y) = -(c1, c2); a maximum
  // needs that Hessian negative definite.
  const double h11 = 2.0 * c(3), h12 = c(4), h22 = 2.0 * c(5);
  const double det = h11 * h22 - h12 * h12;
  if (!(h11 < 0.0 && det > 0.0)) return false;
  *nx = cx + (-c(1) * h22 + c(2) * h12) / det;
  *ny = cy + (-c(2) * h11 + c(1) * h12) / det;
  return std::isfinite(*nx) && std::isfinite(*ny);
}

}  // namespace

absl::Status RefinePositions(const cv::Mat& image, absl::Span<Blob> blobs,
                             const RefineOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (image.empty() || image.type() != CV_32FC1) {
    return absl::InvalidArgumentError("refine: image must be a non-empty single-channel float32");
  }
  for (Blob& b : blobs) {
    const double s = std::max(b.sigma * options.weight_sigmas, 0.5);
    double x = b.x, y = b.y;
    bool ok = true;
    // Re-centring the fit window removes the bias of fitting off-centre.
    for (int i = 0; i < options.iterations && ok; ++i) ok = QuadraticPeak(image, x, y, s, &x, &y);
    const double limit = options.max_shift_sigmas * std::max(b.sigma, 0.5);
    if (ok && std::hypot(x - b.x, y - b.y) <= limit) {
      b.x = x;
      b.y = y;
    }
  }
  return absl::OkStatus();
}

}  // namespace logstar
