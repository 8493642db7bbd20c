// The prior loader (clients/cpp/prior_loader.h): the documented JSON forms
// read into the values written in them, and errors that name the field.
#include "clients/cpp/prior_loader.h"

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace logstar {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(PriorLoaderTest, ReadsTheDocumentedForms) {
  absl::StatusOr<v1::PhysicsPrior> prior = ParsePriorJson(
      R"({"pixel_size_angstrom": 0.125, "nearest_neighbor_angstrom": 2.55,
          "lattice": {"a_angstrom": 3.82, "b_angstrom": 11.68, "gamma_deg": 90,
                      "columns_per_cell": 6}})");
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_EQ(prior->pixel_size_angstrom(), 0.125);
  EXPECT_EQ(prior->nearest_neighbor_angstrom(), 2.55);
  EXPECT_FALSE(prior->has_column_density_per_nm2());
  EXPECT_EQ(prior->lattice().a_angstrom(), 3.82);
  EXPECT_EQ(prior->lattice().b_angstrom(), 11.68);
  EXPECT_EQ(prior->lattice().gamma_deg(), 90.0);
  EXPECT_EQ(prior->lattice().columns_per_cell(), 6);

  prior = ParsePriorJson(
      R"({"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.11,
          "nearest_neighbor_angstrom": 2.76,
          "sublattices": [{"name": "A", "column_density_per_nm2": 6.56, "relative_brightness": 1},
                          {"name": "B", "column_density_per_nm2": 6.56,
                           "relative_brightness": 0.4}]})");
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_EQ(prior->column_density_per_nm2(), 13.11);
  ASSERT_EQ(prior->sublattices_size(), 2);
  EXPECT_EQ(prior->sublattices(1).name(), "B");
  EXPECT_EQ(prior->sublattices(1).relative_brightness(), 0.4);

  prior = ParsePriorJson(R"({"auto": true})");
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_TRUE(prior->auto_());
  EXPECT_EQ(prior->pixel_size_angstrom(), 0.0);

  // The JSON mapping's lowerCamelCase names are the same fields.
  prior = ParsePriorJson(R"({"pixelSizeAngstrom": 0.5, "nearestNeighborAngstrom": 3})");
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_EQ(prior->pixel_size_angstrom(), 0.5);
  EXPECT_EQ(prior->nearest_neighbor_angstrom(), 3.0);
}

TEST(PriorLoaderTest, ErrorsNameTheFieldAndWhere) {
  struct Case {
    const char* json;
    const char* field;
  };
  for (const Case& c : {
           // The message lists the schema's fields first; what follows it
           // names the one at fault, by its path.
           Case{R"({"pixel_size_angstrm": 0.1})", "pixel_size_angstrm: Cannot find field"},
           Case{R"({"lattice": {"a_angstrom": 4, "colums_per_cell": 2}})", "colums_per_cell"},
           Case{R"({"pixel_size_angstrom": "small"})", "(pixel_size_angstrom): invalid value"},
           Case{R"({"lattice": {"a_angstrom": "x"}})", "(lattice.a_angstrom): invalid value"},
           Case{R"({"sublattices": [{"name": "A", "brightness": 1}]})",
                "(sublattices[0]) brightness"},
           Case{R"({"auto": 3})", "(auto): invalid value"},
       }) {
    absl::StatusOr<v1::PhysicsPrior> prior = ParsePriorJson(c.json, "sto.json");
    EXPECT_EQ(prior.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(prior.status().message()), StartsWith("sto.json: ")) << c.json;
    EXPECT_THAT(prior.status().message(), HasSubstr(c.field)) << c.json;
    EXPECT_EQ(std::string(prior.status().message()).find('\n'), std::string::npos);
  }
  EXPECT_THAT(std::string(ParsePriorJson("{", "p").status().message()),
              StartsWith("p: not a valid prior JSON"));
}

TEST(PriorLoaderTest, LoadsAFileAndNamesAMissingOne) {
  const std::filesystem::path path =
      std::filesystem::path(testing::TempDir()) / "prior_loader_test.json";
  std::ofstream(path) << R"({"pixel_size_angstrom": 0.25, "nearest_neighbor_angstrom": 4})";
  absl::StatusOr<v1::PhysicsPrior> prior = LoadPriorFile(path.string());
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_EQ(prior->pixel_size_angstrom(), 0.25);
  EXPECT_EQ(prior->nearest_neighbor_angstrom(), 4.0);
  std::filesystem::remove(path);

  prior = LoadPriorFile(path.string());
  EXPECT_EQ(prior.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(prior.status().message(), HasSubstr(path.string()));
}

}  // namespace
}  // namespace logstar
