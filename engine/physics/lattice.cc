#include "engine/physics/lattice.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Dense>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "engine/base/status_macros.h"
#include "engine/log/log_detector.h"
#include "engine/log/refine.h"
#include "engine/physics/crystallinity.h"

namespace logstar {
namespace {

constexpr int kMinFrameSide = 16;
// Two candidate translations are independent when the sine of their angle
// exceeds this (about 11.5°): nearer to parallel, sub-pixel errors would
// dominate the cell they span.
constexpr double kMinIndependentSine = 0.2;
// Width (px) RefinePositions assumes for an autocorrelation peak: its fit
// then covers the top 2 px of the peak, where any peak wider than a pixel is
// close to a paraboloid.
constexpr double kAcfPeakSigmaPx = 1.5;
// ChooseBasis scores a lattice over the lags up to kScoreCells × its longer
// basis vector, and starts from the finest lattice scoring within
// kFirstBasisScoreFraction of the best (see there).
constexpr double kScoreCells = 3.0;
constexpr double kFirstBasisScoreFraction = 0.9;
// Steps that change the cell to a sub- or superlattice; each at least halves
// or doubles it, so more would mean the two tests disagree.
constexpr int kMaxCellSteps = 6;
// Fold grid: about one bin per pixel along each cell edge, at least this many.
constexpr int kMinFoldBins = 4;
// The columns' fit (FitColumns): Gaussians are drawn out to this many
// widths; widths stay within [kMinModelWidth px, kMaxModelWidthRatio × the
// brightest column's]; iterations stop when the cost falls by less than
// kFitTolerance of itself.
constexpr double kModelReach = 5.0;
constexpr double kMinModelWidth = 0.3;
constexpr double kMaxModelWidthRatio = 4.0;
constexpr int kMaxFitIterations = 50;
constexpr double kFitTolerance = 1e-9;
// RefineWithoutEdges runs on frames whose shorter side is below this.
constexpr int kEdgeRefineMaxSide = 1024;
// A frame whose shorter side holds this many pixels k >= 2 times searches
// its lattice (stages 1-3) on a copy binned k × k: a 1024 px field holds
// plenty of cells of any lattice a binned frame still resolves, and its FFT
// costs a seventh of a 2048² frame's (issue 21: the lattice was most of the
// first frame's time outside its windows). The columns (stage 4) are folded
// at full resolution.
constexpr int kSearchSide = 1024;
// The binned search runs only when the frame's structure, less its white
// noise, still correlates this much one bin away (its columns span several
// bins: Gaussian columns of sigma s px correlate exp(-k² / (4 s²)) at a
// lag of k px, 0.75 for s = 0.93 k), and stands only when its shortest
// translation spans this many bins; else the frame is searched at full
// resolution. Narrower columns or a finer cell lose their peaks in the bins
// (YBCO at 0.45 Å/px, columns of 1 px, came out a superlattice).
constexpr double kMinBinnedCorrelation = 0.75;
constexpr double kMinBinnedTranslationPx = 8.0;
// The high-pass's wide blur is computed on a copy binned so that its sigma
// spans this many bins, and drawn back bilinearly (binned frames only): the
// blur keeps only wavelengths far longer than the bins.
constexpr double kLowPassSigmaBins = 16.0;
// On a binned frame the envelope (3c), a blur over a cell, is computed on
// bins of up to a quarter of that cell: it varies on no shorter scale.
constexpr double kEnvelopeBinsPerCell = 4.0;
// Rows per block of the parallel fold (at least), and blocks (at most).
constexpr int kFoldRowsPerBlock = 64;
constexpr int kMaxFoldBlocks = 16;
// The two halves of the frame whose folds estimate the fold's noise: a
// checkerboard of squares this many pixels wide, wider than the correlation
// of a scan's noise, so the halves' noise is independent.
constexpr int kHalfSquareLog2 = 2;

struct Vec {
  double x = 0.0, y = 0.0;
};
Vec operator+(Vec p, Vec q) { return {p.x + q.x, p.y + q.y}; }
Vec operator-(Vec p, Vec q) { return {p.x - q.x, p.y - q.y}; }
Vec operator*(double s, Vec p) { return {s * p.x, s * p.y}; }
double Dot(Vec p, Vec q) { return p.x * q.x + p.y * q.y; }
double Cross(Vec p, Vec q) { return p.x * q.y - p.y * q.x; }
double Norm(Vec p) { return std::hypot(p.x, p.y); }

// A lattice basis; fractional coordinates (u, v) mean u·a + v·b.
struct Basis {
  Vec a, b;
  double Det() const { return Cross(a, b); }
  double Area() const { return std::abs(Det()); }
  Vec ToFractional(Vec p) const {
    const double d = Det();
    return {Cross(p, b) / d, Cross(a, p) / d};
  }
  Vec ToPixels(double u, double v) const { return u * a + v * b; }
};

// Lagrange reduction, then the sign convention of lattice.h.
Basis Reduce(Basis basis) {
  Vec a = basis.a, b = basis.b;
  for (int guard = 0; guard < 64; ++guard) {
    if (Norm(b) < Norm(a)) std::swap(a, b);
    const double k = std::round(Dot(a, b) / Dot(a, a));
    if (k == 0.0) break;
    b = b - k * a;
  }
  if (Norm(b) < Norm(a)) std::swap(a, b);
  if (a.x < 0.0 || (a.x == 0.0 && a.y < 0.0)) a = -1.0 * a;
  if (Dot(a, b) > 0.0 || (Dot(a, b) == 0.0 && Cross(a, b) < 0.0)) b = -1.0 * b;
  return {a, b};
}

// ---------------------------------------------------------------------------
// Stage 1: the autocorrelation and its peaks.

// The normalised autocorrelation for lags |dx|, |dy| <= radius.
struct Autocorrelation {
  cv::Mat values;  // CV_32F, (2·radius + 1)², lag (dx, dy) at (radius + dy, radius + dx)
  int radius = 0;
  float at(int dx, int dy) const { return values.at<float>(radius + dy, radius + dx); }
  // Bilinear; |lag.x|, |lag.y| < radius.
  double Sample(Vec lag) const {
    const double x = lag.x + radius, y = lag.y + radius;
    const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
    const double fx = x - x0, fy = y - y0;
    const float* r0 = values.ptr<float>(y0);
    const float* r1 = values.ptr<float>(y0 + 1);
    return (1 - fy) * ((1 - fx) * r0[x0] + fx * r0[x0 + 1]) +
           fy * ((1 - fx) * r1[x0] + fx * r1[x0 + 1]);
  }
};

// A Gaussian-like blur of width sigma for any sigma in O(1) per pixel: three
// box filters of width w have variance 3 (w² - 1) / 12 = sigma².
cv::Mat WideBlur(const cv::Mat& image, double sigma) {
  const int w = static_cast<int>(std::lround(std::sqrt(4.0 * sigma * sigma + 1.0))) | 1;
  cv::Mat out = image;
  for (int pass = 0; pass < 3; ++pass) {
    cv::Mat next;
    cv::blur(out, next, cv::Size(w, w), cv::Point(-1, -1), cv::BORDER_REFLECT);
    out = next;
  }
  return out;
}

// The autocorrelation of `f` (CV_32F) by FFT, zero-padded so that lags up
// to `radius` do not wrap, each lag divided by its overlap (pixel pairs),
// i.e. the mean product of pixels `lag` apart.
Autocorrelation MeanLagProducts(const cv::Mat& f, int radius) {
  const int h = f.rows, w = f.cols;
  const int ph = cv::getOptimalDFTSize(h + radius + 1);
  const int pw = cv::getOptimalDFTSize(w + radius + 1);
  cv::Mat padded = cv::Mat::zeros(ph, pw, CV_32F);
  f.copyTo(padded(cv::Rect(0, 0, w, h)));
  // Real-input spectra in OpenCV's packed (CCS) layout: half the memory of
  // the complex one, and mulSpectrums works on it directly.
  cv::Mat spectrum, power, circular;
  cv::dft(padded, spectrum);
  cv::mulSpectrums(spectrum, spectrum, power, 0, /*conjB=*/true);
  cv::idft(power, circular, cv::DFT_REAL_OUTPUT | cv::DFT_SCALE);
  Autocorrelation acf;
  acf.radius = radius;
  acf.values.create(2 * radius + 1, 2 * radius + 1, CV_32F);
  for (int dy = -radius; dy <= radius; ++dy) {
    const float* src = circular.ptr<float>((dy + ph) % ph);
    float* dst = acf.values.ptr<float>(radius + dy);
    const double rows = h - std::abs(dy);
    for (int dx = -radius; dx <= radius; ++dx) {
      dst[radius + dx] = static_cast<float>(src[(dx + pw) % pw] / (rows * (w - std::abs(dx))));
    }
  }
  return acf;
}

// The frame less its long wavelengths (a Gaussian high-pass of
// `highpass_sigma_px`, none at 0) and its mean.
cv::Mat HighPassed(const cv::Mat& frame, double highpass_sigma_px) {
  cv::Mat f = frame.clone();
  if (highpass_sigma_px > 0.0) f = f - WideBlur(f, highpass_sigma_px);
  return f - cv::mean(f)[0];
}

// Autocorrelation of a high-passed, zero-mean field (HighPassed) by FFT,
// zero-padded so that lags up to `radius` do not wrap, normalised by the
// overlap of each lag and by the zero lag. Nullopt for a field without
// variance.
std::optional<Autocorrelation> AutocorrelateField(const cv::Mat& high_passed, int radius) {
  Autocorrelation acf = MeanLagProducts(high_passed, radius);
  const double zero = acf.at(0, 0);
  if (!(zero > 0.0) || !std::isfinite(zero)) return std::nullopt;
  acf.values /= zero;
  return acf;
}

// The same for a frame, high-passed first.
std::optional<Autocorrelation> Autocorrelate(const cv::Mat& frame, int radius,
                                             double highpass_sigma_px) {
  return AutocorrelateField(HighPassed(frame, highpass_sigma_px), radius);
}

// How many pixels of the frame vary together, for the spread of the
// autocorrelation of a frame without a lattice (Bartlett's formula: the
// variance of the estimate at a lag is Σ ρ(k)² / N over the correlation
// ρ of the frame's short-range structure): Σ ρ(d)² over the central peak,
// out to the first minimum of its radial mean. 1 for white noise; the area
// of a column for an amorphous frame of columns, whose random correlations
// at large lags are that much stronger than white noise's.
double CorrelationArea(const Autocorrelation& acf) {
  const int r_max = acf.radius - 1;
  std::vector<double> sum(r_max + 2, 0.0);
  std::vector<int> count(r_max + 2, 0);
  for (int dy = -r_max; dy <= r_max; ++dy) {
    for (int dx = -r_max; dx <= r_max; ++dx) {
      const int r = static_cast<int>(std::lround(std::hypot(dx, dy)));
      if (r > r_max) continue;
      sum[r] += acf.at(dx, dy);
      ++count[r];
    }
  }
  int edge = r_max;
  for (int r = 1; r < r_max; ++r) {
    const double here = sum[r] / count[r], next = sum[r + 1] / count[r + 1];
    if (here <= 0.0 || next >= here) {
      edge = r;
      break;
    }
  }
  double area = 0.0;
  for (int dy = -edge; dy <= edge; ++dy) {
    for (int dx = -edge; dx <= edge; ++dx) {
      if (std::hypot(dx, dy) > edge + 0.5) continue;
      const double v = acf.at(dx, dy);
      area += v * v;
    }
  }
  return std::max(area, 1.0);
}

// A local maximum of the autocorrelation; lag in px, value normalised.
struct AcfPeak {
  Vec lag;
  double value = 0.0;
  bool refined = false;  // false: no single maximum near it; the fit skips it
};

// Local maxima of the autocorrelation in the half plane (dy > 0, or dy == 0
// and dx > 0) between min_r and the radius that reach `fraction` of the
// highest, refined to sub-pixel; highest first.
std::vector<AcfPeak> FindPeaks(const Autocorrelation& acf, double min_r, double fraction) {
  const int r = acf.radius - 1;  // every peak keeps its 3 × 3 neighbourhood
  std::vector<AcfPeak> peaks;
  for (int dy = 0; dy <= r; ++dy) {
    for (int dx = -r; dx <= r; ++dx) {
      if (dy == 0 && dx <= 0) continue;
      const double d = std::hypot(dx, dy);
      if (d < min_r || d > r) continue;
      const float v = acf.at(dx, dy);
      if (!(v > 0.0f)) continue;  // an anti-correlation is no translation
      // Ties go to the first in scan order, so a plateau gives one peak.
      bool is_max = true;
      for (int j = -1; j <= 1 && is_max; ++j) {
        for (int i = -1; i <= 1; ++i) {
          if (i == 0 && j == 0) continue;
          const float n = acf.at(dx + i, dy + j);
          const bool earlier = j < 0 || (j == 0 && i < 0);
          if (n > v || (earlier && n == v)) {
            is_max = false;
            break;
          }
        }
      }
      if (is_max) peaks.push_back({{static_cast<double>(dx), static_cast<double>(dy)}, v});
    }
  }
  std::stable_sort(peaks.begin(), peaks.end(),
                   [](const AcfPeak& p, const AcfPeak& q) { return p.value > q.value; });
  if (peaks.empty()) return peaks;
  const double floor = fraction * peaks.front().value;
  peaks.erase(
      std::find_if(peaks.begin(), peaks.end(), [&](const AcfPeak& p) { return p.value < floor; }),
      peaks.end());
  std::vector<Blob> blobs(peaks.size());
  for (size_t i = 0; i < peaks.size(); ++i) {
    blobs[i].x = peaks[i].lag.x + acf.radius;
    blobs[i].y = peaks[i].lag.y + acf.radius;
    blobs[i].sigma = kAcfPeakSigmaPx;
  }
  // The defaults are valid and the image is a finite CV_32F: this cannot fail.
  (void)RefinePositions(acf.values, absl::MakeSpan(blobs), RefineOptions{});
  for (size_t i = 0; i < peaks.size(); ++i) {
    const Vec lag{blobs[i].x - acf.radius, blobs[i].y - acf.radius};
    peaks[i].refined = lag.x != peaks[i].lag.x || lag.y != peaks[i].lag.y;
    peaks[i].lag = lag;
  }
  return peaks;
}

// ---------------------------------------------------------------------------
// A basis fitted to the peaks by least squares.

// A peak assigned to the lattice point i·a + j·b.
struct Assignment {
  int i = 0, j = 0;
  Vec lag;
  double distance = 0.0;
  double weight = 0.0;  // the peak's height: higher peaks are placed better
};

// Assigns each peak to its nearest lattice point within `tolerance` px and
// `reach` px of the origin; a point keeps its nearest peak.
std::vector<Assignment> Assign(const std::vector<AcfPeak>& peaks, const Basis& basis,
                               double tolerance, double reach) {
  std::vector<Assignment> out;
  for (const AcfPeak& p : peaks) {
    if (!p.refined) continue;
    const Vec f = basis.ToFractional(p.lag);
    const int i = static_cast<int>(std::lround(f.x)), j = static_cast<int>(std::lround(f.y));
    if (i == 0 && j == 0) continue;
    const Vec q = basis.ToPixels(i, j);
    const double d = Norm(p.lag - q);
    if (d > tolerance || Norm(q) > reach) continue;
    // A peak and its mirror image are one lattice point.
    const bool flip = j < 0 || (j == 0 && i < 0);
    const Assignment as{flip ? -i : i, flip ? -j : j, flip ? -1.0 * p.lag : p.lag, d, p.value};
    auto same = std::find_if(out.begin(), out.end(),
                             [&](const Assignment& o) { return o.i == as.i && o.j == as.j; });
    if (same == out.end()) {
      out.push_back(as);
    } else if (d < same->distance) {
      *same = as;
    }
  }
  return out;
}

// Weighted least squares: lag ≈ i·a + j·b over the assignments; the x and y
// parts are two independent 2 × 2 problems with the same matrix.
std::optional<Basis> FitBasis(const std::vector<Assignment>& assigned) {
  double sii = 0.0, sij = 0.0, sjj = 0.0, six = 0.0, siy = 0.0, sjx = 0.0, sjy = 0.0;
  int64_t uii = 0, uij = 0, ujj = 0;  // unweighted, to tell a degenerate set
  for (const Assignment& as : assigned) {
    const double w = as.weight;
    uii += as.i * as.i, uij += as.i * as.j, ujj += as.j * as.j;
    sii += w * as.i * as.i, sij += w * as.i * as.j, sjj += w * as.j * as.j;
    six += w * as.i * as.lag.x, siy += w * as.i * as.lag.y;
    sjx += w * as.j * as.lag.x, sjy += w * as.j * as.lag.y;
  }
  // The points span one direction only (all (i, j) parallel).
  if (uii * ujj - uij * uij <= 0) return std::nullopt;
  const double det = sii * sjj - sij * sij;
  if (!(det > 0.0)) return std::nullopt;
  return Basis{{(sjj * six - sij * sjx) / det, (sjj * siy - sij * sjy) / det},
               {(sii * sjx - sij * six) / det, (sii * sjy - sij * siy) / det}};
}

// Refines the basis on every peak within `tolerance` × |a| of a lattice
// point, over growing disks so that the still rough basis never has to
// predict far; the result is reduced.
std::optional<Basis> Refine(const std::vector<AcfPeak>& peaks, Basis basis, double tolerance,
                            double radius) {
  const double tolerance_px = tolerance * std::min(Norm(basis.a), Norm(basis.b));
  for (double reach = 4.0 * std::max(Norm(basis.a), Norm(basis.b));; reach *= 2.0) {
    reach = std::min(reach, radius);
    for (int pass = 0; pass < 2; ++pass) {
      std::optional<Basis> fitted = FitBasis(Assign(peaks, basis, tolerance_px, reach));
      if (!fitted.has_value()) return std::nullopt;
      basis = Reduce(*fitted);
    }
    if (reach >= radius) break;
  }
  return basis;
}

// ---------------------------------------------------------------------------
// Stage 2: which lattice. Every test compares the autocorrelation at lattice
// points: a true translation maps every column onto another, so all points of
// the true lattice score alike; a pseudo translation (a vector that maps most
// columns, or the brightest, onto columns) scores less, and its multiples
// drift off the peaks.

struct LatticePoint {
  int i = 0, j = 0;
  double height = 0.0;  // the autocorrelation there
};

// Whether `q` (px) is a point of the lattice (to rounding).
bool OnLattice(const Basis& basis, Vec q) {
  const Vec f = basis.ToFractional(q);
  return std::abs(f.x - std::round(f.x)) < 1e-6 && std::abs(f.y - std::round(f.y)) < 1e-6;
}

// The lattice points of the half plane with min_r <= |q| <= reach, with the
// autocorrelation at each.
std::vector<LatticePoint> LatticePoints(const Autocorrelation& acf, const Basis& basis,
                                        double min_r, double reach) {
  std::vector<LatticePoint> points;
  const double area = basis.Area();
  const int n = static_cast<int>(std::ceil(reach * Norm(basis.b) / area)) + 1;
  const int m = static_cast<int>(std::ceil(reach * Norm(basis.a) / area)) + 1;
  for (int j = -m; j <= m; ++j) {
    for (int i = -n; i <= n; ++i) {
      const Vec q = basis.ToPixels(i, j);
      if (q.y < 0.0 || (q.y == 0.0 && q.x <= 0.0)) continue;
      const double d = Norm(q);
      if (d < min_r || d > reach) continue;
      points.push_back({i, j, acf.Sample(q)});
    }
  }
  return points;
}

double MeanHeight(const std::vector<LatticePoint>& points) {
  double sum = 0.0;
  for (const LatticePoint& p : points) sum += p.height;
  return points.empty() ? 0.0 : sum / points.size();
}

// A first lattice from the strongest peaks: every pair of independent
// candidates spans a lattice, scored by its mean autocorrelation over its
// first few cells (lags up to kScoreCells × its longer basis vector;
// lattices with fewer than min_lattice_points there cannot be judged). A
// lattice with a pseudo translation scores less than the true one; a
// multiple of the true cell about as well, or less where the crystal's
// self-overlap falls with the lag (a particle, amorphous patches). The
// finest lattice within kFirstBasisScoreFraction of the best score is a
// good start for SettleBasis, which decides.
std::optional<Basis> ChooseBasis(const Autocorrelation& acf, const std::vector<AcfPeak>& peaks,
                                 const LatticeOptions& options) {
  struct Scored {
    Basis basis;
    double score;
  };
  std::vector<Scored> scored;
  const size_t num = std::min(peaks.size(), static_cast<size_t>(options.num_candidates));
  const double min_area = options.min_translation_px * options.min_translation_px;
  for (size_t p = 0; p < num; ++p) {
    for (size_t q = p + 1; q < num; ++q) {
      const Vec u = peaks[p].lag, v = peaks[q].lag;
      if (std::abs(Cross(u, v)) < kMinIndependentSine * Norm(u) * Norm(v)) continue;
      const Basis basis = Reduce({u, v});
      if (basis.Area() < min_area) continue;
      const double reach =
          std::min(acf.radius - 1.0, kScoreCells * std::max(Norm(basis.a), Norm(basis.b)));
      const std::vector<LatticePoint> points =
          LatticePoints(acf, basis, options.min_translation_px, reach);
      if (static_cast<int>(points.size()) < options.min_lattice_points) continue;
      scored.push_back({basis, MeanHeight(points)});
    }
  }
  double best = 0.0;
  for (const Scored& s : scored) best = std::max(best, s.score);
  std::optional<Basis> finest;
  for (const Scored& s : scored) {
    if (s.score >= kFirstBasisScoreFraction * best && s.score > 0.0 &&
        (!finest.has_value() || s.basis.Area() < finest->Area())) {
      finest = s.basis;
    }
  }
  return finest;
}

// How a finer lattice's extra points score against the coarser one's own,
// locally: each point of `fine` that `coarse` lacks is compared with the
// bilinear interpolation of the autocorrelation at the four corners of the
// coarse cell holding it. A crystal that fills part of the frame (a
// particle; a crystal beside amorphous material) overlaps itself less at long
// lags, and differently in different directions, so even true translations
// score less far out; the local comparison cancels any such linear trend.
// Cells with a corner at the zero lag (noise peaks there) or beyond `reach`
// are skipped. Nullopt when fewer than two points can be compared.
std::optional<double> LocalRatio(const Autocorrelation& acf, const Basis& coarse, const Basis& fine,
                                 double min_r, double reach) {
  double sum = 0.0;
  int n = 0;
  for (const LatticePoint& p : LatticePoints(acf, fine, min_r, reach)) {
    const Vec q = fine.ToPixels(p.i, p.j);
    if (OnLattice(coarse, q)) continue;
    const Vec f = coarse.ToFractional(q);
    const double u0 = std::floor(f.x), v0 = std::floor(f.y);
    const double fu = f.x - u0, fv = f.y - v0;
    double expected = 0.0;
    bool usable = true;
    for (int c = 0; c < 4 && usable; ++c) {
      const double du = c & 1, dv = c >> 1;
      const Vec corner = coarse.ToPixels(u0 + du, v0 + dv);
      const double r = Norm(corner);
      usable = r >= min_r && r <= reach;
      if (usable) expected += (du > 0 ? fu : 1 - fu) * (dv > 0 ? fv : 1 - fv) * acf.Sample(corner);
    }
    if (!usable || !(expected > 0.0)) continue;
    sum += p.height / expected;
    ++n;
  }
  if (n < 2) return std::nullopt;
  return sum / n;
}

// The mean autocorrelation at the points of `fine` that `coarse` lacks over
// the mean at coarse's own points: LocalRatio for a coarse cell too large
// for whole cells to fit in the disk (a first guess several cells long).
double GlobalRatio(const Autocorrelation& acf, const Basis& coarse, const Basis& fine, double min_r,
                   double reach) {
  std::vector<LatticePoint> added;
  for (const LatticePoint& p : LatticePoints(acf, fine, min_r, reach)) {
    if (!OnLattice(coarse, fine.ToPixels(p.i, p.j))) added.push_back(p);
  }
  const double own = MeanHeight(LatticePoints(acf, coarse, min_r, reach));
  return added.empty() || !(own > 0.0) ? 0.0 : MeanHeight(added) / own;
}

// A lattice next to the current one and its LocalRatio (the finer one's
// extra points against the coarser one's).
struct Neighbour {
  Basis basis;
  double ratio = 0.0;
};

// The index-p sublattices (p = 2, 3) are the kernels of α·i + β·j mod p for
// (α, β) = (1, 0) and (c, 1), c in [0, p). Returns the one whose dropped
// points score worst: pseudo translations (YBCO's near c/3, the centre of a
// cell whose two columns differ) score less than true ones.
std::optional<Neighbour> WeakestSublattice(const Autocorrelation& acf, const Basis& basis,
                                           double min_r, double reach) {
  std::optional<Neighbour> sub;
  for (int p : {2, 3}) {
    for (int c = -1; c < p; ++c) {
      const Basis kernel = Reduce(c < 0 ? Basis{static_cast<double>(p) * basis.a, basis.b}
                                        : Basis{basis.a - static_cast<double>(c) * basis.b,
                                                static_cast<double>(p) * basis.b});
      const std::optional<double> ratio = LocalRatio(acf, kernel, basis, min_r, reach);
      if (ratio.has_value() && (!sub.has_value() || *ratio < sub->ratio)) {
        sub = Neighbour{kernel, *ratio};
      }
    }
  }
  return sub;
}

// The reduced basis of the lattice a, b and w span, w a rational combination
// of a and b: a Euclid-like reduction of three generators of a 2-D lattice.
std::optional<Basis> SpanWith(const Basis& basis, Vec w) {
  Vec g[3] = {basis.a, basis.b, w};
  const double eps = 1e-6 * std::min(Norm(basis.a), Norm(basis.b));
  for (int guard = 0; guard < 64; ++guard) {
    std::sort(g, g + 3, [](Vec p, Vec q) { return Norm(p) < Norm(q); });
    if (Norm(g[0]) < eps) return Reduce({g[1], g[2]});
    if (std::abs(Cross(g[0], g[1])) < eps * Norm(g[1])) {
      // Parallel pair: reduce the longer by the shorter (1-D Euclid).
      g[1] = g[1] - std::round(Dot(g[0], g[1]) / Dot(g[0], g[0])) * g[0];
      continue;
    }
    const Basis pair = Reduce({g[0], g[1]});
    const Vec f = pair.ToFractional(g[2]);
    g[0] = pair.a, g[1] = pair.b;
    g[2] = g[2] - pair.ToPixels(std::round(f.x), std::round(f.y));
  }
  return std::nullopt;
}

// Whether the autocorrelation dips between the zero lag and `t`: at t / 2
// it is lower than at t. A translation of the crystal is a peak of its own;
// a local maximum on the shoulder of the zero lag's peak (a few pixels out,
// where noise can leave a ripple) is not, and a "superlattice" spanned by it
// — every added point beside one of L's, inside its peak — scores as well as
// L's own points. Seen on a generated perovskite edge at noise 0.3, where a
// ripple at 3.5 px sent the settling of step 2 from the true 31 px cell to
// a wrong one.
bool StandsApart(const Autocorrelation& acf, Vec t) { return acf.Sample(0.5 * t) < acf.Sample(t); }

// The superlattice L + Z·w (w = an autocorrelation peak within a pixel or so
// of a point of L / q, q <= kMaxSuperIndex) whose added points score best: a
// finer lattice the pair scoring could not tell from L (a multiple of a cell
// scores as well as the cell).
constexpr int kMaxSuperIndex = 12;
constexpr double kSuperTolerancePx = 1.0;
constexpr double kSuperToleranceFraction = 0.01;
constexpr int kMaxSuperCandidates = 64;

std::optional<Neighbour> StrongestSuperlattice(const Autocorrelation& acf,
                                               const std::vector<AcfPeak>& candidates,
                                               const Basis& basis, double min_r, double reach) {
  std::optional<Neighbour> super;
  // A true translation is among the strongest peaks.
  const size_t num = std::min(candidates.size(), static_cast<size_t>(kMaxSuperCandidates));
  for (const AcfPeak& peak : absl::MakeConstSpan(candidates).first(num)) {
    const Vec f = basis.ToFractional(peak.lag);
    // A peak is where the fit put it to a fraction of a pixel; the slack
    // grows with the lag for a distorted lattice.
    const double tolerance = kSuperTolerancePx + kSuperToleranceFraction * Norm(peak.lag);
    if (Norm(peak.lag - basis.ToPixels(std::round(f.x), std::round(f.y))) < tolerance) continue;
    for (int q = 2; q <= kMaxSuperIndex; ++q) {
      const Vec exact = (1.0 / q) * basis.ToPixels(std::round(q * f.x), std::round(q * f.y));
      if (Norm(peak.lag - exact) >= tolerance) continue;
      const std::optional<Basis> finer = SpanWith(basis, exact);
      if (finer.has_value() && std::min(Norm(finer->a), Norm(finer->b)) >= min_r &&
          StandsApart(acf, finer->a) && StandsApart(acf, finer->b)) {
        const double ratio = LocalRatio(acf, basis, *finer, min_r, reach)
                                 .value_or(GlobalRatio(acf, basis, *finer, min_r, reach));
        if (!super.has_value() || ratio > super->ratio) super = Neighbour{*finer, ratio};
      }
      break;  // the smallest q that fits is the peak's index
    }
  }
  return super;
}

// From the best-scoring lattice to the true one: a superlattice whose added
// points score like the lattice's own is finer and true; a sublattice whose
// dropped points score less than sublattice_ratio of the kept ones held a
// pseudo translation. The basis is refitted after each step.
std::optional<Basis> SettleBasis(const Autocorrelation& acf, const std::vector<AcfPeak>& peaks,
                                 Basis basis, const LatticeOptions& options) {
  const double radius = acf.radius - 1.0, min_r = options.min_translation_px;
  std::optional<Basis> fitted = Refine(peaks, basis, options.match_tolerance, radius);
  std::vector<double> visited;  // cell areas: the tests never go back
  for (int step = 0; step < kMaxCellSteps && fitted.has_value(); ++step) {
    visited.push_back(fitted->Area());
    std::optional<Neighbour> next = StrongestSuperlattice(acf, peaks, *fitted, min_r, radius);
    if (!next.has_value() || next->ratio < options.sublattice_ratio) {
      next = WeakestSublattice(acf, *fitted, min_r, radius);
      if (!next.has_value() || next->ratio >= options.sublattice_ratio) break;
    }
    std::optional<Basis> refitted = Refine(peaks, next->basis, options.match_tolerance, radius);
    if (!refitted.has_value() || std::any_of(visited.begin(), visited.end(), [&](double area) {
          return std::abs(area - refitted->Area()) < 1e-3 * area;
        })) {
      break;
    }
    fitted = refitted;
  }
  return fitted;
}

// ---------------------------------------------------------------------------
// Stage 4: the columns of the folded cell.

// The frame averaged over the lattice: a grid of fractional coordinates
// (nu × nv bins, periodic), each pixel splatted bilinearly.
struct FoldedCell {
  Basis basis;
  int nu = 0, nv = 0;
  std::vector<double> mean;  // nv rows of nu

