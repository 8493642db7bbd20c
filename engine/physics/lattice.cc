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
// Fraction of the preliminary column spacing RefinePositions assumes as a
// column's width in the folded cell (columns are imaged about 0.15-0.25
// spacings wide; the fit then stays on the column's top).
constexpr double kColumnSigmaPerSpacing = 0.25;
// Steps that change the cell to a sub- or superlattice; each at least halves
// or doubles it, so more would mean the two tests disagree.
constexpr int kMaxCellSteps = 6;
// Fold grid: about one bin per pixel along each cell edge, at least this many.
constexpr int kMinFoldBins = 4;
// Rows per block of the parallel fold.
constexpr int kFoldRowsPerBlock = 64;
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

// Autocorrelation of the high-passed frame by FFT, zero-padded so that lags up
// to `radius` do not wrap, normalised by the overlap of each lag and by the
// zero lag. Nullopt for a frame without variance.
std::optional<Autocorrelation> Autocorrelate(const cv::Mat& frame, int radius,
                                             double highpass_sigma_px) {
  const int h = frame.rows, w = frame.cols;
  cv::Mat f = frame.clone();
  if (highpass_sigma_px > 0.0) f = f - WideBlur(f, highpass_sigma_px);
  f = f - cv::mean(f)[0];
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
  const double zero = circular.at<float>(0, 0) / (static_cast<double>(w) * h);
  if (!(zero > 0.0) || !std::isfinite(zero)) return std::nullopt;
  Autocorrelation acf;
  acf.radius = radius;
  acf.values.create(2 * radius + 1, 2 * radius + 1, CV_32F);
  for (int dy = -radius; dy <= radius; ++dy) {
    const float* src = circular.ptr<float>((dy + ph) % ph);
    float* dst = acf.values.ptr<float>(radius + dy);
    const double rows = h - std::abs(dy);
    for (int dx = -radius; dx <= radius; ++dx) {
      const double overlap = rows * (w - std::abs(dx));
      dst[radius + dx] = static_cast<float>(src[(dx + pw) % pw] / overlap / zero);
    }
  }
  return acf;
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
// Stage 2: the least-squares fit of a basis to the peaks.

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

// The lattice the strongest peaks span best: every pair of independent
// candidates spans a lattice, scored by its mean autocorrelation over the
// search disk; lattices with too few points there cannot be judged.
std::optional<Basis> ChooseBasis(const Autocorrelation& acf, const std::vector<AcfPeak>& peaks,
                                 const LatticeOptions& options) {
  std::vector<Vec> candidates;
  for (const AcfPeak& p : peaks) {
    if (static_cast<int>(candidates.size()) >= options.num_candidates) break;
    candidates.push_back(p.lag);
  }
  std::optional<Basis> best;
  double best_score = 0.0;
  const double min_area = options.min_translation_px * options.min_translation_px;
  for (size_t p = 0; p < candidates.size(); ++p) {
    for (size_t q = p + 1; q < candidates.size(); ++q) {
      const Vec u = candidates[p], v = candidates[q];
      if (std::abs(Cross(u, v)) < kMinIndependentSine * Norm(u) * Norm(v)) continue;
      const Basis basis = Reduce({u, v});
      if (basis.Area() < min_area) continue;
      const std::vector<LatticePoint> points =
          LatticePoints(acf, basis, options.min_translation_px, acf.radius - 1.0);
      if (static_cast<int>(points.size()) < options.min_lattice_points) continue;
      const double score = MeanHeight(points);
      if (score > best_score) best = basis, best_score = score;
    }
  }
  return best;
}

// A lattice next to the current one, with how its points off the other
// score: ratio = mean height of the points one lattice has and the other
// lacks / mean height of the common points.
struct Neighbour {
  Basis basis;
  double ratio = 0.0;
};

// The index-p sublattices (p = 2, 3) are the kernels of α·i + β·j mod p for
// (α, β) = (1, 0) and (c, 1), c in [0, p). Returns the one whose dropped
// points score worst: pseudo translations (YBCO's near c/3, the centre of a
// cell whose two columns differ) score less than true ones.
std::optional<Neighbour> WeakestSublattice(const Basis& basis,
                                           const std::vector<LatticePoint>& own) {
  std::optional<Neighbour> sub;
  for (int p : {2, 3}) {
    for (int c = -1; c < p; ++c) {
      const int alpha = c < 0 ? 1 : c, beta = c < 0 ? 0 : 1;
      std::vector<LatticePoint> on, off;
      for (const LatticePoint& q : own) {
        (((alpha * q.i + beta * q.j) % p + p) % p == 0 ? on : off).push_back(q);
      }
      if (on.size() < 2 || off.size() < 2 || !(MeanHeight(on) > 0.0)) continue;
      const double ratio = MeanHeight(off) / MeanHeight(on);
      if (sub.has_value() && ratio >= sub->ratio) continue;
      const Basis kernel = c < 0 ? Basis{static_cast<double>(p) * basis.a, basis.b}
                                 : Basis{basis.a - static_cast<double>(c) * basis.b,
                                         static_cast<double>(p) * basis.b};
      sub = Neighbour{Reduce(kernel), ratio};
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

// The superlattice L + Z·w (w = an autocorrelation peak within match
// tolerance of a point of L / q, q <= kMaxSuperIndex) whose added points
// score best: a finer lattice the pair scoring could not tell from L (a
// multiple of a cell scores as well as the cell).
constexpr int kMaxSuperIndex = 6;
constexpr double kSuperTolerancePx = 1.0;
constexpr double kSuperToleranceFraction = 0.01;
constexpr int kMaxSuperCandidates = 64;

std::optional<Neighbour> StrongestSuperlattice(const Autocorrelation& acf,
                                               const std::vector<AcfPeak>& candidates,
                                               const Basis& basis,
                                               const std::vector<LatticePoint>& own,
                                               const LatticeOptions& options) {
  std::optional<Neighbour> super;
  const double own_height = MeanHeight(own);
  if (own.size() < 2 || !(own_height > 0.0)) return super;
  const double reach = acf.radius - 1.0;
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
      if (!finer.has_value() ||
          std::min(Norm(finer->a), Norm(finer->b)) < options.min_translation_px) {
        break;
      }
      std::vector<LatticePoint> added;
      for (const LatticePoint& p : LatticePoints(acf, *finer, options.min_translation_px, reach)) {
        const Vec g = basis.ToFractional(finer->ToPixels(p.i, p.j));
        if (std::abs(g.x - std::round(g.x)) > 1e-6 || std::abs(g.y - std::round(g.y)) > 1e-6) {
          added.push_back(p);
        }
      }
      if (added.size() >= 2) {
        const double ratio = MeanHeight(added) / own_height;
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
  const double radius = acf.radius - 1.0;
  std::optional<Basis> fitted = Refine(peaks, basis, options.match_tolerance, radius);
  for (int step = 0; step < kMaxCellSteps && fitted.has_value(); ++step) {
    const std::vector<LatticePoint> own =
        LatticePoints(acf, *fitted, options.min_translation_px, radius);
    std::optional<Neighbour> next = StrongestSuperlattice(acf, peaks, *fitted, own, options);
    if (!next.has_value() || next->ratio < options.sublattice_ratio) {
      next = WeakestSublattice(*fitted, own);
      if (!next.has_value() || next->ratio >= options.sublattice_ratio) break;
    }
    std::optional<Basis> refitted = Refine(peaks, next->basis, options.match_tolerance, radius);
    if (!refitted.has_value()) break;
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
  const int blocks = (rows + kFoldRowsPerBlock - 1) / kFoldRowsPerBlock;
  std::vector<FoldSums> sums(2 * static_cast<size_t>(blocks));  // [block][half]
  const Vec du = basis.ToFractional({1.0, 0.0});
  auto block = [&](int k) {
    FoldSums* half = &sums[2 * static_cast<size_t>(k)];
    half[0].Resize(bins);
    half[1].Resize(bins);
    const int y1 = margin + std::min(rows, (k + 1) * kFoldRowsPerBlock);
    for (int y = margin + k * kFoldRowsPerBlock; y < y1; ++y) {
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
  double prominence;       // the least over the copies (see FindColumns)
  double height;           // tile value at the chosen copy
};

// Columns of the folded cell (see the file comment of lattice.h). Every
// maximum of the tile whose cell coordinates lie in [-1/4, 5/4)² is a copy of
// a column; copies closer than min_translation_px (periodically) are one
// column. A column's prominence is the least over its copies: near the tile's
// edge a higher neighbour may be cut off, which can only raise it. A column
// must reach min_column_height of the brightest's prominence and
// noise_sigmas × the fold's noise (`noise`, per pixel of the tile).
std::vector<LatticeColumn> FindColumns(const CellTile& tile, const Basis& basis, double noise,
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
  std::vector<LatticeColumn> out;
  if (columns.empty()) return out;
  std::stable_sort(
      columns.begin(), columns.end(),
      [](const ColumnCopies& p, const ColumnCopies& q) { return p.height > q.height; });
  double floor = std::numeric_limits<double>::infinity(), top_prominence = 0.0;
  for (const ColumnCopies& c : columns) top_prominence = std::max(top_prominence, c.prominence);
  double lo, hi;
  cv::minMaxLoc(img, &lo, &hi);
  floor = lo;
  const double threshold =
      std::max(options.min_column_height * top_prominence, options.noise_sigmas * noise);
  std::vector<Blob> kept;
  std::vector<double> heights;
  for (const ColumnCopies& c : columns) {
    if (c.prominence < threshold) continue;
    Blob blob;
    blob.x = c.position.x - tile.x0;
    blob.y = c.position.y - tile.y0;
    kept.push_back(blob);
    heights.push_back(c.height);
  }
  // Refine with a width from the columns' preliminary spacing.
  double spacing = std::min(Norm(basis.a), Norm(basis.b));
  for (size_t p = 0; p < kept.size(); ++p) {
    for (size_t q = p + 1; q < kept.size(); ++q) {
      spacing = std::min(spacing,
                         PeriodicDistance(basis, {kept[p].x, kept[p].y}, {kept[q].x, kept[q].y}));
    }
  }
  for (Blob& b : kept) b.sigma = kColumnSigmaPerSpacing * spacing;
  (void)RefinePositions(img, absl::MakeSpan(kept), RefineOptions{});
  const double top = heights.empty() ? hi : heights.front();
  for (size_t k = 0; k < kept.size(); ++k) {
    const Vec f = basis.ToFractional({tile.x0 + kept[k].x, tile.y0 + kept[k].y});
    const Vec in_cell = basis.ToPixels(f.x - std::floor(f.x), f.y - std::floor(f.y));
    out.push_back(
        {{in_cell.x, in_cell.y}, top > floor ? (heights[k] - floor) / (top - floor) : 1.0});
  }
  return out;
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

// The shortest spacing between columns, periodically (a column and its own
// copies one translation away included). In a symmetric cell the shortest
// spacing occurs several times (4 Sr-Ti pairs in SrTiO3, 3 bonds in a
// honeycomb), and the least of several noisy copies is biased low, so the
// spacings within nn_merge_fraction of the least are averaged.
double NearestNeighbor(const std::vector<LatticeColumn>& columns, const Basis& basis,
                       double merge_fraction) {
  std::vector<double> spacings = {Norm(basis.a), Norm(basis.b)};
  for (size_t p = 0; p < columns.size(); ++p) {
    const Vec u{columns[p].position_px.x, columns[p].position_px.y};
    for (size_t q = p + 1; q < columns.size(); ++q) {
      const Vec f = basis.ToFractional(Vec{columns[q].position_px.x, columns[q].position_px.y} - u);
      const double fu = f.x - std::round(f.x), fv = f.y - std::round(f.y);
      for (int j = -1; j <= 1; ++j) {
        for (int i = -1; i <= 1; ++i) spacings.push_back(Norm(basis.ToPixels(fu + i, fv + j)));
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

// Stages 1-3 of the file comment of lattice.h: the basis and the verdict's
// figures, or found = false with the reason (`basis` then unset).
LatticeMeasurement FindBasis(const cv::Mat& frame, const LatticeOptions& options,
                             std::optional<Basis>& basis) {
  const int side = std::min(frame.rows, frame.cols);
  const int radius =
      std::min(options.max_lag_px, static_cast<int>(std::floor(options.max_lag_fraction * side)));
  const std::optional<Autocorrelation> acf =
      Autocorrelate(frame, radius, options.highpass_sigma_fraction * side);
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
  auto overlap = [&](Vec lag) {
    return (frame.cols - std::abs(lag.x)) * (frame.rows - std::abs(lag.y));
  };
  m.significance = m.correlation * std::sqrt(std::min(overlap(basis->a), overlap(basis->b)));
  const double reach = std::min(radius - 1.0, options.order_radius_cells * Norm(basis->b));
  const std::vector<LatticePoint> checked =
      LatticePoints(*acf, *basis, options.min_translation_px, reach);
  m.num_lattice_points = static_cast<int>(checked.size());
  const int ordered =
      static_cast<int>(std::count_if(checked.begin(), checked.end(), [&](const LatticePoint& q) {
        return q.height >= options.order_peak_fraction * m.correlation;
      }));
  m.ordered_fraction = checked.empty() ? 0.0 : static_cast<double>(ordered) / checked.size();
  if (m.significance < options.min_significance) {
    m.reason = absl::StrFormat(
        "no significant periodicity: the translations correlate %.3g, %.1f standard deviations "
        "of a noise frame's autocorrelation (%.1f needed)",
        m.correlation, m.significance, options.min_significance);
  } else if (m.num_lattice_points < options.min_lattice_points) {
    m.reason =
        absl::StrFormat("the frame holds too few cells: %d lattice points checked, %d needed",
                        m.num_lattice_points, options.min_lattice_points);
  } else if (m.ordered_fraction < options.min_ordered_fraction) {
    m.reason = absl::StrFormat(
        "no long-range order: %d of %d lattice points within %.0f cells show the lattice's "
        "correlation (%.0f %% needed)",
        ordered, m.num_lattice_points, options.order_radius_cells,
        100.0 * options.min_ordered_fraction);
  }
  if (!m.reason.empty()) basis.reset();
  return m;
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
  if (min_lattice_points < 2) return bad("min_lattice_points", min_lattice_points, ">= 2");
  if (!(min_significance >= 0.0 && std::isfinite(min_significance)))
    return bad("min_significance", min_significance, ">= 0");
  if (!(edge_margin_cells >= 0.0 && edge_margin_cells <= 2.0))
    return bad("edge_margin_cells", edge_margin_cells, "in [0, 2]");
  if (!(smoothing_fraction >= 0.0 && smoothing_fraction <= 0.5))
    return bad("smoothing_fraction", smoothing_fraction, "in [0, 0.5]");
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
  LatticeMeasurement m = FindBasis(frame, options, found);
  if (!found.has_value()) return m;
  const Basis& basis = *found;
  const int margin =
      std::min(static_cast<int>(std::ceil(options.edge_margin_cells * Norm(basis.a))),
               std::min(frame.rows, frame.cols) / 8);
  const Folds folds = Fold(frame, basis, margin, context);
  const double sigma = options.smoothing_fraction * Norm(basis.a);
  const CellTile tile = RenderCell(folds.whole, sigma);
  m.columns = FindColumns(tile, basis, FoldNoise(folds, sigma), options);
  if (m.columns.empty()) {
    m.reason = "the folded unit cell shows no column above its noise";
    return m;
  }
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

// " (it matches the brightest k of the n columns per cell: a sublattice)"
// when the given density is that of the k brightest columns, else "".
std::string SublatticeHint(const LatticeMeasurement& m, double given_px2, double tolerance) {
  for (int k = 1; k < m.columns_per_cell; ++k) {
    if (!Disagrees(given_px2, k / m.cell_area_px2, tolerance)) {
      return absl::StrFormat(
          "; it matches the brightest %d of the %d columns per cell, a sublattice, so the "
          "detector would make up its count from any columns",
          k, m.columns_per_cell);
    }
  }
  return "";
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
  const double px = prior.pixel_size_angstrom;
  const double nn_given = prior.nearest_neighbor_angstrom;
  const double nn_measured = measurement.NearestNeighborAngstrom(px);
  const double density_given = prior.ColumnDensityPerNm2();
  const double density_measured = measurement.ColumnDensityPerNm2(px);
  const bool spacing_off = Disagrees(nn_given, nn_measured, tolerances.spacing);
  const bool density_off = Disagrees(density_given, density_measured, tolerances.density);
  // The pixel size each field implies: nn_Å / nn_px, and 10 √(ρ_px² / ρ_nm²).
  const double px_from_spacing = nn_given / measurement.nearest_neighbor_px;
  const double px_from_density =
      10.0 * std::sqrt(measurement.column_density_per_px2 / density_given);
  std::vector<PriorWarning> warnings;
  if (spacing_off && density_off &&
      !Disagrees(px_from_spacing, px_from_density, tolerances.spacing)) {
    const double measured = std::sqrt(px_from_spacing * px_from_density);
    warnings.push_back(
        {"pixel_size_angstrom", px, measured,
         absl::StrFormat("pixel_size_angstrom is %g but the frame's lattice (nearest neighbour "
                         "%.2f px, %.4g columns per 100 px^2) fits the prior's spacing and "
                         "density at %.4g A/px",
                         px, measurement.nearest_neighbor_px,
                         100.0 * measurement.column_density_per_px2, measured)});
    return warnings;
  }
  if (spacing_off) {
    warnings.push_back(
        {"nearest_neighbor_angstrom", nn_given, nn_measured,
         absl::StrFormat("nearest_neighbor_angstrom is %g but the frame's columns are %.3g A "
                         "apart (%.2f px at %g A/px); tolerance %.0f %%",
                         nn_given, nn_measured, measurement.nearest_neighbor_px, px,
                         100.0 * tolerances.spacing)});
  }
  if (density_off) {
    warnings.push_back(
        {"column_density_per_nm2", density_given, density_measured,
         absl::StrFormat(
             "column_density_per_nm2 is %g%s but the frame shows %.3g per nm^2 (%d "
             "columns per cell of %.1f px^2 at %g A/px); tolerance %.0f %%%s",
             density_given, prior.column_density_per_nm2.has_value() ? "" : " (from the lattice)",
             density_measured, measurement.columns_per_cell, measurement.cell_area_px2, px,
             100.0 * tolerances.density,
             SublatticeHint(measurement, prior.ColumnDensityPerPx2(), tolerances.density))});
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

}  // namespace logstar
