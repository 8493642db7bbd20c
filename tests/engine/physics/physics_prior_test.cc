#include "engine/physics/physics_prior.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::AllOf;
using ::testing::DoubleNear;
using ::testing::HasSubstr;

// YBCO viewed along [100]: a = 3.82 Å, c = 11.68 Å, 6 columns per cell.
ProjectedLattice YbcoLattice() {
  ProjectedLattice lattice;
  lattice.a_angstrom = 3.82;
  lattice.b_angstrom = 11.68;
  lattice.gamma_deg = 90.0;
  lattice.columns_per_cell = 6.0;
  return lattice;
}

PhysicsPrior DocsPrior() {
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.125;
  prior.column_density_per_nm2 = 13.4;
  prior.nearest_neighbor_angstrom = 2.55;
  return prior;
}

void ExpectInvalid(const PhysicsPrior& prior, const std::string& field) {
  const absl::Status status = prior.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(field));
}

TEST(ProjectedLatticeTest, YbcoDensity) {
  const ProjectedLattice lattice = YbcoLattice();
  EXPECT_NEAR(lattice.CellAreaAngstrom2(), 3.82 * 11.68, 1e-12);
  EXPECT_NEAR(lattice.ColumnDensityPerNm2(), 600.0 / (3.82 * 11.68), 1e-12);
  EXPECT_NEAR(lattice.ColumnDensityPerNm2(), 13.45, 0.01);
}

TEST(ProjectedLatticeTest, ObliqueCellUsesSineOfGamma) {
  // Hexagonal cell, a = b = 2 Å, gamma = 120°: area = 4 * sqrt(3) / 2.
  ProjectedLattice lattice;
  lattice.a_angstrom = 2.0;
  lattice.b_angstrom = 2.0;
  lattice.gamma_deg = 120.0;
  lattice.columns_per_cell = 1.0;
  EXPECT_NEAR(lattice.CellAreaAngstrom2(), 2.0 * std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(lattice.ColumnDensityPerNm2(), 100.0 / (2.0 * std::sqrt(3.0)), 1e-10);
}

TEST(PhysicsPriorTest, DocsExampleValidates) {
  const PhysicsPrior prior = DocsPrior();
  ASSERT_TRUE(prior.Validate().ok()) << prior.Validate();
  EXPECT_DOUBLE_EQ(prior.ColumnDensityPerNm2(), 13.4);
  // 0.125 Å = 0.0125 nm per pixel.
  EXPECT_DOUBLE_EQ(prior.ColumnDensityPerPx2(), 13.4 * 0.0125 * 0.0125);
  EXPECT_DOUBLE_EQ(prior.NearestNeighborPx(), 20.4);
  EXPECT_DOUBLE_EQ(prior.PxPerAngstrom(), 8.0);
}

TEST(PhysicsPriorTest, LatticeOnlyDerivesDensity) {
  PhysicsPrior prior = DocsPrior();
  prior.column_density_per_nm2.reset();
  prior.lattice = YbcoLattice();
  ASSERT_TRUE(prior.Validate().ok()) << prior.Validate();
  EXPECT_NEAR(prior.ColumnDensityPerNm2(), 600.0 / (3.82 * 11.68), 1e-12);
  EXPECT_NEAR(prior.ColumnDensityPerPx2(), 600.0 / (3.82 * 11.68) * 0.0125 * 0.0125, 1e-15);
}

TEST(PhysicsPriorTest, ExplicitDensityWinsOverLattice) {
  PhysicsPrior prior = DocsPrior();
  prior.lattice = YbcoLattice();
  ASSERT_TRUE(prior.Validate().ok()) << prior.Validate();
  EXPECT_DOUBLE_EQ(prior.ColumnDensityPerNm2(), 13.4);
}

TEST(PhysicsPriorTest, DensityAndLatticeMustAgreeWithinFivePercent) {
  const double from_lattice = 600.0 / (3.82 * 11.68);
  PhysicsPrior prior = DocsPrior();
  prior.lattice = YbcoLattice();
  prior.column_density_per_nm2 = from_lattice * 1.049;
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.column_density_per_nm2 = from_lattice * 0.951;
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.column_density_per_nm2 = from_lattice * 1.06;
  ExpectInvalid(prior, "column_density_per_nm2");
  prior.column_density_per_nm2 = from_lattice * 0.94;
  ExpectInvalid(prior, "column_density_per_nm2");
}

TEST(PhysicsPriorTest, NeedsDensityOrLattice) {
  PhysicsPrior prior = DocsPrior();
  prior.column_density_per_nm2.reset();
  const absl::Status status = prior.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), AllOf(HasSubstr("column_density_per_nm2"), HasSubstr("lattice")));
}