  double Sample(Vec f) const {
    const double gu = (f.x - std::floor(f.x)) * nu, gv = (f.y - std::floor(f.y)) * nv;
    const int i0 = std::min(static_cast<int>(gu), nu - 1);
    const int j0 = std::min(static_cast<int>(gv), nv - 1);
    const double fu = gu - i0, fv = gv - j0;
    const int i1 = (i0 + 1) % nu, j1 = (j0 + 1) % nv;
    return (1 - fv) * ((1 - fu) * mean[j0 * nu + i0] + fu * mean[j0 * nu + i1]) +
           fv * ((1 - fu) * mean[j1 * nu + i0] + fu * mean[j1 * nu + i1]);
  }
};

// Sums and weights of one fold (bins of a FoldedCell).
struct FoldSums {
  std::vector<double> sum, weight;
  void Resize(size_t bins) {
    sum.assign(bins, 0.0);
    weight.assign(bins, 0.0);
  }
  void Add(const FoldSums& o) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += o.sum[i], weight[i] += o.weight[i];
  }
};

// Bins no pixel reached (a lattice commensurate with the pixel grid) take
// the weighted mean of their neighbours, repeated until none is left.
std::vector<double> BinMeans(FoldSums sums, int nu, int nv) {
  for (int guard = 0; guard < std::max(nu, nv); ++guard) {
    if (std::none_of(sums.weight.begin(), sums.weight.end(), [](double v) { return v == 0.0; }))
      break;
    FoldSums next = sums;
    for (int j = 0; j < nv; ++j) {
      for (int i = 0; i < nu; ++i) {
        if (sums.weight[j * nu + i] > 0.0) continue;
        for (int dj = -1; dj <= 1; ++dj) {
          for (int di = -1; di <= 1; ++di) {
            const int n = ((j + dj + nv) % nv) * nu + (i + di + nu) % nu;
            next.sum[j * nu + i] += sums.sum[n], next.weight[j * nu + i] += sums.weight[n];
          }
        }
      }
    }
    sums = std::move(next);
  }
  std::vector<double> mean(sums.sum.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    mean[i] = sums.weight[i] > 0.0 ? sums.sum[i] / sums.weight[i] : 0.0;
  }
  return mean;
}

// The whole frame's fold and the folds of its two halves (a checkerboard, see
// kHalfSquareLog2), whose difference measures the fold's noise. Pixels
// within `margin` of the frame's edge are left out: there a column just
// outside the frame may be missing its tail (a generated frame draws only the
// columns inside), which would bias the columns near the cell's edges.
struct Folds {
  FoldedCell whole, halves[2];
};

Folds Fold(const cv::Mat& frame, const Basis& basis, int margin, ExecutionContext* context) {
  const int nu = std::max(kMinFoldBins, static_cast<int>(std::ceil(Norm(basis.a))));
  const int nv = std::max(kMinFoldBins, static_cast<int>(std::ceil(Norm(basis.b))));
  const size_t bins = static_cast<size_t>(nu) * nv;
  const int rows = frame.rows - 2 * margin;
  // Each block holds its own bins: at most kMaxFoldBlocks of them.
  const int rows_per_block =
      std::max(kFoldRowsPerBlock, (rows + kMaxFoldBlocks - 1) / kMaxFoldBlocks);
  const int blocks = (rows + rows_per_block - 1) / rows_per_block;
  std::vector<FoldSums> sums(2 * static_cast<size_t>(blocks));  // [block][half]
  const Vec du = basis.ToFractional({1.0, 0.0});
  auto block = [&](int k) {
    FoldSums* half = &sums[2 * static_cast<size_t>(k)];
    half[0].Resize(bins);
    half[1].Resize(bins);
    const int y1 = margin + std::min(rows, (k + 1) * rows_per_block);
    for (int y = margin + k * rows_per_block; y < y1; ++y) {
      const float* row = frame.ptr<float>(y);
      const Vec start = basis.ToFractional({0.0, static_cast<double>(y)});
      for (int x = margin; x < frame.cols - margin; ++x) {
        FoldSums& s = half[((x >> kHalfSquareLog2) + (y >> kHalfSquareLog2)) & 1];
        const double u = start.x + x * du.x, v = start.y + x * du.y;
        const double gu = (u - std::floor(u)) * nu, gv = (v - std::floor(v)) * nv;
        const int i0 = std::min(static_cast<int>(gu), nu - 1);
        const int j0 = std::min(static_cast<int>(gv), nv - 1);
        const double fu = gu - i0, fv = gv - j0;
        const int i1 = (i0 + 1) % nu, j1 = (j0 + 1) % nv;
        const double value = row[x];
        const int b00 = j0 * nu + i0, b10 = j0 * nu + i1, b01 = j1 * nu + i0, b11 = j1 * nu + i1;
        const double w00 = (1 - fu) * (1 - fv), w10 = fu * (1 - fv), w01 = (1 - fu) * fv,
                     w11 = fu * fv;
        s.sum[b00] += w00 * value, s.weight[b00] += w00;
        s.sum[b10] += w10 * value, s.weight[b10] += w10;
        s.sum[b01] += w01 * value, s.weight[b01] += w01;
        s.sum[b11] += w11 * value, s.weight[b11] += w11;
      }
    }
  };
  if (context != nullptr && blocks > 1) {
    context->ParallelFor(blocks, block);
  } else {
    for (int k = 0; k < blocks; ++k) block(k);
  }
  FoldSums half_sums[2];
  for (int h = 0; h < 2; ++h) {
    half_sums[h].Resize(bins);
    for (int k = 0; k < blocks; ++k) half_sums[h].Add(sums[2 * static_cast<size_t>(k) + h]);
  }
  FoldSums whole = half_sums[0];
  whole.Add(half_sums[1]);
  Folds folds;
  folds.whole = {basis, nu, nv, BinMeans(std::move(whole), nu, nv)};
  for (int h = 0; h < 2; ++h) folds.halves[h] = {basis, nu, nv, BinMeans(half_sums[h], nu, nv)};
  return folds;
}

// The folded cell drawn in pixels over its bounding box plus a margin, and
// smoothed; tile pixel (tx, ty) is the frame's (x0 + tx, y0 + ty).
struct CellTile {
  cv::Mat image;  // CV_32F
  int x0 = 0, y0 = 0;
};

CellTile RenderCell(const FoldedCell& cell, double sigma) {
  const Basis& basis = cell.basis;
  const Vec corners[] = {{0, 0}, basis.a, basis.b, basis.a + basis.b};
  double xmin = 0, xmax = 0, ymin = 0, ymax = 0;
  for (const Vec& c : corners) {
    xmin = std::min(xmin, c.x), xmax = std::max(xmax, c.x);
    ymin = std::min(ymin, c.y), ymax = std::max(ymax, c.y);
  }
  // The margin holds the blur's reach and a third of a cell beyond the
  // edges, so every column has whole copies well inside the tile.
  const int margin = static_cast<int>(std::ceil(3.0 * sigma + Norm(basis.b) / 3.0)) + 2;
  CellTile tile;
  tile.x0 = static_cast<int>(std::floor(xmin)) - margin;
  tile.y0 = static_cast<int>(std::floor(ymin)) - margin;
  const int w = static_cast<int>(std::ceil(xmax)) + margin - tile.x0 + 1;
  const int h = static_cast<int>(std::ceil(ymax)) + margin - tile.y0 + 1;
  tile.image.create(h, w, CV_32F);
  for (int ty = 0; ty < h; ++ty) {
    float* row = tile.image.ptr<float>(ty);
    for (int tx = 0; tx < w; ++tx) {
      const Vec f = basis.ToFractional(
          {static_cast<double>(tile.x0 + tx), static_cast<double>(tile.y0 + ty)});
      row[tx] = static_cast<float>(cell.Sample(f));
    }
  }
  if (sigma > 0.0) cv::GaussianBlur(tile.image, tile.image, cv::Size(0, 0), sigma, sigma);
  return tile;
}

// Topographic prominence of every local maximum of `image` (0 elsewhere):
// how far one must descend from it to reach a higher one. Flooding from the
// top, a maximum's region merges into a higher one's at a saddle; its
// prominence is its height above that saddle. The highest maximum's is its
// height above the image's minimum. Ties are broken by pixel index.
cv::Mat Prominence(const cv::Mat& image) {
  const int w = image.cols, h = image.rows, n = w * h;
  const float* v = image.ptr<float>(0);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int p, int q) { return v[p] > v[q]; });
  std::vector<int> parent(n, -1), peak(n, -1);  // parent -1: not flooded yet
  auto find = [&](int p) {
    while (parent[p] != p) p = parent[p] = parent[parent[p]];
    return p;
  };
  cv::Mat prominence = cv::Mat::zeros(h, w, CV_32F);
  float* out = prominence.ptr<float>(0);
  for (int p : order) {
    parent[p] = p;
    peak[p] = p;
    const int x = p % w, y = p / w;
    for (int dy = -1; dy <= 1; ++dy) {
      for (int dx = -1; dx <= 1; ++dx) {
        if ((dx == 0 && dy == 0) || x + dx < 0 || x + dx >= w || y + dy < 0 || y + dy >= h)
          continue;
        const int q = p + dy * w + dx;
        if (parent[q] < 0) continue;
        const int rp = find(p), rq = find(q);
        if (rp == rq) continue;
        // The lower peak's region ends here, at saddle p.
        const bool p_higher =
            v[peak[rp]] > v[peak[rq]] || (v[peak[rp]] == v[peak[rq]] && peak[rp] < peak[rq]);
        const int low = p_higher ? rq : rp, high = p_higher ? rp : rq;
        if (peak[low] != p) out[peak[low]] = v[peak[low]] - v[p];
        parent[low] = high;
      }
    }
  }
  const int top = order.front();
  out[top] = v[top] - v[order.back()];
  return prominence;
}

