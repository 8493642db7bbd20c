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
#include "engine/base/geometry.h"
#include "engine/log/gaussian_fit.h"
#include "engine/log/log_detector.h"
#include "engine/physics/rewards.h"

namespace logstar {

// An analysis window as the picture outlines it: its tile and what the
// cache did with it on this frame.
enum class WindowMark { kHit, kTuned, kRetuned };
struct OverlayWindow {
  PixelRegion tile;  // frame pixels
  WindowMark state = WindowMark::kTuned;
};

// The window outlines' colours (BGR): hit steel blue (200, 170, 120), tuned
// (a cache miss) red (40, 40, 230), re-tuned gold (0, 200, 255).
cv::Scalar WindowColour(WindowMark state);

struct OverlayOptions {
  // Output pixels per frame pixel; small frames are enlarged so that the
  // circles stay legible. 0 picks 1 for frames of 512 px or more, else
  // enough to reach about 512 px.
  int zoom = 0;
  bool draw_centers = true;
  // The footer: a black strip below the frame (the frame keeps its place
  // at the top-left, so positions are as without it) that says what the
  // picture shows. Its first line: "frame N" (when frame_number >= 0), the
  // enlargement "x4" (when zoom > 1) and, right-aligned, a white scale bar
  // 4 px thick (when pixel_size_angstrom > 0) of 1, 2 or 5 x 10^k angstrom,
  // the longest such at most a fifth of the picture's width, labelled in
  // angstrom below 1 nm, else in nm. Then a legend: a 12 x 10 px swatch in
  // each drawn mark's colour and its name (atom, amorphous, each
  // sublattice, the window states present), wrapping over as many lines as
  // the width needs; the sublattice legend then moves from the frame's
  // corner into it. Off (the default): the picture is the frame alone.
  bool footer = false;
  int64_t frame_number = -1;
  double pixel_size_angstrom = 0.0;
  // The analysis windows, outlined in WindowColour of their state, under
  // the atoms.
  std::vector<OverlayWindow> windows = {};
  // One Gaussian fit per blob (RefineMode::kGaussian, engine/log/
  // gaussian_fit.h), or empty. Given, a column whose fit succeeded is drawn
  // as its fitted Gaussian's ellipse — semi-axes sigma_x·√2 and sigma_y·√2
  // along `rotation`, as a blob's circle has radius sigma·√2 — instead of
  // the blob's circle, so elongated or split columns show; a column whose
  // fit failed keeps its circle under an orange cross (BGR (0, 165, 255))
  // the size of its sigma, and the legend lists "fit failed". The fits'
  // own x, y are not used: the blob is where the column is drawn.
  std::vector<ColumnFit> fits = {};
};

// The cross over a column whose Gaussian fit failed (OverlayOptions::fits).
inline const cv::Scalar kFitFailedColour(0, 165, 255);

// The height of one line of the footer, output pixels: the footer is a
// whole number of them.
inline constexpr int kFooterLine = 20;

// Renders `frame` (single-channel CV_32F in [0, 1], as from NormalizeFrame)
// in grey with a circle of radius sigma·√2 around every blob (or its fit's
// ellipse, OverlayOptions::fits). Returns CV_8UC3 (BGR, as OpenCV writes
// it); InvalidArgument when options.fits is neither empty nor one per blob.
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
