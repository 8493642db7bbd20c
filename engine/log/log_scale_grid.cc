#include "engine/log/log_scale_grid.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/log/log_internal.h"
#include "engine/base/status_macros.h"

namespace logstar {

absl::Status LogGridOptions::Validate() const {
  if (!(std::isfinite(min_sigma) && min_sigma > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grid min_sigma must be positive and finite, got ", min_sigma));
  }
  if (!(std::isfinite(max_sigma) && max_sigma >= min_sigma && max_sigma <= 256.0)) {
    return absl::InvalidArgumentError(absl::StrCat("grid max_sigma must be in [min_sigma (",
                                                   min_sigma, "), 256] px, got ", max_sigma));
  }
  if (!(spacing > 0.0 && spacing <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grid spacing must be in (0, 0.5], got ", spacing));
  }
  if (!(std::isfinite(response_floor) && response_floor >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grid response_floor must be finite and >= 0, got ", response_floor));
  }
  return absl::OkStatus();
}

absl::StatusOr<LogScaleGrid> LogScaleGrid::Compute(const cv::Mat& image,
                                                   const LogGridOptions& options,
                                                   ExecutionContext* context) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  LOGSTAR_RETURN_IF_ERROR(internal::CheckLogImage(image));

  LogScaleGrid grid;
  grid.options_ = options;
  grid.width_ = image.cols;
  grid.height_ = image.rows;
  // Geometric: a fixed relative error whatever the scale.
  const double ratio = 1.0 + options.spacing;
  const int num =
      1 + static_cast<int>(
              std::ceil(std::log(options.max_sigma / options.min_sigma) / std::log(ratio) - 1e-9));
  for (int i = 0; i < num; ++i) grid.sigmas_.push_back(options.min_sigma * std::pow(ratio, i));

  int max_radius = 0;
  const std::vector<internal::ScaleKernel> kernels =
      internal::MakeKernels(grid.sigmas_, &max_radius);
  const cv::Mat frame = internal::InPaddedLayout(image);

  using internal::kBandRows;
  const int num_bands = (image.rows + kBandRows - 1) / kBandRows;
  grid.bands_.resize(num_bands);
  // Candidates per band and grid sigma, merged in band order below.
  std::vector<std::vector<std::vector<Candidate>>> band_candidates(
      num_bands, std::vector<std::vector<Candidate>>(num));
  const float floor = static_cast<float>(options.response_floor);
  try {
    const internal::PlaneMaker maker(frame, max_radius);
    const int lanes = maker.fns().lanes;
    context->ParallelFor(num_bands, [&](int b) {
      thread_local internal::BandScratch scratch;
      thread_local std::vector<int> hits;
      const internal::Band band =
          maker.MakeBand(b * kBandRows, std::min((b + 1) * kBandRows, image.rows));
      BandPlanes& out = grid.bands_[b];
      out.y0 = band.y0, out.y1 = band.y1, out.ry0 = band.ry0, out.nrows = band.nrows;
      out.cols = band.cols;
      out.plane_size = maker.PlaneSize(band);
      // Candidate scans read a vector past a plane's last row.
      out.planes.resize(out.plane_size * num + lanes);
      maker.Prepare(band, scratch);
      hits.resize(static_cast<size_t>(image.cols) * band.cols);
      for (int g = 0; g < num; ++g) {
        float* plane = out.planes.data() + out.plane_size * g;
        maker.ComputePlane(kernels[g], band, scratch, plane);
        const int n = maker.fns().plane_candidates(plane, image.cols, band.cols, band.nrows, floor,
                                                   hits.data());
        std::vector<Candidate>& list = band_candidates[b][g];
        for (int i = 0; i < n; ++i) {
          const int x = hits[i] / band.cols;
          const int y = band.ry0 + hits[i] % band.cols;
          if (y >= band.y0 && y < band.y1) list.push_back({plane[hits[i]], y, x});
        }
      }
    });
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("LoG sigma grid failed: ", e.what()));
  }

  grid.candidates_.resize(num);
  // Thousands of candidates per sigma at a low floor: the sorts are a tenth
  // of the grid's time, so they run in parallel too.
  context->ParallelFor(num, [&](int g) {
    std::vector<Candidate>& list = grid.candidates_[g];
    for (int b = 0; b < num_bands; ++b) {
      list.insert(list.end(), band_candidates[b][g].begin(), band_candidates[b][g].end());
    }
    std::sort(list.begin(), list.end(), [](const Candidate& a, const Candidate& b) {
      if (a.response != b.response) return a.response > b.response;
      if (a.y != b.y) return a.y < b.y;
      return a.x < b.x;
    });
  });
  return grid;
}

const float* LogScaleGrid::Plane(int band, int grid_index) const {
  const BandPlanes& b = bands_[band];
  return b.planes.data() + b.plane_size * grid_index;
}

absl::StatusOr<std::vector<Blob>> LogScaleGrid::Detect(const LogScaleOptions& scale,
                                                       const LogDetectOptions& detect) const {
  LOGSTAR_ASSIGN_OR_RETURN(std::vector<Blob> blobs, Peaks(scale, detect));
  return internal::PruneBlobs(std::move(blobs), detect.overlap);
}

absl::StatusOr<std::optional<std::vector<Blob>>> LogScaleGrid::DetectAtMost(
    const LogScaleOptions& scale, const LogDetectOptions& detect, const PixelRegion& region,
    size_t max_blobs) const {
  LOGSTAR_ASSIGN_OR_RETURN(std::vector<Blob> blobs, Peaks(scale, detect));
  // Only a flood of peaks can exceed the limit; the bound is not free.
  if (blobs.size() > max_blobs) {
    const double x_min = region.col0 - 0.5, x_end = region.col0 + region.cols - 0.5;
    const double y_min = region.row0 - 0.5, y_end = region.row0 + region.rows - 0.5;
    if (internal::PrunedCountLowerBound(blobs, detect.overlap, x_min, x_end, y_min, y_end) >
        max_blobs) {
      return std::nullopt;
    }
  }
  return internal::PruneBlobs(std::move(blobs), detect.overlap);
}

absl::StatusOr<std::vector<Blob>> LogScaleGrid::Peaks(const LogScaleOptions& scale,
                                                      const LogDetectOptions& detect) const {
  LOGSTAR_RETURN_IF_ERROR(scale.Validate());
  LOGSTAR_RETURN_IF_ERROR(detect.Validate());
  if (detect.threshold < options_.response_floor) {
    return absl::FailedPreconditionError(absl::StrCat("threshold ", detect.threshold,
                                                      " is below the grid's response_floor ",
                                                      options_.response_floor));
  }
  const double log_ratio = std::log(1.0 + options_.spacing);
  std::vector<int> grid_index;
  for (double sigma : scale.Sigmas()) {
    const double pos = std::log(sigma / options_.min_sigma) / log_ratio;
    const int g = static_cast<int>(std::lround(pos));
    if (pos < -0.5 - 1e-9 || pos > static_cast<double>(sigmas_.size()) - 0.5 + 1e-9) {
      return absl::OutOfRangeError(absl::StrCat("sigma ", sigma, " px is outside the grid [",
                                                sigmas_.front(), ", ", sigmas_.back(), "]"));
    }
    const int clamped = std::clamp(g, 0, static_cast<int>(sigmas_.size()) - 1);
    if (grid_index.empty() || grid_index.back() != clamped) grid_index.push_back(clamped);
  }

  const float threshold = static_cast<float>(detect.threshold);
  const int eb = scale.exclude_border;
  const int num_scales = static_cast<int>(grid_index.size());
  std::vector<LogScaleSpace::Peak> peaks;
  for (int k = 0; k < num_scales; ++k) {
    for (const Candidate& c : candidates_[grid_index[k]]) {
      if (!(c.response > threshold)) break;
      if (c.y < eb || c.y >= height_ - eb || c.x < eb || c.x >= width_ - eb) continue;
      const int b = c.y / internal::kBandRows;
      const BandPlanes& band = bands_[b];
      const internal::Band geometry{band.y0, band.y1, band.ry0, band.nrows, band.cols};
      const float* below = k > 0 ? Plane(b, grid_index[k - 1]) : nullptr;
      const float* above = k + 1 < num_scales ? Plane(b, grid_index[k + 1]) : nullptr;
      if (internal::IsPeak3x3x3(c.response, below, Plane(b, grid_index[k]), above, geometry, width_,
                                c.x, c.y - band.ry0)) {
        peaks.push_back({c.response, c.y, c.x, k});
      }
    }
  }
  std::sort(peaks.begin(), peaks.end(), internal::PeakBefore);
  std::vector<Blob> blobs;
  blobs.reserve(peaks.size());
  for (const LogScaleSpace::Peak& p : peaks) {
    blobs.push_back(Blob{static_cast<double>(p.x), static_cast<double>(p.y),
                         sigmas_[grid_index[p.scale]], p.response, p.scale});
  }
  return blobs;
}

}  // namespace logstar