// Periodic distance between two positions under the lattice.
double PeriodicDistance(const Basis& basis, Vec p, Vec q) {
  const Vec f = basis.ToFractional(p - q);
  const double fu = f.x - std::round(f.x), fv = f.y - std::round(f.y);
  double best = std::numeric_limits<double>::infinity();
  for (int j = -1; j <= 1; ++j) {
    for (int i = -1; i <= 1; ++i) best = std::min(best, Norm(basis.ToPixels(fu + i, fv + j)));
  }
  return best;
}

// One column as its copies in the tile show it.
struct ColumnCopies {
  Vec position;            // frame coordinates, of the copy nearest the cell's centre
  double centre_distance;  // of that copy, in fractional units
  double prominence;       // the least over the copies (see DetectColumns)
  double height;           // tile value at the chosen copy
};

// The columns of the smoothed folded cell (see the file comment of
// lattice.h), brightest first, at whole pixels of the frame's coordinates.
// Every maximum of the tile whose cell coordinates lie in [-1/4, 5/4)² is a
// copy of a column; copies closer than min_translation_px (periodically)
// are one column. A column's prominence is the least over its copies: near
// the tile's edge a higher neighbour may be cut off, which can only raise
// it. A column's height above the tile's floor must reach
// min_column_height of the brightest's (a physical threshold: faint
// features such as oxygen columns stay out), its prominence noise_sigmas ×
// the fold's noise (`noise`, per pixel of the tile: bumps of noise stay out,
// also on a column's flank, while a faint column beside a bright one, whose
// saddle is high, still counts).
std::vector<Vec> DetectColumns(const CellTile& tile, const Basis& basis, double noise,
                               const LatticeOptions& options) {
  const cv::Mat& img = tile.image;
  const cv::Mat prominence = Prominence(img);
  std::vector<ColumnCopies> columns;
  for (int ty = 1; ty + 1 < img.rows; ++ty) {
    for (int tx = 1; tx + 1 < img.cols; ++tx) {
      const float p = prominence.at<float>(ty, tx);
      if (!(p > 0.0f)) continue;
      const Vec at{static_cast<double>(tile.x0 + tx), static_cast<double>(tile.y0 + ty)};
      const Vec f = basis.ToFractional(at);
      if (f.x < -0.25 || f.x >= 1.25 || f.y < -0.25 || f.y >= 1.25) continue;
      const double centre = std::max(std::abs(f.x - 0.5), std::abs(f.y - 0.5));
      auto same = std::find_if(columns.begin(), columns.end(), [&](const ColumnCopies& c) {
        return PeriodicDistance(basis, c.position, at) < options.min_translation_px;
      });
      if (same == columns.end()) {
        columns.push_back({at, centre, p, img.at<float>(ty, tx)});
        continue;
      }
      same->prominence = std::min<double>(same->prominence, p);
      if (centre < same->centre_distance) {
        same->position = at, same->centre_distance = centre, same->height = img.at<float>(ty, tx);
      }
    }
  }
  std::stable_sort(
      columns.begin(), columns.end(),
      [](const ColumnCopies& p, const ColumnCopies& q) { return p.height > q.height; });
  double floor, top;
  cv::minMaxLoc(img, &floor, &top);
  std::vector<Vec> seeds;
  for (const ColumnCopies& c : columns) {
    if (c.prominence >= options.noise_sigmas * noise &&
        c.height - floor >= options.min_column_height * (top - floor)) {
      seeds.push_back(c.position);
    }
  }
  return seeds;
}

