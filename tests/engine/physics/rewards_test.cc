#include "engine/physics/rewards.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/physics/crystallinity.h"
#include "engine/physics/physics_prior.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

constexpr double kPixelAngstrom = 0.125;
// Square lattice used throughout: 20 px = 2.5 Å spacing, 16 columns per nm²,
// so n_expected is exactly one atom per 400 px².
constexpr double kSpacingPx = 20.0;

PhysicsPrior SquareLatticePrior() {
  const double spacing_angstrom = kSpacingPx * kPixelAngstrom;
  PhysicsPrior prior;
  prior.pixel_size_angstrom = kPixelAngstrom;
  prior.column_density_per_nm2 = 100.0 / (spacing_angstrom * spacing_angstrom);
  prior.nearest_neighbor_angstrom = spacing_angstrom;
  return prior;
}

RewardOptions Options(double ds_factor, int num_neighbors = 4) {
  RewardOptions options;
  options.ds_factor = ds_factor;
  options.num_neighbors = num_neighbors;
  return options;
}

// A 200 x 200 px region holding a 10 x 10 square lattice, half a spacing in
// from every edge.
constexpr PixelRegion kLatticeRegion = {.col0 = 100, .row0 = 50, .cols = 200, .rows = 200};
constexpr int kLatticeSites = 10;

PointXY Site(int i, int j) {
  return {kLatticeRegion.col0 - 0.5 + kSpacingPx / 2 + i * kSpacingPx,
          kLatticeRegion.row0 - 0.5 + kSpacingPx / 2 + j * kSpacingPx};
}

std::vector<PointXY> SquareLattice() {
  std::vector<PointXY> atoms;
  for (int j = 0; j < kLatticeSites; ++j) {
    for (int i = 0; i < kLatticeSites; ++i) atoms.push_back(Site(i, j));
  }
  return atoms;
}

Rewards MustCompute(const std::vector<PointXY>& atoms, const PixelRegion& region,
                    const PhysicsPrior& prior, const RewardOptions& options) {
  absl::StatusOr<Rewards> rewards = ComputeRewards(atoms, region, prior, options);
  EXPECT_TRUE(rewards.ok()) << rewards.status();
  return rewards.ok() ? *rewards : Rewards{};
}

TEST(RewardsTest, PerfectLatticeHasNoErrors) {
  const PhysicsPrior prior = SquareLatticePrior();
  ASSERT_TRUE(prior.Validate().ok()) << prior.Validate();
  const Rewards r = MustCompute(SquareLattice(), kLatticeRegion, prior, RewardOptions{});
  EXPECT_EQ(r.num_found, 100);
  EXPECT_NEAR(r.num_expected, 100.0, 1e-9);
  EXPECT_NEAR(r.qc, 0.0, 1e-12);
  EXPECT_EQ(r.num_erroneous, 0);
  EXPECT_EQ(r.er, 0.0);
  EXPECT_NEAR(r.ds_px, 4 * 0.6 * kSpacingPx, 1e-12);
}

TEST(RewardsTest, ThresholdIsStrict) {
  // Interior sites have four neighbours at exactly 20 px (sum 80); edge sites
  // have three at 20 and one at 20*sqrt(2) (sum 88.3), corners more.
  const std::vector<PointXY> atoms = SquareLattice();
  const PhysicsPrior prior = SquareLatticePrior();
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, Options(1.0)).num_erroneous, 0);
  const Rewards r = MustCompute(atoms, kLatticeRegion, prior, Options(1.01));
  EXPECT_EQ(r.num_erroneous, 8 * 8);
  EXPECT_NEAR(r.er, 0.64, 1e-9);
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, Options(1.2)).num_erroneous, 100 - 4);
}

TEST(RewardsTest, SpuriousAtomsOnePixelAwayFormErroneousPairs) {
  // Real atom A with a spurious B 1 px away (unit vector u): A sums
  // 1 + 3*20 = 61 and B at most 1 + 19 + 2*sqrt(401 + 40 |u.e|) < 62, while
  // every lattice atom keeps a sum >= 19 + 3*20 = 79. With DS = 4*0.875*20 =
  // 70 each pair counts twice; with the default DS = 48 not at all.
  const PointXY offsets[] = {{1, 0}, {0, 1}, {-1, 0}, {0.6, -0.8}, {-0.8, 0.6}};
  const int sites[][2] = {{2, 2}, {2, 6}, {6, 2}, {6, 6}, {4, 4}};
  const PhysicsPrior prior = SquareLatticePrior();
  for (int k = 0; k <= 5; ++k) {
    SCOPED_TRACE(absl::StrCat("pairs: ", k));
    std::vector<PointXY> atoms = SquareLattice();
    for (int p = 0; p < k; ++p) {
      const PointXY a = Site(sites[p][0], sites[p][1]);
      atoms.push_back({a.x + offsets[p].x, a.y + offsets[p].y});
    }
    const Rewards r = MustCompute(atoms, kLatticeRegion, prior, Options(0.875));
    EXPECT_EQ(r.num_found, 100 + k);
    EXPECT_NEAR(r.qc, k / 100.0, 1e-9);
    EXPECT_EQ(r.num_erroneous, 2 * k);
    EXPECT_NEAR(r.er, 2 * k / 100.0, 1e-9);
    EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, RewardOptions{}).num_erroneous, 0);
  }
}

