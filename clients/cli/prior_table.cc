#include "clients/cli/prior_table.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/base/geometry.h"
#include "engine/physics/lattice.h"

namespace logstar::cli {
namespace {

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kSqrt3 = 1.7320508075688772;
// HAADF intensity ~ Z^n (header).
constexpr double kZExponent = 1.7;

// Bulk lattice constants, angstrom, room temperature.
constexpr double kSrTiO3 = 3.905;
constexpr double kYbcoA = 3.82, kYbcoB = 3.89, kYbcoC = 11.68;
constexpr double kYbcoZBa = 0.184, kYbcoZCu2 = 0.355;  // fractional z of Ba and the CuO2 planes
constexpr double kGrapheneBond = 1.42;
constexpr double kAu = 4.08, kCu = 3.61, kPt = 3.92;

constexpr char kSrTiO3Source[] =
    "M. Schmidbauer, A. Kwasniewski, J. Schreuer, Acta Cryst. B 68, 8 (2012)";
constexpr char kYbcoSource[] = "J. D. Jorgensen et al., Phys. Rev. B 41, 1863 (1990), x = 7";
constexpr char kGrapheneSource[] =
    "A. H. Castro Neto et al., Rev. Mod. Phys. 81, 109 (2009): C-C distance 1.42 A";
constexpr char kFccSource[] =
    "N. W. Ashcroft, N. D. Mermin, Solid State Physics (1976), Table 4.3 (after Wyckoff)";

// fcc along [100]: the conventional face projected is a square of side a
// with columns at its corners, edge centres and centre, every a/2.
Projection Fcc100(const std::string& element, int z, double a) {
  return {.name = absl::StrCat(element, "-100"),
          .description = absl::StrCat(element, " (fcc) along [100]: a square of columns a/2 apart"),
          .constants = absl::StrFormat("a = %.3f A", a),
          .source = kFccSource,
          .a_angstrom = a,
          .b_angstrom = a,
          .sublattices = {{element, {{0, 0}, {0.5, 0}, {0, 0.5}, {0.5, 0.5}}, {z}}}};
}

// fcc along [110]: a centred rectangle a·√2/2 (along [1-10]) by a (along
// [001]): rows a/2 apart, columns a·√2/2 apart within a row.
Projection Fcc110(const std::string& element, int z, double a) {
  return {.name = absl::StrCat(element, "-110"),
          .description = absl::StrCat(
              element,
              " (fcc) along [110]: rows a/2 apart along [001], columns a*sqrt(2)/2 apart "
              "within a row, neighbouring rows shifted by half of that"),
          .constants = absl::StrFormat("a = %.3f A", a),
          .source = kFccSource,
          .a_angstrom = a * kSqrt2 / 2,
          .b_angstrom = a,
          .sublattices = {{element, {{0, 0}, {0.5, 0.5}}, {z}}}};
}

std::vector<Projection> MakeTable() {
  std::vector<Projection> t;
  t.push_back({.name = "SrTiO3-100",
               .description =
                   "SrTiO3 (cubic perovskite) along [100]: Sr columns and Ti-O columns at the "
                   "cell centres (the O columns are dark)",
               .constants = absl::StrFormat("a = %.3f A", kSrTiO3),
               .source = kSrTiO3Source,
               .a_angstrom = kSrTiO3,
               .b_angstrom = kSrTiO3,
               .sublattices = {{"Sr", {{0, 0}}, {38}}, {"TiO", {{0.5, 0.5}}, {22, 8}}}});
  // Along [110] the beam repeat a·√2 holds Sr and O in one column, Ti alone
  // in the next along [001], a/2 away; pure O columns sit between (dark).
  t.push_back({.name = "SrTiO3-110",
               .description = "SrTiO3 (cubic perovskite) along [110]: Sr-O and Ti columns "
                              "alternating a/2 apart along [001], rows a*sqrt(2)/2 apart",
               .constants = absl::StrFormat("a = %.3f A", kSrTiO3),
               .source = kSrTiO3Source,
               .a_angstrom = kSrTiO3 * kSqrt2 / 2,
               .b_angstrom = kSrTiO3,
               .sublattices = {{"SrO", {{0, 0}}, {38, 8}}, {"Ti", {{0, 0.5}}, {22}}}});
  // Along [100] the projected cell is b by c: Ba and Y above the CuO planes'
  // Cu columns, the chains' Cu at the corners (oxygen left out).
  t.push_back(
      {.name = "YBCO-100",
       .description = "YBa2Cu3O7 along [100] (b by c in the plane): Ba, Y and Cu columns",
       .constants = absl::StrFormat("a = %.2f, b = %.2f, c = %.2f A; z(Ba) = %.3f, z(Cu2) = %.3f",
                                    kYbcoA, kYbcoB, kYbcoC, kYbcoZBa, kYbcoZCu2),
       .source = kYbcoSource,
       .a_angstrom = kYbcoB,
       .b_angstrom = kYbcoC,
       .sublattices = {{"Ba", {{0.5, kYbcoZBa}, {0.5, 1 - kYbcoZBa}}, {56}},
                       {"Y", {{0.5, 0.5}}, {39}},
                       {"Cu", {{0, 0}, {0, kYbcoZCu2}, {0, 1 - kYbcoZCu2}}, {29}}}});
  // The hexagonal cell a = √3 x the bond, two columns at (1/3, 2/3) and (2/3, 1/3).
  t.push_back({.name = "graphene",
               .description = "graphene (single layer) along [001]: a honeycomb of C columns",
               .constants = absl::StrFormat("C-C %.2f A, a = sqrt(3) x C-C", kGrapheneBond),
               .source = kGrapheneSource,
               .a_angstrom = kGrapheneBond * kSqrt3,
               .b_angstrom = kGrapheneBond * kSqrt3,
               .gamma_deg = 120.0,
               .sublattices = {{"C", {{1.0 / 3, 2.0 / 3}, {2.0 / 3, 1.0 / 3}}, {6}}}});
  for (const auto& [element, z, a] :
       {std::tuple{"Au", 79, kAu}, std::tuple{"Cu", 29, kCu}, std::tuple{"Pt", 78, kPt}}) {
    t.push_back(Fcc100(element, z, a));
    t.push_back(Fcc110(element, z, a));
  }
  return t;
}

double Brightness(const TableSublattice& s) {
  double sum = 0.0;
  for (const int z : s.atomic_numbers) sum += std::pow(z, kZExponent);
  return sum;
}

}  // namespace

const std::vector<Projection>& ProjectionTable() {
  static const std::vector<Projection>* const kTable = new std::vector<Projection>(MakeTable());
  return *kTable;
}

absl::StatusOr<const Projection*> FindProjection(const std::string& name) {
  std::vector<std::string> names;
  for (const Projection& p : ProjectionTable()) {
    if (absl::AsciiStrToLower(p.name) == absl::AsciiStrToLower(name)) return &p;
    names.push_back(p.name);
  }
  return absl::NotFoundError(absl::StrCat("--projection ", name, ": not in the table (",
                                          absl::StrJoin(names, ", "), "; see --list)"));
}

ProjectionFigures FiguresOf(const Projection& p) {
  const double gamma = p.gamma_deg * M_PI / 180.0;
  // Cell vectors: a along x, b at gamma from it.
  const double ax = p.a_angstrom, bx = p.b_angstrom * std::cos(gamma),
               by = p.b_angstrom * std::sin(gamma);
  std::vector<PointXY> columns;
  for (const TableSublattice& s : p.sublattices) {
    for (const auto& [u, v] : s.columns) columns.push_back({u * ax + v * bx, v * by});
  }
  ProjectionFigures f;
  f.columns_per_cell = static_cast<int>(columns.size());
  f.nearest_neighbor_angstrom = PeriodicNearestNeighbor({ax, 0.0}, {bx, by}, columns);
  const double area_nm2 = ax * by / 100.0;
  f.column_density_per_nm2 = f.columns_per_cell / area_nm2;
  const double brightest = p.sublattices.empty() ? 1.0 : Brightness(p.sublattices.front());
  for (const TableSublattice& s : p.sublattices) {
    f.sublattice_density_per_nm2.push_back(static_cast<double>(s.columns.size()) / area_nm2);
    f.relative_brightness.push_back(Brightness(s) / brightest);
  }
  return f;
}

absl::StatusOr<PhysicsPrior> PriorOfProjection(const Projection& p, double pixel_size_angstrom) {
  const ProjectionFigures f = FiguresOf(p);
  PhysicsPrior prior;
  prior.pixel_size_angstrom = pixel_size_angstrom;
  prior.lattice = ProjectedLattice{.a_angstrom = p.a_angstrom,
                                   .b_angstrom = p.b_angstrom,
                                   .gamma_deg = p.gamma_deg,
                                   .columns_per_cell = static_cast<double>(f.columns_per_cell)};
  prior.nearest_neighbor_angstrom = f.nearest_neighbor_angstrom;
  // One kind of column: no sublattices (the prior wants none or two and more).
  if (p.sublattices.size() > 1) {
    for (size_t i = 0; i < p.sublattices.size(); ++i) {
      prior.sublattices.push_back({.name = p.sublattices[i].name,
                                   .column_density_per_nm2 = f.sublattice_density_per_nm2[i],
                                   .relative_brightness = f.relative_brightness[i]});
    }
  }
  if (absl::Status s = prior.Validate(); !s.ok()) {
    return absl::InternalError(absl::StrCat("the table's ", p.name, ": ", s.message()));
  }
  return prior;
}

std::string ProjectionTableText() {
  std::string out =
      "Built-in projections (logstar prior --projection NAME): the columns HAADF shows; "
      "brightness ~ Z^1.7.\n";
  for (const Projection& p : ProjectionTable()) {
    const ProjectionFigures f = FiguresOf(p);
    absl::StrAppendFormat(&out, "\n%s\n  %s\n  cell %.4f x %.4f A, gamma %g deg, %d columns",
                          p.name, p.description, p.a_angstrom, p.b_angstrom, p.gamma_deg,
                          f.columns_per_cell);
    absl::StrAppendFormat(&out, "; nearest neighbour %.4f A; %.3f columns/nm^2\n",
                          f.nearest_neighbor_angstrom, f.column_density_per_nm2);
    if (p.sublattices.size() > 1) {
      std::vector<std::string> parts;
      for (size_t i = 0; i < p.sublattices.size(); ++i) {
        parts.push_back(absl::StrFormat("%s %.3f/nm^2 brightness %.2f", p.sublattices[i].name,
                                        f.sublattice_density_per_nm2[i], f.relative_brightness[i]));
      }
      absl::StrAppend(&out, "  sublattices: ", absl::StrJoin(parts, "; "), "\n");
    }
    absl::StrAppend(&out, "  constants: ", p.constants, "\n  source: ", p.source, "\n");
  }
  return out;
}

}  // namespace logstar::cli