// Pixels of the tile inside the cell (cell coordinates in [0, 1)²): each
// point of the crystal once.
std::vector<cv::Point> CellPixels(const CellTile& tile, const Basis& basis) {
  std::vector<cv::Point> pixels;
  for (int ty = 0; ty < tile.image.rows; ++ty) {
    for (int tx = 0; tx < tile.image.cols; ++tx) {
      const Vec f = basis.ToFractional(
          {static_cast<double>(tile.x0 + tx), static_cast<double>(tile.y0 + ty)});
      if (f.x >= 0.0 && f.x < 1.0 && f.y >= 0.0 && f.y < 1.0) pixels.emplace_back(tx, ty);
    }
  }
  return pixels;
}

// The width (Gaussian sigma, px) of the brightest column of the unsmoothed
// cell: its half width at half its height above the cell's floor, the
// median over 8 directions, / sqrt(2 ln 2). It sets the smoothing and starts
// the columns' fit.
double ColumnWidth(const CellTile& raw, const Basis& basis) {
  const std::vector<cv::Point> pixels = CellPixels(raw, basis);
  cv::Point top = pixels.front();
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const cv::Point& p : pixels) {
    const double v = raw.image.at<float>(p);
    lo = std::min(lo, v);
    if (v > hi) hi = v, top = p;
  }
  const double half = 0.5 * (lo + hi);
  std::vector<double> radii;
  for (int k = 0; k < 8; ++k) {
    const double angle = k * std::numbers::pi / 4.0;
    const Vec step{0.25 * std::cos(angle), 0.25 * std::sin(angle)};
    double previous = hi;
    for (int i = 1;; ++i) {
      const Vec at{top.x + i * step.x, top.y + i * step.y};
      if (at.x < 0 || at.y < 0 || at.x > raw.image.cols - 2 || at.y > raw.image.rows - 2) break;
      const int x0 = static_cast<int>(at.x), y0 = static_cast<int>(at.y);
      const double fx = at.x - x0, fy = at.y - y0;
      const double v = (1 - fy) * ((1 - fx) * raw.image.at<float>(y0, x0) +
                                   fx * raw.image.at<float>(y0, x0 + 1)) +
                       fy * ((1 - fx) * raw.image.at<float>(y0 + 1, x0) +
                             fx * raw.image.at<float>(y0 + 1, x0 + 1));
      if (v <= half) {
        radii.push_back(0.25 * (i - 1 + (previous - half) / std::max(previous - v, 1e-12)));
        break;
      }
      previous = v;
    }
  }
  if (radii.empty()) return 1.0;
  std::nth_element(radii.begin(), radii.begin() + radii.size() / 2, radii.end());
  return std::max(0.5, radii[radii.size() / 2] / std::sqrt(2.0 * std::log(2.0)));
}

