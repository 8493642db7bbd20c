#include "engine/physics/crystallinity.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status_macros.h"
#include "engine/physics/lattice.h"

namespace logstar {

// ---------------------------------------------------------------------------
// CrystalMask

absl::StatusOr<CrystalMask> CrystalMask::FromMask(const cv::Mat& mask) {
  if (mask.empty() || mask.type() != CV_8UC1) {
    return absl::InvalidArgumentError("a crystal mask must be a non-empty CV_8U image");
  }
  CrystalMask m;
  m.mask_ = mask != 0;
  m.mask_ /= 255;
  cv::integral(m.mask_, m.integral_, CV_32S);
  return m;
}

CrystalMask CrystalMask::Offset(int col0, int row0) const {
  CrystalMask m = *this;
  m.col0_ += col0;
  m.row0_ += row0;
  return m;
}

bool CrystalMask::Contains(const PointXY& p) const {
  if (mask_.empty() || !std::isfinite(p.x) || !std::isfinite(p.y)) return false;
  const double col = std::floor(p.x + 0.5) + col0_, row = std::floor(p.y + 0.5) + row0_;
  if (col < 0 || row < 0 || col >= mask_.cols || row >= mask_.rows) return false;
  return mask_.at<uint8_t>(static_cast<int>(row), static_cast<int>(col)) != 0;
}

int64_t CrystalMask::Area(const PixelRegion& region) const {
  if (mask_.empty()) return 0;
  const int64_t c0 = std::clamp<int64_t>(int64_t{region.col0} + col0_, 0, mask_.cols);
  const int64_t r0 = std::clamp<int64_t>(int64_t{region.row0} + row0_, 0, mask_.rows);
  const int64_t c1 = std::clamp<int64_t>(int64_t{region.col0} + region.cols + col0_, 0, mask_.cols);
  const int64_t r1 = std::clamp<int64_t>(int64_t{region.row0} + region.rows + row0_, 0, mask_.rows);
  if (c1 <= c0 || r1 <= r0) return 0;
  auto at = [&](int64_t r, int64_t c) {
    return static_cast<int64_t>(integral_.at<int32_t>(static_cast<int>(r), static_cast<int>(c)));
  };
  return at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0);
}

double CrystalMask::Fraction(const PixelRegion& region) const {
  const double pixels = static_cast<double>(region.cols) * region.rows;
  return pixels > 0.0 ? static_cast<double>(Area(region)) / pixels : 0.0;
}

// ---------------------------------------------------------------------------
// MeasureCrystallinity

absl::Status CrystallinityOptions::Validate() const {
  auto bad = [](const char* name, double v, const char* range) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be ", range, ", got ", v));
  };
  if (!(working_nn_px >= 4.0 && std::isfinite(working_nn_px))) {
    return bad("working_nn_px", working_nn_px, ">= 4");
  }
  if (!(smoothing_nn > 0.0 && smoothing_nn <= 1.0)) {
    return bad("smoothing_nn", smoothing_nn, "in (0, 1]");
  }
  if (!(highpass_nn > smoothing_nn && highpass_nn <= 4.0)) {
    return bad("highpass_nn", highpass_nn, "in (smoothing_nn, 4]");
  }
  if (!(window_cells >= 0.0 && window_cells <= 4.0)) {
    return bad("window_cells", window_cells, "in [0, 4]");
  }
  if (!(threshold_fraction > 0.0 && threshold_fraction < 1.0)) {
    return bad("threshold_fraction", threshold_fraction, "in (0, 1)");
  }
  if (!(noise_sigmas >= 1.0 && std::isfinite(noise_sigmas))) {
    return bad("noise_sigmas", noise_sigmas, ">= 1");
  }
  if (!(local_reach_windows > 0.0 && local_reach_windows <= 8.0)) {
    return bad("local_reach_windows", local_reach_windows, "in (0, 8]");
  }
  if (!(structure_noise >= 0.0 && std::isfinite(structure_noise))) {
    return bad("structure_noise", structure_noise, ">= 0");
  }
  if (!(structure_fraction >= 0.0 && structure_fraction < 1.0)) {
    return bad("structure_fraction", structure_fraction, "in [0, 1)");
  }
  if (!(periodic_share >= 0.0 && periodic_share <= 1.0)) {
    return bad("periodic_share", periodic_share, "in [0, 1]");
  }
  return absl::OkStatus();
}

