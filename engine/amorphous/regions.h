// Amorphous regions from classified atoms: a mask, its connected components
// and their shape.
//
// Each amorphous atom paints a filled disk of radius `radius_px` (tied by the
// caller to the nearest-neighbour distance, so that neighbouring amorphous
// atoms touch) about its position rounded to the nearest pixel: the pixels
// within Euclidean distance radius_px. The union is closed morphologically
// with a Euclidean disk of radius `closing_radius_px` (gaps narrower than the
// disk fill, the outline is smoothed) and split into 8-connected components
// (OpenCV). The closing is computed by separable exact disk dilations (the
// erosion is the dilation of the complement), pixel for pixel the closing by
// the digital disk {|v| <= closing_radius_px}, in time linear in the pixels
// of the centres' bounding box whatever the radii. The frame's edge does not
// erode (regions are not glued to it): the closing is that of the unbounded
// plane, restricted to the frame.
//
// Per region: area (pixel count), perimeter (length of the outer contour
// through boundary pixel centres, cv::arcLength), centroid, bounding box and
// contour. For the set: area fraction A / (W H), normalised perimeter
// P / sqrt(W H) (the reference's normalisation) and the isoperimetric
// quotient Q = 4 π A / P² over all regions (1 for one disk, about 1/n for n
// equal disks, 0 for no region), the scale-free form of compactness A / P².
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel. Pure functions; thread-safe.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_REGIONS_H_
#define LOGSTAR_ENGINE_AMORPHOUS_REGIONS_H_

#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/context.h"
#include "engine/physics/rewards.h"

namespace logstar {

struct RegionOptions {
  double radius_px = 10.0;          // > 0
  double closing_radius_px = 10.0;  // >= 0

  absl::Status Validate() const;
};

struct Region {
  // Identity across the frames of a stream (engine/amorphous/region_tracker.h);
  // 0 = none (PaintRegions and DescribeRegions leave it 0).
  int id = 0;
  double area_px2 = 0.0;
  double perimeter_px = 0.0;
  PointXY centroid;
  PixelRegion bbox;
  std::vector<PointXY> contour;  // outer boundary, pixel centres, in order
};

struct RegionSet {
  cv::Mat mask;  // CV_8U, 255 inside a region
  std::vector<Region> regions;
  double area_fraction = 0.0;   // total area / (W H)
  double perimeter_norm = 0.0;  // total perimeter / sqrt(W H)
  double isoperimetric = 0.0;   // 4 π A / P² over all regions; 0 without regions
};

// `atoms` are the amorphous atoms only. An empty list gives an empty set.
// With a context (not owned) the closing runs in its arena; the result does
// not depend on it.
absl::StatusOr<RegionSet> PaintRegions(int width, int height, absl::Span<const PointXY> atoms,
                                       const RegionOptions& options,
                                       ExecutionContext* context = nullptr);

// The regions (8-connected components) of a given mask and their shape, as
// above; `mask` is CV_8U, non-zero = inside (e.g. a truth mask). The
// returned mask is a copy with 255 inside.
absl::StatusOr<RegionSet> DescribeRegions(const cv::Mat& mask);

// `set` without the regions whose `keep` flag (one per region) is false:
// their pixels leave the mask and the rest is described afresh, as above
// (ids are not kept). InvalidArgument when `keep` has another length.
absl::StatusOr<RegionSet> DropRegions(const RegionSet& set, const std::vector<bool>& keep);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_AMORPHOUS_REGIONS_H_
