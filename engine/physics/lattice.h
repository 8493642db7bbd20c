// The crystal lattice measured from a frame, so that a given PhysicsPrior can
// be checked against what the frame shows and an `auto` prior derived from it
// (issue 15, item 4).
//
// Method.
//  1. Translations. The frame (mean removed, long wavelengths damped by a
//     Gaussian high-pass of highpass_sigma_fraction × its shorter side, so
//     that a particle's or a thickness gradient's envelope does not drown the
//     lattice) is autocorrelated by FFT (cv::dft, zero-padded so lags do not
//     wrap) and normalised per lag by the overlap and by the zero lag, so a
//     perfect translation of an infinite crystal scores 1 minus the noise's
//     share of the variance. A lattice translation maps every column onto
//     another, so its peak is as high as the best; a vector between two
//     different columns maps only some of them and scores less. The
//     autocorrelation's local maxima between min_translation_px and the
//     largest lag (sub-pixel by RefinePositions, engine/log/refine.h) that
//     reach translation_peak_fraction of the highest are the candidate
//     translations; the shortest and the shortest one not parallel to it span
//     the lattice.
//  2. Refinement. Every autocorrelation peak within match_tolerance × |a| of a
//     point i·a + j·b (|i|, |j| small first, the whole search disk last) is
//     assigned to it, and a and b are fitted to all assigned peaks by least
//     squares: the error of a long translation is divided by its length, so
//     the basis is good to a few thousandths of a pixel on synthetic frames.
//     The basis is then Lagrange (Gauss) reduced.
//  3. Verdict. The frame shows a lattice when a and b exist and at least
//     min_matched_fraction of the lattice points in the search disk carry a
//     peak reaching fit_peak_fraction of the basis' height, over at least
//     min_lattice_points points. Pure noise gives random maxima that predict
//     no further ones; amorphous material gives a ring of near neighbours but
//     no long-range order. Either way the result has found = false and a
//     reason; that is not an error.
//  4. Columns. The frame is folded into the unit cell (every pixel averaged
//     with those one translation away), which is nearly noise-free because it
//     averages every cell of the frame, and smoothed by a Gaussian of
//     smoothing_fraction × |a|. Its local maxima that reach min_column_height
//     of the brightest (above the cell's darkest value) are the columns of
//     the cell, sub-pixel by RefinePositions; a cell can hold several columns
//     (YBCO along [100] holds 6, SrTiO3 along [100] 2).
//  5. Derived: the cell area |a × b|, the columns' nearest-neighbour spacing
//     (the shortest distance between two columns of the folded cell,
//     periodically, translations included) and the column density (columns
//     per cell / cell area). Taking the spacing from the folded cell rather
//     than from local maxima of the raw frame keeps noise peaks out of it at
//     any noise level; taking it from the autocorrelation's shortest peak
//     would mix in the central peak's flank when columns are close.
// Density and spacing do not depend on which basis of the lattice is found:
// a cell twice as large folds twice the columns.
//
// Units and coordinates: x = column, y = row, pixels, origin at the centre of
// the top-left pixel; everything measured is in pixels; the *Angstrom /
// *Nm2 helpers convert with a pixel size given by the caller.
//
// Thread-safety: MeasureLattice and the other functions are pure and may run
// concurrently. With an ExecutionContext the fold runs in its arena in fixed
// row blocks combined in a fixed order, so the result does not depend on it.
#ifndef LOGSTAR_ENGINE_PHYSICS_LATTICE_H_
#define LOGSTAR_ENGINE_PHYSICS_LATTICE_H_

#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/context.h"
#include "engine/base/geometry.h"
#include "engine/physics/physics_prior.h"

