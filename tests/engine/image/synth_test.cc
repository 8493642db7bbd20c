#include "engine/image/synth.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <numbers>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/image/image_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

SynthOptions Opts(SynthLattice lattice, int size, double noise = 0.0, uint64_t seed = 1) {
  SynthOptions o;
  o.lattice = lattice;
  o.width = size;
  o.height = size;
  o.noise = noise;
  o.seed = seed;
  return o;
}

SynthFrame MustSynthesize(const SynthOptions& o) {
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return SynthFrame{};
  return *std::move(f);
}

int PixelOf(double v, int size) {
  return std::clamp(static_cast<int>(std::floor(v + 0.5)), 0, size - 1);
}

double MinPairwiseDistance(const std::vector<SynthAtom>& atoms) {
  double best = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < atoms.size(); ++i) {
    for (size_t j = i + 1; j < atoms.size(); ++j) {
      best = std::min(best, std::hypot(atoms[i].x - atoms[j].x, atoms[i].y - atoms[j].y));
    }
  }
  return best;
}

// Peak heights from Z^1.7, brightest element of the lattice = 1.
std::map<std::string, double> ClosedFormIntensity(SynthLattice lattice) {
  switch (lattice) {
    case SynthLattice::kYbco:
      return {{"Ba", 1.0}, {"Y", std::pow(39.0 / 56.0, 1.7)}, {"Cu", std::pow(29.0 / 56.0, 1.7)}};
    case SynthLattice::kPerovskite:
      return {{"Sr", 1.0}, {"Ti", std::pow(22.0 / 38.0, 1.7)}};
    case SynthLattice::kHex:
      return {{"C", 1.0}};
  }
  return {};
}

struct LatticeTruth {
  SynthLattice lattice;
  double pixel_size;       // default, Å/px
  double density_per_nm2;  // closed form
  double nn_angstrom;      // closed form
};

std::vector<LatticeTruth> AllLattices() {
  const double a_hex = 2.46;
  return {
      {SynthLattice::kYbco, 0.125, 6.0 / (3.82 * 11.68) * 100.0,
       std::hypot(0.5 * 3.82, (0.5 - 0.355) * 11.68)},
      {SynthLattice::kPerovskite, 0.125, 2.0 / (3.905 * 3.905) * 100.0, 3.905 / std::sqrt(2.0)},
      {SynthLattice::kHex, 0.078, 2.0 / (a_hex * a_hex * std::sqrt(3.0) / 2.0) * 100.0,
       a_hex / std::sqrt(3.0)},
  };
}

std::string TempDirFor(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/synth_test_", getpid(), "_", name);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Minimal JSON look-up: the number after "key":.
double JsonNumber(const std::string& json, const std::string& key) {
  std::smatch m;
  const std::regex re("\"" + key + "\"\\s*:\\s*([-+0-9.eE]+)");
  if (!std::regex_search(json, m, re)) {
    ADD_FAILURE() << "key " << key << " not found in " << json;
    return std::nan("");
  }
  return std::stod(m[1].str());
}

// Options made invalid by `mutate`: Validate() and Synthesize() refuse them
// with an error that names `field`.
struct InvalidCase {
  void (*mutate)(SynthOptions&);
  const char* field;
};

void ExpectInvalidNamingTheField(const InvalidCase& c) {
  SynthOptions o;
  c.mutate(o);
  absl::Status s = o.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
  EXPECT_THAT(s.message(), HasSubstr(c.field));
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
  EXPECT_THAT(f.status().message(), HasSubstr(c.field));
}

// Every value's name parses back to it, the names are as documented, and an
// unknown name is refused naming it and `what`.
template <typename Enum>
void ExpectNamesRoundTrip(std::initializer_list<std::pair<Enum, const char*>> names,
                          absl::StatusOr<Enum> (*parse)(const std::string&),
                          const char* (*name_of)(Enum), const std::string& unknown,
                          const std::string& what) {
  for (const auto& [value, name] : names) {
    EXPECT_STREQ(name_of(value), name);
    absl::StatusOr<Enum> parsed = parse(name);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, value);
  }
  absl::StatusOr<Enum> bad = parse(unknown);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr(unknown));
  EXPECT_THAT(bad.status().message(), HasSubstr(what));
}

TEST(SynthLatticeTest, ParseAndNameRoundTrip) {
  ExpectNamesRoundTrip<SynthLattice>({{SynthLattice::kYbco, "ybco"},
                                      {SynthLattice::kPerovskite, "perovskite"},
                                      {SynthLattice::kHex, "hex"}},
                                     ParseSynthLattice, SynthLatticeName, "graphite", "lattice");
}

TEST(SynthOptionsTest, DefaultsAreValid) { EXPECT_TRUE(SynthOptions{}.Validate().ok()); }

TEST(SynthOptionsTest, InvalidOptionsNameTheField) {
  const InvalidCase cases[] = {
      {[](SynthOptions& o) { o.width = 7; }, "width"},
      {[](SynthOptions& o) { o.width = 8193; }, "width"},
      {[](SynthOptions& o) { o.height = 0; }, "height"},
      {[](SynthOptions& o) { o.height = 100000; }, "height"},
      {[](SynthOptions& o) { o.noise = 1.5; }, "noise"},
      {[](SynthOptions& o) { o.noise = -0.1; }, "noise"},
      {[](SynthOptions& o) { o.noise = std::numeric_limits<double>::quiet_NaN(); }, "noise"},
      {[](SynthOptions& o) { o.amorphous_fraction = 0.95; }, "amorphous_fraction"},
      {[](SynthOptions& o) { o.amorphous_fraction = -0.01; }, "amorphous_fraction"},
      {[](SynthOptions& o) { o.drift_px = std::numeric_limits<double>::infinity(); }, "drift_px"},
      {[](SynthOptions& o) { o.drift_px = std::numeric_limits<double>::quiet_NaN(); }, "drift_px"},
      {[](SynthOptions& o) { o.drift_px = -2e6; }, "drift_px"},
      {[](SynthOptions& o) { o.dose = -1.0; }, "dose"},
      {[](SynthOptions& o) { o.dose = std::numeric_limits<double>::infinity(); }, "dose"},
      {[](SynthOptions& o) { o.pixel_size_angstrom = std::numeric_limits<double>::quiet_NaN(); },
       "pixel_size_angstrom"},
      {[](SynthOptions& o) { o.pixel_size_angstrom = 50.0; }, "pixel_size_angstrom"},
      {[](SynthOptions& o) {
         o.lattice = SynthLattice::kHex;
         o.pixel_size_angstrom = 0.75;  // C-C 1.42 Å would span < 2 px
       },
       "pixel_size_angstrom"},
  };
  for (const InvalidCase& c : cases) ExpectInvalidNamingTheField(c);
  SynthOptions o;
  o.noise = 1.5;
  EXPECT_THAT(o.Validate().message(), HasSubstr("noise must be in [0, 1], got 1.5"));
}

TEST(SynthTest, FrameShapeTypesAndResolvedOptions) {
  SynthOptions o = Opts(SynthLattice::kHex, 64);
  o.height = 48;
  SynthFrame f = MustSynthesize(o);
  EXPECT_EQ(f.image.type(), CV_32F);
  EXPECT_EQ(f.image.rows, 48);
  EXPECT_EQ(f.image.cols, 64);
  EXPECT_EQ(f.amorphous_mask.type(), CV_8U);
  EXPECT_EQ(f.amorphous_mask.size(), f.image.size());
  EXPECT_DOUBLE_EQ(f.options.pixel_size_angstrom, 0.078);
  EXPECT_DOUBLE_EQ(f.prior.pixel_size_angstrom, 0.078);
  for (const SynthAtom& a : f.atoms) {
    EXPECT_GE(a.x, -0.5);
    EXPECT_LT(a.x, 63.5);
    EXPECT_GE(a.y, -0.5);
    EXPECT_LT(a.y, 47.5);
  }

  o.pixel_size_angstrom = 0.2;
  f = MustSynthesize(o);
  EXPECT_DOUBLE_EQ(f.options.pixel_size_angstrom, 0.2);
  EXPECT_NEAR(f.atoms.at(0).sigma_px, 0.35 / 0.2, 1e-12);
}

void ExpectSameAtoms(const std::vector<SynthAtom>& a, const std::vector<SynthAtom>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].x, b[i].x);
    EXPECT_EQ(a[i].y, b[i].y);
    EXPECT_EQ(a[i].intensity, b[i].intensity);
    EXPECT_EQ(a[i].amorphous, b[i].amorphous);
    EXPECT_EQ(a[i].crystal, b[i].crystal);
    EXPECT_EQ(a[i].sublattice, b[i].sublattice);
  }
}