// A sum of periodic Gaussians over the cell: parameters θ = (background,
// then x, y, amplitude, width per column); column k is drawn at each of its
// copies near the cell.
class CellModel {
 public:
  CellModel(const CellTile& raw, const Basis& basis, const std::vector<Vec>& centres, double width)
      : raw_(raw), pixels_(CellPixels(raw, basis)) {
    // Copies within reach of the cell, decided once with room for the
    // columns to move by a width.
    const Vec corners[] = {{0, 0}, basis.a, basis.b, basis.a + basis.b};
    double reach = 0.0;
    for (const Vec& c : corners) reach = std::max(reach, Norm(c - 0.5 * (basis.a + basis.b)));
    reach += kModelReach * width + width;
    copies_.resize(centres.size());
    for (size_t k = 0; k < centres.size(); ++k) {
      for (int i = -2; i <= 2; ++i) {
        for (int j = -2; j <= 2; ++j) {
          const Vec t = basis.ToPixels(i, j);
          if (Norm(centres[k] + t - 0.5 * (basis.a + basis.b)) <= reach) copies_[k].push_back(t);
        }
      }
    }
  }

  int num_params() const { return 1 + 4 * static_cast<int>(copies_.size()); }
  const std::vector<cv::Point>& pixels() const { return pixels_; }

  // Sum of squared residuals; with `jtj` and `jtr`, also the normal
  // equations of the linearised problem.
  double Evaluate(const Eigen::VectorXd& theta, Eigen::MatrixXd* jtj, Eigen::VectorXd* jtr) const {
    const int n = static_cast<int>(copies_.size());
    if (jtj != nullptr) {
      jtj->setZero(num_params(), num_params());
      jtr->setZero(num_params());
    }
    std::vector<std::pair<int, double>> row;
    double cost = 0.0;
    for (const cv::Point& px : pixels_) {
      const Vec p{static_cast<double>(raw_.x0 + px.x), static_cast<double>(raw_.y0 + px.y)};
      double model = theta(0);
      row.assign(1, {0, 1.0});
      for (int k = 0; k < n; ++k) {
        const double cx = theta(1 + 4 * k), cy = theta(2 + 4 * k);
        const double amp = theta(3 + 4 * k), w = theta(4 + 4 * k);
        const double inv = 1.0 / (w * w), cut = kModelReach * kModelReach * w * w;
        double e_sum = 0.0, gx = 0.0, gy = 0.0, gw = 0.0;
        for (const Vec& t : copies_[k]) {
          const double dx = p.x - cx - t.x, dy = p.y - cy - t.y, r2 = dx * dx + dy * dy;
          if (r2 > cut) continue;
          const double e = std::exp(-0.5 * r2 * inv);
          e_sum += e, gx += e * dx, gy += e * dy, gw += e * r2;
        }
        if (e_sum == 0.0) continue;
        model += amp * e_sum;
        if (jtj != nullptr) {
          row.push_back({1 + 4 * k, amp * gx * inv});
          row.push_back({2 + 4 * k, amp * gy * inv});
          row.push_back({3 + 4 * k, e_sum});
          row.push_back({4 + 4 * k, amp * gw * inv / w});
        }
      }
      const double r = raw_.image.at<float>(px) - model;
      cost += r * r;
      if (jtj == nullptr) continue;
      for (const auto& [i, vi] : row) {
        (*jtr)(i) += vi * r;
        for (const auto& [j, vj] : row) (*jtj)(i, j) += vi * vj;
      }
    }
    return cost;
  }

 private:
  const CellTile& raw_;
  std::vector<cv::Point> pixels_;
  std::vector<std::vector<Vec>> copies_;  // per column, the translations drawn
};

// Column positions from a Levenberg-Marquardt fit of CellModel to the
// unsmoothed cell. Maxima of an image are not column centres where columns
// overlap (a bright neighbour's flank pulls a faint column's maximum towards
// it); a model of the whole cell is, and it weighs every pixel of a column,
// not only its top. Nullopt when the fit wanders off (a column moving more
// than a width, or a width or amplitude out of bounds).
std::optional<std::vector<LatticeColumn>> FitColumns(const CellTile& raw, const Basis& basis,
                                                     const std::vector<Vec>& seeds, double width) {
  const CellModel model(raw, basis, seeds, width);
  const int n = static_cast<int>(seeds.size());
  double lo = std::numeric_limits<double>::infinity();
  for (const cv::Point& p : model.pixels()) lo = std::min<double>(lo, raw.image.at<float>(p));
  Eigen::VectorXd theta(model.num_params());
  theta(0) = lo;
  for (int k = 0; k < n; ++k) {
    const cv::Point at(static_cast<int>(std::lround(seeds[k].x)) - raw.x0,
                       static_cast<int>(std::lround(seeds[k].y)) - raw.y0);
    theta.segment<4>(1 + 4 * k) << seeds[k].x, seeds[k].y,
        std::max(1e-6, raw.image.at<float>(at) - lo), width;
  }
  auto plausible = [&](const Eigen::VectorXd& t) {
    for (int k = 0; k < n; ++k) {
      const double w = t(4 + 4 * k);
      if (!(t(3 + 4 * k) > 0.0) || !(w > kMinModelWidth) || !(w < kMaxModelWidthRatio * width) ||
          Norm(Vec{t(1 + 4 * k), t(2 + 4 * k)} - seeds[k]) > width) {
        return false;
      }
    }
    return true;
  };
  Eigen::MatrixXd jtj;
  Eigen::VectorXd jtr;
  double cost = model.Evaluate(theta, &jtj, &jtr);
  double lambda = 1e-3;
  for (int iteration = 0; iteration < kMaxFitIterations; ++iteration) {
    Eigen::MatrixXd damped = jtj;
    damped.diagonal() *= 1.0 + lambda;
    const Eigen::VectorXd next = theta + damped.ldlt().solve(jtr);
    const double next_cost = plausible(next) ? model.Evaluate(next, nullptr, nullptr)
                                             : std::numeric_limits<double>::infinity();
    if (next_cost < cost) {
      const bool converged = cost - next_cost <= kFitTolerance * cost;
      theta = next;
      cost = model.Evaluate(theta, &jtj, &jtr);
      lambda = std::max(lambda / 3.0, 1e-9);
      if (converged) break;
    } else {
      lambda *= 4.0;
      if (lambda > 1e8) break;
    }
  }
  if (!plausible(theta)) return std::nullopt;
  double top = 0.0;
  for (int k = 0; k < n; ++k) top = std::max(top, theta(3 + 4 * k));
  std::vector<LatticeColumn> columns;
  for (int k = 0; k < n; ++k) {
    const Vec f = basis.ToFractional({theta(1 + 4 * k), theta(2 + 4 * k)});
    const Vec in_cell = basis.ToPixels(f.x - std::floor(f.x), f.y - std::floor(f.y));
    columns.push_back({{in_cell.x, in_cell.y}, theta(3 + 4 * k) / top});
  }
  std::stable_sort(columns.begin(), columns.end(),
                   [](const LatticeColumn& p, const LatticeColumn& q) {
                     return p.relative_height > q.relative_height;
                   });
  return columns;
}

