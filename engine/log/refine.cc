#include "engine/log/refine.h"

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
  // The weight and the powers of dx and dy are separable, so within each row
  // of the disk the x-parts of the moments are differences of prefix sums,
  // and the image moments need 3 products per pixel instead of ~30.
  constexpr int kMax = 64;
  if (x1 - x0 >= kMax || y1 - y0 >= kMax) return false;
  double px[5][kMax], prefix[5][kMax + 1];  // w(dx)·dx^k and its prefix sums
  const int nxs = x1 - x0 + 1;
  for (int k = 0; k <= 4; ++k) prefix[k][0] = 0.0;
  for (int i = 0; i < nxs; ++i) {
    const double d = x0 + i - cx;
    double t = std::exp(-d * d * inv);
    for (int k = 0; k <= 4; ++k, t *= d) {
      px[k][i] = t;
      prefix[k][i + 1] = prefix[k][i] + t;
    }
  }
  // Moments m[a][b] = Σ w·dx^a·dy^b (a + b <= 4) and v[a][b] = Σ w·I·dx^a·dy^b
  // (a + b <= 2) are all the normal equations of the fit need.
  double m[5][5] = {}, v[3][3] = {};
  int used = 0;
  for (int y = y0; y <= y1; ++y) {
    const double dy = y - cy;
    const double room = reach2 - dy * dy;
    if (room < 0.0) continue;
    // The row's pixels with dx² + dy² <= reach², as the disk test decides.
    int lo = 0, hi = nxs - 1;
    while (lo <= hi && (x0 + lo - cx) * (x0 + lo - cx) > room) ++lo;
    while (hi >= lo && (x0 + hi - cx) * (x0 + hi - cx) > room) --hi;
    if (lo > hi) continue;
    used += hi - lo + 1;
    double py[5];
    double t = std::exp(-dy * dy * inv);
    for (int k = 0; k <= 4; ++k, t *= dy) py[k] = t;
    for (int a = 0; a <= 4; ++a) {
      const double along_x = prefix[a][hi + 1] - prefix[a][lo];
      for (int b = 0; a + b <= 4; ++b) m[a][b] += along_x * py[b];
    }
    const float* row = image.ptr<float>(y) + x0;
    double r0 = 0.0, r1 = 0.0, r2 = 0.0;
    for (int i = lo; i <= hi; ++i) {
      const double value = row[i];
      r0 += px[0][i] * value;
      r1 += px[1][i] * value;
      r2 += px[2][i] * value;
    }
    v[0][0] += py[0] * r0, v[0][1] += py[1] * r0, v[0][2] += py[2] * r0;
    v[1][0] += py[0] * r1, v[1][1] += py[1] * r1;
    v[2][0] += py[0] * r2;
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
