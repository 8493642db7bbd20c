// Internal to the engine: the pieces of the LoG detector that the one-shot
// scale-space (log_detector.cc) and the sigma grid of LoG* (log_scale_grid.cc)
// share. Not a public API.
#ifndef LOGSTAR_ENGINE_LOG_LOG_INTERNAL_H_
#define LOGSTAR_ENGINE_LOG_LOG_INTERNAL_H_

#include <cstddef>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "engine/log/log_detector.h"
#include "engine/log/log_kernels.h"

namespace logstar::internal {

// Rows of output per parallel task. Each band computes one more row above
// and below for the 3×3×3 peak test, and its transposed planes have one
// row per image column of round_up(band rows + 2, lanes) floats: 30 output
// rows fill 32 floats exactly. The split never changes results (every
// output pixel is computed by the same arithmetic whatever band it is in).
constexpr int kBandRows = 30;

// The symmetric halves (centre first) of scipy's _gaussian_kernel1d for
// orders 0 and 2, computed in double as scipy does, then rounded.
struct ScaleKernel {
  double sigma;
  int radius;
  std::vector<float> g;
  std::vector<float> d;
};
ScaleKernel MakeKernel(double sigma);
// The kernels of a sigma list, and the largest radius among them.
std::vector<ScaleKernel> MakeKernels(const std::vector<double>& sigmas, int* max_radius);

// Checks what every LoG entry point needs of a frame: non-empty,
// single-channel float32, finite. Errors say what is wrong.
absl::Status CheckLogImage(const cv::Mat& image);

// `image` itself when it already has the padded layout the kernels read
// (NormalizeFrame's output), else a copy in that layout.
cv::Mat InPaddedLayout(const cv::Mat& image);

// One band of output rows [y0, y1) and the rows around it that are computed.
struct Band {
  int y0, y1;  // output rows
  int ry0;     // first computed row
  int nrows;   // computed rows: one more above and below where the image has them
  int cols;    // floats per transposed plane row: nrows rounded up to whole vectors
};

// Per-thread buffers for computing the planes of one band.
struct BandScratch {
  std::vector<float> gt, dt;  // V_g and V_d of the band, transposed
  std::vector<int> rows;      // reflected image row of every vertical tap
};

// Computes scale-normalised LoG response planes of bands of one frame, with
// scipy's reflected borders. Planes are stored transposed:
// plane[x · band.cols + (y - band.ry0)].
class PlaneMaker {
 public:
  // `image` must outlive this object and have the padded layout; no kernel
  // passed to ComputePlane may have a radius above `max_radius`.
  PlaneMaker(const cv::Mat& image, int max_radius);

  Band MakeBand(int y0, int y1) const;
  // Floats of one transposed plane of `band`.
  size_t PlaneSize(const Band& band) const;
  // Sizes `s` for `band` and fills its border tables; call once per band
  // before ComputePlane.
  void Prepare(const Band& band, BandScratch& s) const;
  void ComputePlane(const ScaleKernel& k, const Band& band, BandScratch& s, float* dst) const;

  const LogKernelFns& fns() const { return fns_; }
  int width() const { return width_; }
  int height() const { return height_; }

 private:
  const cv::Mat& image_;
  const LogKernelFns& fns_;
  const int width_;
  const int height_;
  const int max_radius_;
  int padded_width_ = 0;    // image columns rounded up to whole vectors
  std::vector<int> xrows_;  // reflected image column of offset i - max_radius_
};

// Whether the value `v` at (x, j) of plane `at` (transposed band layout) is
// not exceeded anywhere in its 3×3 neighbourhood in `at`, `below` and
// `above`; a null plane and samples outside the band never reject.
bool IsPeak3x3x3(float v, const float* below, const float* at, const float* above, const Band& band,
                 int width, int x, int j);

// Removes the smaller of every pair of blobs overlapping by more than
// `overlap` of the smaller disk, visiting pairs in scikit-image's order.
std::vector<Blob> PruneBlobs(std::vector<Blob> blobs, double overlap);

// A lower bound on how many blobs PruneBlobs(blobs, overlap) keeps inside the
// box [x_min, x_end) × [y_min, y_end), without pruning: every connected group
// of blobs linked by removing pairs keeps at least one of its blobs (the last
// remover survives), so groups lying wholly inside the box each leave one
// there. Costs a neighbour search, no ordering: cheap where pruning proper is
// costly (thousands of overlapping blobs at a low threshold).
size_t PrunedCountLowerBound(const std::vector<Blob>& blobs, double overlap, double x_min,
                             double x_end, double y_min, double y_end);

// The order LogScaleSpace keeps its peaks in: decreasing response, ties by
// (y, x, scale), so results never depend on how work was split.
inline bool PeakBefore(const LogScaleSpace::Peak& a, const LogScaleSpace::Peak& b) {
  if (a.response != b.response) return a.response > b.response;
  if (a.y != b.y) return a.y < b.y;
  if (a.x != b.x) return a.x < b.x;
  return a.scale < b.scale;
}

}  // namespace logstar::internal

#endif  // LOGSTAR_ENGINE_LOG_LOG_INTERNAL_H_