// Bit for bit: the frame, its masks and its truth.
void ExpectSameFrame(const SynthFrame& a, const SynthFrame& b) {
  ASSERT_FALSE(a.image.empty());
  EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(a.amorphous_mask, b.amorphous_mask, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(a.crystal_map, b.crystal_map, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(a.crystalline_mask, b.crystalline_mask, cv::NORM_INF), 0.0);
  ExpectSameAtoms(a.atoms, b.atoms);
  ExpectSameAtoms(a.support_atoms, b.support_atoms);
}

TEST(SynthTest, SameSeedSameFrameDifferentSeedDifferentFrame) {
  SynthOptions o = Opts(SynthLattice::kYbco, 128, 0.2, 42);
  o.amorphous_fraction = 0.2;
  o.dose = 50.0;
  o.drift_px = 2.5;
  SynthFrame a = MustSynthesize(o);
  SynthFrame b = MustSynthesize(o);
  ExpectSameFrame(a, b);

  o.seed = 43;
  SynthFrame c = MustSynthesize(o);
  EXPECT_GT(cv::norm(a.image, c.image, cv::NORM_INF), 0.1);
  EXPECT_GT(cv::norm(a.amorphous_mask, c.amorphous_mask, cv::NORM_L1), 0.0);
  ASSERT_FALSE(c.atoms.empty());
  // The origin offset is random, so the first atom moves too.
  EXPECT_NE(a.atoms[0].x, c.atoms[0].x);
}

TEST(SynthTest, PriorMatchesClosedFormLattice) {
  for (const LatticeTruth& t : AllLattices()) {
    SCOPED_TRACE(SynthLatticeName(t.lattice));
    SynthFrame f = MustSynthesize(Opts(t.lattice, 64));
    EXPECT_TRUE(f.prior.Validate().ok()) << f.prior.Validate();
    EXPECT_DOUBLE_EQ(f.prior.pixel_size_angstrom, t.pixel_size);
    ASSERT_TRUE(f.prior.column_density_per_nm2.has_value());
    EXPECT_NEAR(*f.prior.column_density_per_nm2, t.density_per_nm2, 1e-9);
    EXPECT_NEAR(f.prior.nearest_neighbor_angstrom, t.nn_angstrom, 1e-9);
  }
  // The figures the header quotes.
  EXPECT_NEAR(AllLattices()[0].density_per_nm2, 13.45, 0.01);
  EXPECT_NEAR(AllLattices()[0].nn_angstrom, 2.55, 0.01);
  EXPECT_NEAR(AllLattices()[2].nn_angstrom, 1.42, 0.001);
}

TEST(SynthTest, AtomCountMatchesDensityTimesArea) {
  for (const LatticeTruth& t : AllLattices()) {
    SCOPED_TRACE(SynthLatticeName(t.lattice));
    SynthFrame f = MustSynthesize(Opts(t.lattice, 2048));
    const double per_px2 = t.density_per_nm2 / 100.0 * t.pixel_size * t.pixel_size;
    const double expected = per_px2 * 2048.0 * 2048.0;
    EXPECT_NEAR(static_cast<double>(f.atoms.size()) / expected, 1.0, 0.02)
        << f.atoms.size() << " atoms, expected " << expected;
    for (const SynthAtom& a : f.atoms) EXPECT_FALSE(a.amorphous);
    EXPECT_EQ(cv::countNonZero(f.amorphous_mask), 0);
  }
}

TEST(SynthTest, MinimumSpacingOfTruthIsThePriorNearestNeighbour) {
  for (const LatticeTruth& t : AllLattices()) {
    SCOPED_TRACE(SynthLatticeName(t.lattice));
    SynthFrame f = MustSynthesize(Opts(t.lattice, 384));
    ASSERT_GT(f.atoms.size(), 50u);
    const double closed_form_px = t.nn_angstrom / t.pixel_size;
    EXPECT_NEAR(MinPairwiseDistance(f.atoms), closed_form_px, 1e-6 * closed_form_px);
    EXPECT_NEAR(f.prior.NearestNeighborPx(), closed_form_px, 1e-9 * closed_form_px);
  }
}

TEST(SynthTest, ColumnIntensityFollowsZToThe1Point7) {
  for (const LatticeTruth& t : AllLattices()) {
    SCOPED_TRACE(SynthLatticeName(t.lattice));
    SynthFrame f = MustSynthesize(Opts(t.lattice, 256));
    const std::map<std::string, double> want = ClosedFormIntensity(t.lattice);
    std::map<std::string, int> seen;
    for (const SynthAtom& a : f.atoms) {
      ASSERT_TRUE(want.count(a.element)) << a.element;
      EXPECT_NEAR(a.intensity, want.at(a.element), 1e-12);
      ++seen[a.element];
    }
    EXPECT_EQ(seen.size(), want.size());
    const double sigma_angstrom = t.lattice == SynthLattice::kHex ? 0.35 : 0.45;
    EXPECT_NEAR(f.atoms.at(0).sigma_px, sigma_angstrom / t.pixel_size, 1e-12);
  }
}

TEST(SynthTest, YbcoHasTheExpectedColumnsPerCell) {
  SynthFrame f = MustSynthesize(Opts(SynthLattice::kYbco, 2048));
  std::map<std::string, int> n;
  for (const SynthAtom& a : f.atoms) ++n[a.element];
  // Per cell: 2 Ba, 1 Y, 3 Cu.
  EXPECT_NEAR(static_cast<double>(n["Ba"]) / n["Y"], 2.0, 0.1);
  EXPECT_NEAR(static_cast<double>(n["Cu"]) / n["Y"], 3.0, 0.15);
}

TEST(SynthTest, BrightestPixelIsAtABariumColumn) {
  SynthFrame f = MustSynthesize(Opts(SynthLattice::kYbco, 256, 0.0, 7));
  double max_v = 0.0;
  double min_v = 0.0;
  cv::Point max_loc;
  cv::minMaxLoc(f.image, &min_v, &max_v, nullptr, &max_loc);
  const SynthAtom* nearest = nullptr;
  double best = std::numeric_limits<double>::infinity();
  for (const SynthAtom& a : f.atoms) {
    const double d = std::hypot(a.x - max_loc.x, a.y - max_loc.y);
    if (d < best) {
      best = d;
      nearest = &a;
    }
  }
  ASSERT_NE(nearest, nullptr);
  EXPECT_EQ(nearest->element, "Ba");
  EXPECT_LE(best, std::sqrt(0.5) + 1e-9);
  // Peak 1 on background 0.05; the pixel misses the centre by at most
  // (0.5, 0.5) px for sigma = 3.6 px.
  const double sigma = 0.45 / 0.125;
  EXPECT_LE(max_v, 1.05 + 1e-3);
  EXPECT_GE(max_v, 0.05 + std::exp(-0.5 / (2 * sigma * sigma)) - 1e-3);
  // Background far from any column is 0.05 (Y–Cu spacing leaves some
  // overlap, so the minimum is close to but not exactly it).
  EXPECT_NEAR(min_v, 0.05, 2e-3);
}

TEST(SynthTest, NoiseStdIsNoiseTimesDynamicRange) {
  for (double noise : {0.05, 0.1, 0.5}) {
    SCOPED_TRACE(noise);
    SynthOptions o = Opts(SynthLattice::kYbco, 256, 0.0, 11);
    SynthFrame clean = MustSynthesize(o);
    o.noise = noise;
    SynthFrame noisy = MustSynthesize(o);
    double lo = 0.0;
    double hi = 0.0;
    cv::minMaxLoc(clean.image, &lo, &hi);
    cv::Mat diff = noisy.image - clean.image;
    cv::Scalar mean, stddev;
    cv::meanStdDev(diff, mean, stddev);
    const double want = noise * (hi - lo);
    EXPECT_NEAR(stddev[0] / want, 1.0, 0.05);
    EXPECT_NEAR(mean[0], 0.0, 0.05 * want);
    // Noise does not move the truth.
    ASSERT_EQ(clean.atoms.size(), noisy.atoms.size());
    EXPECT_EQ(clean.atoms[0].x, noisy.atoms[0].x);
  }
}

TEST(SynthTest, DoseGivesPoissonCounts) {
  for (double dose : {8.0, 30.0, 2000.0}) {
    SCOPED_TRACE(dose);
    SynthOptions o = Opts(SynthLattice::kPerovskite, 256, 0.0, 5);
    SynthFrame clean = MustSynthesize(o);
    o.dose = dose;
    SynthFrame shot = MustSynthesize(o);
    double lo = 0.0;
    double hi = 0.0;
    cv::minMaxLoc(clean.image, &lo, &hi);
    const double to_counts = dose / hi;
    double sum_lambda = 0.0;
    double sum_d = 0.0;
    double sum_d2 = 0.0;
    double worst_fraction = 0.0;
    for (int y = 0; y < clean.image.rows; ++y) {
      for (int x = 0; x < clean.image.cols; ++x) {
        const double lambda = clean.image.at<float>(y, x) * to_counts;
        const double k = shot.image.at<float>(y, x) * to_counts;
        worst_fraction = std::max(worst_fraction, std::fabs(k - std::round(k)));
        sum_lambda += lambda;
        sum_d += k - lambda;
        sum_d2 += (k - lambda) * (k - lambda);
      }
    }
    // Counts are whole numbers, mean = variance = lambda.
    EXPECT_LT(worst_fraction, 1e-2);
    EXPECT_NEAR(sum_d / sum_lambda, 0.0, 0.01);
    EXPECT_NEAR(sum_d2 / sum_lambda, 1.0, 0.05);
  }
}

TEST(SynthTest, AmorphousMaskCoversTheRequestedFraction) {
  for (double fraction : {0.02, 0.15, 0.3, 0.6, 0.9}) {
    for (uint64_t seed : {1u, 2u, 3u}) {
      SCOPED_TRACE(absl::StrCat("F=", fraction, " seed=", seed));
      SynthOptions o = Opts(SynthLattice::kYbco, 256, 0.0, seed);
      o.height = 200;
      o.amorphous_fraction = fraction;
      SynthFrame f = MustSynthesize(o);
      double lo = 0.0;
      double hi = 0.0;
      cv::minMaxLoc(f.amorphous_mask, &lo, &hi);
      EXPECT_EQ(lo, 0.0);
      EXPECT_EQ(hi, 1.0);
      const double share = cv::countNonZero(f.amorphous_mask) / (256.0 * 200.0);
      EXPECT_NEAR(share, fraction, 0.015);
    }
  }
}

TEST(SynthTest, AmorphousRegionIsOneMainBlob) {
  SynthOptions o = Opts(SynthLattice::kYbco, 512, 0.0, 9);
  o.amorphous_fraction = 0.15;
  SynthFrame f = MustSynthesize(o);
  cv::Mat labels;
  cv::Mat stats;
  cv::Mat centroids;
  const int n = cv::connectedComponentsWithStats(f.amorphous_mask, labels, stats, centroids, 8);
  int largest = 0;
  for (int i = 1; i < n; ++i) largest = std::max(largest, stats.at<int>(i, cv::CC_STAT_AREA));
  EXPECT_GT(largest, 0.5 * cv::countNonZero(f.amorphous_mask));
}

TEST(SynthTest, AmorphousFlagMatchesMaskAndAtomsAreDisordered) {
  const int size = 512;
  const double fraction = 0.3;
  SynthOptions o = Opts(SynthLattice::kYbco, size, 0.0, 3);
  SynthFrame crystal = MustSynthesize(o);
  o.amorphous_fraction = fraction;
  SynthFrame f = MustSynthesize(o);
  const std::map<std::string, double> base = ClosedFormIntensity(SynthLattice::kYbco);

  int n_amorphous = 0;
  int n_crystal = 0;
  for (const SynthAtom& a : f.atoms) {
    const bool in_mask = f.amorphous_mask.at<uint8_t>(PixelOf(a.y, size), PixelOf(a.x, size)) != 0;
    EXPECT_EQ(a.amorphous, in_mask) << a.x << "," << a.y;
    if (a.amorphous) {
      ++n_amorphous;
      EXPECT_GE(a.intensity, 0.35 * base.at(a.element) - 1e-12);
      EXPECT_LE(a.intensity, 0.8 * base.at(a.element) + 1e-12);
    } else {
      ++n_crystal;
      EXPECT_DOUBLE_EQ(a.intensity, base.at(a.element));
    }
  }
  // Outside the region the crystal is untouched: the same columns as with
  // F = 0 and the same seed.
  int n_crystal_reference = 0;
  for (const SynthAtom& a : crystal.atoms) {
    if (f.amorphous_mask.at<uint8_t>(PixelOf(a.y, size), PixelOf(a.x, size)) == 0) {
      ++n_crystal_reference;
    }
  }
  EXPECT_EQ(n_crystal, n_crystal_reference);

  // Inside: each lattice column is removed with probability 0.25, and 15 %
  // of the lattice count is added back as disordered columns.
  const int lattice_in_region = static_cast<int>(crystal.atoms.size()) - n_crystal_reference;
  ASSERT_GT(lattice_in_region, 50);
  const double want = (0.75 + 0.15) * lattice_in_region;
  const double binomial_std = std::sqrt(0.25 * 0.75 * lattice_in_region);
  EXPECT_NEAR(n_amorphous, want, 4.0 * binomial_std + 1.0);
  // ... and the region holds roughly its share of the frame's columns.
  const double per_px2 = 6.0 / (3.82 * 11.68) * 0.125 * 0.125;
  EXPECT_NEAR(lattice_in_region / (per_px2 * fraction * size * size), 1.0, 0.25);

  // The kept amorphous columns are displaced: few sit on a lattice site.
  int on_site = 0;
  int amorphous_seen = 0;
  for (const SynthAtom& a : f.atoms) {
    if (!a.amorphous) continue;
    ++amorphous_seen;
    for (const SynthAtom& c : crystal.atoms) {
      if (std::hypot(a.x - c.x, a.y - c.y) < 1e-6) {
        ++on_site;
        break;
      }
    }
  }
  ASSERT_GT(amorphous_seen, 0);
  EXPECT_LT(on_site, 0.1 * amorphous_seen);
}

TEST(SynthTest, DriftShiftsEachAtomByItsRow) {
  const int size = 256;
  const double drift = 6.0;
  SynthOptions o = Opts(SynthLattice::kYbco, size, 0.0, 4);
  SynthFrame still = MustSynthesize(o);
  o.drift_px = drift;
  SynthFrame moved = MustSynthesize(o);

  int matched = 0;
  double max_shift = 0.0;
  const SynthAtom* bottom = nullptr;
  const SynthAtom* bottom_still = nullptr;
  for (const SynthAtom& m : moved.atoms) {
    const double want_shift = drift * m.y / (size - 1);
    const SynthAtom* match = nullptr;
    for (const SynthAtom& s : still.atoms) {
      if (std::fabs(s.y - m.y) < 1e-9 && std::fabs(m.x - s.x - want_shift) < 1e-9) match = &s;
    }
    if (m.x - want_shift < -0.5) continue;  // entered from outside the undrifted frame
    ASSERT_NE(match, nullptr) << m.x << "," << m.y;
    ++matched;
    max_shift = std::max(max_shift, m.x - match->x);
    if (m.element == "Ba" && m.x > 20 && m.x < size - 20 && (!bottom || m.y > bottom->y)) {
      bottom = &m;
      bottom_still = match;
    }
  }
  EXPECT_GT(matched, 50);
  // The lowest atom row is within one Cu1–Ba spacing (~17 px) of the last row.
  EXPECT_GT(max_shift, drift * (size - 1 - 18) / (size - 1));
  EXPECT_LE(max_shift, drift * (size - 0.5) / (size - 1));

  // The image moved with the truth: the local maximum of the lowest Ba column.
  ASSERT_NE(bottom, nullptr);
  auto local_max = [](const cv::Mat& image, double x, double y) {
    cv::Rect r(static_cast<int>(x) - 3, static_cast<int>(y) - 3, 7, 7);
    r &= cv::Rect(0, 0, image.cols, image.rows);
    cv::Point loc;
    cv::minMaxLoc(image(r), nullptr, nullptr, nullptr, &loc);
    return loc.x + r.x;
  };
  const int x_moved = local_max(moved.image, bottom->x, bottom->y);
  const int x_still = local_max(still.image, bottom_still->x, bottom_still->y);
  EXPECT_NEAR(x_moved - x_still, drift * bottom->y / (size - 1), 1.0);
}

TEST(SynthTest, WriteSynthFrameRoundTrip) {
  SynthOptions o = Opts(SynthLattice::kYbco, 96, 0.1, 12);
  o.amorphous_fraction = 0.2;
  o.drift_px = 1.5;
  SynthFrame f = MustSynthesize(o);
  const std::string dir = TempDirFor("roundtrip") + "/nested";
  std::filesystem::remove_all(TempDirFor("roundtrip"));
  ASSERT_TRUE(WriteSynthFrame(f, dir).ok());
  for (const char* name : {"image.npy", "meta.json", "atoms.csv", "amorphous_mask.npy",
                           "crystalline_mask.npy", "support_atoms.csv"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + name)) << name;
  }

  const std::string meta = ReadAll(dir + "/meta.json");
  const double px = 0.125;
  const double density = 6.0 / (3.82 * 11.68) * 100.0;
  const double nn = std::hypot(0.5 * 3.82, (0.5 - 0.355) * 11.68);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "pixel_size_angstrom"), px);
  EXPECT_NEAR(JsonNumber(meta, "px_per_angstrom"), 1.0 / px, 1e-12);
  EXPECT_NEAR(JsonNumber(meta, "atom_density_per_px2"), density / 100.0 * px * px, 1e-14);
  EXPECT_NEAR(JsonNumber(meta, "nn_min_px"), nn / px, 1e-9);
  EXPECT_NEAR(JsonNumber(meta, "column_density_per_nm2"), density, 1e-9);
  EXPECT_NEAR(JsonNumber(meta, "nearest_neighbor_angstrom"), nn, 1e-12);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "noise"), 0.1);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "amorphous_fraction"), 0.2);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "drift_px"), 1.5);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "dose"), 0.0);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "seed"), 12.0);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "width"), 96.0);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "height"), 96.0);
  EXPECT_THAT(meta, HasSubstr("\"lattice\": \"ybco\""));
  EXPECT_EQ(meta.front(), '{');
  EXPECT_EQ(meta[meta.find_last_not_of("\n")], '}');

  std::istringstream csv(ReadAll(dir + "/atoms.csv"));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), f.atoms.size() + 1);
  EXPECT_EQ(lines[0], "x,y,element,intensity,sigma_px,amorphous,sublattice,crystal");
  int amorphous_rows = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> cells;
    std::stringstream ss(lines[i]);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    // The first six columns keep their places; sublattice and crystal are
    // appended.
    ASSERT_EQ(cells.size(), 8u) << lines[i];
    const SynthAtom& a = f.atoms[i - 1];
    EXPECT_EQ(std::stod(cells[0]), a.x);
    EXPECT_EQ(std::stod(cells[1]), a.y);
    EXPECT_EQ(cells[2], a.element);
    EXPECT_EQ(cells[5], a.amorphous ? "1" : "0");
    EXPECT_EQ(cells[6], a.element);  // YBCO's sublattices are its elements
    EXPECT_EQ(cells[7], a.amorphous ? "-1" : "0");
    amorphous_rows += a.amorphous;
  }
  EXPECT_GT(amorphous_rows, 0);

  absl::StatusOr<cv::Mat> image = LoadFrame(dir + "/image.npy");
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->type(), CV_32F);
  EXPECT_EQ(cv::norm(*image, f.image, cv::NORM_INF), 0.0);
  absl::StatusOr<cv::Mat> mask = LoadFrame(dir + "/amorphous_mask.npy");
  ASSERT_TRUE(mask.ok()) << mask.status();
  ASSERT_EQ(mask->type(), CV_8U);
  EXPECT_EQ(cv::norm(*mask, f.amorphous_mask, cv::NORM_INF), 0.0);

  // meta.json is also a prior: the fields agree with the frame's.
  EXPECT_NEAR(JsonNumber(meta, "nearest_neighbor_angstrom"), f.prior.nearest_neighbor_angstrom,
              0.0);
  std::filesystem::remove_all(TempDirFor("roundtrip"));
}