TEST(RewardsTest, TightClusterIsErroneousWithDefaultOptions) {
  // Five atoms in a plus shape of arm 1 px: the centre sums 4, each arm
  // 1 + 2*sqrt(2) + 2 = 5.8, both far below DS = 48; the lattice neighbours
  // of the centre still sum >= 19 + 20 + 2*20.02 > 48.
  std::vector<PointXY> atoms = SquareLattice();
  const PointXY c = Site(5, 5);
  for (const PointXY d : {PointXY{1, 0}, PointXY{-1, 0}, PointXY{0, 1}, PointXY{0, -1}}) {
    atoms.push_back({c.x + d.x, c.y + d.y});
  }
  const Rewards r = MustCompute(atoms, kLatticeRegion, SquareLatticePrior(), RewardOptions{});
  EXPECT_EQ(r.num_found, 104);
  EXPECT_EQ(r.num_erroneous, 5);
}

TEST(RewardsTest, ExactDuplicatesAreNeighbours) {
  const PhysicsPrior prior = SquareLatticePrior();
  // One duplicate: each copy sums 0 + 3*20 = 60 (< 70, > 48).
  std::vector<PointXY> atoms = SquareLattice();
  atoms.push_back(Site(3, 3));
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, Options(0.875)).num_erroneous, 2);
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, RewardOptions{}).num_erroneous, 0);
  // Three copies: each sums 0 + 0 + 2*20 = 40 < 48. Treating every zero
  // distance as "self" and summing the next four would give 80 and miss them.
  atoms.push_back(Site(3, 3));
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, RewardOptions{}).num_erroneous, 3);
  // Six copies at (3, 3): more than k + 1 points at distance 0, so the
  // query may not even return the atom itself; each still sums 0. Of four
  // copies at (7, 7) each has only three others at 0 and sums 20; the fifth
  // copy brings all five to 0.
  for (int i = 0; i < 3; ++i) atoms.push_back(Site(3, 3));
  for (int i = 0; i < 3; ++i) atoms.push_back(Site(7, 7));
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, Options(0.001)).num_erroneous, 6);
  atoms.push_back(Site(7, 7));
  EXPECT_EQ(MustCompute(atoms, kLatticeRegion, prior, Options(0.001)).num_erroneous, 6 + 5);
}

TEST(RewardsTest, FewerThanFiveAtomsGiveNoErrors) {
  const PhysicsPrior prior = SquareLatticePrior();
  const PointXY p = Site(4, 4);
  std::vector<PointXY> atoms(4, p);
  Rewards r = MustCompute(atoms, kLatticeRegion, prior, RewardOptions{});
  EXPECT_EQ(r.num_found, 4);
  EXPECT_EQ(r.num_erroneous, 0);
  EXPECT_EQ(r.er, 0.0);
  atoms.push_back(p);
  r = MustCompute(atoms, kLatticeRegion, prior, RewardOptions{});
  EXPECT_EQ(r.num_erroneous, 5);
  EXPECT_NEAR(r.er, 0.05, 1e-9);
  // The minimum follows num_neighbors.
  EXPECT_EQ(MustCompute({p, p}, kLatticeRegion, prior, Options(0.6, 2)).num_erroneous, 0);
  EXPECT_EQ(MustCompute({p, p, p}, kLatticeRegion, prior, Options(0.6, 2)).num_erroneous, 3);
  EXPECT_EQ(MustCompute({}, kLatticeRegion, prior, RewardOptions{}).num_found, 0);
}

TEST(RewardsTest, NumExpectedIsDensityTimesArea) {
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.125;
  prior.column_density_per_nm2 = 13.4;
  prior.nearest_neighbor_angstrom = 2.55;
  const PixelRegion region = {.col0 = 7, .row0 = -3, .cols = 37, .rows = 53};
  const Rewards r = MustCompute({}, region, prior, RewardOptions{});
  // 0.125 Å = 0.0125 nm per pixel.
  const double expected = 13.4 * 0.0125 * 0.0125 * 37 * 53;
  EXPECT_NEAR(r.num_expected, expected, 1e-12);
  EXPECT_NEAR(r.qc, 1.0, 1e-12);  // nothing found
  EXPECT_NEAR(r.ds_px, 4 * 0.6 * 2.55 / 0.125, 1e-12);
}