namespace {

// The means of `image` (CV_32F) over blocks of `factor` × `factor` pixels
// (>= 1); the last block of a row or column averages the pixels it has.
// Block (i, j) is centred on pixel ((i + 0.5)·factor - 0.5, ...) of `image`,
// which is where Upsample puts it back.
cv::Mat BlockMean(const cv::Mat& image, int factor) {
  if (factor <= 1) return image;
  const int cols = (image.cols + factor - 1) / factor, rows = (image.rows + factor - 1) / factor;
  // Whole blocks by OpenCV's area resampling at an exact integer ratio (its
  // fast path); the last partial row and column of blocks, if any, by hand.
  const int whole_cols = image.cols / factor, whole_rows = image.rows / factor;
  cv::Mat out(rows, cols, CV_32F);
  if (whole_cols > 0 && whole_rows > 0) {
    cv::Mat inner = out(cv::Rect(0, 0, whole_cols, whole_rows));
    cv::resize(image(cv::Rect(0, 0, whole_cols * factor, whole_rows * factor)), inner, inner.size(),
               0, 0, cv::INTER_AREA);
  }
  auto mean = [&](int bx, int by) {
    const int x1 = std::min(image.cols, (bx + 1) * factor);
    const int y1 = std::min(image.rows, (by + 1) * factor);
    double sum = 0.0;
    for (int y = by * factor; y < y1; ++y) {
      const float* in = image.ptr<float>(y);
      for (int x = bx * factor; x < x1; ++x) sum += in[x];
    }
    return static_cast<float>(sum / ((x1 - bx * factor) * (y1 - by * factor)));
  };
  for (int by = 0; by < rows; ++by) {
    for (int bx = by < whole_rows ? whole_cols : 0; bx < cols; ++bx) {
      out.at<float>(by, bx) = mean(bx, by);
    }
  }
  return out;
}

// `coarse` (blocks of `factor` pixels, as BlockMean makes them) bilinearly
// interpolated back to `size`, the edges extended: pixel x of the result is
// at (x + 0.5) / factor - 0.5 of `coarse`. Separable: the coarse rows are
// widened once, then each row of the result blends two of them.
cv::Mat Upsample(const cv::Mat& coarse, int factor, cv::Size size) {
  struct Tap {
    int i0, i1;
    float w1;
  };
  auto taps = [&](int n, int limit) {
    std::vector<Tap> t(n);
    for (int x = 0; x < n; ++x) {
      const double c = std::clamp((x + 0.5) / factor - 0.5, 0.0, limit - 1.0);
      const int i0 = static_cast<int>(c);
      t[x] = {i0, std::min(i0 + 1, limit - 1), static_cast<float>(c - i0)};
    }
    return t;
  };
  const std::vector<Tap> tx = taps(size.width, coarse.cols), ty = taps(size.height, coarse.rows);
  cv::Mat wide(coarse.rows, size.width, CV_32F);
  for (int r = 0; r < coarse.rows; ++r) {
    const float* in = coarse.ptr<float>(r);
    float* o = wide.ptr<float>(r);
    for (int x = 0; x < size.width; ++x) {
      o[x] = in[tx[x].i0] + tx[x].w1 * (in[tx[x].i1] - in[tx[x].i0]);
    }
  }
  cv::Mat out(size, CV_32F);
  for (int y = 0; y < size.height; ++y) {
    const float* r0 = wide.ptr<float>(ty[y].i0);
    const float* r1 = wide.ptr<float>(ty[y].i1);
    const float w1 = ty[y].w1;
    float* o = out.ptr<float>(y);
    for (int x = 0; x < size.width; ++x) o[x] = r0[x] + w1 * (r1[x] - r0[x]);
  }
  return out;
}

// A Gaussian low-pass of width `sigma` px (> 0) at a cost independent of it:
// wide ones run on block means (a local mean is all the caller needs of
// them) and are upsampled back.
cv::Mat LowPass(const cv::Mat& image, double sigma) {
  const int factor = std::max(1, static_cast<int>(sigma / 2.0));
  cv::Mat blurred;
  cv::GaussianBlur(BlockMean(image, factor), blurred, cv::Size(0, 0), sigma / factor,
                   sigma / factor, cv::BORDER_REFLECT);
  return factor == 1 ? blurred : Upsample(blurred, factor, image.size());
}

// Adds weight × image(p + (sx, sy)) to `sum` at every pixel p (both CV_32FC2
// of one size), bilinearly; outside the image counts as 0.
void AddShifted(const cv::Mat& image, double sx, double sy, float weight, cv::Mat& sum) {
  const int ix = static_cast<int>(std::floor(sx)), iy = static_cast<int>(std::floor(sy));
  const float fx = static_cast<float>(sx - ix), fy = static_cast<float>(sy - iy);
  const float w[2][2] = {{weight * (1 - fy) * (1 - fx), weight * (1 - fy) * fx},
                         {weight * fy * (1 - fx), weight * fy * fx}};
  for (int y = 0; y < sum.rows; ++y) {
    cv::Vec2f* out = sum.ptr<cv::Vec2f>(y);
    for (int r = 0; r < 2; ++r) {
      const int sy_row = y + iy + r;
      if (sy_row < 0 || sy_row >= image.rows) continue;
      const cv::Vec2f* in = image.ptr<cv::Vec2f>(sy_row);
      for (int c = 0; c < 2; ++c) {
        // Source column x + ix + c must lie in [0, cols).
        const int x0 = std::max(0, -(ix + c)), x1 = std::min(sum.cols, image.cols - (ix + c));
        const float wt = w[r][c];
        const cv::Vec2f* src = in + ix + c;
        for (int x = x0; x < x1; ++x) out[x] += wt * src[x];
      }
    }
  }
}

// The mean of `image` (CV_32FC2) over the segment [-v/2, v/2] around each
// pixel: bilinear samples evenly spread along it, one per pixel of its
// length.
cv::Mat SegmentMean(const cv::Mat& image, const PointXY& v) {
  const int n = std::max(1, static_cast<int>(std::ceil(std::hypot(v.x, v.y))));
  cv::Mat sum = cv::Mat::zeros(image.size(), image.type());
  for (int k = 0; k < n; ++k) {
    const double s = (k + 0.5) / n - 0.5;
    AddShifted(image, s * v.x, s * v.y, 1.0f / n, sum);
  }
  return sum;
}

// The windowed sums behind the local covariance of `h` at the integer lag
// (dx, dy), on a grid `coarse` times coarser than h: channel 0 the mean of
// h(p)·h(p + lag) over one unit cell (spanned by a and b, coarse px) around
// each pixel and then over a Gaussian of `sigma` coarse px, counting only
// pairs inside the frame; channel 1 the same mean of their validity (1 for
// a pair inside, 0 outside), so that channel 0 / channel 1 is the
// covariance without the frame's edges biasing it toward 0 (normalised
// convolution). The cell-shaped box averages the product over exactly one
// period, so a lattice whose layers differ (YBCO's along c) gives the same
// value everywhere; the Gaussian then steadies it against noise.
cv::Mat LagSums(const cv::Mat& h, int dx, int dy, int coarse, const PointXY& a, const PointXY& b,
                double sigma) {
  // Block sums of the products and of their validity, per coarse × coarse
  // block of h, over coarse² (so a block the frame or the lag cuts weighs
  // less).
  const int cols = (h.cols + coarse - 1) / coarse, rows = (h.rows + coarse - 1) / coarse;
  cv::Mat sums = cv::Mat::zeros(rows, cols, CV_32FC2);
  const int x0 = std::max(0, -dx), x1 = std::min(h.cols, h.cols - dx);
  const int y0 = std::max(0, -dy), y1 = std::min(h.rows, h.rows - dy);
  const float weight = 1.0f / (static_cast<float>(coarse) * coarse);
  std::vector<float> row(std::max(0, x1 - x0));
  for (int y = y0; y < y1; ++y) {
    const float* here = h.ptr<float>(y) + x0;
    const float* there = h.ptr<float>(y + dy) + x0 + dx;
    for (size_t i = 0; i < row.size(); ++i) row[i] = here[i] * there[i];
    cv::Vec2f* out = sums.ptr<cv::Vec2f>(y / coarse);
    for (int x = x0; x < x1;) {
      const int end = std::min(x1, (x / coarse + 1) * coarse);
      float s = 0.0f;
      for (int i = x; i < end; ++i) s += row[i - x0];
      cv::Vec2f& o = out[x / coarse];
      o[0] += weight * s;
      o[1] += weight * static_cast<float>(end - x);
      x = end;
    }
  }
  cv::Mat both = SegmentMean(SegmentMean(sums, a), b);
  if (sigma > 0.0) {
    cv::GaussianBlur(both, both, cv::Size(0, 0), sigma, sigma, cv::BORDER_CONSTANT);
  }
  return both;
}

// Channel 0 over channel 1 of LagSums' result; 0 where a window holds under
// a tenth of its weight in pairs (it says too little).
cv::Mat Covariance(const cv::Mat& sums) {
  cv::Mat out(sums.size(), CV_32F);
  for (int y = 0; y < sums.rows; ++y) {
    const cv::Vec2f* in = sums.ptr<cv::Vec2f>(y);
    float* o = out.ptr<float>(y);
    for (int x = 0; x < sums.cols; ++x) o[x] = in[x][1] > 0.1f ? in[x][0] / in[x][1] : 0.0f;
  }
  return out;
}

struct Basis {
  PointXY a, b;
};

// Lagrange (Gauss) reduction: the two shortest independent vectors of the
// lattice a and b span.
Basis Reduce(PointXY a, PointXY b) {
  auto norm2 = [](const PointXY& v) { return v.x * v.x + v.y * v.y; };
  for (int step = 0; step < 64; ++step) {
    if (norm2(a) > norm2(b)) std::swap(a, b);
    const double m = std::round((a.x * b.x + a.y * b.y) / norm2(a));
    if (m == 0.0) break;
    b = {b.x - m * a.x, b.y - m * a.y};
  }
  return {a, b};
}

// The measured lattice with any fractional translation its columns show
// added: a cell several times too large (MeasureLattice can keep YBCO's
// doubled c on small frames with amorphous patches, or a perovskite cell of
// three or nine times the area on a crystal edge) would make the window
// below that much larger and blur the map. A translation v = (i a + j b) / k
// (k = 2 or 3) is taken when it maps three quarters of the folded cell's
// columns onto columns of similar height (within a fifth of the
// nearest-neighbour spacing and 0.25 in relative height): what a cell k
// times too large shows, and what a true cell cannot (v would then be a
// translation of it). A pseudo translation (YBCO's c/3) fails on the
// heights: it maps Ba columns onto Y.
Basis PrimitiveBasis(const LatticeMeasurement& lattice) {
  Basis basis{lattice.a, lattice.b};
  const auto& columns = lattice.columns;
  const double tolerance = 0.2 * lattice.nearest_neighbor_px;
  auto is_translation = [&](const PointXY& v, const Basis& cell) {
    size_t matched = 0;
    for (const LatticeColumn& c : columns) {
      bool found = false;
      for (const LatticeColumn& d : columns) {
        if (std::abs(c.relative_height - d.relative_height) > 0.25) continue;
        // The offset to d modulo the lattice: small i, j cover a reduced cell.
        for (int i = -2; i <= 2 && !found; ++i) {
          for (int j = -2; j <= 2 && !found; ++j) {
            const double dx = c.position_px.x + v.x - d.position_px.x - i * cell.a.x - j * cell.b.x;
            const double dy = c.position_px.y + v.y - d.position_px.y - i * cell.a.y - j * cell.b.y;
            found = std::hypot(dx, dy) < tolerance;
          }
        }
        if (found) break;
      }
      matched += found;
    }
    return 4 * matched >= 3 * columns.size();
  };
  for (bool reduced = true; reduced && columns.size() >= 2;) {
    reduced = false;
    for (int k = 2; k <= 3 && !reduced; ++k) {
      for (int i = 0; i < k && !reduced; ++i) {
        for (int j = 0; j < k && !reduced; ++j) {
          if (i == 0 && j == 0) continue;
          const PointXY v{(i * basis.a.x + j * basis.b.x) / k, (i * basis.a.y + j * basis.b.y) / k};
          if (!is_translation(v, basis)) continue;
          // v and the old basis span the finer lattice, of 1/k the cell area;
          // (v, a) spans it when j = 1, (v, b) when i = 1, and the loop's
          // order meets such a v of every subgroup first (k is prime).
          auto area = [](const Basis& e) { return std::abs(e.a.x * e.b.y - e.a.y * e.b.x); };
          const double target = area(basis) / k;
          for (const Basis& finer : {Reduce(basis.a, v), Reduce(basis.b, v)}) {
            if (!reduced && std::abs(area(finer) - target) < 0.01 * target) {
              basis = finer;
              reduced = true;
            }
          }
        }
      }
    }
  }
  return basis;
}

// The q-quantile (q in [0, 1]) of `values` (not empty); reorders them.
double Quantile(std::vector<float>& values, double q) {
  const size_t k = std::min(values.size() - 1, static_cast<size_t>(q * (values.size() - 1) + 0.5));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

// The crystal's level: the 75th percentile of the map over the pixels above
// `floor`, taken where the window lies inside the frame (at least `margin`
// px from every edge) when any such pixel is above it: a window cut by the
// frame's edge averages a partial cell, which is biased by whichever layers
// it holds. 0 when no pixel is above the floor.
double CrystalLevel(const cv::Mat& map, double floor, int margin) {
  std::vector<float> inner, all;
  for (int y = 0; y < map.rows; ++y) {
    const float* row = map.ptr<float>(y);
    const bool inner_row = y >= margin && y < map.rows - margin;
    for (int x = 0; x < map.cols; ++x) {
      if (!(row[x] > floor)) continue;
      all.push_back(row[x]);
      if (inner_row && x >= margin && x < map.cols - margin) inner.push_back(row[x]);
    }
  }
  if (!inner.empty()) return Quantile(inner, 0.75);
  return all.empty() ? 0.0 : Quantile(all, 0.75);
}

// The map's largest value within `radius` px of each pixel (0 beyond the
// image's edges).
cv::Mat LocalMax(const cv::Mat& map, double radius) {
  const int r = std::max(1, static_cast<int>(std::ceil(radius)));
  cv::Mat out;
  cv::dilate(map, out, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * r + 1, 2 * r + 1)),
             cv::Point(-1, -1), 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  return out;
}

// What LocalThresholds needs beside the map, on the map's grid.
struct GrowthEvidence {
  // The band-passed frame's energy (h²) over about half a column spacing:
  // columns right there, at a resolution of a spacing, not a window.
  cv::Mat structure;
  // The local variance of h over the map's window (its lag-0 covariance).
  cv::Mat variance;
  // The energy and variance of the frame's white noise in h.
  double noise_energy = 0.0;
  double structure_reach = 0.0;  // coarse px: one column spacing
  double map_reach = 0.0;        // coarse px: local_reach_windows window sigmas
};

// The threshold per pixel of `map` (coarse px), all positive: `threshold`
// on the crystal's core (the pixels above it) and on whatever is not
// connected to it; on the pixels connected to the core (8-neighbours)
// through pixels that pass the three tests below, the lower of `threshold`
// and max(floor, fraction × the map's largest value within map_reach),
// which they reach. A pixel passes when
//  - the map shows the lattice above the noise and above `fraction` of its
//    largest value nearby (the crystal's level there, whatever that is);
//  - structure shows columns there: at least structure_noise × the noise's
//    energy and structure_fraction of its largest value within a spacing
//    (against vacuum the window's tail reaches beyond the last columns,
//    the structure does not);
//  - the lattice holds at least periodic_share of the local variance less
//    the noise's: amorphous material and a support film have as much
//    structure, little of it at a lattice lag.
// A crystal whose lattice contrast falls off — a particle thinning toward
// its rim, where the map goes as the contrast squared — is so followed as
// far as its lattice shows, where the crystal's typical level alone cut it
// at 0.7 of its contrast; its boundary still falls where the window holds
// half crystal, as the map's nearby level there is the rim's.
cv::Mat LocalThresholds(const cv::Mat& map, const GrowthEvidence& e, double threshold, double floor,
                        const CrystallinityOptions& options) {
  const double fraction = options.threshold_fraction;
  // (A noise-free frame has floor 0: its vacuum, 0 too, must not pass.)
  const cv::Mat local =
      cv::max(fraction * LocalMax(map, e.map_reach), std::max(floor, 1e-3 * threshold));
  const cv::Mat structured =
      e.structure >= cv::max(options.structure_fraction * LocalMax(e.structure, e.structure_reach),
                             options.structure_noise * e.noise_energy);
  const cv::Mat periodic = map >= options.periodic_share * (e.variance - e.noise_energy);
  const cv::Mat core = map > threshold;
  const cv::Mat passes = ((map >= local) & structured & periodic) | core;
  cv::Mat labels;
  const int n = cv::connectedComponents(passes, labels, 8, CV_32S);
  std::vector<uint8_t> keep(n, 0);
  for (int y = 0; y < map.rows; ++y) {
    const uint8_t* c = core.ptr<uint8_t>(y);
    const int32_t* l = labels.ptr<int32_t>(y);
    for (int x = 0; x < map.cols; ++x) {
      if (c[x] != 0) keep[l[x]] = 1;
    }
  }
  cv::Mat out(map.size(), CV_32F);
  const float t = static_cast<float>(threshold);
  for (int y = 0; y < map.rows; ++y) {
    const int32_t* l = labels.ptr<int32_t>(y);
    const float* lo = local.ptr<float>(y);
    float* o = out.ptr<float>(y);
    for (int x = 0; x < map.cols; ++x) {
      o[x] = l[x] > 0 && keep[l[x]] != 0 ? std::min(t, lo[x]) : t;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Crystallinity> MeasureCrystallinity(const cv::Mat& frame,
                                                   const LatticeMeasurement& lattice,
                                                   const CrystallinityOptions& options,
                                                   ExecutionContext* context) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  if (frame.empty() || frame.type() != CV_32FC1) {
    return absl::InvalidArgumentError("the frame must be a non-empty single-channel CV_32F image");
  }
  if (!lattice.found || !(lattice.nearest_neighbor_px > 0.0) || !(lattice.cell_area_px2 > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("crystallinity needs a measured lattice: ", lattice.reason));
  }

  // 1. Working resolution and band-pass.
  const int factor =
      std::max(1, static_cast<int>(lattice.nearest_neighbor_px / options.working_nn_px));
  const cv::Mat work = BlockMean(frame, factor);
  // A non-finite pixel makes its block's mean non-finite: checking the
  // smaller image checks the frame.
  if (!cv::checkRange(work)) return absl::InvalidArgumentError("the frame has non-finite pixels");
  const double nn = lattice.nearest_neighbor_px / factor;
  cv::Mat h;
  cv::GaussianBlur(work, h, cv::Size(0, 0), options.smoothing_nn * nn, options.smoothing_nn * nn,
                   cv::BORDER_REFLECT);
  h -= LowPass(work, options.highpass_nn * nn);
  // In units of its RMS: the map is then a share of the frame's band-passed
  // variance, and its products stay far from float denormals.
  const double rms = std::sqrt(cv::mean(h.mul(h))[0]);
  if (!(rms > 0.0)) return absl::InvalidArgumentError("the frame is blank");
  h /= rms;

  // 2. Local covariance at each translation and sign, on a grid coarse
  // enough for the window: about three samples along the shortest
  // translation (the map is smooth at that scale; finer grids cost time and
  // changed no IoU).
  const Basis basis = PrimitiveBasis(lattice);
  // The window's reach (frame px): half a cell's diagonal and two sigmas of
  // the Gaussian beyond it. Its level is read where the window lies inside
  // the frame; with under a quarter of the frame there, windows cut by the
  // edge (averaging a partial cell, biased by whichever layers it holds)
  // would set it, and a lattice measured on so few cells may be a pseudo
  // cell (YBCO's 93 px cell makes the window reach 115 px: 512² frames have
  // 30 % there, 384² 16 %; a perovskite's reaches 62 px: 256² have 27 %).
  {
    const double side_a = std::hypot(basis.a.x, basis.a.y),
                 side_b = std::hypot(basis.b.x, basis.b.y);
    const double window_px =
        options.window_cells * std::sqrt(std::abs(basis.a.x * basis.b.y - basis.a.y * basis.b.x));
    const double reach_px = 0.5 * (side_a + side_b) + 2.0 * window_px;
    const double inner = std::max(0.0, frame.cols - 2.0 * reach_px) *
                         std::max(0.0, frame.rows - 2.0 * reach_px) /
                         (static_cast<double>(frame.cols) * frame.rows);
    if (inner < 0.25) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the %d x %d frame is too small to map a crystal of this cell (%.0f x %.0f px): its "
          "window reaches %.0f px",
          frame.cols, frame.rows, side_a, side_b, reach_px));
    }
  }
  const double cell = std::sqrt(std::abs(basis.a.x * basis.b.y - basis.a.y * basis.b.x)) / factor;
  const int coarse = std::max(1, static_cast<int>(std::hypot(basis.a.x, basis.a.y) / factor / 3.0));
  const double scale = 1.0 / (factor * coarse);  // frame px to coarse px
  const PointXY a = basis.a, b = basis.b;
  const PointXY a_coarse{a.x * scale, a.y * scale}, b_coarse{b.x * scale, b.y * scale};
  const double sigma = options.window_cells * cell / coarse;
  const std::array<PointXY, 4> translations = {a, b, PointXY{a.x + b.x, a.y + b.y},
                                               PointXY{a.x - b.x, a.y - b.y}};
  // B+(p), the window at p over the pairs (q, q + t), for each t; the
  // window at p over (q, q - t) is B+(p - t) (substitute q' = q - t), so the
  // other sign costs one shift.
  std::array<cv::Mat, 8> lag;
  auto run = [&](int i) {
    const int dx = static_cast<int>(std::lround(translations[i].x / factor));
    const int dy = static_cast<int>(std::lround(translations[i].y / factor));
    const cv::Mat plus = LagSums(h, dx, dy, coarse, a_coarse, b_coarse, sigma);
    cv::Mat minus = cv::Mat::zeros(plus.size(), plus.type());
    AddShifted(plus, -static_cast<double>(dx) / coarse, -static_cast<double>(dy) / coarse, 1.0f,
               minus);
    lag[2 * i] = Covariance(plus);
    lag[2 * i + 1] = Covariance(minus);
  };
  if (context != nullptr) {
    context->ParallelFor(4, run);
  } else {
    for (int i = 0; i < 4; ++i) run(i);
  }
  cv::Mat map = cv::Mat::zeros(lag[0].size(), CV_32F);
  cv::Mat spread = cv::Mat::zeros(lag[0].size(), CV_32F);
  int used = 0;
  for (int t = 0; t < 4; ++t) {
    // A lag longer than the frame leaves no pair anywhere.
    if (cv::countNonZero(lag[2 * t]) == 0 && cv::countNonZero(lag[2 * t + 1]) == 0) continue;
    ++used;
    map += cv::max(lag[2 * t], lag[2 * t + 1]);
    spread += 0.5 * (lag[2 * t] - lag[2 * t + 1]);
  }
  if (used == 0) {
    return absl::InvalidArgumentError(absl::StrCat("every lattice translation is longer than the ",
                                                   frame.cols, " x ", frame.rows, " frame"));
  }
  map /= used;
  spread /= used;

