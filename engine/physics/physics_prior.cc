#include "engine/physics/physics_prior.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

// A lattice given next to an explicit density is a cross-check, and so are
// the sublattices' densities against the total; 5 % leaves room for rounded
// literature values without hiding a wrong unit, cell or sublattice.
constexpr double kDensityAgreement = 0.05;

// Guards the physical bounds below against rounding of values that sit
// exactly on them (e.g. a density computed from the same nn distance).
constexpr double kBoundSlack = 1e-9;

// Below two pixels per column spacing the columns cannot be told apart
// (Nyquist), so rewards built on that spacing would be meaningless.
constexpr double kMinPixelsPerNearestNeighbor = 2.0;

absl::Status CheckPositive(absl::string_view field, double value) {
  if (!std::isfinite(value) || value <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be positive and finite, got ", value));
  }
  return absl::OkStatus();
}

absl::Status ValidateLattice(const ProjectedLattice& lattice) {
  LOGSTAR_RETURN_IF_ERROR(CheckPositive("lattice.a_angstrom", lattice.a_angstrom));
  LOGSTAR_RETURN_IF_ERROR(CheckPositive("lattice.b_angstrom", lattice.b_angstrom));
  if (!std::isfinite(lattice.gamma_deg) || lattice.gamma_deg <= 0.0 || lattice.gamma_deg >= 180.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lattice.gamma_deg must be in (0, 180) degrees, got ", lattice.gamma_deg));
  }
  LOGSTAR_RETURN_IF_ERROR(CheckPositive("lattice.columns_per_cell", lattice.columns_per_cell));
  // Each field can be sane while the product over- or underflows.
  const double density = lattice.ColumnDensityPerNm2();
  if (!std::isfinite(density) || density <= 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lattice gives a column density that is not positive and finite: ", density, " per nm^2"));
  }
  return absl::OkStatus();
}

// A sublattice name travels through file names, JSON keys and command-line
// flags (`--sublattice Ti-O`), so it is kept to characters that need no
// quoting anywhere.
bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

absl::Status ValidateSublatticeName(const std::vector<SublatticePrior>& sublattices, size_t i) {
  const std::string& name = sublattices[i].name;
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sublattices[", i, "].name must not be empty"));
  }
  for (const char c : name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sublattices[", i,
                       "].name may hold only letters, digits, '_' and '-', got \"", name, "\""));
    }
  }
  for (size_t j = 0; j < i; ++j) {
    if (sublattices[j].name == name) {
      return absl::InvalidArgumentError(absl::StrCat("sublattices[", i, "].name \"", name,
                                                     "\" repeats sublattices[", j, "].name"));
    }
  }
  return absl::OkStatus();
}

// relative_brightness is 0 (unknown) or in (0, 1]; the known ones never grow
// down the list, because the list is brightest first (the classifier labels
// its brightest group with sublattices[0]) and the first is the reference.
absl::Status ValidateSublatticeBrightness(const std::vector<SublatticePrior>& sublattices) {
  int last_known = -1;
  for (size_t i = 0; i < sublattices.size(); ++i) {
    const double b = sublattices[i].relative_brightness;
    if (!std::isfinite(b) || b < 0.0 || b > 1.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sublattices[", i, "].relative_brightness must be 0 (unknown) or in (0, 1], got ", b));
    }
    if (i == 0 && b != 0.0 && b != 1.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sublattices[0].relative_brightness must be 1 (it is the brightest, the reference) or 0 "
          "(unknown), got ",
          b));
    }
    if (b == 0.0) continue;
    if (last_known >= 0 && b > sublattices[last_known].relative_brightness) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sublattices[", i, "].relative_brightness (", b, ") must not exceed sublattices[",
          last_known, "].relative_brightness (", sublattices[last_known].relative_brightness,
          "): sublattices are listed brightest first"));
    }
    last_known = static_cast<int>(i);
  }
  return absl::OkStatus();
}