TEST(PhysicsPriorTest, ExactMessageForZeroPixelSize) {
  PhysicsPrior prior = DocsPrior();
  prior.pixel_size_angstrom = 0.0;
  EXPECT_EQ(prior.Validate(),
            absl::InvalidArgumentError("pixel_size_angstrom must be positive and finite, got 0"));
}

TEST(PhysicsPriorTest, RejectsNonPositiveAndNonFiniteFields) {
  const double kBad[] = {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                         std::numeric_limits<double>::infinity()};
  for (const double bad : kBad) {
    SCOPED_TRACE(bad);
    PhysicsPrior prior = DocsPrior();
    prior.pixel_size_angstrom = bad;
    ExpectInvalid(prior, "pixel_size_angstrom");

    prior = DocsPrior();
    prior.column_density_per_nm2 = bad;
    ExpectInvalid(prior, "column_density_per_nm2");

    prior = DocsPrior();
    prior.nearest_neighbor_angstrom = bad;
    ExpectInvalid(prior, "nearest_neighbor_angstrom");

    prior = DocsPrior();
    prior.lattice = YbcoLattice();
    prior.lattice->a_angstrom = bad;
    ExpectInvalid(prior, "a_angstrom");

    prior.lattice = YbcoLattice();
    prior.lattice->b_angstrom = bad;
    ExpectInvalid(prior, "b_angstrom");

    prior.lattice = YbcoLattice();
    prior.lattice->columns_per_cell = bad;
    ExpectInvalid(prior, "columns_per_cell");

    prior.lattice = YbcoLattice();
    prior.lattice->gamma_deg = bad;
    ExpectInvalid(prior, "gamma_deg");
  }
}

TEST(PhysicsPriorTest, GammaMustBeBelow180) {
  PhysicsPrior prior = DocsPrior();
  prior.lattice = YbcoLattice();
  prior.lattice->gamma_deg = 180.0;
  ExpectInvalid(prior, "gamma_deg");
  prior.lattice->gamma_deg = 200.0;
  ExpectInvalid(prior, "gamma_deg");
}

TEST(PhysicsPriorTest, DensityMustNotExceedHexagonalClosePacking) {
  // Hexagonal close packing at nn = 2 Å: 2 / (sqrt(3) * 4) per Å².
  const double hcp_per_nm2 = 100.0 * 2.0 / (std::sqrt(3.0) * 4.0);
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.1;
  prior.nearest_neighbor_angstrom = 2.0;
  prior.column_density_per_nm2 = hcp_per_nm2;
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.column_density_per_nm2 = hcp_per_nm2 * 1.001;
  ExpectInvalid(prior, "nearest_neighbor_angstrom");

  // The docs prior with a nearest-neighbour distance too large for 13.4/nm²:
  // 2 / (sqrt(3) * 3^2) * 100 = 12.8 per nm².
  prior = DocsPrior();
  prior.nearest_neighbor_angstrom = 3.0;
  ExpectInvalid(prior, "nearest_neighbor_angstrom");
}

TEST(PhysicsPriorTest, NeedsTwoPixelsPerNearestNeighbor) {
  PhysicsPrior prior;
  prior.column_density_per_nm2 = 1.0;
  prior.nearest_neighbor_angstrom = 2.0;
  prior.pixel_size_angstrom = 1.0;  // exactly 2 px
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.pixel_size_angstrom = 1.01;
  ExpectInvalid(prior, "nearest_neighbor_angstrom");
  ExpectInvalid(prior, "pixel");
}

// SrTiO3 along [100] as the docs' prior with its two sublattices: Sr (A)
// and Ti-O (B) columns, one of each per 3.905 Å cell.
PhysicsPrior SublatticePriorExample() {
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.125;
  prior.column_density_per_nm2 = 200.0 / (3.905 * 3.905);
  prior.nearest_neighbor_angstrom = 2.76;
  const double half = 100.0 / (3.905 * 3.905);
  prior.sublattices = {
      {.name = "Sr", .column_density_per_nm2 = half, .relative_brightness = 1.0},
      {.name = "Ti-O", .column_density_per_nm2 = half, .relative_brightness = 0.4}};
  return prior;
}

TEST(PhysicsPriorSublatticesTest, ExampleValidates) {
  PhysicsPrior prior = SublatticePriorExample();
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  // Brightness unknown (0) everywhere, or only for some: the order alone.
  prior.sublattices[0].relative_brightness = 0.0;
  prior.sublattices[1].relative_brightness = 0.0;
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.sublattices[1].relative_brightness = 1.0;  // as bright as the first: allowed
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  // None at all: columns of one kind.
  prior.sublattices.clear();
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
}