  // 3. Noise, level, threshold.
  Crystallinity out;
  std::vector<float> deviation;
  deviation.reserve(spread.total());
  for (auto it = spread.begin<float>(); it != spread.end<float>(); ++it) {
    deviation.push_back(std::abs(*it));
  }
  out.noise = 1.4826 * Quantile(deviation, 0.5);
  const double floor = options.noise_sigmas * out.noise;
  // The window reaches half a cell's diagonal and two sigmas beyond it.
  const double reach =
      0.5 * (std::hypot(a_coarse.x, a_coarse.y) + std::hypot(b_coarse.x, b_coarse.y)) + 2.0 * sigma;
  out.level = CrystalLevel(map, floor, static_cast<int>(std::ceil(reach)));
  out.threshold = std::max(options.threshold_fraction * out.level, floor);

  // 4. Back to the frame's pixels. With follow_contrast, through the map in
  // units of each pixel's own threshold (LocalThresholds), so that one
  // bilinear upsampling serves a threshold that varies.
  cv::Mat mask = cv::Mat::zeros(frame.size(), CV_8U);
  if (out.level > 0.0 && out.threshold > 0.0) {
    cv::Mat relative = map / out.threshold;
    if (options.follow_contrast) {
      GrowthEvidence e;
      cv::GaussianBlur(h.mul(h), e.structure, cv::Size(0, 0), 0.5 * nn, 0.5 * nn,
                       cv::BORDER_REFLECT);
      e.structure = BlockMean(e.structure, coarse);
      e.variance = Covariance(LagSums(h, 0, 0, coarse, a_coarse, b_coarse, sigma));
      // White noise of std s through G(s1) - G(s2) (2-D, unit-sum
      // Gaussians) has variance s² ∫ (G1 - G2)², in units of h's.
      LOGSTAR_ASSIGN_OR_RETURN(const double pixel_noise, PixelNoiseStd(work));
      const double s1 = options.smoothing_nn * nn, s2 = options.highpass_nn * nn;
      const double gain = 1.0 / (4.0 * std::numbers::pi * s1 * s1) +
                          1.0 / (4.0 * std::numbers::pi * s2 * s2) -
                          1.0 / (std::numbers::pi * (s1 * s1 + s2 * s2));
      e.noise_energy = pixel_noise * pixel_noise * gain / (rms * rms);
      e.structure_reach = nn / coarse;
      e.map_reach = options.local_reach_windows * sigma;
      relative = map / LocalThresholds(map, e, out.threshold, floor, options);
    }
    mask = Upsample(relative, factor * coarse, frame.size()) > 1.0;
  }
  LOGSTAR_ASSIGN_OR_RETURN(out.mask, CrystalMask::FromMask(mask));
  out.fraction = static_cast<double>(out.mask.Area({0, 0, frame.cols, frame.rows})) /
                 (static_cast<double>(frame.cols) * frame.rows);
  return out;
}