// The seeds refined on the unsmoothed cell (paraboloid fits of their tops,
// RefinePositions), in the cell, with heights above the cell's floor: the
// columns when FitColumns cannot do better.
std::vector<LatticeColumn> RefinedColumns(const CellTile& raw, const Basis& basis,
                                          const std::vector<Vec>& seeds, double width) {
  std::vector<Blob> blobs(seeds.size());
  for (size_t k = 0; k < seeds.size(); ++k) {
    blobs[k].x = seeds[k].x - raw.x0;
    blobs[k].y = seeds[k].y - raw.y0;
    blobs[k].sigma = width;
  }
  // The defaults are valid and the image is a finite CV_32F: this cannot fail.
  (void)RefinePositions(raw.image, absl::MakeSpan(blobs), RefineOptions{});
  double lo, hi;
  cv::minMaxLoc(raw.image, &lo, &hi);
  std::vector<double> heights(seeds.size());
  double top = 0.0;
  for (size_t k = 0; k < seeds.size(); ++k) {
    heights[k] = raw.image.at<float>(static_cast<int>(std::lround(seeds[k].y)) - raw.y0,
                                     static_cast<int>(std::lround(seeds[k].x)) - raw.x0) -
                 lo;
    top = std::max(top, heights[k]);
  }
  std::vector<LatticeColumn> columns;
  for (size_t k = 0; k < seeds.size(); ++k) {
    const Vec f = basis.ToFractional({raw.x0 + blobs[k].x, raw.y0 + blobs[k].y});
    const Vec in_cell = basis.ToPixels(f.x - std::floor(f.x), f.y - std::floor(f.y));
    columns.push_back({{in_cell.x, in_cell.y}, top > 0.0 ? heights[k] / top : 1.0});
  }
  std::stable_sort(columns.begin(), columns.end(),
                   [](const LatticeColumn& p, const LatticeColumn& q) {
                     return p.relative_height > q.relative_height;
                   });
  return columns;
}

// The fold's noise per tile pixel: half the standard deviation of the two
// halves' difference (each half averages half the pixels).
double FoldNoise(const Folds& folds, double sigma) {
  const CellTile t0 = RenderCell(folds.halves[0], sigma);
  const CellTile t1 = RenderCell(folds.halves[1], sigma);
  cv::Scalar mean, stddev;
  cv::meanStdDev(t0.image - t1.image, mean, stddev);
  return 0.5 * stddev[0];
}

// The cell's nearest-neighbour spacing (PeriodicNearestNeighbor, below).
double PeriodicNearestNeighborImpl(const Basis& reduced, const std::vector<Vec>& positions,
                                   double merge_fraction);

double NearestNeighbor(const std::vector<LatticeColumn>& columns, const Basis& basis,
                       double merge_fraction) {
  std::vector<Vec> positions;
  for (const LatticeColumn& c : columns) positions.push_back({c.position_px.x, c.position_px.y});
  return PeriodicNearestNeighborImpl(basis, positions, merge_fraction);
}

// In a symmetric cell the shortest spacing occurs several times (4 Sr-Ti
// pairs in SrTiO3, 3 bonds in a honeycomb), and the least of several noisy
// copies is biased low, so the spacings within merge_fraction of the least
// are averaged. `reduced` must be Lagrange reduced: then a column's nearest
// copy of another lies within one translation of its cell.
double PeriodicNearestNeighborImpl(const Basis& reduced, const std::vector<Vec>& positions,
                                   double merge_fraction) {
  std::vector<double> spacings = {Norm(reduced.a), Norm(reduced.b)};
  for (size_t p = 0; p < positions.size(); ++p) {
    for (size_t q = p + 1; q < positions.size(); ++q) {
      const Vec f = reduced.ToFractional(positions[q] - positions[p]);
      const double fu = f.x - std::round(f.x), fv = f.y - std::round(f.y);
      for (int j = -1; j <= 1; ++j) {
        for (int i = -1; i <= 1; ++i) spacings.push_back(Norm(reduced.ToPixels(fu + i, fv + j)));
      }
    }
  }
  const double least = *std::min_element(spacings.begin(), spacings.end());
  double sum = 0.0;
  int count = 0;
  for (double d : spacings) {
    if (d <= least * (1.0 + merge_fraction)) sum += d, ++count;
  }
  return sum / count;
}

// ---------------------------------------------------------------------------

absl::Status ValidateFrame(const cv::Mat& frame) {
  if (frame.empty() || frame.type() != CV_32FC1) {
    return absl::InvalidArgumentError("lattice: frame must be a non-empty single-channel CV_32F");
  }
  if (frame.rows < kMinFrameSide || frame.cols < kMinFrameSide) {
    return absl::InvalidArgumentError(absl::StrCat("lattice: frame of ", frame.cols, " x ",
                                                   frame.rows, " px; at least ", kMinFrameSide,
                                                   " x ", kMinFrameSide, " is needed"));
  }
  if (!cv::checkRange(frame)) {
    return absl::InvalidArgumentError("lattice: frame has non-finite pixels");
  }
  return absl::OkStatus();
}

LatticeMeasurement NotFound(std::string reason) {
  LatticeMeasurement m;
  m.reason = std::move(reason);
  return m;
}

// What stages 1-3 search, in its own pixels (the frame's, or binned ones):
// the high-passed, zero-mean field (HighPassed), that field squared (for
// the envelope, 3c: at full resolution, then binned with the field, so that
// the bins keep the energy of what they average out) and the white noise's
// share of it, measured on the frame.
struct SearchField {
  cv::Mat high_passed;
  cv::Mat squared;
  double noise_floor = 0.0;
  int bin = 1;     // search pixels are bin × bin frame pixels
  int radius = 0;  // largest lag, search pixels
};

// The field for a frame searched at full resolution, as it always was.
SearchField FullField(const cv::Mat& frame, const LatticeOptions& options, int side, int radius) {
  SearchField f;
  f.high_passed = HighPassed(frame, options.highpass_sigma_fraction * side);
  f.squared = f.high_passed.mul(f.high_passed);
  absl::StatusOr<double> noise = PixelNoiseStd(frame);
  f.noise_floor = noise.ok() ? *noise * *noise : 0.0;
  f.radius = radius;
  return f;
}

// A 1-D bilinear resampling from n_in to n_out samples, as cv::resize's
// INTER_LINEAR maps pixel centres (edges replicated): output i reads
// (1 - w[i]) · in[i0[i]] + w[i] · in[i0[i] + 1].
struct LinearMap {
  std::vector<int> i0;
  std::vector<float> w;
};

LinearMap MapLinear(int n_in, int n_out) {
  LinearMap m;
  m.i0.resize(n_out);
  m.w.resize(n_out);
  const double scale = static_cast<double>(n_in) / n_out;
  for (int i = 0; i < n_out; ++i) {
    const double x = std::clamp((i + 0.5) * scale - 0.5, 0.0, n_in - 1.0);
    m.i0[i] = std::min(static_cast<int>(x), std::max(n_in - 2, 0));
    m.w[i] = n_in < 2 ? 0.0f : static_cast<float>(x - m.i0[i]);
  }
  return m;
}

// The field binned k × k (kSearchSide), in one pass over the frame: the
// high-pass's wide blur on a coarse copy (kLowPassSigmaBins) drawn back
// bilinearly row by row, the high-passed pixels and their squares summed
// into k × k bins (rows and columns past the last whole bin dropped; bin
// (i, j) is centred on frame pixel (k·i + (k - 1) / 2, k·j + (k - 1) / 2),
// so a lag of d bins is one of k·d pixels). Bin rows run in parallel in
// `context` (may be null), each on its own.
SearchField BinnedField(const cv::Mat& frame, const LatticeOptions& options, int side, int radius,
                        int k, ExecutionContext* context) {
  const double sigma = options.highpass_sigma_fraction * side;
  const int c = std::max(1, static_cast<int>(sigma / kLowPassSigmaBins));
  cv::Mat low;
  if (sigma > 0.0) {
    cv::resize(frame, low, cv::Size(std::max(1, frame.cols / c), std::max(1, frame.rows / c)), 0, 0,
               cv::INTER_AREA);
    low = WideBlur(low, sigma * low.cols / frame.cols);
  } else {
    low = cv::Mat::zeros(1, 1, CV_32F);
  }
  const LinearMap mx = MapLinear(low.cols, frame.cols), my = MapLinear(low.rows, frame.rows);
  const int cols = frame.cols / k, rows = frame.rows / k;
  SearchField f;
  f.high_passed.create(rows, cols, CV_32F);
  f.squared.create(rows, cols, CV_32F);
  auto bin_row = [&](int j) {
    std::vector<float> lp(cols * k), sum(cols, 0.0f), sq(cols, 0.0f), blend(low.cols);
    for (int y = j * k; y < (j + 1) * k; ++y) {
      const float* a = low.ptr<float>(my.i0[y]);
      const float* b = low.ptr<float>(std::min(my.i0[y] + 1, low.rows - 1));
      const float wy = my.w[y];
      for (int x = 0; x < low.cols; ++x) blend[x] = a[x] + wy * (b[x] - a[x]);
      const float* row = frame.ptr<float>(y);
      const int last = low.cols - 1;
      for (int x = 0; x < cols * k; ++x) {
        const int x0 = mx.i0[x];
        const float l = blend[x0] + mx.w[x] * (blend[std::min(x0 + 1, last)] - blend[x0]);
        const float v = row[x] - l;
        sum[x / k] += v;
        sq[x / k] += v * v;
      }
    }
    const float inv = 1.0f / static_cast<float>(k * k);
    float* hp = f.high_passed.ptr<float>(j);
    float* e = f.squared.ptr<float>(j);
    for (int i = 0; i < cols; ++i) hp[i] = sum[i] * inv, e[i] = sq[i] * inv;
  };
  if (context != nullptr) {
    context->ParallelFor(rows, bin_row);
  } else {
    for (int j = 0; j < rows; ++j) bin_row(j);
  }
  // Zero mean: the bins' mean m moves each square by m² - 2 m · bin.
  const double m = cv::mean(f.high_passed)[0];
  f.high_passed -= m;
  f.squared = f.squared - 2.0 * m * f.high_passed - m * m;
  absl::StatusOr<double> noise = PixelNoiseStd(frame);
  f.noise_floor = noise.ok() ? *noise * *noise : 0.0;
  f.bin = k;
  f.radius = radius / k;
  return f;
}

// Whether the binned field still resolves the frame's structure: its
// correlation one bin away (the mean of the horizontal and vertical lags)
// over its variance less the white noise's share (the frame's pixel noise,
// its variance divided by the bin's k² pixels) reaches
// kMinBinnedCorrelation. A field with no structure above its noise does not.
bool ResolvedInBins(const SearchField& f) {
  const cv::Mat& h = f.high_passed;
  double zero = 0.0, lag = 0.0;
  for (int y = 0; y < h.rows; ++y) {
    const float* row = h.ptr<float>(y);
    const float* next = h.ptr<float>(std::min(y + 1, h.rows - 1));
    for (int x = 0; x < h.cols; ++x) {
      zero += static_cast<double>(row[x]) * row[x];
      if (x + 1 < h.cols) lag += 0.5 * static_cast<double>(row[x]) * row[x + 1];
      if (y + 1 < h.rows) lag += 0.5 * static_cast<double>(row[x]) * next[x];
    }
  }
  const double n = static_cast<double>(h.rows) * h.cols;
  const double signal = zero / n - f.noise_floor / (f.bin * f.bin);
  return signal > 0.0 && lag / n >= kMinBinnedCorrelation * signal;
}

// The fall-off of a lattice's autocorrelation with the lag that comes from
// the extent of the structure, not from disorder (see the file comment,
// 3c): the autocorrelation, normalised per lag by its overlap, of the
// frame's local structure energy — the high-passed frame squared, averaged
// over about a cell (`cell_px`, search pixels), less the white noise's
// share. Flat when the structure fills the frame; for a particle, its
// overlap with itself moved by the lag. On a binned field it is computed on
// bins of a quarter cell (kEnvelopeBinsPerCell). Unset when the frame has
// no energy above its noise.
struct Envelope {
  std::optional<Autocorrelation> acf;
  int bin = 1;  // search pixels per bin of `acf`
  // At a lag (search pixels) within the field's radius.
  double At(Vec lag) const { return acf->Sample((1.0 / bin) * lag); }
};

