// Laplacian-of-Gaussian blob detection with the semantics of scikit-image
// 0.19 `skimage.feature.blob_log` on a 2-D image.
//
// What "the same semantics" means here, step by step:
//  * sigma list: numpy linspace(min_sigma, max_sigma, num_sigma), or
//    10**linspace(log10 min, log10 max, num) with log_scale;
//  * response per sigma: -sigma² · (∇²G_sigma ∗ I), computed as scipy's
//    ndimage.gaussian_laplace does: sampled, normalised Gaussian kernels
//    truncated at radius int(4·sigma + 0.5), the second-derivative kernel
//    along one axis times the Gaussian along the other, borders reflected
//    (d c b a | a b c d | d c b a);
//  * peaks: voxels of the (y, x, sigma) cube equal to the maximum of their
//    3×3×3 neighbourhood, outside the cube counting as 0, strictly above the
//    absolute threshold, and at least exclude_border pixels from the x and y
//    borders; an all-constant cube has no peaks;
//  * pruning: for two blobs whose disks of radius sigma·√2 overlap by more
//    than `overlap` of the smaller disk's area, the one with the smaller sigma
//    is removed (on equal sigma, the first of the pair in decreasing-response
//    order). Pairs are visited in the order scikit-image visits them: the
//    iteration order of the Python set scipy's query_pairs returns, which
//    matters when removals chain (A removes B, which would have removed C).
//    That order is reproduced by emulating CPython's set (see
//    log_detector.cc); it is exact up to the rare collision whose order
//    depends on scipy's k-d tree traversal.
//
// Differences by design: responses are computed in float32 (scikit-image uses
// the image's float type), which moves a response by about 1e-7 relative, and
// blobs come back sorted by decreasing response.
//
// Coordinates: x = column, y = row, in pixels, origin at the centre of the
// top-left pixel. Blob radius is sigma·√2.
#ifndef LOGSTAR_ENGINE_LOG_LOG_DETECTOR_H_
#define LOGSTAR_ENGINE_LOG_LOG_DETECTOR_H_

#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/context.h"

namespace logstar {

// What fixes the scale-space: everything but threshold and overlap.
struct LogScaleOptions {
  double min_sigma = 1.0;   // pixels, > 0
  double max_sigma = 50.0;  // pixels, >= min_sigma
  int num_sigma = 10;       // >= 1
  bool log_scale = false;
  int exclude_border = 0;  // pixels, >= 0
  // Peaks at or below this response are not kept, so later Detect() calls
  // accept only threshold >= response_floor. Lower values keep more
  // candidates (more memory, slower sort) for the sake of re-thresholding.
  double response_floor = 0.0;

  absl::Status Validate() const;
  // The sigma of each scale, as scikit-image computes it.
  std::vector<double> Sigmas() const;
};

struct LogDetectOptions {
  double threshold = 0.2;  // absolute response, > response_floor of the scale-space
  double overlap = 0.5;    // in [0, 1]

  absl::Status Validate() const;
};

struct LogOptions {
  LogScaleOptions scale;
  LogDetectOptions detect;
  absl::Status Validate() const;
};

struct Blob {
  double x = 0.0;         // column, pixels
  double y = 0.0;         // row, pixels
  double sigma = 0.0;     // pixels; radius = sigma·√2
  float response = 0.0f;  // scale-normalised LoG response at the peak
  int scale_index = 0;    // index into the scale-space's sigma list
};

// The local maxima of one frame's LoG scale-space, kept so that detection
// with other thresholds and overlaps costs no new convolution.
//
// Thread-safety: const methods may be called concurrently.
class LogScaleSpace {
 public:
  // `image` must be single-channel CV_32F (normally from NormalizeFrame) with
  // finite values. Runs in `context`'s arena; results do not depend on the
  // thread count.
  static absl::StatusOr<LogScaleSpace> Compute(const cv::Mat& image, const LogScaleOptions& options,
                                               ExecutionContext* context);

  // Blobs above `options.threshold` after overlap pruning, sorted by
  // decreasing response. Fails if the threshold is below response_floor.
  absl::StatusOr<std::vector<Blob>> Detect(const LogDetectOptions& options) const;

  const LogScaleOptions& options() const { return options_; }
  const std::vector<double>& sigmas() const { return sigmas_; }
  int width() const { return width_; }
  int height() const { return height_; }
  // Candidate peaks above response_floor, before thresholding and pruning.
  size_t num_candidates() const { return peaks_.size(); }

  // A peak of the cube; coordinates are integers before pruning.
  struct Peak {
    float response;
    int32_t y;
    int32_t x;
    int32_t scale;
  };
  const std::vector<Peak>& peaks() const { return peaks_; }

 private:
  LogScaleSpace() = default;

  LogScaleOptions options_;
  std::vector<double> sigmas_;
  int width_ = 0;
  int height_ = 0;
  std::vector<Peak> peaks_;  // decreasing response, ties by (y, x, scale)
};

// One-shot detection: Compute() with response_floor = threshold, then Detect().
absl::StatusOr<std::vector<Blob>> DetectBlobsLog(const cv::Mat& image, const LogOptions& options,
                                                 ExecutionContext* context);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_LOG_LOG_DETECTOR_H_