absl::StatusOr<double> PixelNoiseStd(const cv::Mat& frame) {
  if (frame.type() != CV_32FC1 || frame.rows < 3 || frame.cols < 3) {
    return absl::InvalidArgumentError("noise estimation needs a CV_32F frame of at least 3 x 3");
  }
  // Mask [1 -2 1; -2 4 -2; 1 -2 1]: the outer product of [1 -2 1] with
  // itself, so a row's response is the second difference along x of the
  // second difference along y.
  double sum = 0.0;
  int64_t count = 0;
  std::vector<float> d2y(frame.cols);
  for (int y = 1; y + 1 < frame.rows; y += 2) {
    const float* r0 = frame.ptr<float>(y - 1);
    const float* r1 = frame.ptr<float>(y);
    const float* r2 = frame.ptr<float>(y + 1);
    for (int x = 0; x < frame.cols; ++x) d2y[x] = r0[x] - 2.0f * r1[x] + r2[x];
    for (int x = 1; x + 1 < frame.cols; ++x) {
      sum += std::abs(d2y[x - 1] - 2.0f * d2y[x] + d2y[x + 1]);
    }
    count += frame.cols - 2;
  }
  // For white noise of std s the mask's response has std 6 s (the sum of its
  // squared weights is 36), and E|N(0, v)| = sqrt(2 v / pi).
  const double mean_abs = sum / static_cast<double>(count);
  if (!std::isfinite(mean_abs))
    return absl::InvalidArgumentError("the frame has non-finite pixels");
  return mean_abs * std::sqrt(std::numbers::pi / 2.0) / 6.0;
}

}  // namespace logstar
