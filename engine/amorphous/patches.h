// Square patches of an image centred on sub-pixel atom positions.
//
// A patch of odd size w is the w × w grid of samples at (x + i, y + j),
// i, j in [-(w-1)/2, (w-1)/2], read by bilinear interpolation, flattened row
// by row (y outer). Coordinates: x = column, y = row, pixels, origin at the
// centre of the top-left pixel.
//
// Border atoms: a patch is taken only when every sample lies inside the
// frame, x in [0, W - 1] and y in [0, H - 1] (bilinear interpolation needs
// the four surrounding pixels). Atoms closer to the border are dropped and
// reported as such (`kept` lists the atoms that have a patch) — padding by
// reflection would invent structure that the classifier then reads as
// disorder.
//
// Optional per-patch normalisation (zero mean, unit standard deviation)
// removes brightness and contrast differences between patches.
//
// Pure functions; thread-safe.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_PATCHES_H_
#define LOGSTAR_ENGINE_AMORPHOUS_PATCHES_H_

#include <vector>

#include <Eigen/Dense>
#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/physics/rewards.h"

namespace logstar {

struct PatchOptions {
  int size_px = 11;  // odd, >= 3
  bool normalize = false;

  absl::Status Validate() const;
};

// Whether the patch of half-size `half_px` at (x, y) lies inside the frame.
bool PatchInside(int width, int height, double x, double y, int half_px);

// Patches of the atoms at `centers` (one row each, of the atoms listed in
// `kept`, in order) from `image` (single-channel CV_32F, finite).
struct Patches {
  Eigen::MatrixXd values;  // kept.size() × size_px²
  std::vector<int> kept;   // indices into `centers`
};
absl::StatusOr<Patches> ExtractPatches(const cv::Mat& image, absl::Span<const PointXY> centers,
                                       const PatchOptions& options);

// Writes the patch at (x, y) into `out` (size_px² values); the caller checks
// PatchInside first.
void SamplePatch(const cv::Mat& image, double x, double y, int size_px, double* out);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_AMORPHOUS_PATCHES_H_
