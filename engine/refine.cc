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
  const int x0 = std::max(ix - r, 0), x1 = std::min(ix + r, image.cols - 1);
  const int y0 = std::max(iy - r, 0), y1 = std::min(iy + r, image.rows - 1);
  const double inv = 1.0 / (2.0 * s * s);
  const double reach2 = 4.0 * s * s;
  // The Gaussian weight is separable: 2(2r + 1) exponentials, not (2r + 1)².
  double wx[64], wy[64];
  if (x1 - x0 >= 64 || y1 - y0 >= 64) return false;
  for (int x = x0; x <= x1; ++x) wx[x - x0] = std::exp(-(x - cx) * (x - cx) * inv);
  for (int y = y0; y <= y1; ++y) wy[y - y0] = std::exp(-(y - cy) * (y - cy) * inv);
  // Moments m[a][b] = Σ w·dx^a·dy^b (a + b <= 4) and v[a][b] = Σ w·I·dx^a·dy^b
  // (a + b <= 2) are all the normal equations of the fit need.
  double m[5][5] = {}, v[3][3] = {};
  int used = 0;
  for (int y = y0; y <= y1; ++y) {
    const float* row = image.ptr<float>(y);
    const double dy = y - cy;
    for (int x = x0; x <= x1; ++x) {
      const double dx = x - cx;
      if (dx * dx + dy * dy > reach2) continue;
      const double w = wx[x - x0] * wy[y - y0];
      double px[5] = {1.0, dx, dx * dx, dx * dx * dx, dx * dx * dx * dx};
      double py[5] = {1.0, dy, dy * dy, dy * dy * dy, dy * dy * dy * dy};
      for (int i = 0; i <= 4; ++i) {
        const double wi = w * px[i];
        for (int j = 0; i + j <= 4; ++j) m[i][j] += wi * py[j];
      }
      const double wv = w * row[x];
      for (int i = 0; i <= 2; ++i) {
        for (int j = 0; i + j <= 2; ++j) v[i][j] += wv * px[i] * py[j];
      }
      ++used;
    }
  }
  if (used < 9) return false;
  // Features 1, dx, dy, dx², dx·dy, dy² as exponents of (dx, dy).
  static constexpr int kA[6] = {0, 1, 0, 2, 1, 0};
  static constexpr int kB[6] = {0, 0, 1, 0, 1, 2};
  Eigen::Matrix<double, 6, 6> a;
  Eigen::Matrix<double, 6, 1> b;
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 6; ++j) a(i, j) = m[kA[i] + kA[j]][kB[i] + kB[j]];
    b(i) = v[kA[i]][kB[i]];
  }
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