TEST(PhysicsPriorSublatticesTest, OneSublatticeIsNotAList) {
  PhysicsPrior prior = SublatticePriorExample();
  prior.sublattices.pop_back();
  prior.sublattices[0].column_density_per_nm2 = *prior.column_density_per_nm2;
  ExpectInvalid(prior, "sublattices must be empty");
}

TEST(PhysicsPriorSublatticesTest, NamesAreUniqueNonEmptyAndPlain) {
  const std::string kBad[] = {"", "Ti O", "Ti/O", "Sr,", "\"A\"", "Ti\u2013O"};
  for (const std::string& bad : kBad) {
    SCOPED_TRACE(bad);
    PhysicsPrior prior = SublatticePriorExample();
    prior.sublattices[1].name = bad;
    ExpectInvalid(prior, "sublattices[1].name");
  }
  PhysicsPrior prior = SublatticePriorExample();
  prior.sublattices[1].name = "A_1-b";
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.sublattices[1].name = "Sr";
  ExpectInvalid(prior, "sublattices[1].name \"Sr\" repeats sublattices[0].name");
}

TEST(PhysicsPriorSublatticesTest, DensitiesArePositiveAndAddUpWithinFivePercent) {
  const double kBad[] = {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                         std::numeric_limits<double>::infinity()};
  for (const double bad : kBad) {
    SCOPED_TRACE(bad);
    PhysicsPrior prior = SublatticePriorExample();
    prior.sublattices[1].column_density_per_nm2 = bad;
    ExpectInvalid(prior, "sublattices[1].column_density_per_nm2 must be positive and finite");
  }
  const double total = *SublatticePriorExample().column_density_per_nm2;
  for (const double share : {0.549, 0.451}) {  // of the total, the other half stays
    PhysicsPrior prior = SublatticePriorExample();
    prior.sublattices[1].column_density_per_nm2 = share * total;
    EXPECT_TRUE(prior.Validate().ok()) << share << " " << prior.Validate();
  }
  for (const double share : {0.56, 0.44, 1.5}) {
    PhysicsPrior prior = SublatticePriorExample();
    prior.sublattices[1].column_density_per_nm2 = share * total;
    ExpectInvalid(prior, "sublattices[*].column_density_per_nm2 add up to");
  }
  // Against the density derived from a lattice, too.
  PhysicsPrior prior = SublatticePriorExample();
  prior.column_density_per_nm2.reset();
  prior.lattice = ProjectedLattice{
      .a_angstrom = 3.905, .b_angstrom = 3.905, .gamma_deg = 90.0, .columns_per_cell = 2.0};
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.lattice->a_angstrom = 4.2;  // 14 % fewer columns than the sublattices list
  ExpectInvalid(prior, "sublattices[*].column_density_per_nm2");
}

TEST(PhysicsPriorSublatticesTest, BrightnessIsUnknownOrAFractionOfTheFirst) {
  const double kOutOfRange[] = {-0.1, 1.01, std::numeric_limits<double>::quiet_NaN(),
                                std::numeric_limits<double>::infinity()};
  for (const double bad : kOutOfRange) {
    SCOPED_TRACE(bad);
    PhysicsPrior prior = SublatticePriorExample();
    prior.sublattices[1].relative_brightness = bad;
    ExpectInvalid(prior, "sublattices[1].relative_brightness must be 0 (unknown) or in (0, 1]");
  }
  PhysicsPrior prior = SublatticePriorExample();
  prior.sublattices[0].relative_brightness = 0.8;  // the first is the reference
  ExpectInvalid(prior, "sublattices[0].relative_brightness must be 1");
}

TEST(PhysicsPriorSublatticesTest, BrightnessDoesNotGrowDownTheList) {
  PhysicsPrior prior = SublatticePriorExample();
  const double third = *prior.column_density_per_nm2 / 3.0;
  prior.sublattices = {{.name = "Ba", .column_density_per_nm2 = third, .relative_brightness = 1.0},
                       {.name = "Y", .column_density_per_nm2 = third, .relative_brightness = 0.5},
                       {.name = "Cu", .column_density_per_nm2 = third, .relative_brightness = 0.7}};
  const absl::Status status = prior.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), AllOf(HasSubstr("sublattices[2].relative_brightness (0.7)"),
                                      HasSubstr("sublattices[1].relative_brightness (0.5)")));
  // An unknown one in between is skipped, not taken as 0.
  prior.sublattices[1].relative_brightness = 0.0;
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
  prior.sublattices[2].relative_brightness = 1.0;
  prior.sublattices[0].relative_brightness = 0.0;  // first unknown: nothing to compare with
  EXPECT_TRUE(prior.Validate().ok()) << prior.Validate();
}

}  // namespace
}  // namespace logstar
