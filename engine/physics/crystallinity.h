// Where a frame shows its lattice: the crystalline area that expected column
// counts are taken over (issue 15, item 2). Vacuum, holes, an amorphous
// support film and amorphous material do not hold the columns a prior's
// density describes, so counting them in makes QC pull the count toward
// noise peaks or support atoms.
//
// Method: local periodicity at the frame's own lattice translations.
//  1. The frame is area-resampled so that the nearest-neighbour spacing spans
//     about working_nn_px pixels (nothing finer matters, and the map costs
//     a few ms whatever the frame's size), band-passed — a Gaussian matched
//     to a column (smoothing_nn × spacing) less the local mean
//     (highpass_nn × spacing) — so that a crystal is a zero-mean periodic
//     field and vacuum, a smooth film or a thickness gradient are ~0.
//  2. For each translation t of a, b, a + b and a − b (as measured by
//     MeasureLattice) and each sign, the product h(p)·h(p ± t) is averaged
//     over one unit cell (a box spanned by a and b, which averages the
//     product over exactly one period, so that a lattice whose layers differ
//     — YBCO's along c — gives the same value everywhere) and then over a
//     Gaussian of window_cells × √(cell area): the local covariance at that
//     lag. In a crystal it is the lattice signal's
//     variance S (noise is uncorrelated at a lattice lag, so it does not add
//     and only widens the estimate); where either end is vacuum, noise,
//     amorphous material or support film it is ~0. The larger of the two
//     signs is kept: at an edge one of p ± t lies inside the crystal, so the
//     window average is S × (the window's share of crystal) whatever the
//     lag's length — without it a long translation (YBCO's c = 93 px)
//     would erode the map by half its length. The four translations are
//     averaged (a displaced amorphous column keeps some correlation at one
//     lag but not at all four). The cell is first reduced when its columns
//     show a translation of a half or a third of it (a cell measured two,
//     three or nine times too large, see PrimitiveBasis in the .cc).
//     The covariance, not the normalised correlation, is used: at low noise
//     a window touching any crystal would correlate near 1 (vacuum adds no
//     variance), so the normalised map would grow the crystal by the
//     window's radius; the covariance falls in proportion to the crystal's
//     share of the window at every noise level.
//  3. Threshold. The map's noise (σ) is estimated robustly from the
//     difference of the two signs, which is ~0 in a crystal and pure noise
//     elsewhere (its median absolute deviation over the frame). The
//     crystal's level L is the 75th percentile of the map over the pixels
//     above noise_sigmas × σ whose window lies inside the frame (a window
//     cut by the frame's edge averages a partial cell): the crystal's
//     interior, whatever share of the frame it covers. A pixel is
//     crystalline when its map value reaches max(threshold_fraction × L,
//     noise_sigmas × σ): with threshold_fraction 0.5 the boundary falls
//     where half the window is crystal, i.e. on the crystal's edge.
//  4. Following the contrast (follow_contrast, the default). A particle
//     thins toward its rim, and the map goes as the lattice contrast
//     squared: on the real Pb particle of ../shared/data/real (contrast
//     falling from ~2200 counts at the centre to ~400 at the rim) the
//     threshold of 3 kept 0.24 of the frame, the particle being ~0.48, and
//     102 of its 212 reference columns. So the pixels above that threshold
//     are the crystal's core, and the crystal grows from it through pixels
//     (8-connected) where the lattice still shows: the map at least
//     noise_sigmas × σ and threshold_fraction of its own largest value
//     within local_reach_windows window sigmas (the crystal's level there,
//     whatever it is); columns right there (the band-passed energy over half
//     a spacing at least structure_noise × the white noise's, measured by
//     PixelNoiseStd, and structure_fraction of its largest value within a
//     spacing: the window's tail reaches beyond a particle's last columns,
//     the structure does not); and the lattice holding periodic_share of the
//     local variance less the noise's (amorphous material and a support film
//     have as much structure, little of it at a lattice lag). A grown pixel's
//     threshold is that local one. So the boundary still falls where the
//     window holds half crystal, at the rim's level instead of the centre's;
//     amorphous material or a film away from the crystal stays cut from it by
//     the belt where the crystal's level rules. The Pb particle's map then
//     holds 0.39 of the frame and 144 of the 212 columns (the rest lie at the
//     rim, where the map is under its noise floor).
//  5. The map (in units of each pixel's threshold) is upsampled (bilinear)
//     to the frame and thresholded into a CrystalMask.
//
// Accuracy (tests/engine/physics/crystallinity_test.cc, generated 512²
// frames against crystalline_mask, seeds 21-23 held back from tuning; IoU
// mean at noise 0 / 0.3 / 0.6; with one threshold, before step 4, in
// brackets where it differed by 0.01 or more): nanoparticles of 40 %
// perovskite 0.94 / 0.94 / 0.94, hex 0.96 / 0.96 / 0.96, YBCO 0.93 / 0.93 /
// 0.92 (0.92 / 0.91 / 0.91); of 20 %: perovskite 0.91-0.92, hex 0.95, YBCO
// 0.87-0.89 where a lattice was found; crystal edges 0.93-0.98; particles on
// a support film 0.92-0.96 (YBCO 0.92-0.93 from 0.91-0.92); a crystal 30 %
// amorphous: perovskite 0.96, hex 0.94 (0.95-0.96), YBCO 0.88. A particle
// thinning to 0.15 of its contrast at the rim (seeds 31-32, noise 0.05 and
// 0.15 of the range): 0.85-0.89 (0.48-0.52). YBCO is lowest: its 93 px cell
// makes the window long, and a particle's rim is lost (the share ~0.04 low).
// Cost (one thread): 5 ms on 1024², 24 ms on 2048² with one threshold (the
// band-pass on a copy resampled to ~8 px per spacing, then grids a third of
// the shortest translation fine); following the contrast adds a fifth
// windowed sum (the variance) and the structure map (DISABLED_IouTableAndCost
// prints the ratio; docs/science.md, "The crystalline area", quotes it).
//
// Limits: the map knows one lattice, the frame's. A second crystal of
// another lattice or orientation (SynthScene::kInterface) is not
// crystalline by it; a caller that wants it measures that window's own
// lattice. Contrast that varies across a crystal (thickness) is followed
// (step 4) as far as the lattice shows above the map's noise floor, and
// where it falls by less than half (as its square) over one window sigma:
// a rim thinner than that, and a crystal only joined to the core through
// such a rim, count as not crystalline. A crystal of the same lattice
// beside the particle (a neighbouring particle, a crystalline support)
// joins it where they touch.
//
// Units and coordinates: pixels of the frame; x = column, y = row, origin at
// the centre of the top-left pixel (engine/base/geometry.h).
//
// Thread-safety: MeasureCrystallinity is pure and may run concurrently.
// CrystalMask is immutable after construction; copies share its pixels
// (reference counted) and may be read from any thread.
#ifndef LOGSTAR_ENGINE_PHYSICS_CRYSTALLINITY_H_
#define LOGSTAR_ENGINE_PHYSICS_CRYSTALLINITY_H_

