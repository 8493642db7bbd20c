// A small built-in table of common projections for `logstar prior
// --projection NAME`: each the projected unit cell of the columns a HAADF
// image shows, where they sit in it and what they hold, with the lattice
// constant's source. The prior's figures are derived from it, not typed in:
// the nearest-neighbour distance is the shortest column-to-column distance
// over the periodic cell, the density columns per cell area, and the
// sublattices' relative brightness the sum of Z^1.7 over a column's atoms
// per beam repeat (the usual HAADF rule of thumb; Pennycook & Jesson,
// Ultramicroscopy 37, 14 (1991)), relative to the brightest.
//
// Columns of oxygen alone are left out: they are dark in HAADF and the
// priors count visible columns.
//
// Lengths in angstrom; column positions are fractions of the cell's a and b.
// Thread-safety: the table is immutable; the functions are pure.
#ifndef LOGSTAR_CLIENTS_CLI_PRIOR_TABLE_H_
#define LOGSTAR_CLIENTS_CLI_PRIOR_TABLE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/physics/physics_prior.h"

namespace logstar::cli {

struct TableSublattice {
  std::string name;
  std::vector<std::pair<double, double>> columns;  // fractions of (a, b)
  std::vector<int> atomic_numbers;                 // one column's atoms per beam repeat
};

struct Projection {
  std::string name;         // e.g. "SrTiO3-110"; matched case-insensitively
  std::string description;  // crystal, zone axis, what the columns are
  std::string constants;    // the bulk lattice constants used, e.g. "a = 3.905 A"
  std::string source;       // where they come from
  double a_angstrom = 0.0;  // the projected cell
  double b_angstrom = 0.0;
  double gamma_deg = 90.0;
  std::vector<TableSublattice> sublattices;  // brightest first
};

// What the table's cell gives.
struct ProjectionFigures {
  double nearest_neighbor_angstrom = 0.0;
  int columns_per_cell = 0;
  double column_density_per_nm2 = 0.0;
  std::vector<double> sublattice_density_per_nm2;  // per sublattice
  std::vector<double> relative_brightness;         // per sublattice, the first 1
};

const std::vector<Projection>& ProjectionTable();

// The entry named `name` (case-insensitive); NOT_FOUND listing the names.
absl::StatusOr<const Projection*> FindProjection(const std::string& name);

ProjectionFigures FiguresOf(const Projection& p);

// The prior of a projection at `pixel_size_angstrom` (> 0): its lattice,
// nearest-neighbour distance and, with more than one kind of column, its
// sublattices; checked (PhysicsPrior::Validate).
absl::StatusOr<PhysicsPrior> PriorOfProjection(const Projection& p, double pixel_size_angstrom);

// The table as text, one block per entry, for `logstar prior --list`.
std::string ProjectionTableText();

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_PRIOR_TABLE_H_
