#include "engine/analysis/memory_estimate.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "engine/analysis/logstar.h"

namespace logstar {
namespace {

constexpr double kFixedBytes = 8.0 * (1 << 20);
constexpr double kFrameBytesPerPixel = 36.0;
// A float per pixel and grid sigma, in row bands of 30 rows computed with
// one more above and below and rounded to whole vectors: 32 / 30 of it.
constexpr double kGridBytesPerPixelAndSigma = 4.0 * 32.0 / 30.0;
// Bytes per pair of evaluated points (n² of them): a Gaussian process fit
// running (its pairwise distances and kernel terms, the covariance, its
// factor and inverse), and what a search keeps besides (the two objectives'
// models, the previous ones, the candidates' covariances). Measured with
// VmHWM at n = 300 and 600 on one and two threads (145 and 211 bytes per
// pair).
constexpr double kFitBytesPerPair = 66.0;
constexpr double kSearchBytesPerPair = 80.0;
// Fits of one search run at once: one per thread, at most the multi-start
// refit's (1 + 2 restarts) × 2 objectives.
constexpr int kMaxParallelFits = 6;
// The amorphous stage: patches, their PCA projection and the mixture's
// responsibilities (measured at 1024² and 2048²: 51 and 112 MB).
constexpr double kAmorphousBytesPerPixel = 24.0;
constexpr double kAmorphousFixedBytes = 32.0 * (1 << 20);
// The lattice pair (ObjectivePair::kLattice) keeps the grid's maxima down
// to a fraction of the lowest threshold and detects them a second time per
// evaluation: measured on whole-frame windows of 1024² and 2048², 14.7 and
// 15.4 bytes per context pixel above the published pair's peak.
constexpr double kLatticePairBytesPerPixel = 16.0;
// The largest sigma the prior-derived bounds allow (ResolveBounds).
constexpr double kLargestDerivedSigmaPx = 64.0;

// As the analyzer's HaloFor (engine/analysis/analyzer.cc): the LoG kernels'
// and the pruning's reach.
int HaloFor(double max_sigma) {
  return static_cast<int>(std::ceil(2.0 * std::sqrt(2.0) * max_sigma)) + 2;
}

// The number of grid sigmas from min_sigma to max_sigma (LogScaleGrid).
int GridSigmas(double min_sigma, double max_sigma, double spacing) {
  if (!(min_sigma > 0.0) || !(max_sigma >= min_sigma) || !(spacing > 0.0)) return 1;
  return 1 +
         static_cast<int>(std::ceil(std::log(max_sigma / min_sigma) / std::log1p(spacing) - 1e-9));
}

// `searches` running at once on `threads`: each keeps its models, and
// their fits share the threads.
double SearchBytes(int evaluations, int searches, int threads) {
  const double n = std::max(evaluations, 0);
  const int fits = std::min(threads, kMaxParallelFits * searches);
  return n * n * (kFitBytesPerPair * fits + kSearchBytesPerPair * searches);
}

// The pixels of the largest window of the layout with its halo, and how
// many windows there are.
std::pair<double, int> LargestContext(int width, int height, int window, int stride, int halo) {
  // As the analyzer's LayoutFor: window 0 is the whole frame.
  const int w = window == 0 ? std::max(width, height) : window;
  const absl::StatusOr<std::vector<Window>> layout =
      LayoutWindows(width, height, std::max(w, 16), stride == 0 ? w : stride);
  if (!layout.ok() || layout->empty()) return {static_cast<double>(width) * height, 1};
  double largest = 0.0;
  for (const Window& win : *layout) {
    const int c0 = std::max(win.tile.col0 - halo, 0), r0 = std::max(win.tile.row0 - halo, 0);
    const int c1 = std::min(win.tile.col0 + win.tile.cols + halo, width);
    const int r1 = std::min(win.tile.row0 + win.tile.rows + halo, height);
    largest = std::max(largest, static_cast<double>(c1 - c0) * (r1 - r0));
  }
  return {largest, static_cast<int>(layout->size())};
}

}  // namespace

uint64_t MemoryEstimate::total() const {
  return fixed_bytes + frame_bytes + windows_bytes + search_bytes + amorphous_bytes;
}

MemoryEstimate EstimatePeakMemory(int width, int height, const AnalyzerOptions& options,
                                  const PhysicsPrior* prior, int threads) {
  MemoryEstimate e;
  e.fixed_bytes = static_cast<uint64_t>(kFixedBytes);
  if (width <= 0 || height <= 0) return e;
  threads = std::max(threads, 1);
  const double pixels = static_cast<double>(width) * height;
  e.frame_bytes = static_cast<uint64_t>(kFrameBytesPerPixel * pixels);

  // The search's sigma bounds: the prior's when it is known, else the
  // derived bounds' ratio (0.25 to 2 column sigmas) at the largest sigma.
  const LogStarOptions& o = options.logstar;
  double min_sigma = kLargestDerivedSigmaPx / 8.0, max_sigma = kLargestDerivedSigmaPx;
  if (prior != nullptr) {
    if (absl::StatusOr<LogStarBounds> b = ResolveBounds(o, *prior); b.ok()) {
      min_sigma = b->min_sigma.lower;
      max_sigma = std::max(b->max_sigma.upper, b->min_sigma.upper);
    }
  }
  const int sigmas = GridSigmas(min_sigma, max_sigma, o.grid_spacing);
  const auto [context, windows] =
      LargestContext(width, height, options.window, options.stride, HaloFor(max_sigma));
  const int at_once = std::min(windows, threads);
  const double per_context_pixel =
      kGridBytesPerPixelAndSigma * sigmas +
      (o.objectives == ObjectivePair::kLattice ? kLatticePairBytesPerPixel : 0.0);
  e.windows_bytes = static_cast<uint64_t>(at_once * per_context_pixel * context);
  e.search_bytes =
      static_cast<uint64_t>(SearchBytes(o.optimizer.num_evaluations, at_once, threads));
  if (options.amorphous.enabled) {
    e.amorphous_bytes = static_cast<uint64_t>(
        kAmorphousFixedBytes + kAmorphousBytesPerPixel * pixels +
        SearchBytes(options.amorphous.options.optimizer.num_evaluations, 1, threads));
  }
  return e;
}

}  // namespace logstar