namespace logstar {

struct LatticeOptions {
  // Largest autocorrelation lag searched: this fraction of the frame's shorter
  // side, at most max_lag_px. Half the side keeps at least half the frame
  // overlapping at every lag; the cap bounds the time on large frames (a
  // 512 px disk holds plenty of cells of any lattice an atomic-resolution
  // frame resolves).
  double max_lag_fraction = 0.5;  // (0, 0.5]
  int max_lag_px = 512;           // >= 8
  // Shortest translation or column spacing considered: below 3 px columns
  // cannot be told apart (PhysicsPrior asks for at least 2 px per spacing).
  double min_translation_px = 3.0;  // >= 1
  // Gaussian high-pass before the autocorrelation, as a fraction of the
  // frame's shorter side; 0 = none.
  double highpass_sigma_fraction = 1.0 / 16.0;  // [0, 1]
  // Candidate translations: the num_candidates highest peaks, among those
  // that reach candidate_peak_fraction of the highest (all of which the fit
  // uses when they lie within match_tolerance × |a| of a lattice point).
  double candidate_peak_fraction = 0.3;  // (0, 1]
  int num_candidates = 16;               // >= 2
  double match_tolerance = 0.15;         // (0, 0.5)
  // Index-2 and -3 neighbours of the lattice: a superlattice whose added
  // points reach this fraction of the lattice's mean autocorrelation is the
  // true lattice; a sublattice whose dropped points do not, too.
  double sublattice_ratio = 0.8;  // (0, 1]
  // Verdict (see the file comment): the lattice points within
  // order_radius_cells × |b| (and the search disk) are checked; a point is
  // ordered when the autocorrelation there reaches order_peak_fraction of the
  // basis'.
  double order_radius_cells = 5.0;    // >= 1
  double order_peak_fraction = 0.3;   // (0, 1]
  double min_ordered_fraction = 0.6;  // (0, 1]
  int min_lattice_points = 6;         // >= 2, in the half disk
  // The basis' correlation in standard deviations of a white-noise frame's
  // autocorrelation at that lag (1 / sqrt(overlap)).
  double min_significance = 6.0;  // >= 0
  // Pixels this many |a| from the frame's edge stay out of the fold (at
  // most an eighth of the frame).
  double edge_margin_cells = 0.5;  // [0, 2]
  // Gaussian smoothing of the folded cell, as a fraction of |a|.
  double smoothing_fraction = 0.06;  // [0, 0.5]
  // A maximum of the folded cell is a column when its prominence reaches
  // this fraction of the brightest column's and noise_sigmas standard
  // deviations of the fold's noise.
  double min_column_height = 0.1;  // (0, 1)
  double noise_sigmas = 5.0;       // >= 0
  // Spacings within this fraction of the shortest are averaged into the
  // nearest-neighbour spacing (see nearest_neighbor_px).
  double nn_merge_fraction = 0.05;  // [0, 0.2]

  absl::Status Validate() const;
};

// One column of the unit cell.
struct LatticeColumn {
  // Where the column sits modulo the lattice, in the frame's coordinates:
  // columns of the crystal lie near position_px + i·a + j·b (exactly, for an
  // undistorted crystal). Inside the cell spanned by a and b from the origin.
  PointXY position_px;
  // Height of the folded cell there above its darkest value, relative to the
  // brightest column (which has 1).
  double relative_height = 0.0;
};

struct LatticeMeasurement {
  // False when the frame shows no lattice; `reason` says why, the verdict's
  // figures (the last block) are filled as far as the search got, and the
  // lattice fields keep their defaults.
  bool found = false;
  std::string reason;

  // The two shortest independent translations, px, Lagrange (Gauss) reduced
  // with the 2-D crystallographic sign convention: |a| <= |b| <= |a + b| <=
  // |a - b|, so gamma, the angle between them, lies in [90°, 120°] (120° for
  // a hexagonal lattice); a.x > 0, or a.x == 0 and a.y > 0; when gamma is 90°,
  // a.x·b.y - a.y·b.x > 0.
  PointXY a;
  PointXY b;
  double cell_area_px2 = 0.0;  // |a × b|
  double gamma_deg = 0.0;      // angle between a and b

  std::vector<LatticeColumn> columns;  // of one cell; brightest first
  int columns_per_cell = 0;
  // The shortest column spacing, periodically (a column's own copies one
  // translation away count). Spacings within nn_merge_fraction of the
  // shortest are averaged: the shortest spacing of a symmetric cell occurs
  // several times (4 Sr-Ti pairs in SrTiO3, 3 bonds of a honeycomb) and the
  // least of several noisy copies would be biased low.
  double nearest_neighbor_px = 0.0;
  double column_density_per_px2 = 0.0;

