#include "engine/physics/rewards.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include <nanoflann.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/physics/physics_prior.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

// nanoflann's dataset adaptor over the atoms of one region.
struct RegionCloud {
  std::vector<PointXY> points;

  size_t kdtree_get_point_count() const { return points.size(); }
  double kdtree_get_pt(size_t index, size_t dim) const {
    return dim == 0 ? points[index].x : points[index].y;
  }
  // No precomputed bounding box: let nanoflann compute it.
  template <class BBox>
  bool kdtree_get_bbox(BBox& /*bbox*/) const {
    return false;
  }
};

using KdTree = nanoflann::KDTreeSingleIndexAdaptor<
    nanoflann::L2_Simple_Adaptor<double, RegionCloud, double, size_t>, RegionCloud, /*DIM=*/2,
    size_t>;

absl::Status ValidateRegion(const PixelRegion& region) {
  if (region.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("region.cols must be positive, got ", region.cols));
  }
  if (region.rows <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("region.rows must be positive, got ", region.rows));
  }
  return absl::OkStatus();
}

// Number of atoms whose summed distance to their `k` nearest other atoms is
// below `ds_px`. The caller guarantees more than k points.
int CountErroneous(const RegionCloud& cloud, int k, double ds_px) {
  const KdTree tree(/*dimensionality=*/2, cloud, nanoflann::KDTreeSingleIndexAdaptorParams(10));
  const size_t num_query = static_cast<size_t>(k) + 1;
  std::vector<size_t> indices(num_query);
  std::vector<double> dist2(num_query);
  int count = 0;
  for (size_t i = 0; i < cloud.points.size(); ++i) {
    const double query[2] = {cloud.points[i].x, cloud.points[i].y};
    const size_t found = tree.knnSearch(query, num_query, indices.data(), dist2.data());
    // Drop exactly one self-match, identified by index: an exact duplicate
    // also sits at distance 0 but is a genuine (suspicious) neighbour. When
    // more than k duplicates tie at 0, self may be crowded out of the list;
    // then the farthest entry goes, which leaves the same k distances.
    size_t skip = found - 1;
    for (size_t j = 0; j < found; ++j) {
      if (indices[j] == i) {
        skip = j;
        break;
      }
    }
    double sum = 0.0;
    for (size_t j = 0; j < found; ++j) {
      if (j != skip) sum += std::sqrt(dist2[j]);
    }
    if (sum < ds_px) ++count;
  }
  return count;
}

}  // namespace

absl::Status RewardOptions::Validate() const {
  if (!std::isfinite(ds_factor) || ds_factor <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ds_factor must be positive and finite, got ", ds_factor));
  }
  if (num_neighbors < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_neighbors must be at least 1, got ", num_neighbors));
  }
  return absl::OkStatus();
}

absl::StatusOr<Rewards> ComputeRewards(absl::Span<const PointXY> atoms, const PixelRegion& region,
                                       const PhysicsPrior& prior, const RewardOptions& options) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  LOGSTAR_RETURN_IF_ERROR(ValidateRegion(region));

  // Bounds in double so that col0 + cols cannot overflow int.
  const double x_min = static_cast<double>(region.col0) - 0.5;
  const double x_end = static_cast<double>(region.col0) + region.cols - 0.5;
  const double y_min = static_cast<double>(region.row0) - 0.5;
  const double y_end = static_cast<double>(region.row0) + region.rows - 0.5;

  RegionCloud cloud;
  for (size_t i = 0; i < atoms.size(); ++i) {
    const PointXY& p = atoms[i];
    // A NaN would silently fall outside every region and vanish from QC.
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) {
      return absl::InvalidArgumentError(
          absl::StrCat("atoms[", i, "] has non-finite coordinates (", p.x, ", ", p.y, ")"));
    }
    if (p.x >= x_min && p.x < x_end && p.y >= y_min && p.y < y_end) cloud.points.push_back(p);
  }
  if (cloud.points.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("region holds ", cloud.points.size(), " atoms, more than an int can count"));
  }

  Rewards rewards;
  rewards.num_found = static_cast<int>(cloud.points.size());
  rewards.num_expected = prior.ColumnDensityPerPx2() * static_cast<double>(region.cols) *
                         static_cast<double>(region.rows);
  rewards.ds_px =
      static_cast<double>(options.num_neighbors) * options.ds_factor * prior.NearestNeighborPx();
  rewards.qc = std::abs(rewards.num_found - rewards.num_expected) / rewards.num_expected;
  if (cloud.points.size() > static_cast<size_t>(options.num_neighbors)) {
    rewards.num_erroneous = CountErroneous(cloud, options.num_neighbors, rewards.ds_px);
  }
  rewards.er = rewards.num_erroneous / rewards.num_expected;
  return rewards;
}

}  // namespace logstar
