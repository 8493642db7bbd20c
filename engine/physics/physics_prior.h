// PhysicsPrior: what is known about the sample before looking at a frame.
//
// The rewards that tune the detector (engine/physics/rewards.h) compare detections
// with this prior: how many atomic columns a region should hold and how close
// two columns can plausibly be. Lengths are in ångström, densities per nm² of
// projected area; the *_px accessors convert with pixel_size_angstrom.
#ifndef LOGSTAR_ENGINE_PHYSICS_PHYSICS_PRIOR_H_
#define LOGSTAR_ENGINE_PHYSICS_PHYSICS_PRIOR_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace logstar {

// A 2-D projected unit cell: the column density is columns_per_cell divided
// by the cell area a * b * sin(gamma).
struct ProjectedLattice {
  double a_angstrom = 0.0;
  double b_angstrom = 0.0;
  double gamma_deg = 90.0;  // angle between a and b, in (0, 180)
  double columns_per_cell = 0.0;

  double CellAreaAngstrom2() const;
  double ColumnDensityPerNm2() const;
};

// One sublattice of the columns (e.g. the A and B sites of a perovskite):
// columns of different brightness that the prior tells apart.
struct SublatticePrior {
  // Unique within the prior, not empty; letters, digits, '_' and '-' only
  // ("A", "Sr", "Ti-O"), so that it needs no quoting in flags and files.
  std::string name;
  // This sublattice's visible columns per nm²; the sublattices' densities
  // add up to the prior's column density.
  double column_density_per_nm2 = 0.0;
  // Peak brightness relative to the brightest sublattice (which has 1), in
  // (0, 1]; 0 = not known, only the order (sublattices are listed brightest
  // first).
  double relative_brightness = 0.0;
};

struct PhysicsPrior {
  // Edge length of one (square) pixel.
  double pixel_size_angstrom = 0.0;

  // Visible atomic columns per nm² of projected area. Give this, or a
  // lattice it is derived from, or both (then they must agree within 5 %).
  std::optional<double> column_density_per_nm2;
  std::optional<ProjectedLattice> lattice;

  // Smallest plausible distance between two projected columns.
  double nearest_neighbor_angstrom = 0.0;

  // Empty: the columns are of one kind. Otherwise at least two, brightest
  // first, whose densities add up to the column density (within 5 %).
  std::vector<SublatticePrior> sublattices;

  // Checks that every field is finite and positive and that the fields are
  // consistent with each other. Errors name the offending field
  // ("sublattices[1].relative_brightness must be ..."). Sublattices: none or
  // at least 2; names unique, not empty, [A-Za-z0-9_-]; densities positive,
  // adding up to the column density within 5 %; relative_brightness 0
  // (unknown) or in (0, 1], the first 1 or 0, the known ones non-increasing.
  absl::Status Validate() const;

  // Derived quantities; call only on a prior that passed Validate().
  double ColumnDensityPerNm2() const;
  double ColumnDensityPerPx2() const;
  double NearestNeighborPx() const;
  double PxPerAngstrom() const { return 1.0 / pixel_size_angstrom; }
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_PHYSICS_PHYSICS_PRIOR_H_