TEST(SynthTest, WriteSynthFrameErrorsNameThePath) {
  SynthFrame f = MustSynthesize(Opts(SynthLattice::kPerovskite, 32));
  const std::string base = TempDirFor("errors");
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const std::string file = base + "/a_file";
  std::ofstream(file) << "x";
  const std::string dir = file + "/sub";
  absl::Status s = WriteSynthFrame(f, dir);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(file));

  SynthFrame empty;
  s = WriteSynthFrame(empty, base + "/out");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(base + "/out"));
  std::filesystem::remove_all(base);
}

TEST(SynthTest, ExtremeButValidOptions) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    SCOPED_TRACE(SynthLatticeName(l));
    SynthOptions o = Opts(l, 8, 1.0, 99);
    o.height = 300;
    o.amorphous_fraction = 0.9;
    o.drift_px = l == SynthLattice::kHex ? 1e6 : -500.0;
    o.dose = 1e-3;
    o.pixel_size_angstrom = l == SynthLattice::kHex ? 0.7 : 1.0;
    SynthFrame f = MustSynthesize(o);
    EXPECT_EQ(f.image.rows, 300);
    EXPECT_EQ(f.image.cols, 8);
    EXPECT_TRUE(cv::checkRange(f.image));
    for (const SynthAtom& a : f.atoms) {
      EXPECT_TRUE(a.x >= -0.5 && a.x < 7.5) << a.x;
      EXPECT_TRUE(a.y >= -0.5 && a.y < 299.5) << a.y;
    }
    o.dose = 1e12;
    o.noise = 0.0;
    o.amorphous_fraction = 0.0;
    o.drift_px = 0.0;
    SynthFrame clean_dose = MustSynthesize(o);
    o.dose = 0.0;
    SynthFrame clean = MustSynthesize(o);
    // At a huge dose shot noise vanishes.
    EXPECT_LT(cv::norm(clean_dose.image, clean.image, cv::NORM_INF), 1e-4);
  }
}