TEST(RewardsTest, RegionIsHalfOpenAroundPixelCentres) {
  const PhysicsPrior prior = SquareLatticePrior();
  const PixelRegion region = {.col0 = 10, .row0 = 20, .cols = 30, .rows = 40};
  auto found = [&](double x, double y) {
    return MustCompute({PointXY{x, y}}, region, prior, RewardOptions{}).num_found;
  };
  EXPECT_EQ(found(9.5, 30), 1);  // col0 - 0.5
  EXPECT_EQ(found(std::nextafter(9.5, 0.0), 30), 0);
  EXPECT_EQ(found(39.5, 30), 0);  // col0 + cols - 0.5
  EXPECT_EQ(found(std::nextafter(39.5, 0.0), 30), 1);
  EXPECT_EQ(found(20, 19.5), 1);  // row0 - 0.5
  EXPECT_EQ(found(20, std::nextafter(19.5, 0.0)), 0);
  EXPECT_EQ(found(20, 59.5), 0);  // row0 + rows - 0.5
  EXPECT_EQ(found(20, std::nextafter(59.5, 0.0)), 1);
  EXPECT_EQ(found(9.5, 19.5), 1);
  EXPECT_EQ(found(39.5, 59.5), 0);
}

TEST(RewardsTest, TilingCountsEveryAtomOnce) {
  // A 400 x 300 frame cut into four 200 x 150 tiles.
  constexpr int kCols = 400, kRows = 300;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> ux(-0.5, kCols - 0.5), uy(-0.5, kRows - 0.5);
  std::vector<PointXY> atoms;
  for (int i = 0; i < 2000; ++i) atoms.push_back({ux(rng), uy(rng)});
  // Atoms exactly on the tile borders and the frame's top-left corner.
  for (double y : {-0.5, 10.0, 149.5, 200.0}) atoms.push_back({199.5, y});
  for (double x : {-0.5, 10.0, 199.5, 300.0}) atoms.push_back({x, 149.5});
  // Atoms outside the frame (the far edges are exclusive).
  atoms.push_back({399.5, 10.0});
  atoms.push_back({10.0, 299.5});
  atoms.push_back({-1.0, 10.0});
  const int in_frame = static_cast<int>(atoms.size()) - 3;

  const PhysicsPrior prior = SquareLatticePrior();
  const PixelRegion frame = {.col0 = 0, .row0 = 0, .cols = kCols, .rows = kRows};
  EXPECT_EQ(MustCompute(atoms, frame, prior, RewardOptions{}).num_found, in_frame);
  int total = 0;
  double expected_total = 0.0;
  for (int row0 : {0, 150}) {
    for (int col0 : {0, 200}) {
      const PixelRegion tile = {.col0 = col0, .row0 = row0, .cols = 200, .rows = 150};
      const Rewards r = MustCompute(atoms, tile, prior, RewardOptions{});
      total += r.num_found;
      expected_total += r.num_expected;
    }
  }
  EXPECT_EQ(total, in_frame);
  EXPECT_NEAR(expected_total, kCols * kRows / (kSpacingPx * kSpacingPx), 1e-9);
}

TEST(RewardsTest, NeighboursComeOnlyFromTheRegion) {
  // A spurious atom B 1 px right of the right-most lattice column, exactly on
  // the (exclusive) right edge: outside the region it is nobody's neighbour.
  // Once the region grows by a pixel, A sums 1 + 3*20 = 61 and B
  // 1 + 21 + 2*sqrt(401) = 62.05, both below DS = 70.
  std::vector<PointXY> atoms = SquareLattice();
  const PointXY a = Site(9, 4);
  atoms.push_back({a.x + 1.0, a.y});
  const PhysicsPrior prior = SquareLatticePrior();
  PixelRegion region = kLatticeRegion;
  region.cols = static_cast<int>(a.x + 1.0 + 0.5) - region.col0;
  ASSERT_EQ(region.col0 + region.cols - 0.5, a.x + 1.0);
  Rewards r = MustCompute(atoms, region, prior, Options(0.875));
  EXPECT_EQ(r.num_found, 100);
  EXPECT_EQ(r.num_erroneous, 0);
  region.cols += 1;
  r = MustCompute(atoms, region, prior, Options(0.875));
  EXPECT_EQ(r.num_found, 101);
  EXPECT_EQ(r.num_erroneous, 2);
}