Envelope EnergyAutocorrelation(const SearchField& field, double cell_px) {
  Envelope out;
  cv::Mat squared = field.squared;
  if (field.bin > 1) {
    out.bin = std::max(1, static_cast<int>(cell_px / kEnvelopeBinsPerCell));
    if (out.bin > 1) {
      cv::resize(field.squared, squared,
                 cv::Size(std::max(1, squared.cols / out.bin), std::max(1, squared.rows / out.bin)),
                 0, 0, cv::INTER_AREA);
    }
  }
  cv::Mat energy = WideBlur(squared, std::max(1.0, cell_px / out.bin));
  energy = cv::max(energy - field.noise_floor, 0.0);
  if (!(cv::sum(energy)[0] > 0.0)) return out;
  // Lags up to the field's radius stay inside the bins' (one more for the
  // bilinear corner).
  out.acf = MeanLagProducts(energy, out.bin == 1 ? field.radius : field.radius / out.bin + 2);
  return out;
}

// Stages 1-3 of the file comment of lattice.h on `field`: the basis and the
// verdict's figures in search pixels, or found = false with the reason
// (`basis` then unset).
LatticeMeasurement SearchBasis(const SearchField& field, LatticeOptions options,
                               std::optional<Basis>& basis) {
  options.min_translation_px /= field.bin;
  const cv::Mat& frame = field.high_passed;
  const int radius = field.radius;
  const std::optional<Autocorrelation> acf = AutocorrelateField(field.high_passed, radius);
  if (!acf.has_value()) return NotFound("the frame has no contrast");
  const std::vector<AcfPeak> peaks =
      FindPeaks(*acf, options.min_translation_px, options.candidate_peak_fraction);
  const std::optional<Basis> first = ChooseBasis(*acf, peaks, options);
  if (!first.has_value()) {
    return NotFound("the autocorrelation has no two independent translations");
  }
  basis = SettleBasis(*acf, peaks, *first, options);
  if (!basis.has_value()) return NotFound("the autocorrelation peaks do not span a lattice");

  LatticeMeasurement m;
  m.search_radius_px = radius;
  m.correlation = 0.5 * (acf->Sample(basis->a) + acf->Sample(basis->b));
  const double reach = std::min(radius - 1.0, options.order_radius_cells * Norm(basis->b));
  const std::vector<LatticePoint> checked =
      LatticePoints(*acf, *basis, options.min_translation_px, reach);
  m.num_lattice_points = static_cast<int>(checked.size());
  // (c) against the fall-off the structure's extent explains: a point is
  // expected at the basis' correlation times the envelope there, and points
  // where the envelope has fallen below min_envelope (beyond the particle)
  // tell nothing and are not judged.
  const Envelope energy = EnergyAutocorrelation(field, Norm(basis->b));
  const double energy_base =
      energy.acf.has_value() ? 0.5 * (energy.At(basis->a) + energy.At(basis->b)) : 0.0;
  int ordered = 0, judged = 0;
  for (const LatticePoint& q : checked) {
    double envelope = 1.0;
    if (energy_base > 0.0) {
      envelope = std::min(1.0, energy.At(basis->ToPixels(q.i, q.j)) / energy_base);
    }
    if (envelope < options.min_envelope) continue;
    ++judged;
    if (q.height >= options.order_peak_fraction * m.correlation * envelope) ++ordered;
  }
  m.ordered_fraction = judged == 0 ? 0.0 : static_cast<double>(ordered) / judged;
  // The mean autocorrelation over the checked points against its spread in a
  // frame without lattice: sqrt(correlation area / overlap) per point (at
  // the smallest overlap), over sqrt(n) points.
  double least_overlap = static_cast<double>(frame.cols) * frame.rows;
  for (const LatticePoint& q : checked) {
    const Vec lag = basis->ToPixels(q.i, q.j);
    least_overlap =
        std::min(least_overlap, (frame.cols - std::abs(lag.x)) * (frame.rows - std::abs(lag.y)));
  }
  m.significance =
      MeanHeight(checked) * std::sqrt(checked.size() * least_overlap / CorrelationArea(*acf));
  if (m.significance < options.min_significance) {
    m.reason = absl::StrFormat(
        "no significant periodicity: the lattice's %d points correlate %.3g on average, %.1f "
        "standard deviations of a frame without lattice (%.1f needed)",
        m.num_lattice_points, MeanHeight(checked), m.significance, options.min_significance);
  } else if (m.num_lattice_points < options.min_lattice_points) {
    m.reason =
        absl::StrFormat("the frame holds too few cells: %d lattice points checked, %d needed",
                        m.num_lattice_points, options.min_lattice_points);
  } else if (m.ordered_fraction < options.min_ordered_fraction) {
    m.reason = absl::StrFormat(
        "no long-range order: %d of %d lattice points within %.0f cells show the lattice's "
        "correlation (%.0f %% needed)",
        ordered, judged, options.order_radius_cells, 100.0 * options.min_ordered_fraction);
  }
  if (!m.reason.empty()) basis.reset();
  return m;
}

// Stages 1-3 on the frame: binned when it is large enough (kSearchSide) and
// the lattice found there is coarse enough to stand
// (kMinBinnedTranslationPx), else at full resolution. The basis and the
// search radius come back in frame pixels; the verdict's figures are those
// of the field searched.
LatticeMeasurement FindBasis(const cv::Mat& frame, const LatticeOptions& options,
                             ExecutionContext* context, std::optional<Basis>& basis) {
  const int side = std::min(frame.rows, frame.cols);
  const int radius =
      std::min(options.max_lag_px, static_cast<int>(std::floor(options.max_lag_fraction * side)));
  const int k = side / kSearchSide;
  if (k >= 2) {
    const SearchField field = BinnedField(frame, options, side, radius, k, context);
    LatticeMeasurement m;
    if (ResolvedInBins(field)) m = SearchBasis(field, options, basis);
    if (basis.has_value() && Norm(basis->a) >= kMinBinnedTranslationPx) {
      basis = Basis{static_cast<double>(k) * basis->a, static_cast<double>(k) * basis->b};
      m.search_radius_px *= k;
      return m;
    }
    basis.reset();
  }
  return SearchBasis(FullField(frame, options, side, radius), options, basis);
}

// The basis refitted to the autocorrelation of the frame less its edge
// margin (see Fold): the edge columns of a generated frame, which lack their
// neighbours' tails, bias the peaks by up to a few thousandths of the lag on
// a 256² frame, which the fold would multiply by the number of cells. Only
// when the inner frame still reaches two cells (fewer and noisier peaks
// would cost more than the bias) and the frame is smaller than
// kEdgeRefineMaxSide (the bias falls with the frame's size; there a second
// autocorrelation would cost more than it gains).
Basis RefineWithoutEdges(const cv::Mat& frame, const Basis& basis, int margin,
                         const LatticeOptions& options) {
  if (margin <= 0 || std::min(frame.rows, frame.cols) >= kEdgeRefineMaxSide) return basis;
  const cv::Mat inner =
      frame(cv::Rect(margin, margin, frame.cols - 2 * margin, frame.rows - 2 * margin));
  const int side = std::min(inner.rows, inner.cols);
  const int radius =
      std::min(options.max_lag_px, static_cast<int>(std::floor(options.max_lag_fraction * side)));
  if (radius < 2.0 * std::max(Norm(basis.a), Norm(basis.b))) return basis;
  const std::optional<Autocorrelation> acf =
      Autocorrelate(inner, radius, options.highpass_sigma_fraction * side);
  if (!acf.has_value()) return basis;
  const std::vector<AcfPeak> peaks =
      FindPeaks(*acf, options.min_translation_px, options.candidate_peak_fraction);
  return Refine(peaks, basis, options.match_tolerance, radius - 1.0).value_or(basis);
}

}  // namespace

absl::Status LatticeOptions::Validate() const {
  auto bad = [](const char* field, double v, const char* want) {
    return absl::InvalidArgumentError(
        absl::StrCat("lattice option ", field, " must be ", want, ", got ", v));
  };
  if (!(max_lag_fraction > 0.0 && max_lag_fraction <= 0.5))
    return bad("max_lag_fraction", max_lag_fraction, "in (0, 0.5]");
  if (max_lag_px < 8) return bad("max_lag_px", max_lag_px, ">= 8");
  if (!(min_translation_px >= 1.0 && std::isfinite(min_translation_px)))
    return bad("min_translation_px", min_translation_px, ">= 1");
  if (!(highpass_sigma_fraction >= 0.0 && highpass_sigma_fraction <= 1.0))
    return bad("highpass_sigma_fraction", highpass_sigma_fraction, "in [0, 1]");
  if (!(candidate_peak_fraction > 0.0 && candidate_peak_fraction <= 1.0))
    return bad("candidate_peak_fraction", candidate_peak_fraction, "in (0, 1]");
  if (num_candidates < 2) return bad("num_candidates", num_candidates, ">= 2");
  if (!(match_tolerance > 0.0 && match_tolerance < 0.5))
    return bad("match_tolerance", match_tolerance, "in (0, 0.5)");
  if (!(sublattice_ratio > 0.0 && sublattice_ratio <= 1.0))
    return bad("sublattice_ratio", sublattice_ratio, "in (0, 1]");
  if (!(order_radius_cells >= 1.0 && std::isfinite(order_radius_cells)))
    return bad("order_radius_cells", order_radius_cells, ">= 1");
  if (!(order_peak_fraction > 0.0 && order_peak_fraction <= 1.0))
    return bad("order_peak_fraction", order_peak_fraction, "in (0, 1]");
  if (!(min_ordered_fraction > 0.0 && min_ordered_fraction <= 1.0))
    return bad("min_ordered_fraction", min_ordered_fraction, "in (0, 1]");
  if (!(min_envelope > 0.0 && min_envelope <= 1.0))
    return bad("min_envelope", min_envelope, "in (0, 1]");
  if (min_lattice_points < 2) return bad("min_lattice_points", min_lattice_points, ">= 2");
  if (!(min_significance >= 0.0 && std::isfinite(min_significance)))
    return bad("min_significance", min_significance, ">= 0");
  if (!(edge_margin_cells >= 0.0 && edge_margin_cells <= 2.0))
    return bad("edge_margin_cells", edge_margin_cells, "in [0, 2]");
  if (!(smoothing_fraction >= 0.0 && smoothing_fraction <= 2.0))
    return bad("smoothing_fraction", smoothing_fraction, "in [0, 2]");
  if (!(min_column_height > 0.0 && min_column_height < 1.0))
    return bad("min_column_height", min_column_height, "in (0, 1)");
  if (!(noise_sigmas >= 0.0 && std::isfinite(noise_sigmas)))
    return bad("noise_sigmas", noise_sigmas, ">= 0");
  if (!(nn_merge_fraction >= 0.0 && nn_merge_fraction <= 0.2))
    return bad("nn_merge_fraction", nn_merge_fraction, "in [0, 0.2]");
  return absl::OkStatus();
}