// Every effect at once on a frame of the size benchmarks use: sizes and the
// amorphous share still hold (speed is measured by the benchmarks, not here).
TEST(SynthTest, LargeFrameWithAllEffects) {
  SynthOptions o = Opts(SynthLattice::kYbco, 2048, 0.1, 1);
  o.amorphous_fraction = 0.15;
  o.drift_px = 3.0;
  SynthFrame f = MustSynthesize(o);
  EXPECT_EQ(f.image.rows, 2048);
  EXPECT_EQ(f.image.cols, 2048);
  EXPECT_NEAR(cv::mean(f.amorphous_mask)[0], 0.15, 0.015);
  EXPECT_FALSE(f.atoms.empty());
}

// ---------------------------------------------------------------- scenes

constexpr SynthScene kAllScenes[] = {SynthScene::kCrystal, SynthScene::kNanoparticle,
                                     SynthScene::kEdge, SynthScene::kSupport,
                                     SynthScene::kInterface};

SynthOptions SceneOpts(SynthScene scene, SynthLattice lattice, int size, double fraction,
                       uint64_t seed) {
  SynthOptions o = Opts(lattice, size, 0.0, seed);
  o.scene = scene;
  o.crystal_fraction = fraction;
  return o;
}

uint8_t MaskAt(const cv::Mat& mask, double x, double y) {
  return mask.at<uint8_t>(PixelOf(y, mask.rows), PixelOf(x, mask.cols));
}

// Whether pixel (x, y) lies in the box a column is rendered into (4 sigma
// either way, plus the pixel).
bool InRenderedBox(const SynthAtom& a, int x, int y) {
  const double reach = 4.0 * a.sigma_px + 1.0;
  return std::fabs(a.x - x) <= reach && std::fabs(a.y - y) <= reach;
}

// The pixels of `mask` equal to `label` with a 4-neighbour (inside the frame)
// that is not.
std::vector<cv::Point2d> BoundaryPixels(const cv::Mat& mask, uint8_t label) {
  std::vector<cv::Point2d> out;
  for (int y = 0; y < mask.rows; ++y) {
    for (int x = 0; x < mask.cols; ++x) {
      if (mask.at<uint8_t>(y, x) != label) continue;
      bool edge = false;
      for (const cv::Point d :
           {cv::Point(1, 0), cv::Point(-1, 0), cv::Point(0, 1), cv::Point(0, -1)}) {
        const int nx = x + d.x;
        const int ny = y + d.y;
        if (nx >= 0 && ny >= 0 && nx < mask.cols && ny < mask.rows &&
            mask.at<uint8_t>(ny, nx) != label) {
          edge = true;
        }
      }
      if (edge) out.push_back({static_cast<double>(x), static_cast<double>(y)});
    }
  }
  return out;
}