TEST(RewardsTest, RejectsBadInputsNamingTheField) {
  const PhysicsPrior prior = SquareLatticePrior();
  const std::vector<PointXY> atoms = SquareLattice();

  PhysicsPrior bad_prior = prior;
  bad_prior.pixel_size_angstrom = 0.0;
  absl::StatusOr<Rewards> r = ComputeRewards(atoms, kLatticeRegion, bad_prior, RewardOptions{});
  EXPECT_EQ(r.status(), bad_prior.Validate());
  EXPECT_THAT(r.status().message(), HasSubstr("pixel_size_angstrom"));

  bad_prior = prior;
  bad_prior.nearest_neighbor_angstrom = 0.1;  // under 2 px
  r = ComputeRewards(atoms, kLatticeRegion, bad_prior, RewardOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("nearest_neighbor_angstrom"));

  for (double ds : {0.0, -0.6, std::numeric_limits<double>::quiet_NaN(),
                    std::numeric_limits<double>::infinity()}) {
    r = ComputeRewards(atoms, kLatticeRegion, prior, Options(ds));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("ds_factor"));
  }
  for (int k : {0, -4}) {
    r = ComputeRewards(atoms, kLatticeRegion, prior, Options(0.6, k));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("num_neighbors"));
  }

  PixelRegion region = kLatticeRegion;
  region.cols = 0;
  r = ComputeRewards(atoms, region, prior, RewardOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("cols"));
  region = kLatticeRegion;
  region.rows = -5;
  r = ComputeRewards(atoms, region, prior, RewardOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("rows"));
}

TEST(RewardsTest, RejectsNonFiniteAtomsNamingTheIndex) {
  const PhysicsPrior prior = SquareLatticePrior();
  for (const PointXY bad : {PointXY{std::numeric_limits<double>::quiet_NaN(), 60.0},
                            PointXY{120.0, std::numeric_limits<double>::infinity()},
                            PointXY{-std::numeric_limits<double>::infinity(), 0.0}}) {
    std::vector<PointXY> atoms = SquareLattice();
    atoms[37] = bad;
    const absl::StatusOr<Rewards> r = ComputeRewards(atoms, kLatticeRegion, prior, RewardOptions{});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("atoms[37]"));
  }
}

// Independent O(n^2) reference: the sklearn recipe, kneighbors on the region's
// atoms with the atom itself as the first (distance 0) of k + 1 neighbours.
// Returns the indices into `atoms` of the atoms it counts.
std::vector<int> BruteForceErroneous(const std::vector<PointXY>& atoms, const PixelRegion& region,
                                     int k, double ds_px) {
  std::vector<int> in;
  for (size_t i = 0; i < atoms.size(); ++i) {
    const PointXY& p = atoms[i];
    if (p.x >= region.col0 - 0.5 && p.x < region.col0 + region.cols - 0.5 &&
        p.y >= region.row0 - 0.5 && p.y < region.row0 + region.rows - 0.5) {
      in.push_back(static_cast<int>(i));
    }
  }
  std::vector<int> flagged;
  if (in.size() <= static_cast<size_t>(k)) return flagged;
  std::vector<double> d2;
  for (int i : in) {
    d2.clear();
    for (int j : in) {
      if (j == i) continue;
      const double dx = atoms[i].x - atoms[j].x, dy = atoms[i].y - atoms[j].y;
      d2.push_back(dx * dx + dy * dy);
    }
    std::sort(d2.begin(), d2.end());
    double sum = 0.0;
    for (int n = 0; n < k; ++n) sum += std::sqrt(d2[n]);
    if (sum < ds_px) flagged.push_back(i);
  }
  return flagged;
}

