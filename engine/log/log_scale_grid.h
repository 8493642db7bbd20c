// LogScaleGrid: one frame's LoG responses on a fine geometric grid of
// sigmas, so that blob_log with any sigma range inside the grid costs a
// peak search, pruning and nothing else.
//
// LoG* evaluates the detector with dozens of (min_sigma, max_sigma,
// threshold, overlap) candidates on the same window. Convolutions dominate a
// detection; here they are paid once, over the union of the candidates'
// sigma ranges. A candidate's sigma list (LogScaleOptions::Sigmas) is then
// mapped to the nearest grid sigmas and the 3×3×3 peak test, threshold and
// overlap pruning run exactly as in LogScaleSpace on those planes. With the
// default spacing of 4 % a sigma moves by at most 2 %, which moves a peak's
// response by far less than the noise of a frame; consecutive sigmas that
// land on the same grid sigma count as one scale (blob_log would find the
// same peaks in both).
//
// Memory: (number of grid sigmas) × (pixels) floats, about 15 MB for a
// 256² window and 55 sigmas. Meant for windows, not whole 4k frames.
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel of the image given to Compute.
//
// Thread-safety: const methods may be called concurrently.
#ifndef LOGSTAR_ENGINE_LOG_LOG_SCALE_GRID_H_
#define LOGSTAR_ENGINE_LOG_LOG_SCALE_GRID_H_

#include <cstdint>
#include <optional>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/context.h"
#include "engine/log/log_detector.h"
#include "engine/physics/rewards.h"

namespace logstar {

struct LogGridOptions {
  // The sigmas any later Detect() may ask for, in pixels.
  double min_sigma = 1.0;  // > 0
  double max_sigma = 8.0;  // >= min_sigma, <= 256
  // Ratio between consecutive grid sigmas minus one, in (0, 0.5].
  double spacing = 0.04;
  // Lowest threshold Detect() accepts; lower keeps more candidate peaks.
  double response_floor = 0.01;  // >= 0

  absl::Status Validate() const;
};

class LogScaleGrid {
 public:
  // `image`: single-channel CV_32F with finite values (normally from
  // NormalizeFrame). Runs in `context`'s arena; the result does not depend
  // on the thread count.
  static absl::StatusOr<LogScaleGrid> Compute(const cv::Mat& image, const LogGridOptions& options,
                                              ExecutionContext* context);

  // blob_log(image, scale, detect) with each sigma replaced by the nearest
  // grid sigma (Blob::sigma is that grid sigma; Blob::scale_index counts the
  // distinct scales used). Fails when a sigma lies outside the grid or the
  // threshold is below response_floor.
  absl::StatusOr<std::vector<Blob>> Detect(const LogScaleOptions& scale,
                                           const LogDetectOptions& detect) const;

  // Detect(), unless it would certainly return more than `max_blobs` blobs
  // centred in `region` (pixel centres within the region's pixels): then
  // std::nullopt, found before pruning. A search uses this to dismiss
  // candidates that flood a window with noise peaks, whose exact pruning is
  // by far the costliest evaluation (tens of ms instead of a fraction of one).
  absl::StatusOr<std::optional<std::vector<Blob>>> DetectAtMost(const LogScaleOptions& scale,
                                                                const LogDetectOptions& detect,
                                                                const PixelRegion& region,
                                                                size_t max_blobs) const;

  const std::vector<double>& sigmas() const { return sigmas_; }
  const LogGridOptions& options() const { return options_; }
  int width() const { return width_; }
  int height() const { return height_; }

 private:
  struct Candidate {  // above response_floor and not below its 4 in-plane neighbours
    float response;
    int32_t y;
    int32_t x;
  };
  struct BandPlanes {  // the planes of one band of rows, transposed (see log_internal.h)
    int y0 = 0, y1 = 0, ry0 = 0, nrows = 0, cols = 0;
    size_t plane_size = 0;
    std::vector<float> planes;  // grid index × plane_size
  };

  LogScaleGrid() = default;
  // The peaks Detect() prunes, as blobs in its order.
  absl::StatusOr<std::vector<Blob>> Peaks(const LogScaleOptions& scale,
                                          const LogDetectOptions& detect) const;
  const float* Plane(int band, int grid_index) const;

  LogGridOptions options_;
  std::vector<double> sigmas_;
  int width_ = 0;
  int height_ = 0;
  std::vector<BandPlanes> bands_;
  // Per grid sigma, by decreasing response, ties by (y, x).
  std::vector<std::vector<Candidate>> candidates_;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_LOG_LOG_SCALE_GRID_H_
