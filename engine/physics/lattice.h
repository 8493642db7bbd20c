// The crystal lattice measured from a frame, so that a given PhysicsPrior can
// be checked against what the frame shows and an `auto` prior derived from it
// (issue 15, item 4).
//
// Method.
//  1. Autocorrelation. The frame, its long wavelengths removed by a wide
//     Gaussian high-pass (highpass_sigma_fraction × its shorter side, so that
//     a particle's or a thickness gradient's envelope does not drown the
//     lattice), is autocorrelated by FFT (cv::dft, zero-padded so lags do not
//     wrap) and normalised per lag by the overlap and by the zero lag: a
//     translation of a noise-free crystal scores 1, noise lowers every lag
//     alike. A lattice translation maps every column onto another, so all of
//     them score alike; a vector between two different columns, or a pseudo
//     translation that maps most columns onto columns (YBCO's near c/3, the
//     centre of a cell whose two columns differ), scores less. Local maxima
//     between min_translation_px and the largest lag are refined to sub-pixel
//     by RefinePositions (engine/log/refine.h).
//     A frame whose shorter side is k >= 2 times 1024 px is searched (steps
//     1-3) on a copy binned k × k, its high-pass blurred on a coarser copy:
//     at 2048² a fifth of the full-resolution cost (issue 21), with the cell
//     as precise (lattice_test: 2048² frames to 0.05 %, every column over
//     the frame within 0.75 px of its lattice point). It stays at full
//     resolution when the binned structure, less the white noise, no longer
//     correlates 0.75 one bin away (columns narrower than about a bin) or
//     the binned search's shortest translation spans under 8 bins. The
//     verdict's figures are then those of the binned field; step 4 always
//     folds the full-resolution frame.
//  2. Which lattice. Every pair of the strongest peaks spans a lattice,
//     scored by its mean autocorrelation over its lags up to three times its
//     longer basis vector; the finest lattice within 0.9 of the best score
//     is then settled: a superlattice L + Z·w (w a peak at a point of L / q,
//     q <= 12, whose basis vectors each stand apart from the zero lag: the
//     autocorrelation at half of one is lower than at it, so a ripple on the
//     zero lag's shoulder spans nothing) whose added points score at least
//     sublattice_ratio of what L's own points around them score is finer
//     and true (a multiple of the cell scores as well as the cell itself);
//     an index-2 or -3 sublattice whose dropped points score below that
//     ratio held a pseudo translation
//     (each added or dropped point is compared with the bilinear
//     interpolation of the autocorrelation at the corners of the coarser
//     cell around it, which cancels the fall-off with the lag of a crystal
//     that fills part of the frame). After each step a and b are fitted by
//     weighted least squares to every peak within match_tolerance × |a| of a
//     lattice point (the whole disk, reached in growing steps): the error of
//     a long translation is divided by its length, so the basis is good to a
//     few hundredths of a pixel. The basis is Lagrange (Gauss) reduced. On a
//     frame smaller than 1024 px it is refitted once more without the edge
//     margin of step 4.
//  3. Verdict, over the lattice points in the checked half disk
//     (order_radius_cells × |b|, at most the search disk). The frame shows a
//     lattice when (a) their mean autocorrelation is at least
//     min_significance standard deviations of what a frame without lattice
//     gives: by Bartlett's formula a lag's estimate spreads by sqrt(A / N)
//     for N overlapping pixels and A the frame's correlation area (Σ ρ² over
//     the autocorrelation's central peak: 1 for white noise, about a
//     column's area for amorphous material, whose chance correlations far
//     out are that much stronger), and a mean over n points by 1 / sqrt(n)
//     of that; (b) there are at least min_lattice_points of them; and (c) at
//     least min_ordered_fraction of them reach order_peak_fraction of the
//     basis' correlation times the envelope there: the autocorrelation of
//     the frame's local structure energy (high-passed frame squared over a
//     cell, less the white noise), relative to its value at the basis, which
//     is 1 for a crystal filling the frame and a particle's overlap with
//     itself for one that does not (points where it is under min_envelope
//     are not judged). Without it a crystal of a fifth of the frame failed
//     (c) for its size alone. Noise and vacuum fail (a); amorphous material,
//     which correlates with itself at the nearest-neighbour distance but not
//     several cells away, fails (a) or (c). Otherwise the result has
//     found = false and a reason; that is not an error. Measured: white
//     noise reaches at most 2.7 (40 frames of 256² and 512²), a random
//     packing of columns at most 7.6 (80 frames), the generated crystals at
//     noise <= 0.6 at least 31 (256²), the real images at least 37.
//  4. Columns. The frame (less a margin of edge_margin_cells × |a| at its
//     edges, where a generated frame lacks the tails of the columns outside
//     it) is folded into the unit cell: every pixel is averaged into a grid
//     of fractional cell coordinates, so the cell is nearly noise-free, and
//     drawn in pixels. The brightest column's width w (its half width at
//     half height) sets the smoothing (smoothing_fraction × w) under which
//     the cell's local maxima are found; a maximum is a column when its
//     height above the cell's floor reaches min_column_height of the
//     brightest's and its topographic prominence noise_sigmas × the fold's
//     noise (half the standard deviation of the difference between the folds
//     of two interleaved halves of the frame). The columns' positions come
//     from a Levenberg-Marquardt fit of periodic Gaussians (one per column,
//     own amplitude and width, common background) to the unsmoothed cell,
//     which stays unbiased where columns overlap (the maximum of a faint
//     column beside a bright one is pulled towards it); when the fit wanders
//     off, from paraboloid fits of the tops (RefinePositions). A cell can
//     hold several columns (YBCO along [100] 6, SrTiO3 along [100] or [110]
//     2 visible).
//  5. Derived: the cell area |a × b|, the nearest-neighbour spacing (the
//     shortest distance between columns of the folded cell, periodically,
//     see nearest_neighbor_px) and the column density (columns per cell /
//     cell area). Taking the spacing from the folded cell rather than from
//     local maxima of the raw frame keeps noise peaks out of it at any noise
//     level; the autocorrelation's shortest peak would mix in the central
//     peak's flank when columns are close, and that of different columns.
// Density and spacing do not depend on which basis of the lattice is found:
// a cell twice as large folds twice the columns.
//
// Accuracy (tests/engine/physics/lattice_test.cc, generated 256² frames,
// seeds held back from tuning): at noise <= 0.6 the spacing is within 1.7 %
// (ybco; perovskite and hex within 0.3 %) and the density within 1.2 %; on
// 512² within 0.6 % and 0.2 %. YBCO's faint Cu columns set its precision
// (near the Cramér-Rao bound of its ~17 cells at noise 0.6); at noise 0.9
// on 256² they can drop below the fold's noise and the density then comes
// out low. Frames a third amorphous still show their lattice on 9 of 10
// seeds, the disorder adding to the noise.
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
#include "absl/types/span.h"
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
  // Settling the cell (see the file comment, 2): a superlattice whose added
  // points reach this fraction of what the lattice's own points around them
  // score is finer and true; a sublattice whose dropped points stay below
  // it held a pseudo translation. Measured: true translations 0.9-1.0,
  // YBCO's pseudo translation (near c/3) 0.64-0.82.
  double sublattice_ratio = 0.85;  // (0, 1]
  // Verdict (see the file comment): the lattice points within
  // order_radius_cells × |b| (and the search disk) are checked; a point is
  // ordered when the autocorrelation there reaches order_peak_fraction of the
  // basis'.
  double order_radius_cells = 5.0;    // >= 1
  double order_peak_fraction = 0.3;   // (0, 1]
  double min_ordered_fraction = 0.6;  // (0, 1]
  // Lattice points where the structure's own extent (a particle's overlap
  // with itself moved by the lag) leaves less than this share of the
  // correlation at the basis are not judged for (c).
  double min_envelope = 0.25;  // (0, 1]
  int min_lattice_points = 6;  // >= 2, in the half disk
  // See the file comment, (a).
  double min_significance = 12.0;  // >= 0
  // Pixels this many |a| from the frame's edge stay out of the fold (at
  // most an eighth of the frame).
  double edge_margin_cells = 0.5;  // [0, 2]
  // Gaussian smoothing of the folded cell for finding its columns, as a
  // fraction of the brightest column's width (its Gaussian sigma).
  double smoothing_fraction = 0.5;  // [0, 2]
  // A maximum of the folded cell is a column when its height above the
  // cell's floor reaches min_column_height of the brightest column's and its
  // topographic prominence noise_sigmas standard deviations of the fold's
  // noise.
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
  // The column's peak height above the cell's background (the fitted
  // Gaussian's amplitude), relative to the brightest column's, which is 1:
  // what sublattices of different brightness tell apart by.
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

  // The verdict's figures (see the file comment, 3). `correlation`: the mean
  // normalised autocorrelation at a and b (1 for a noise-free perfect
  // crystal, lowered by noise and disorder); `significance`: the checked
  // lattice points' mean in standard deviations of a frame without lattice;
  // `ordered_fraction`: the share of the checked points that show the
  // lattice's correlation, in [0, 1].
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