// Total least squares line through `points`: its unit normal n and offset
// c (n·p = c), and the largest distance of a point from it.
struct FittedLine {
  cv::Point2d n;
  double c = 0.0;
  double max_residual = 0.0;
};

FittedLine FitLine(const std::vector<cv::Point2d>& points) {
  cv::Point2d mean(0.0, 0.0);
  for (const cv::Point2d& p : points) mean += p;
  mean *= 1.0 / static_cast<double>(points.size());
  double sxx = 0.0, sxy = 0.0, syy = 0.0;
  for (const cv::Point2d& p : points) {
    const cv::Point2d d = p - mean;
    sxx += d.x * d.x;
    sxy += d.x * d.y;
    syy += d.y * d.y;
  }
  // The normal is the eigenvector of the smaller eigenvalue of the scatter.
  const double angle = 0.5 * std::atan2(2.0 * sxy, sxx - syy);  // of the line's direction
  FittedLine line;
  line.n = {-std::sin(angle), std::cos(angle)};
  line.c = line.n.dot(mean);
  for (const cv::Point2d& p : points) {
    line.max_residual = std::max(line.max_residual, std::fabs(line.n.dot(p) - line.c));
  }
  return line;
}

TEST(SynthSceneTest, ParseAndNameRoundTrip) {
  ExpectNamesRoundTrip<SynthScene>({{SynthScene::kCrystal, "crystal"},
                                    {SynthScene::kNanoparticle, "nanoparticle"},
                                    {SynthScene::kEdge, "edge"},
                                    {SynthScene::kSupport, "support"},
                                    {SynthScene::kInterface, "interface"}},
                                   ParseSynthScene, SynthSceneName, "vacuum", "scene");
}

TEST(SynthSceneTest, InvalidSceneOptionsNameTheField) {
  const InvalidCase cases[] = {
      {[](SynthOptions& o) { o.scene = static_cast<SynthScene>(99); }, "scene"},
      {[](SynthOptions& o) { o.crystal_fraction = 0.01; }, "crystal_fraction"},
      {[](SynthOptions& o) { o.crystal_fraction = 0.99; }, "crystal_fraction"},
      {[](SynthOptions& o) { o.crystal_fraction = std::numeric_limits<double>::quiet_NaN(); },
       "crystal_fraction"},
      {[](SynthOptions& o) {
         o.lattice = SynthLattice::kPerovskite;
         o.ab_brightness_ratio = 0.5;
       },
       "ab_brightness_ratio"},
      {[](SynthOptions& o) {
         o.lattice = SynthLattice::kPerovskite;
         o.ab_brightness_ratio = 11.0;
       },
       "ab_brightness_ratio"},
      {[](SynthOptions& o) {
         o.lattice = SynthLattice::kHex;
         o.ab_brightness_ratio = std::numeric_limits<double>::quiet_NaN();
       },
       "ab_brightness_ratio"},
      // YBCO has no A/B sublattices.
      {[](SynthOptions& o) { o.ab_brightness_ratio = 2.0; }, "ab_brightness_ratio"},
      {[](SynthOptions& o) {
         o.scene = SynthScene::kNanoparticle;
         o.amorphous_fraction = 0.1;
       },
       "amorphous_fraction"},
      {[](SynthOptions& o) { o.interface_rotation_deg = 200.0; }, "interface_rotation_deg"},
      {[](SynthOptions& o) { o.interface_rotation_deg = std::numeric_limits<double>::quiet_NaN(); },
       "interface_rotation_deg"},
      {[](SynthOptions& o) { o.interface_lattice = static_cast<SynthLattice>(7); },
       "interface_lattice"},
      // YBCO at 1 Å/px is fine, the honeycomb's 1.42 Å is not.
      {[](SynthOptions& o) {
         o.scene = SynthScene::kInterface;
         o.pixel_size_angstrom = 1.0;
         o.interface_lattice = SynthLattice::kHex;
       },
       "interface_lattice"},
  };
  for (const InvalidCase& c : cases) ExpectInvalidNamingTheField(c);
  // The bounds themselves are valid, and a ratio of 0 means Z^1.7.
  SynthOptions o;
  o.lattice = SynthLattice::kPerovskite;
  for (double f : {0.05, 0.95}) {
    o.crystal_fraction = f;
    EXPECT_TRUE(o.Validate().ok()) << f;
  }
  for (double r : {0.0, 1.0, 10.0}) {
    o.ab_brightness_ratio = r;
    EXPECT_TRUE(o.Validate().ok()) << r;
  }
}

TEST(SynthSceneTest, DefaultSceneIsOneFullCrystal) {
  SynthFrame f = MustSynthesize(Opts(SynthLattice::kPerovskite, 128));
  EXPECT_EQ(f.options.scene, SynthScene::kCrystal);
  ASSERT_EQ(f.crystalline_mask.type(), CV_8U);
  EXPECT_EQ(cv::countNonZero(f.crystalline_mask), 128 * 128);
  ASSERT_EQ(f.crystals.size(), 1u);
  EXPECT_EQ(f.crystals[0].area_fraction, 1.0);
  EXPECT_TRUE(f.support_atoms.empty());
  for (const SynthAtom& a : f.atoms) {
    EXPECT_EQ(a.crystal, 0);
    EXPECT_EQ(a.sublattice, a.element == "Sr" ? "A" : "B");
  }
  // With an amorphous region the crystal is the rest of the frame and the
  // amorphous columns belong to no crystal.
  SynthOptions o = Opts(SynthLattice::kYbco, 256, 0.0, 3);
  o.amorphous_fraction = 0.3;
  f = MustSynthesize(o);
  cv::Mat either = f.crystalline_mask + f.amorphous_mask;
  double lo = 0.0, hi = 0.0;
  cv::minMaxLoc(either, &lo, &hi);
  EXPECT_EQ(lo, 1.0);
  EXPECT_EQ(hi, 1.0);
  for (const SynthAtom& a : f.atoms) {
    EXPECT_EQ(a.crystal, a.amorphous ? -1 : 0);
    EXPECT_EQ(MaskAt(f.crystalline_mask, a.x, a.y), a.amorphous ? 0 : 1);
  }
}

TEST(SynthSceneTest, NanoparticleCoversTheRequestedShare) {
  int rounded = 0;
  for (double fraction : {0.2, 0.4, 0.6}) {
    for (uint64_t seed : {1u, 2u, 3u, 4u}) {
      SCOPED_TRACE(absl::StrCat("F=", fraction, " seed=", seed));
      SynthOptions o =
          SceneOpts(SynthScene::kNanoparticle, SynthLattice::kYbco, 256, fraction, seed);
      o.height = 224;
      SynthFrame f = MustSynthesize(o);
      const double share = cv::countNonZero(f.crystalline_mask) / (256.0 * 224.0);
      EXPECT_NEAR(share, fraction, 0.01);
      ASSERT_EQ(f.crystals.size(), 1u);
      EXPECT_DOUBLE_EQ(f.crystals[0].area_fraction, share);
      // One convex piece: its area is (nearly) that of its convex hull.
      cv::Mat labels;
      EXPECT_EQ(cv::connectedComponents(f.crystalline_mask, labels, 8), 2);
      std::vector<cv::Point> pixels;
      cv::findNonZero(f.crystalline_mask, pixels);
      std::vector<cv::Point> hull;
      cv::convexHull(pixels, hull);
      const double hull_area = cv::contourArea(hull);
      EXPECT_GT(static_cast<double>(pixels.size()) / hull_area, 0.97);
      // A faceted particle's hull has few corners, a rounded one many.
      rounded += hull.size() > 30 ? 1 : 0;
    }
  }
  // Both kinds occur.
  EXPECT_GT(rounded, 0);
  EXPECT_LT(rounded, 12);
}

TEST(SynthSceneTest, VacuumIsBackgroundOnly) {
  for (SynthScene scene : {SynthScene::kNanoparticle, SynthScene::kEdge}) {
    SCOPED_TRACE(SynthSceneName(scene));
    SynthFrame f = MustSynthesize(SceneOpts(scene, SynthLattice::kPerovskite, 192, 0.3, 5));
    ASSERT_FALSE(f.atoms.empty());
    int far = 0;
    for (int y = 0; y < f.image.rows; ++y) {
      for (int x = 0; x < f.image.cols; ++x) {
        if (f.crystalline_mask.at<uint8_t>(y, x)) continue;
        bool near = false;
        for (const SynthAtom& a : f.atoms) near = near || InRenderedBox(a, x, y);
        if (near) continue;
        ++far;
        EXPECT_EQ(f.image.at<float>(y, x), 0.05f) << x << "," << y;
      }
    }
    EXPECT_GT(far, 0.3 * 192 * 192);
  }
}