  // The verdict's figures. `correlation`: the mean normalised
  // autocorrelation at a and b (1 for a noise-free perfect crystal, lowered
  // by noise and disorder); `significance`: it in standard deviations of a
  // white-noise frame's; `ordered_fraction`: the share of the checked
  // lattice points that show the lattice's correlation, in [0, 1].
  double correlation = 0.0;
  double significance = 0.0;
  double ordered_fraction = 0.0;
  int num_lattice_points = 0;  // lattice points checked (half disk)
  double search_radius_px = 0.0;

  // Conversions with a pixel size (Å per pixel, > 0); call only when found.
  double NearestNeighborAngstrom(double pixel_size_angstrom) const;
  double ColumnDensityPerNm2(double pixel_size_angstrom) const;
  ProjectedLattice ToProjectedLattice(double pixel_size_angstrom) const;
};

// Measures the lattice of `frame`: single-channel CV_32F, finite, at least
// 16 × 16 pixels, any intensity scale (normalised or not; the measurement is
// invariant to an affine change of intensity). `context` may be null.
// InvalidArgument for a bad frame or options; a frame without lattice is not
// an error (found = false).
absl::StatusOr<LatticeMeasurement> MeasureLattice(const cv::Mat& frame,
                                                  const LatticeOptions& options = {},
                                                  ExecutionContext* context = nullptr);

// How far a prior may be from the measurement before CheckPrior warns, as
// relative errors; each check is symmetric in the ratio (a value 1.15× too
// large warns like one 1.15× too small). Defaults: a spacing off by more than
// 15 %, a density by more than 1.15² - 1 = 32 % (the same length error, as
// density goes with 1/length²). The measurement itself is good to about 2 %
// (spacing) and 10 % (density) on synthetic frames; the rest allows for
// rounded literature values, strain and a nominal pixel size (calibrations
// of several % are common), so only real mistakes (a wrong unit, cell,
// sublattice or magnification) warn.
struct PriorTolerances {
  double spacing = 0.15;    // > 0
  double density = 0.3225;  // > 0

  absl::Status Validate() const;
};

// One disagreement between a prior and the frame. `given` and `measured` are
// in the field's unit (Å for lengths, per nm² for densities); `measured` uses
// the prior's pixel size, except for pixel_size_angstrom itself.
struct PriorWarning {
  std::string field;  // "pixel_size_angstrom", "nearest_neighbor_angstrom" or
                      // "column_density_per_nm2"
  double given = 0.0;
  double measured = 0.0;
  std::string message;
};

// Compares `prior` (must pass Validate()) with `measurement` (must be found).
// When both the spacing and the density disagree and one pixel size explains
// both (the spacing's pixel-size estimate and the density's agree within
// tolerances.spacing), one warning names pixel_size_angstrom and gives that
// pixel size; otherwise each disagreeing field gets its own warning. Empty
// when the prior agrees. InvalidArgument for an invalid prior, tolerances or
// a measurement without lattice.
absl::StatusOr<std::vector<PriorWarning>> CheckPrior(const PhysicsPrior& prior,
                                                     const LatticeMeasurement& measurement,
                                                     const PriorTolerances& tolerances = {});

// A prior derived from the frame, for `--prior auto`.
struct DerivedPrior {
  // Passes Validate(). With a pixel size: lengths in Å, density per nm², and
  // `lattice` holds the measured cell. Without: the prior is in pixel units,
  // pixel_size_angstrom = 1 so that every "Å" field holds pixels and the
  // density is per 100 px²; the *_px accessors, which are all the rewards
  // use, are right either way.
  PhysicsPrior prior;
  bool pixel_size_known = false;
};

// InvalidArgument naming the field when the measurement found no lattice
// ("lattice: ..." with its reason) or the pixel size is given but not
// positive and finite.
absl::StatusOr<DerivedPrior> DerivePrior(const LatticeMeasurement& measurement,
                                         std::optional<double> pixel_size_angstrom = std::nullopt);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_PHYSICS_LATTICE_H_