// The shortest spacing between the columns at `positions` of a crystal
// whose translations are a and b (any basis of the lattice; a != 0, b not
// parallel to a), counted periodically: a column's own copies one
// translation away are included. Spacings within merge_fraction of the least
// are averaged (for a measured cell, whose symmetric copies differ by noise;
// 0 for exact positions). In the units of the arguments (px or Å). The rule
// MeasureLattice reports nearest_neighbor_px by, for tables of known cells.
double PeriodicNearestNeighbor(PointXY a, PointXY b, absl::Span<const PointXY> positions,
                               double merge_fraction = 0.0);

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
// density goes with 1/length²). The measurement itself is good to 2 %
// (spacing) and about 1 % (density) on generated frames and to 3 % and 1 %
// against the real images' reference positions; the rest allows for rounded
// literature values, strain and a nominal pixel size (calibrations off by
// several % are common: the CsPbBr3 image's is thought 12 % low), so only
// real mistakes (a wrong unit, cell, sublattice or magnification) warn.
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
// Empty when the prior agrees. Otherwise, in this order:
//  * the given density and spacing are those of the brightest k of the n
//    columns of the cell (a prior for one sublattice, e.g. SrTiO3's A sites):
//    one warning on column_density_per_nm2 that says so (a pixel size that
//    would also explain it is named in the message);
//  * both disagree and one pixel size explains both (the spacing's and the
//    density's estimates of it agree within tolerances.spacing): one warning
//    on pixel_size_angstrom giving that pixel size;
//  * otherwise a warning per disagreeing field (nearest_neighbor_angstrom,
//    column_density_per_nm2).
// InvalidArgument for an invalid prior or tolerances, or a measurement
// without lattice.
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