// The scenes cut a crystal out of the full-frame one: with the same seed, the
// first crystal's columns are exactly the full crystal's inside the map.
TEST(SynthSceneTest, TrueColumnsLieInTheirCrystal) {
  for (SynthScene scene : kAllScenes) {
    for (double drift : {0.0, 7.5}) {
      SCOPED_TRACE(absl::StrCat(SynthSceneName(scene), " drift ", drift));
      SynthOptions o = SceneOpts(scene, SynthLattice::kYbco, 200, 0.45, 8);
      o.drift_px = drift;
      SynthFrame f = MustSynthesize(o);
      SynthOptions full_options = o;
      full_options.scene = SynthScene::kCrystal;
      SynthFrame full = MustSynthesize(full_options);
      ASSERT_EQ(f.crystal_map.size(), f.image.size());
      for (const SynthAtom& a : f.atoms) {
        ASSERT_GE(a.crystal, 0);  // no amorphous columns in these frames
        EXPECT_EQ(MaskAt(f.crystal_map, a.x, a.y), a.crystal + 1) << a.x << "," << a.y;
        EXPECT_EQ(MaskAt(f.crystalline_mask, a.x, a.y), 1);
      }
      std::vector<const SynthAtom*> want;
      for (const SynthAtom& a : full.atoms) {
        if (MaskAt(f.crystal_map, a.x, a.y) == 1) want.push_back(&a);
      }
      std::vector<const SynthAtom*> got;
      for (const SynthAtom& a : f.atoms) {
        if (a.crystal == 0) got.push_back(&a);
      }
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i]->x, want[i]->x);
        EXPECT_EQ(got[i]->y, want[i]->y);
        EXPECT_EQ(got[i]->element, want[i]->element);
      }
      for (const SynthAtom& a : f.support_atoms) {
        EXPECT_EQ(MaskAt(f.crystalline_mask, a.x, a.y), 0) << a.x << "," << a.y;
        EXPECT_EQ(a.crystal, -1);
        EXPECT_EQ(a.sublattice, "support");
      }
      // Drift shears the lattice itself; without it no column crowds another.
      if (drift == 0.0) {
        EXPECT_GE(MinPairwiseDistance(f.atoms), f.prior.NearestNeighborPx() * (1.0 - 1e-9));
      }
    }
  }
}

TEST(SynthSceneTest, EdgeIsStraightAndCoversTheShare) {
  std::vector<double> normals;
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    for (double fraction : {0.3, 0.6}) {
      SCOPED_TRACE(absl::StrCat("seed ", seed, " F=", fraction));
      SynthOptions o = SceneOpts(SynthScene::kEdge, SynthLattice::kPerovskite, 240, fraction, seed);
      o.height = 200;
      SynthFrame f = MustSynthesize(o);
      EXPECT_NEAR(cv::countNonZero(f.crystalline_mask) / (240.0 * 200.0), fraction, 0.01);
      const std::vector<cv::Point2d> edge = BoundaryPixels(f.crystalline_mask, 1);
      ASSERT_GT(edge.size(), 50u);
      const FittedLine line = FitLine(edge);
      EXPECT_LT(line.max_residual, 1.0);
      // The crystal lies on one side of the line, vacuum on the other.
      const double side = f.crystalline_mask.at<uint8_t>(0, 0) ? 1.0 : -1.0;
      for (int y = 0; y < f.crystalline_mask.rows; y += 3) {
        for (int x = 0; x < f.crystalline_mask.cols; x += 3) {
          const double d = line.n.dot(cv::Point2d(x, y)) - line.c;
          if (std::fabs(d) < 1.5) continue;
          const double corner = line.n.dot(cv::Point2d(0, 0)) - line.c;
          const bool same_side_as_corner = (d > 0) == (corner > 0);
          EXPECT_EQ(f.crystalline_mask.at<uint8_t>(y, x) != 0, same_side_as_corner == (side > 0))
              << x << "," << y;
        }
      }
      normals.push_back(std::atan2(line.n.y, line.n.x));
    }
  }
  // The orientation is random: not all edges are parallel.
  const auto [lo, hi] = std::minmax_element(normals.begin(), normals.end());
  EXPECT_GT(*hi - *lo, 0.3);
}

TEST(SynthSceneTest, SupportFilmIsFaintTextureWithLightAtomsOutsideTheParticle) {
  SynthOptions o = SceneOpts(SynthScene::kSupport, SynthLattice::kPerovskite, 320, 0.35, 6);
  SynthFrame f = MustSynthesize(o);
  o.scene = SynthScene::kNanoparticle;
  SynthFrame particle = MustSynthesize(o);
  // The same particle as the nanoparticle scene of the same seed.
  EXPECT_EQ(cv::norm(f.crystal_map, particle.crystal_map, cv::NORM_INF), 0.0);
  EXPECT_EQ(f.atoms.size(), particle.atoms.size());

  // 0.25 support atoms per crystal column's area of film.
  const double film_px = 320.0 * 320.0 - cv::countNonZero(f.crystalline_mask);
  const double per_px2 = 2.0 / (3.905 * 3.905) * 0.125 * 0.125;
  EXPECT_NEAR(static_cast<double>(f.support_atoms.size()), 0.25 * per_px2 * film_px, 1.0);
  ASSERT_GT(f.support_atoms.size(), 10u);
  const double column_sigma = 0.45 / 0.125;
  for (const SynthAtom& a : f.support_atoms) {
    EXPECT_EQ(MaskAt(f.crystalline_mask, a.x, a.y), 0);
    EXPECT_GE(a.intensity, 0.1);
    EXPECT_LE(a.intensity, 0.25);
    EXPECT_NEAR(a.sigma_px, 0.8 * column_sigma, 1e-12);
    EXPECT_FALSE(a.amorphous);
  }

  // Far from every atom the film shows: background 0.05 plus a texture of
  // mean ~0.04 and std ~0.015, never below the background.
  std::vector<double> film;
  for (int y = 0; y < f.image.rows; y += 2) {
    for (int x = 0; x < f.image.cols; x += 2) {
      if (f.crystalline_mask.at<uint8_t>(y, x)) continue;
      bool near = false;
      for (const auto* list : {&f.atoms, &f.support_atoms}) {
        for (const SynthAtom& a : *list) {
          near = near || InRenderedBox(a, x, y);
        }
      }
      if (!near) film.push_back(f.image.at<float>(y, x) - 0.05);
    }
  }
  ASSERT_GT(film.size(), 1000u);
  double sum = 0.0, sum2 = 0.0;
  for (double v : film) {
    sum += v;
    sum2 += v * v;
    EXPECT_GE(v, -1e-6);
  }
  const double mean = sum / film.size();
  const double sd = std::sqrt(sum2 / film.size() - mean * mean);
  EXPECT_NEAR(mean, 0.04, 0.012);
  EXPECT_GT(sd, 0.006);
  EXPECT_LT(sd, 0.025);
  // ... and a light atom stands above it.
  for (const SynthAtom& a : f.support_atoms) {
    const int x = PixelOf(a.x, f.image.cols);
    const int y = PixelOf(a.y, f.image.rows);
    EXPECT_GT(f.image.at<float>(y, x) - 0.05, 0.5 * a.intensity) << a.x << "," << a.y;
  }
}

// ---------------------------------------------------------------- sublattices

// Mean over a sublattice's columns (away from the frame's border) of the
// signal above the background within 1 sigma of the column: wide enough to
// average out where the centre falls in its pixel, narrow enough that the
// neighbours' tails (3 sigma away in the honeycomb) add < 0.5 %.
std::map<std::string, double> IntegratedSignal(const SynthFrame& f) {
  std::map<std::string, double> sum;
  std::map<std::string, int> n;
  for (const SynthAtom& a : f.atoms) {
    const double r = a.sigma_px;
    if (a.x < r + 1 || a.y < r + 1 || a.x > f.image.cols - r - 2 || a.y > f.image.rows - r - 2) {
      continue;
    }
    double s = 0.0;
    for (int y = static_cast<int>(a.y - r); y <= static_cast<int>(a.y + r) + 1; ++y) {
      for (int x = static_cast<int>(a.x - r); x <= static_cast<int>(a.x + r) + 1; ++x) {
        if (std::hypot(x - a.x, y - a.y) <= r) s += f.image.at<float>(y, x) - 0.05;
      }
    }
    sum[a.sublattice] += s;
    ++n[a.sublattice];
  }
  for (auto& [name, v] : sum) v /= n[name];
  return sum;
}