TEST(RewardsTest, MatchesBruteForceWithDuplicates) {
  const PixelRegion region = {.col0 = 0, .row0 = 0, .cols = 300, .rows = 300};
  std::mt19937 rng(20240611);
  std::uniform_real_distribution<double> u(-20.0, 320.0);  // some fall outside
  std::uniform_real_distribution<double> jitter(-0.5, 0.5);
  std::vector<PointXY> atoms;
  for (int i = 0; i < 400; ++i) atoms.push_back({u(rng), u(rng)});
  for (int i = 0; i < 100; ++i) {
    const PointXY p = atoms[std::uniform_int_distribution<size_t>(0, atoms.size() - 1)(rng)];
    switch (i % 3) {
      case 0:  // exact duplicate
        atoms.push_back(p);
        break;
      case 1:  // sub-pixel near-duplicate
        atoms.push_back({p.x + jitter(rng), p.y + jitter(rng)});
        break;
      default:  // a duplicate off by one ulp
        atoms.push_back({std::nextafter(p.x, 1e9), p.y});
        break;
    }
  }

  // ~500 atoms in 300^2 px: about 35.6 per nm^2 at 0.125 Å/px; nn = 8 px.
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.125;
  prior.column_density_per_nm2 = 500.0 / (300.0 * 300.0) / (0.0125 * 0.0125);
  prior.nearest_neighbor_angstrom = 1.0;
  ASSERT_TRUE(prior.Validate().ok()) << prior.Validate();

  int nontrivial = 0;
  for (int k : {1, 2, 4, 6}) {
    for (double f : {0.05, 0.25, 0.6, 1.0, 1.5, 3.0}) {
      SCOPED_TRACE(absl::StrCat("k=", k, " ds_factor=", f));
      std::vector<int> flagged;
      const absl::StatusOr<Rewards> r =
          ComputeRewards(atoms, region, prior, Options(f, k), &flagged);
      ASSERT_TRUE(r.ok()) << r.status();
      const double ds_px = k * f * 8.0;
      EXPECT_NEAR(r->ds_px, ds_px, 1e-12);
      const std::vector<int> expected = BruteForceErroneous(atoms, region, k, ds_px);
      EXPECT_EQ(r->num_erroneous, static_cast<int>(expected.size()));
      // The atoms counted, as indices into the caller's atoms.
      EXPECT_EQ(flagged, expected);
      if (!expected.empty() && static_cast<int>(expected.size()) < r->num_found) ++nontrivial;
    }
  }
  // The comparison must exercise both sides of the threshold.
  EXPECT_GE(nontrivial, 12);
}

TEST(RewardsTest, ErFlaggedPointsMatchABruteForceList) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 100);
  std::vector<PointXY> points;
  for (int i = 0; i < 300; ++i) points.push_back({u(rng), u(rng)});
  // A tight cluster and an exact duplicate: the atoms ER is meant to catch.
  for (int i = 0; i < 5; ++i) points.push_back({50.0 + 0.3 * i, 50.0});
  points.push_back(points[0]);
  int partly_flagged = 0;
  // DS from far below the spacing (the grid's size bound) to far above it.
  for (int k : {1, 2, 4}) {
    for (double ds : {0.5, 1.0, 6.0, 12.0, 20.0, 40.0}) {
      std::vector<int> expected;
      for (size_t i = 0; i < points.size(); ++i) {
        std::vector<double> d;
        for (size_t j = 0; j < points.size(); ++j) {
          if (i != j) d.push_back(std::hypot(points[i].x - points[j].x, points[i].y - points[j].y));
        }
        std::sort(d.begin(), d.end());
        double sum = 0.0;
        for (int n = 0; n < k; ++n) sum += d[n];
        if (sum < ds) expected.push_back(static_cast<int>(i));
      }
      partly_flagged += !expected.empty() && expected.size() < points.size();
      EXPECT_EQ(ErFlaggedPoints(points, ds, k), expected) << "k " << k << ", ds " << ds;
    }
  }
  EXPECT_GE(partly_flagged, 10);  // the cases discriminate
}

TEST(RewardsTest, ErFlaggedPointsOnALatticeWithExactTies) {
  // Integer coordinates: many neighbours tie exactly, and the sum of the 4
  // nearest on a square lattice of spacing 1 is exactly 4.
  std::vector<PointXY> points;
  for (int y = 0; y < 12; ++y) {
    for (int x = 0; x < 12; ++x) points.push_back({static_cast<double>(x), static_cast<double>(y)});
  }
  // Interior atoms (10 x 10) have 4 neighbours at 1, summing to 4 exactly;
  // the threshold is strict.
  EXPECT_TRUE(ErFlaggedPoints(points, 4.0, 4).empty());
  EXPECT_EQ(ErFlaggedPoints(points, std::nextafter(4.0, 5.0), 4).size(), 100u);
  // Edge atoms (4 x 10): 3 at 1 and one at sqrt(2); corners: 2 at 1, one at
  // sqrt(2) and one at 2.
  EXPECT_EQ(ErFlaggedPoints(points, 3.0 + std::sqrt(2.0) + 1e-9, 4).size(), 140u);
  EXPECT_EQ(ErFlaggedPoints(points, 4.0 + std::sqrt(2.0) - 1e-9, 4).size(), 140u);
  EXPECT_EQ(ErFlaggedPoints(points, 4.0 + std::sqrt(2.0) + 1e-9, 4).size(), 144u);
  // Degenerate inputs flag nothing.
  EXPECT_TRUE(ErFlaggedPoints(points, 0.0, 4).empty());
  EXPECT_TRUE(ErFlaggedPoints(points, 10.0, 0).empty());
  EXPECT_TRUE(ErFlaggedPoints(absl::MakeSpan(points).first(4), 10.0, 4).empty());
}