#include <cstdint>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/context.h"
#include "engine/base/geometry.h"

namespace logstar {

struct LatticeMeasurement;

// Which pixels of a frame are crystalline, with O(1) area queries. A view
// may be shifted into the coordinates of a sub-image (Offset), so that one
// mask of the frame serves every window.
class CrystalMask {
 public:
  // An empty mask: holds no pixels, Contains() is false everywhere.
  CrystalMask() = default;

  // From `mask` (CV_8U, nonzero = crystalline), in frame coordinates.
  // InvalidArgument for another type or an empty mask.
  static absl::StatusOr<CrystalMask> FromMask(const cv::Mat& mask);

  // The same mask seen from a sub-image whose top-left pixel is frame pixel
  // (col0, row0): local (x, y) is frame (x + col0, y + row0).
  CrystalMask Offset(int col0, int row0) const;

  // Whether the pixel holding p (local coordinates) is crystalline; false
  // outside the frame.
  bool Contains(const PointXY& p) const;
  // Crystalline pixels of `region` (local coordinates), clipped to the frame.
  int64_t Area(const PixelRegion& region) const;
  // Area(region) / (region.cols × region.rows); 0 for an empty region.
  double Fraction(const PixelRegion& region) const;

  bool empty() const { return mask_.empty(); }
  // The frame's mask (CV_8U, 1 = crystalline), frame coordinates; shares the
  // pixels.
  const cv::Mat& frame_mask() const { return mask_; }