TEST(SynthSublatticeTest, BrightnessRatioIsMeasuredInTheFrame) {
  for (SynthLattice lattice : {SynthLattice::kPerovskite, SynthLattice::kHex}) {
    for (double ratio : {1.2, 2.0, 3.0}) {
      SCOPED_TRACE(absl::StrCat(SynthLatticeName(lattice), " ratio ", ratio));
      SynthOptions o = Opts(lattice, 256, 0.0, 13);
      o.ab_brightness_ratio = ratio;
      SynthFrame f = MustSynthesize(o);
      for (const SynthAtom& a : f.atoms) {
        ASSERT_TRUE(a.sublattice == "A" || a.sublattice == "B") << a.sublattice;
        EXPECT_DOUBLE_EQ(a.intensity, a.sublattice == "A" ? 1.0 : 1.0 / ratio);
      }
      const std::map<std::string, double> signal = IntegratedSignal(f);
      ASSERT_EQ(signal.size(), 2u);
      EXPECT_NEAR(signal.at("A") / signal.at("B"), ratio, 0.02 * ratio);

      ASSERT_EQ(f.sublattices.size(), 2u);
      EXPECT_EQ(f.sublattices[0].name, "A");
      EXPECT_EQ(f.sublattices[1].name, "B");
      EXPECT_DOUBLE_EQ(f.sublattices[0].relative_brightness, 1.0);
      EXPECT_DOUBLE_EQ(f.sublattices[1].relative_brightness, 1.0 / ratio);
    }
  }
  // Without a ratio, SrTiO3's Z^1.7 contrast.
  SynthFrame f = MustSynthesize(Opts(SynthLattice::kPerovskite, 256, 0.0, 13));
  const std::map<std::string, double> signal = IntegratedSignal(f);
  EXPECT_NEAR(signal.at("A") / signal.at("B"), std::pow(38.0 / 22.0, 1.7), 0.05);
  EXPECT_NEAR(f.sublattices[1].relative_brightness, std::pow(22.0 / 38.0, 1.7), 1e-12);
}