// `column_density_per_nm2`: the prior's (validated) total.
absl::Status ValidateSublattices(const std::vector<SublatticePrior>& sublattices,
                                 double column_density_per_nm2) {
  if (sublattices.empty()) return absl::OkStatus();
  if (sublattices.size() < 2) {
    return absl::InvalidArgumentError(
        "sublattices must be empty (columns of one kind) or list at least 2, got 1");
  }
  double total = 0.0;
  for (size_t i = 0; i < sublattices.size(); ++i) {
    LOGSTAR_RETURN_IF_ERROR(ValidateSublatticeName(sublattices, i));
    LOGSTAR_RETURN_IF_ERROR(
        CheckPositive(absl::StrCat("sublattices[", i, "].column_density_per_nm2"),
                      sublattices[i].column_density_per_nm2));
    total += sublattices[i].column_density_per_nm2;
  }
  if (std::abs(total - column_density_per_nm2) > kDensityAgreement * column_density_per_nm2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sublattices[*].column_density_per_nm2 add up to %g per nm^2, more than 5 %% from the "
        "column density (%g per nm^2)",
        total, column_density_per_nm2));
  }
  return ValidateSublatticeBrightness(sublattices);
}

}  // namespace

double ProjectedLattice::CellAreaAngstrom2() const {
  return a_angstrom * b_angstrom * std::sin(gamma_deg * std::numbers::pi / 180.0);
}

double ProjectedLattice::ColumnDensityPerNm2() const {
  // 1 nm^2 = 100 Å^2.
  return columns_per_cell / CellAreaAngstrom2() * 100.0;
}

absl::Status PhysicsPrior::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(CheckPositive("pixel_size_angstrom", pixel_size_angstrom));
  if (column_density_per_nm2.has_value()) {
    LOGSTAR_RETURN_IF_ERROR(CheckPositive("column_density_per_nm2", *column_density_per_nm2));
  }
  if (lattice.has_value()) LOGSTAR_RETURN_IF_ERROR(ValidateLattice(*lattice));
  LOGSTAR_RETURN_IF_ERROR(CheckPositive("nearest_neighbor_angstrom", nearest_neighbor_angstrom));

  if (!column_density_per_nm2.has_value() && !lattice.has_value()) {
    return absl::InvalidArgumentError(
        "column_density_per_nm2 or lattice must be given (neither is set)");
  }
  if (column_density_per_nm2.has_value() && lattice.has_value()) {
    const double from_lattice = lattice->ColumnDensityPerNm2();
    if (std::abs(*column_density_per_nm2 - from_lattice) > kDensityAgreement * from_lattice) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "column_density_per_nm2 (%g) disagrees with the lattice (%g per nm^2) by more than "
          "5 %%",
          *column_density_per_nm2, from_lattice));
    }
  }

  // Columns that are at least nn apart cannot be packed more densely than
  // hexagonally; a denser prior means nn (or the density) is wrong.
  const double nn = nearest_neighbor_angstrom;
  const double density_per_a2 = ColumnDensityPerNm2() / 100.0;
  const double max_density_per_a2 = 2.0 / (std::sqrt(3.0) * nn * nn);
  if (density_per_a2 > max_density_per_a2 * (1.0 + kBoundSlack)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "nearest_neighbor_angstrom (%g) is too large for a column density of %g per nm^2: "
        "even hexagonal close packing at that spacing holds at most %g per nm^2",
        nn, ColumnDensityPerNm2(), max_density_per_a2 * 100.0));
  }

  const double nn_px = NearestNeighborPx();
  if (!std::isfinite(nn_px) || nn_px < kMinPixelsPerNearestNeighbor * (1.0 - kBoundSlack)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "nearest_neighbor_angstrom (%g) spans %g pixels of pixel_size_angstrom %g; at least %g "
        "are needed to resolve neighbouring columns",
        nn, nn_px, pixel_size_angstrom, kMinPixelsPerNearestNeighbor));
  }
  const double density_px2 = ColumnDensityPerPx2();
  if (!std::isfinite(density_px2) || density_px2 <= 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pixel_size_angstrom ", pixel_size_angstrom,
        " gives a column density per pixel that is not positive and finite: ", density_px2));
  }
  return ValidateSublattices(sublattices, ColumnDensityPerNm2());
}

double PhysicsPrior::ColumnDensityPerNm2() const {
  if (column_density_per_nm2.has_value()) return *column_density_per_nm2;
  return lattice->ColumnDensityPerNm2();
}

double PhysicsPrior::ColumnDensityPerPx2() const {
  const double pixel_nm = pixel_size_angstrom / 10.0;
  return ColumnDensityPerNm2() * pixel_nm * pixel_nm;
}

double PhysicsPrior::NearestNeighborPx() const {
  return nearest_neighbor_angstrom / pixel_size_angstrom;
}

}  // namespace logstar