double LatticeMeasurement::NearestNeighborAngstrom(double pixel_size_angstrom) const {
  return nearest_neighbor_px * pixel_size_angstrom;
}

double LatticeMeasurement::ColumnDensityPerNm2(double pixel_size_angstrom) const {
  const double pixel_nm = pixel_size_angstrom / 10.0;
  return column_density_per_px2 / (pixel_nm * pixel_nm);
}

ProjectedLattice LatticeMeasurement::ToProjectedLattice(double pixel_size_angstrom) const {
  ProjectedLattice lattice;
  lattice.a_angstrom = Norm({a.x, a.y}) * pixel_size_angstrom;
  lattice.b_angstrom = Norm({b.x, b.y}) * pixel_size_angstrom;
  lattice.gamma_deg = gamma_deg;
  lattice.columns_per_cell = columns_per_cell;
  return lattice;
}

absl::StatusOr<LatticeMeasurement> MeasureLattice(const cv::Mat& frame,
                                                  const LatticeOptions& options,
                                                  ExecutionContext* context) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(ValidateFrame(frame));
  std::optional<Basis> found;
  LatticeMeasurement m = FindBasis(frame, options, context, found);
  if (!found.has_value()) return m;
  const int margin =
      std::min(static_cast<int>(std::ceil(options.edge_margin_cells * Norm(found->a))),
               std::min(frame.rows, frame.cols) / 8);
  const Basis basis = RefineWithoutEdges(frame, *found, margin, options);
  const Folds folds = Fold(frame, basis, margin, context);
  const CellTile raw = RenderCell(folds.whole, 0.0);
  const double width = ColumnWidth(raw, basis);
  const double sigma = options.smoothing_fraction * width;
  const std::vector<Vec> seeds =
      DetectColumns(RenderCell(folds.whole, sigma), basis, FoldNoise(folds, sigma), options);
  if (seeds.empty()) {
    m.reason = "the folded unit cell shows no column above its noise";
    return m;
  }
  m.columns =
      FitColumns(raw, basis, seeds, width).value_or(RefinedColumns(raw, basis, seeds, width));
  m.found = true;
  m.a = {basis.a.x, basis.a.y};
  m.b = {basis.b.x, basis.b.y};
  m.cell_area_px2 = basis.Area();
  m.gamma_deg =
      std::acos(std::clamp(Dot(basis.a, basis.b) / (Norm(basis.a) * Norm(basis.b)), -1.0, 1.0)) *
      180.0 / std::numbers::pi;
  m.columns_per_cell = static_cast<int>(m.columns.size());
  m.nearest_neighbor_px = NearestNeighbor(m.columns, basis, options.nn_merge_fraction);
  m.column_density_per_px2 = m.columns_per_cell / m.cell_area_px2;
  return m;
}

absl::Status PriorTolerances::Validate() const {
  if (!(spacing > 0.0 && std::isfinite(spacing))) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior tolerance spacing must be positive, got ", spacing));
  }
  if (!(density > 0.0 && std::isfinite(density))) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior tolerance density must be positive, got ", density));
  }
  return absl::OkStatus();
}

namespace {

// |ln(given / measured)| beyond ln(1 + tolerance): symmetric in the ratio.
bool Disagrees(double given, double measured, double tolerance) {
  return std::abs(std::log(given / measured)) > std::log1p(tolerance);
}

// A prior for the k brightest columns of the cell only (0 < k < n): their
// density k / cell area agrees with the given one, and so does their own
// spacing when `spacing` is set. The brightest k, as DetectColumns ranks them.
std::optional<int> SublatticeOf(const LatticeMeasurement& m, double density_px2,
                                std::optional<double> spacing_px,
                                const PriorTolerances& tolerances) {
  const Basis basis{{m.a.x, m.a.y}, {m.b.x, m.b.y}};
  for (int k = 1; k < m.columns_per_cell; ++k) {
    if (Disagrees(density_px2, k / m.cell_area_px2, tolerances.density)) continue;
    if (spacing_px.has_value()) {
      const std::vector<LatticeColumn> brightest(m.columns.begin(), m.columns.begin() + k);
      const double spacing = NearestNeighbor(brightest, basis, LatticeOptions{}.nn_merge_fraction);
      if (Disagrees(*spacing_px, spacing, tolerances.spacing)) continue;
    }
    return k;
  }
  return std::nullopt;
}

// What a prior and the measurement say, in the prior's units.
struct Comparison {
  double px = 0.0;  // the prior's pixel size
  double nn_given = 0.0, nn_measured = 0.0;
  double density_given = 0.0, density_measured = 0.0;
  bool spacing_off = false, density_off = false;
  // The pixel size the spacing, and the density, would need: nn_Å / nn_px
  // and 10 √(ρ_px² / ρ_nm²); set when both agree within the spacing's
  // tolerance (one pixel size explains both).
  std::optional<double> pixel_size;
};

Comparison Compare(const PhysicsPrior& prior, const LatticeMeasurement& m,
                   const PriorTolerances& tolerances) {
  Comparison c;
  c.px = prior.pixel_size_angstrom;
  c.nn_given = prior.nearest_neighbor_angstrom;
  c.nn_measured = m.NearestNeighborAngstrom(c.px);
  c.density_given = prior.ColumnDensityPerNm2();
  c.density_measured = m.ColumnDensityPerNm2(c.px);
  c.spacing_off = Disagrees(c.nn_given, c.nn_measured, tolerances.spacing);
  c.density_off = Disagrees(c.density_given, c.density_measured, tolerances.density);
  const double from_spacing = c.nn_given / m.nearest_neighbor_px;
  const double from_density = 10.0 * std::sqrt(m.column_density_per_px2 / c.density_given);
  if (!Disagrees(from_spacing, from_density, tolerances.spacing)) {
    c.pixel_size = std::sqrt(from_spacing * from_density);
  }
  return c;
}

PriorWarning DensityWarning(const PhysicsPrior& prior, const LatticeMeasurement& m,
                            const Comparison& c, const PriorTolerances& tolerances,
                            std::optional<int> sublattice, bool sublattice_spacing) {
  std::string why;
  if (sublattice.has_value()) {
    why = absl::StrFormat(
        "; it matches the brightest %d of the %d columns per cell%s, a sublattice, so the "
        "detector would make up the sublattice's count from any columns",
        *sublattice, m.columns_per_cell, sublattice_spacing ? " and their spacing" : "");
    if (sublattice_spacing && c.pixel_size.has_value()) {
      why += absl::StrFormat(" (or the pixel size is %.4g A/px)", *c.pixel_size);
    }
  }
  return {"column_density_per_nm2", c.density_given, c.density_measured,
          absl::StrFormat("column_density_per_nm2 is %g%s but the frame shows %.3g per nm^2 "
                          "(%d columns per cell of %.1f px^2 at %g A/px); tolerance %.0f %%%s",
                          c.density_given,
                          prior.column_density_per_nm2.has_value() ? "" : " (from the lattice)",
                          c.density_measured, m.columns_per_cell, m.cell_area_px2, c.px,
                          100.0 * tolerances.density, why)};
}

}  // namespace

absl::StatusOr<std::vector<PriorWarning>> CheckPrior(const PhysicsPrior& prior,
                                                     const LatticeMeasurement& measurement,
                                                     const PriorTolerances& tolerances) {
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  LOGSTAR_RETURN_IF_ERROR(tolerances.Validate());
  if (!measurement.found) {
    return absl::InvalidArgumentError(
        absl::StrCat("lattice: cannot check a prior against a frame without lattice (",
                     measurement.reason, ")"));
  }
  const Comparison c = Compare(prior, measurement, tolerances);
  const double density_px2 = prior.ColumnDensityPerPx2();
  // A sublattice explains a prior at least as specifically as a pixel size:
  // the brightest columns' density and spacing both match.
  if (c.density_off) {
    const std::optional<int> k =
        SublatticeOf(measurement, density_px2, prior.NearestNeighborPx(), tolerances);
    if (k.has_value())
      return std::vector<PriorWarning>{
          DensityWarning(prior, measurement, c, tolerances, k, /*sublattice_spacing=*/true)};
  }
  if (c.spacing_off && c.density_off && c.pixel_size.has_value()) {
    return std::vector<PriorWarning>{
        {"pixel_size_angstrom", c.px, *c.pixel_size,
         absl::StrFormat("pixel_size_angstrom is %g but the frame's lattice (nearest neighbour "
                         "%.2f px, %.4g columns per 100 px^2) fits the prior's spacing and "
                         "density at %.4g A/px",
                         c.px, measurement.nearest_neighbor_px,
                         100.0 * measurement.column_density_per_px2, *c.pixel_size)}};
  }
  std::vector<PriorWarning> warnings;
  if (c.spacing_off) {
    warnings.push_back(
        {"nearest_neighbor_angstrom", c.nn_given, c.nn_measured,
         absl::StrFormat("nearest_neighbor_angstrom is %g but the frame's columns are %.3g A "
                         "apart (%.2f px at %g A/px); tolerance %.0f %%",
                         c.nn_given, c.nn_measured, measurement.nearest_neighbor_px, c.px,
                         100.0 * tolerances.spacing)});
  }
  if (c.density_off) {
    warnings.push_back(
        DensityWarning(prior, measurement, c, tolerances,
                       SublatticeOf(measurement, density_px2, std::nullopt, tolerances),
                       /*sublattice_spacing=*/false));
  }
  return warnings;
}

absl::StatusOr<DerivedPrior> DerivePrior(const LatticeMeasurement& measurement,
                                         std::optional<double> pixel_size_angstrom) {
  if (!measurement.found) {
    return absl::InvalidArgumentError(absl::StrCat("lattice: no lattice to derive a prior from (",
                                                   measurement.reason, "); give a prior"));
  }
  if (pixel_size_angstrom.has_value() &&
      !(std::isfinite(*pixel_size_angstrom) && *pixel_size_angstrom > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pixel_size_angstrom must be positive and finite, got ", *pixel_size_angstrom));
  }
  DerivedPrior derived;
  derived.pixel_size_known = pixel_size_angstrom.has_value();
  const double px = pixel_size_angstrom.value_or(1.0);
  PhysicsPrior& prior = derived.prior;
  prior.pixel_size_angstrom = px;
  prior.nearest_neighbor_angstrom = measurement.NearestNeighborAngstrom(px);
  prior.lattice = measurement.ToProjectedLattice(px);
  prior.column_density_per_nm2 = measurement.ColumnDensityPerNm2(px);
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  return derived;
}

double PeriodicNearestNeighbor(PointXY a, PointXY b, absl::Span<const PointXY> positions,
                               double merge_fraction) {
  const Basis reduced = Reduce(Basis{{a.x, a.y}, {b.x, b.y}});
  std::vector<Vec> at;
  for (const PointXY& p : positions) at.push_back({p.x, p.y});
  return PeriodicNearestNeighborImpl(reduced, at, merge_fraction);
}

}  // namespace logstar