TEST(SynthSublatticeTest, LabelsAndDensitiesMatchTheLattice) {
  // Perovskite: Sr is A, Ti–O is B, each a square lattice of side a.
  // Honeycomb: every column's three nearest neighbours are of the other
  // sublattice. YBCO: the elements, 2 Ba, 1 Y and 3 Cu per cell.
  const double a_p = 3.905;
  const double a_h = 2.46;
  const double ybco_cell = 3.82 * 11.68;
  struct Want {
    SynthLattice lattice;
    std::map<std::string, double> density;  // per nm²
  };
  const Want wants[] = {
      {SynthLattice::kPerovskite, {{"A", 100.0 / (a_p * a_p)}, {"B", 100.0 / (a_p * a_p)}}},
      {SynthLattice::kHex,
       {{"A", 100.0 / (a_h * a_h * std::sqrt(3.0) / 2.0)},
        {"B", 100.0 / (a_h * a_h * std::sqrt(3.0) / 2.0)}}},
      {SynthLattice::kYbco,
       {{"Ba", 200.0 / ybco_cell}, {"Y", 100.0 / ybco_cell}, {"Cu", 300.0 / ybco_cell}}},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(SynthLatticeName(w.lattice));
    SynthFrame f = MustSynthesize(Opts(w.lattice, 1024));
    const double px = f.options.pixel_size_angstrom;
    const double area_nm2 = 1024.0 * 1024.0 * px * px / 100.0;
    std::map<std::string, int> count;
    for (const SynthAtom& a : f.atoms) ++count[a.sublattice];
    ASSERT_EQ(count.size(), w.density.size());
    ASSERT_EQ(f.sublattices.size(), w.density.size());
    for (const SynthSublattice& s : f.sublattices) {
      SCOPED_TRACE(s.name);
      ASSERT_TRUE(w.density.count(s.name));
      EXPECT_NEAR(s.density_per_nm2, w.density.at(s.name), 1e-9);
      // (YBCO's cell is 93 px tall: one row of columns more or less is 3 %.)
      EXPECT_NEAR(count[s.name] / area_nm2 / s.density_per_nm2, 1.0, 0.05);
      EXPECT_EQ(s.crystal, 0);
    }
    // Brightest first.
    for (size_t i = 1; i < f.sublattices.size(); ++i) {
      EXPECT_GE(f.sublattices[i - 1].relative_brightness, f.sublattices[i].relative_brightness);
    }
    EXPECT_DOUBLE_EQ(f.sublattices[0].relative_brightness, 1.0);
  }
  SynthFrame hex = MustSynthesize(Opts(SynthLattice::kHex, 160));
  const double nn_px = 2.46 / std::sqrt(3.0) / 0.078;
  int checked = 0;
  for (const SynthAtom& a : hex.atoms) {
    for (const SynthAtom& b : hex.atoms) {
      if (std::fabs(std::hypot(a.x - b.x, a.y - b.y) - nn_px) < 1e-6) {
        EXPECT_NE(a.sublattice, b.sublattice);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100);
  SynthFrame perovskite = MustSynthesize(Opts(SynthLattice::kPerovskite, 64));
  for (const SynthAtom& a : perovskite.atoms)
    EXPECT_EQ(a.sublattice, a.element == "Sr" ? "A" : "B");
}

// ---------------------------------------------------------------- interface

// Whether every atom of `atoms` sits on one square lattice of side `a_px`
// rotated by `deg` (centred columns included: the lattice of side a/2
// holds both), anchored at the first.
int CountOffLattice(const std::vector<const SynthAtom*>& atoms, double a_px, double deg) {
  const double c = std::cos(deg * std::numbers::pi / 180.0);
  const double s = std::sin(deg * std::numbers::pi / 180.0);
  const double half = a_px / 2.0;
  int off = 0;
  for (const SynthAtom* p : atoms) {
    const double dx = p->x - atoms[0]->x;
    const double dy = p->y - atoms[0]->y;
    const double u = (c * dx + s * dy) / half;
    const double v = (-s * dx + c * dy) / half;
    if (std::fabs(u - std::round(u)) > 1e-6 || std::fabs(v - std::round(v)) > 1e-6 ||
        std::fmod(std::fabs(std::round(u) + std::round(v)), 2.0) != 0.0) {
      ++off;
    }
  }
  return off;
}

TEST(SynthInterfaceTest, ColumnsBelongToTheRightCrystal) {
  const double a_px = 3.905 / 0.125;
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    SynthOptions o = SceneOpts(SynthScene::kInterface, SynthLattice::kPerovskite, 256, 0.45, seed);
    o.interface_rotation_deg = 30.0;
    SynthFrame f = MustSynthesize(o);
    ASSERT_EQ(f.crystals.size(), 2u);
    EXPECT_EQ(f.crystals[1].lattice, SynthLattice::kPerovskite);
    EXPECT_EQ(f.crystals[1].rotation_deg, 30.0);
    EXPECT_NEAR(f.crystals[0].area_fraction, 0.45, 0.01);
    EXPECT_NEAR(f.crystals[0].area_fraction + f.crystals[1].area_fraction, 1.0, 1e-12);
    EXPECT_EQ(cv::countNonZero(f.crystalline_mask), 256 * 256);
    // The two crystals meet along a straight line.
    EXPECT_LT(FitLine(BoundaryPixels(f.crystal_map, 1)).max_residual, 1.0);

    std::vector<const SynthAtom*> first, second;
    for (const SynthAtom& a : f.atoms) (a.crystal == 0 ? first : second).push_back(&a);
    ASSERT_GT(first.size(), 20u);
    ASSERT_GT(second.size(), 20u);
    // Each crystal's columns are on its own lattice, not on the other's.
    EXPECT_EQ(CountOffLattice(first, a_px, 0.0), 0);
    EXPECT_EQ(CountOffLattice(second, a_px, 30.0), 0);
    std::vector<const SynthAtom*> mixed = first;
    mixed.insert(mixed.end(), second.begin(), second.end());
    EXPECT_GE(CountOffLattice(mixed, a_px, 0.0), static_cast<int>(second.size()) - 2);
    // Where they meet, no column crowds another.
    EXPECT_GE(MinPairwiseDistance(f.atoms), f.prior.NearestNeighborPx() * (1.0 - 1e-9));
  }
}

TEST(SynthInterfaceTest, TwoDifferentLattices) {
  SynthOptions o = SceneOpts(SynthScene::kInterface, SynthLattice::kPerovskite, 256, 0.5, 4);
  o.interface_lattice = SynthLattice::kHex;
  o.interface_rotation_deg = -15.0;
  o.ab_brightness_ratio = 2.0;
  SynthFrame f = MustSynthesize(o);
  // The prior: the first crystal's density, the smaller nearest neighbour
  // (C–C 1.42 Å).
  EXPECT_NEAR(*f.prior.column_density_per_nm2, 200.0 / (3.905 * 3.905), 1e-9);
  EXPECT_NEAR(f.prior.nearest_neighbor_angstrom, 2.46 / std::sqrt(3.0), 1e-9);
  int n[2] = {0, 0};
  for (const SynthAtom& a : f.atoms) {
    ASSERT_TRUE(a.crystal == 0 || a.crystal == 1);
    ++n[a.crystal];
    if (a.crystal == 0) {
      EXPECT_TRUE(a.element == "Sr" || a.element == "Ti") << a.element;
    } else {
      EXPECT_EQ(a.element, "C");
      EXPECT_NEAR(a.sigma_px, 0.35 / 0.125, 1e-12);
    }
    EXPECT_DOUBLE_EQ(a.intensity, a.sublattice == "A" ? 1.0 : 0.5);
    EXPECT_EQ(MaskAt(f.crystal_map, a.x, a.y), a.crystal + 1);
  }
  // Each crystal holds about its density times its area.
  const double area_nm2 = 256.0 * 256.0 * 0.125 * 0.125 / 100.0;
  for (int k = 0; k < 2; ++k) {
    SCOPED_TRACE(k);
    const double want =
        f.crystals[k].column_density_per_nm2 * f.crystals[k].area_fraction * area_nm2;
    EXPECT_NEAR(n[k] / want, 1.0, 0.1);
  }
  ASSERT_EQ(f.sublattices.size(), 4u);
  EXPECT_EQ(f.sublattices[0].crystal, 0);
  EXPECT_EQ(f.sublattices[1].crystal, 0);
  EXPECT_EQ(f.sublattices[2].crystal, 1);
  EXPECT_EQ(f.sublattices[3].crystal, 1);
  EXPECT_EQ(f.sublattices[2].element, "C");
  EXPECT_NEAR(f.sublattices[2].density_per_nm2, 100.0 / (2.46 * 2.46 * std::sqrt(3.0) / 2.0), 1e-9);
  EXPECT_GE(MinPairwiseDistance(f.atoms), f.prior.NearestNeighborPx() * (1.0 - 1e-9));
}

TEST(SynthSceneTest, SameSeedSameSceneDifferentSeedDifferentScene) {
  for (SynthScene scene : kAllScenes) {
    SCOPED_TRACE(SynthSceneName(scene));
    SynthOptions o = SceneOpts(scene, SynthLattice::kPerovskite, 160, 0.4, 21);
    o.noise = 0.2;
    o.dose = 100.0;
    o.drift_px = 3.0;
    o.ab_brightness_ratio = 1.5;
    SynthFrame a = MustSynthesize(o);
    SynthFrame b = MustSynthesize(o);
    ExpectSameFrame(a, b);
    o.seed = 22;
    SynthFrame c = MustSynthesize(o);
    EXPECT_GT(cv::norm(a.image, c.image, cv::NORM_INF), 0.1);
    if (scene != SynthScene::kCrystal) {
      EXPECT_GT(cv::norm(a.crystal_map, c.crystal_map, cv::NORM_L1), 0.0);
    }
  }
}

TEST(SynthSceneTest, ExtremeButValidSceneOptions) {
  for (SynthScene scene : kAllScenes) {
    for (double fraction : {0.05, 0.95}) {
      SCOPED_TRACE(absl::StrCat(SynthSceneName(scene), " F=", fraction));
      SynthOptions o = SceneOpts(scene, SynthLattice::kHex, 8, fraction, 99);
      o.height = 300;
      o.drift_px = scene == SynthScene::kInterface ? 1e6 : -500.0;
      o.noise = 1.0;
      o.interface_lattice = SynthLattice::kYbco;
      o.interface_rotation_deg = 180.0;
      o.ab_brightness_ratio = 10.0;
      SynthFrame f = MustSynthesize(o);
      EXPECT_EQ(f.image.rows, 300);
      EXPECT_EQ(f.image.cols, 8);
      EXPECT_TRUE(cv::checkRange(f.image));
      for (const SynthAtom& a : f.atoms) {
        EXPECT_TRUE(a.x >= -0.5 && a.x < 7.5) << a.x;
        EXPECT_TRUE(a.y >= -0.5 && a.y < 299.5) << a.y;
        EXPECT_EQ(MaskAt(f.crystal_map, a.x, a.y), a.crystal + 1);
      }
      // The share holds up to the pixels along the boundary of a thin frame.
      if (scene != SynthScene::kCrystal) {
        EXPECT_NEAR(f.crystals[0].area_fraction, fraction, 0.05);
      }
    }
  }
}

TEST(SynthSceneTest, WriteSynthFrameWritesTheScene) {
  SynthOptions o = SceneOpts(SynthScene::kSupport, SynthLattice::kPerovskite, 128, 0.3, 17);
  o.ab_brightness_ratio = 2.5;
  SynthFrame f = MustSynthesize(o);
  ASSERT_FALSE(f.support_atoms.empty());
  const std::string dir = TempDirFor("scene");
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WriteSynthFrame(f, dir).ok());

  const std::string meta = ReadAll(dir + "/meta.json");
  EXPECT_THAT(meta, HasSubstr("\"scene\": \"support\""));
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "crystal_fraction"), 0.3);
  EXPECT_NEAR(JsonNumber(meta, "crystalline_fraction"), 0.3, 0.01);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "ab_brightness_ratio"), 2.5);
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "n_support_atoms"),
                   static_cast<double>(f.support_atoms.size()));
  EXPECT_DOUBLE_EQ(JsonNumber(meta, "n_atoms"), static_cast<double>(f.atoms.size()));
  EXPECT_THAT(meta, HasSubstr("\"sublattices\": ["));
  EXPECT_THAT(meta, HasSubstr("{\"name\": \"B\", \"crystal\": 0, \"element\": \"Ti\""));
  EXPECT_THAT(meta, HasSubstr("\"relative_brightness\": 0.40000000000000002"));
  EXPECT_THAT(meta, HasSubstr("{\"lattice\": \"perovskite\", \"rotation_deg\": 0"));
  // Still usable where the prior's fields are read.
  EXPECT_NEAR(JsonNumber(meta, "column_density_per_nm2"), 200.0 / (3.905 * 3.905), 1e-9);

  absl::StatusOr<cv::Mat> mask = LoadFrame(dir + "/crystalline_mask.npy");
  ASSERT_TRUE(mask.ok()) << mask.status();
  ASSERT_EQ(mask->type(), CV_8U);
  EXPECT_EQ(cv::norm(*mask, f.crystalline_mask, cv::NORM_INF), 0.0);

  auto rows_of = [](const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> cells;
      std::stringstream ss(line);
      std::string cell;
      while (std::getline(ss, cell, ',')) cells.push_back(cell);
      rows.push_back(cells);
    }
    return rows;
  };
  const auto atoms = rows_of(ReadAll(dir + "/atoms.csv"));
  ASSERT_EQ(atoms.size(), f.atoms.size() + 1);
  for (size_t i = 1; i < atoms.size(); ++i) {
    ASSERT_EQ(atoms[i].size(), 8u);
    EXPECT_EQ(atoms[i][6], f.atoms[i - 1].sublattice);
    EXPECT_EQ(atoms[i][7], "0");
  }
  const auto support = rows_of(ReadAll(dir + "/support_atoms.csv"));
  ASSERT_EQ(support.size(), f.support_atoms.size() + 1);
  EXPECT_EQ(support[0], atoms[0]);
  for (size_t i = 1; i < support.size(); ++i) {
    ASSERT_EQ(support[i].size(), 8u);
    EXPECT_EQ(std::stod(support[i][0]), f.support_atoms[i - 1].x);
    EXPECT_EQ(support[i][2], "Si");
    EXPECT_EQ(support[i][6], "support");
    EXPECT_EQ(support[i][7], "-1");
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace logstar