TEST(RewardsTest, ScalesToManyAtoms) {
  // 200k atoms; an O(n^2) neighbour search would not finish in reasonable time.
  constexpr int kSide = 4000, kNum = 200000;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-0.5, kSide - 0.5);
  std::vector<PointXY> atoms(kNum);
  for (PointXY& p : atoms) p = {u(rng), u(rng)};
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.125;
  prior.column_density_per_nm2 = double{kNum} / (double{kSide} * kSide) / (0.0125 * 0.0125);
  prior.nearest_neighbor_angstrom = 1.0;
  const Rewards r =
      MustCompute(atoms, {.col0 = 0, .row0 = 0, .cols = kSide, .rows = kSide}, prior, {});
  EXPECT_EQ(r.num_found, kNum);
  EXPECT_NEAR(r.num_expected, kNum, 1e-6);
  EXPECT_GT(r.num_erroneous, 0);
  EXPECT_LT(r.num_erroneous, kNum);
}

// The lattice pair on a square lattice of kSpacingPx: translations a = (20,
// 0), b = (0, 20), one column per cell, r = 4 px, duplicates under 10 px.
LatticeSites SquareSites() {
  LatticeSites sites;
  sites.translations = {{kSpacingPx, 0}, {0, kSpacingPx}, {kSpacingPx, kSpacingPx},
                        {kSpacingPx, -kSpacingPx}};
  sites.match_radius_px = 4.0;
  sites.duplicate_px = 10.0;
  return sites;
}

// Columns at (20 i, 20 j), i, j in [0, n), and the region [0, 20 n) px
// shifted by half a pixel so the box holds exactly those columns.
std::vector<PointXY> SquareColumns(int n) {
  std::vector<PointXY> points;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < n; ++i) points.push_back({kSpacingPx * i, kSpacingPx * j});
  }
  return points;
}

// Sites inside an n × n block seen from its columns: for each translation
// pair, 2 (n - 1) n sites along a or b, 2 (n - 1)² along a diagonal.
int SquareSiteCount(int n) { return 2 * (2 * (n - 1) * n) + 2 * (2 * (n - 1) * (n - 1)); }

TEST(LatticeRewardsTest, PerfectLatticeHasNoMissesAndNothingSpurious) {
  const std::vector<PointXY> points = SquareColumns(6);
  const PixelRegion region{0, 0, 120, 120};
  absl::StatusOr<LatticeRewards> r = ComputeLatticeRewards(points, region, SquareSites());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_found, 36);
  EXPECT_EQ(r->num_sites, SquareSiteCount(6));
  EXPECT_EQ(r->num_missing, 0);
  EXPECT_DOUBLE_EQ(r->misses, 0.0);
  EXPECT_DOUBLE_EQ(r->spurious, 0.0);
}

TEST(LatticeRewardsTest, AHoleIsMissedByEachOfItsEightNeighbours) {
  std::vector<PointXY> points = SquareColumns(6);
  points.erase(points.begin() + 2 * 6 + 2);  // the column at (40, 40)
  absl::StatusOr<LatticeRewards> r =
      ComputeLatticeRewards(points, {0, 0, 120, 120}, SquareSites());
  ASSERT_TRUE(r.ok()) << r.status();
  // The hole's 8 neighbours each miss it; its own 8 sites are no longer
  // counted.
  EXPECT_EQ(r->num_sites, SquareSiteCount(6) - 8);
  EXPECT_EQ(r->num_missing, 8);
  EXPECT_DOUBLE_EQ(r->misses, 8.0 / (SquareSiteCount(6) - 8));
  EXPECT_DOUBLE_EQ(r->spurious, 0.0);
}

TEST(LatticeRewardsTest, NoisePeaksAndSplitColumnsAreSpurious) {
  std::vector<PointXY> points = SquareColumns(6);
  points.push_back({50, 50});  // a cell centre: its translations hit no column
  points.push_back({82, 80});  // 2 px from (80, 80): a split column, both flagged
  std::vector<int> flagged;
  absl::StatusOr<LatticeRewards> r =
      ComputeLatticeRewards(points, {0, 0, 120, 120}, SquareSites(), nullptr, &flagged);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_found, 38);
  EXPECT_EQ(r->num_spurious, 3);
  EXPECT_DOUBLE_EQ(r->spurious, 3.0 / 38.0);
  EXPECT_THAT(flagged, ::testing::ElementsAre(4 * 6 + 4, 36, 37));
}

