// Pictures of what was found: detections drawn on the frame, coloured by
// amorphous flag and sublattice, with region outlines and a legend.
//
// Coordinates: blobs and outlines in frame pixels (x = column, y = row,
// origin at the centre of the top-left pixel). Thread-safety: pure
// functions; may run concurrently.
#ifndef LOGSTAR_ENGINE_IMAGE_OVERLAY_H_
#define LOGSTAR_ENGINE_IMAGE_OVERLAY_H_

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/log/log_detector.h"
#include "engine/physics/rewards.h"

namespace logstar {

struct OverlayOptions {
  // Output pixels per frame pixel; small frames are enlarged so that the
  // circles stay legible. 0 picks 1 for frames of 512 px or more, else
  // enough to reach about 512 px.
  int zoom = 0;
  bool draw_centers = true;
};

// Renders `frame` (single-channel CV_32F in [0, 1], as from NormalizeFrame)
// in grey with a circle of radius sigma·√2 around every blob. Returns CV_8UC3
// (BGR, as OpenCV writes it).
absl::StatusOr<cv::Mat> RenderBlobOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                          const OverlayOptions& options);

// What the amorphous stage adds to the picture (engine/amorphous/amorphous.h).
struct AmorphousMarks {
  // One flag per blob, or empty: amorphous blobs are drawn in magenta
  // instead of green.
  std::vector<bool> amorphous;
  // Region outlines in frame pixels (e.g. Region::contour), each drawn as a
  // closed yellow polygon.
  std::vector<std::vector<PointXY>> outlines;
  // One id per outline (Region::id), or empty: each outline is labelled
  // "#id" in its colour at its topmost point (ids < 1 are not labelled).
  std::vector<int> ids;
  // The stage's verdict was uncertain (AmorphousVerdict): the outlines are
  // drawn dashed in orange instead of solid yellow — "may be here", not
  // "is here" — and a banner across the top reads "amorphous: UNCERTAIN"
  // followed by `uncertain_label` (e.g. the verdict's code), also when there
  // is no outline: "0 regions" is then "cannot tell", not "crystalline".
  bool uncertain = false;
  std::string uncertain_label;
};

// As RenderBlobOverlay, with amorphous blobs coloured and region outlines
// drawn. InvalidArgument when `marks.amorphous` is neither empty nor one flag
// per blob, or `marks.ids` neither empty nor one id per outline.
absl::StatusOr<cv::Mat> RenderAmorphousOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                               const AmorphousMarks& marks,
                                               const OverlayOptions& options);

// What the sublattice assignment adds to the picture
// (engine/physics/sublattice.h, SublatticeAssignment).
struct SublatticeMarks {
  // One label per blob (an index into the prior's sublattices, -1 = not
  // assigned), or empty. Sublattice i's circles are drawn in
  // SublatticeColour(i); unassigned blobs keep the ordinary green, and
  // amorphous blobs (AmorphousMarks) stay magenta whatever their label.
  std::vector<int> labels;
  // The sublattices' names, in the prior's order, or empty. When given, a
  // legend in the bottom-left corner shows each name in its colour.
  std::vector<std::string> names;
};

// The palette, in the prior's order (brightest first), repeating after
// four: cyan, blue, white, violet (BGR (255, 255, 0), (255, 100, 0), (255,
// 255, 255), (211, 0, 148)). Chosen apart from the overlay's other marks:
// green (an atom without sublattice), magenta (amorphous), yellow and
// orange (region outlines), red (centres); cyan and blue differ in
// lightness as well as hue, so they stay apart for colour-blind readers.
cv::Scalar SublatticeColour(int index);

// Everything at once: the blobs coloured by sublattice (and amorphous flag),
// region outlines, the uncertain banner and the legend. InvalidArgument for
// marks whose sizes do not match the blobs or outlines (as
// RenderAmorphousOverlay), labels below -1, or labels outside `names` when
// names are given. RenderBlobOverlay and RenderAmorphousOverlay are this
// with empty marks.
absl::StatusOr<cv::Mat> RenderOverlay(const cv::Mat& frame, absl::Span<const Blob> blobs,
                                      const AmorphousMarks& amorphous,
                                      const SublatticeMarks& sublattices,
                                      const OverlayOptions& options);

// Writes an 8-bit image as PNG; errors name the path.
absl::Status WritePng(const std::string& path, const cv::Mat& image);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_IMAGE_OVERLAY_H_