 private:
  cv::Mat mask_;      // CV_8U, 0 or 1
  cv::Mat integral_;  // CV_32S, (rows + 1) × (cols + 1), cv::integral of mask_
  int col0_ = 0;      // frame pixel of local (0, 0)
  int row0_ = 0;
};

struct CrystallinityOptions {
  // The frame is resampled so that the nearest-neighbour spacing spans about
  // this many pixels (never upsampled).
  double working_nn_px = 8.0;  // >= 4
  // Band-pass: Gaussian sigmas as fractions of the nearest-neighbour
  // spacing; the first matches a column's image (columns are 0.15–0.25 of
  // the spacing wide in HAADF), the second is the local mean removed.
  double smoothing_nn = 0.2;  // (0, 1]
  double highpass_nn = 1.0;   // > smoothing_nn, <= 4
  // The covariance is averaged over one unit cell, then over a Gaussian of
  // this sigma in units of √(cell area): wider is steadier under noise,
  // narrower resolves smaller crystals and sharper corners.
  double window_cells = 0.5;  // [0, 4]
  // See the file comment, 3.
  double threshold_fraction = 0.5;  // (0, 1)
  double noise_sigmas = 6.0;        // >= 1
  // See the file comment, 4: the crystal followed where its lattice
  // contrast falls off (false: one threshold for the frame, as before).
  bool follow_contrast = true;
  // Its tests: the map's level nearby is its largest value within this many
  // window sigmas; columns show where the band-passed energy over half a
  // spacing reaches structure_noise × the noise's and structure_fraction of
  // its largest value within a spacing; the lattice holds periodic_share of
  // the local variance less the noise's. Chosen on the generated frames of
  // tests/engine/physics/crystallinity_test.cc (seeds 21-23 and 31-32) and
  // the Pb particle of ../shared/data/real: a reach of 2 sigmas followed
  // too little of it (share 0.27 against 0.39, the particle ~0.48), a share
  // of 0.3 cost 0.02-0.03 of IoU on a crystal 30 % amorphous (hex), 0.5
  // 0.015.
  double local_reach_windows = 1.0;  // (0, 8]
  double structure_noise = 3.0;      // >= 0
  double structure_fraction = 0.3;   // [0, 1)
  double periodic_share = 0.5;       // [0, 1]

  absl::Status Validate() const;
};

struct Crystallinity {
  CrystalMask mask;       // frame coordinates
  double fraction = 0.0;  // share of the frame's pixels that are crystalline
  // The map's figures (covariance of the band-passed frame, in units of its
  // variance over the frame): the crystal's level L, the noise σ, the
  // threshold.
  double level = 0.0;
  double noise = 0.0;
  double threshold = 0.0;
};

// The crystalline area of `frame` (single-channel CV_32F, finite, as passed
// to MeasureLattice) by the lattice `lattice` measured on it (found). The
// result does not depend on `context` (may be null; the translations run in
// parallel in it). InvalidArgument for a bad frame, options, or a lattice
// not found; a frame whose every translation is longer than the frame is
// also InvalidArgument, and so is a frame too small for the cell: under a
// quarter of it lies a window's reach (half the cell's diagonal and two
// window sigmas) from its edges, where the crystal's level is read (YBCO
// needs about 480² px, a perovskite 250²).
absl::StatusOr<Crystallinity> MeasureCrystallinity(const cv::Mat& frame,
                                                   const LatticeMeasurement& lattice,
                                                   const CrystallinityOptions& options = {},
                                                   ExecutionContext* context = nullptr);

// The standard deviation of the frame's white pixel noise (intensity units
// of `frame`, single-channel CV_32F, at least 3 × 3), by Immerkær's
// estimator (Computer Vision and Image Understanding 64, 1996): the mean
// absolute response to a 3 × 3 mask that annihilates every plane and
// quadratic, so that columns a few pixels wide hardly add to it. Every
// second row is used (the estimate needs no more). Correlated noise (scan
// noise, a probe tail) is underestimated. InvalidArgument for a bad frame.
absl::StatusOr<double> PixelNoiseStd(const cv::Mat& frame);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_PHYSICS_CRYSTALLINITY_H_