TEST(LatticeRewardsTest, MarginsWeighNearThresholdMaxima) {
  const std::vector<PointXY> points = SquareColumns(6);
  // Every column twice the threshold: each found site costs (1/2)² = 1/4.
  const std::vector<double> detected(points.size(), 2.0);
  // Maxima under the threshold: a noise peak at 0.5 of it costs 0.5² = 1/4;
  // one on a detected column (a weaker copy) and one outside the region
  // cost nothing.
  const std::vector<PointXY> below = {{50, 50}, {40.5, 40}, {150, 150}};
  const std::vector<double> below_ratio = {0.5, 0.9, 0.9};
  const LatticeMargins margins{detected, below, below_ratio, {}};
  absl::StatusOr<LatticeRewards> r =
      ComputeLatticeRewards(points, {0, 0, 120, 120}, SquareSites(), &margins);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->misses, 0.25);
  EXPECT_DOUBLE_EQ(r->spurious, 0.25 / 36.0);
  EXPECT_EQ(r->num_spurious, 0);
}

// Against the noise: a supported detection whose response is near the
// noise peaks' level adds min(1, n / v)² times the chance that a noise
// peak lands on a column (π r² per 20 × 20 px cell of one column: π 4² /
// 400 = 0.1257); an unsupported one counts 1 whatever its ratio.
TEST(LatticeRewardsTest, NoiseRatiosWeighSupportedDetectionsByTheSiteShare) {
  std::vector<PointXY> points = SquareColumns(6);
  points.push_back({50, 50});  // a cell centre: unsupported
  const std::vector<double> detected(points.size(), 1.0);
  std::vector<double> noise_ratio(points.size(), 0.0);
  noise_ratio[0] = 0.5;   // a quarter of a noise peak's ambiguity
  noise_ratio[1] = 3.0;   // under the noise level: capped at 1
  noise_ratio[36] = 0.5;  // the unsupported one: 1 already
  const LatticeMargins margins{detected, {}, {}, noise_ratio};
  absl::StatusOr<LatticeRewards> r =
      ComputeLatticeRewards(points, {0, 0, 120, 120}, SquareSites(), &margins);
  ASSERT_TRUE(r.ok()) << r.status();
  const double on_site = 3.14159265358979 * 16.0 / 400.0;
  EXPECT_NEAR(r->spurious, (1.0 + on_site * (0.25 + 1.0)) / 37.0, 1e-12);
  EXPECT_EQ(r->num_spurious, 1);
  // Without noise ratios the term is absent.
  const LatticeMargins plain{detected, {}, {}, {}};
  r = ComputeLatticeRewards(points, {0, 0, 120, 120}, SquareSites(), &plain);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->spurious, 1.0 / 37.0);
  // One ratio per point or none.
  const std::vector<double> short_ratio(3, 0.5);
  const LatticeMargins bad{detected, {}, {}, short_ratio};
  EXPECT_EQ(ComputeLatticeRewards(points, {0, 0, 120, 120}, SquareSites(), &bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LatticeRewardsTest, NothingFoundIsTheWorst) {
  absl::StatusOr<LatticeRewards> r = ComputeLatticeRewards({}, {0, 0, 120, 120}, SquareSites());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->misses, 1.0);
  EXPECT_DOUBLE_EQ(r->spurious, 1.0);
}

TEST(LatticeRewardsTest, ColumnOffsetsFindAMissingSublattice) {
  // Two columns per cell, (0, 0) and (10, 10) in 20 px cells: each column's
  // offset to the other one (the shortest image; one per column here).
  LatticeSites sites = SquareSites();
  sites.duplicate_px = 5.0;
  sites.column_offsets = {{{10, 10}}, {{-10, -10}}};
  const std::vector<PointXY> first = SquareColumns(6);
  absl::StatusOr<LatticeRewards> r = ComputeLatticeRewards(first, {0, 0, 120, 120}, sites);
  ASSERT_TRUE(r.ok()) << r.status();
  // Each column's offset site (20 i + 10, 20 j + 10) lies inside the region
  // and is empty; the translation sites are all found.
  EXPECT_EQ(r->num_missing, 36);
  EXPECT_EQ(r->num_sites, SquareSiteCount(6) + 36);
  // Half the columns are missing, and misses says about that: each cell
  // site weighs as much as a column's 8 translation sites (fewer inside at
  // the region's edges), so 8 x 36 missing of SquareSiteCount(6) + 8 x 36.
  // Unweighted it was 36 of SquareSiteCount(6) + 36, about 0.13.
  EXPECT_NEAR(r->misses, 8.0 * 36 / (SquareSiteCount(6) + 8.0 * 36), 1e-12);
  EXPECT_GT(r->misses, 0.45);
  std::vector<PointXY> both = first;
  for (const PointXY& p : first) both.push_back({p.x + 10, p.y + 10});
  r = ComputeLatticeRewards(both, {0, 0, 120, 120}, sites);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_missing, 0);
  EXPECT_DOUBLE_EQ(r->spurious, 0.0);
}

// A mask whose left `cols` columns of pixels are crystalline, of a frame of
// width × height px.
CrystalMask LeftPart(int width, int height, int cols) {
  cv::Mat mask = cv::Mat::zeros(height, width, CV_8U);
  mask(cv::Rect(0, 0, cols, height)).setTo(1);
  absl::StatusOr<CrystalMask> m = CrystalMask::FromMask(mask);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

// Expected counts over the crystal only: the lattice of kLatticeRegion with
// the crystal ending at x = 200 (pixel columns [100, 200) of the region,
// half its area) expects 50 columns and finds the 50 on it, so QC is 0 even
// with noise detections on the vacuum half, which ER does not see either.
TEST(RewardsTest, CountsAreOverTheCrystallineArea) {
  const PhysicsPrior prior = SquareLatticePrior();
  const CrystalMask crystal = LeftPart(400, 300, 200);
  std::vector<PointXY> atoms;
  for (const PointXY& p : SquareLattice()) {
    if (p.x < 199.5) atoms.push_back(p);
  }
  ASSERT_EQ(atoms.size(), 50u);
  // A dense cluster of noise peaks on the vacuum half.
  for (int k = 0; k < 8; ++k) atoms.push_back({250.0 + k, 150.0 + 0.5 * k});
  absl::StatusOr<Rewards> r =
      ComputeRewards(atoms, kLatticeRegion, prior, RewardOptions{}, nullptr, &crystal);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->num_expected, 50.0, 1e-9);  // 100 × 200 px² at 1 per 400 px²
  EXPECT_EQ(r->num_found, 50);
  EXPECT_NEAR(r->qc, 0.0, 1e-12);
  EXPECT_EQ(r->num_erroneous, 0);
  // Without the mask the cluster counts and ER flags it.
  const Rewards whole = MustCompute(atoms, kLatticeRegion, prior, RewardOptions{});
  EXPECT_EQ(whole.num_found, 58);
  EXPECT_GT(whole.num_erroneous, 0);
  // A region without crystal has nothing to count.
  r = ComputeRewards(atoms, {220, 50, 80, 200}, prior, RewardOptions{}, nullptr, &crystal);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_found, 0);
  EXPECT_DOUBLE_EQ(r->num_expected, 0.0);
  EXPECT_DOUBLE_EQ(r->qc, 0.0);
  EXPECT_DOUBLE_EQ(r->er, 0.0);
}

// The lattice pair on the crystal only: a noise peak off it is not
// spurious, and the sites of the crystal's edge columns that fall off it are
// not counted as missing.
TEST(LatticeRewardsTest, OnlyTheCrystalCounts) {
  // Columns at x = 0..100 step 20 (6 columns wide), the crystal ending at
  // x = 110 (pixels [0, 111)), region 200 px wide.
  std::vector<PointXY> points = SquareColumns(6);
  const CrystalMask crystal = LeftPart(200, 120, 111);
  points.push_back({170, 50});  // a noise peak on the vacuum
  const PixelRegion region{0, 0, 200, 120};
  absl::StatusOr<LatticeRewards> r =
      ComputeLatticeRewards(points, region, SquareSites(), nullptr, nullptr, &crystal);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_found, 36);
  EXPECT_EQ(r->num_spurious, 0);
  EXPECT_DOUBLE_EQ(r->spurious, 0.0);
  // The columns at x = 100 look for sites at x = 120 (off the crystal): not
  // counted, so nothing is missing.
  EXPECT_EQ(r->num_missing, 0);
  EXPECT_EQ(r->num_sites, SquareSiteCount(6));
  // Without the mask the peak is spurious and the edge's sites are missed.
  r = ComputeLatticeRewards(points, region, SquareSites());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_spurious, 1);
  EXPECT_GT(r->num_missing, 0);
}

TEST(LatticeRewardsTest, InvalidSitesAreRejected) {
  LatticeSites sites = SquareSites();
  sites.match_radius_px = 0.0;
  EXPECT_EQ(ComputeLatticeRewards({}, {0, 0, 10, 10}, sites).status().code(),
            absl::StatusCode::kInvalidArgument);
  sites = SquareSites();
  sites.translations = {{3, 0}};  // shorter than r: every point supports itself
  EXPECT_EQ(ComputeLatticeRewards({}, {0, 0, 10, 10}, sites).status().code(),
            absl::StatusCode::kInvalidArgument);
  RewardOptions options;
  options.site_radius_fraction = 0.6;
  EXPECT_THAT(std::string(options.Validate().message()), HasSubstr("site_radius_fraction"));
}

}  // namespace
}  // namespace logstar
