// MeasureLattice, CheckPrior and DerivePrior against independent truths: the
// generator's lattice constants (engine/image/synth.h), its atoms and its
// prior; lattices drawn here at arbitrary angles; frames without a lattice;
// and the real images of ../shared/data/real (their stored pixel sizes,
// literature lattice constants, and reference positions through OpenCV's
// Voronoi tessellation). The thresholds were tuned on seeds 1-3; the tests
// use the held-back seeds 11-20.

#include "engine/physics/lattice.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numbers>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "engine/physics/physics_prior.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

constexpr int kFirstSeed = 11;  // held back: the thresholds were tuned on 1-3
constexpr int kLastSeed = 20;

// The targets of issue 15: spacing within 2 %, density within 10 %.
constexpr double kSpacingTolerance = 0.02;
constexpr double kDensityTolerance = 0.10;

double RelativeError(double measured, double truth) { return measured / truth - 1.0; }

// The lattices as synth.h documents them (not read from the generator).
struct Truth {
  SynthLattice lattice;
  double a_angstrom, b_angstrom, gamma_deg;
  int columns_per_cell;
  double pixel_size_angstrom;  // the generator's default
};

Truth TruthOf(SynthLattice lattice) {
  switch (lattice) {
    case SynthLattice::kYbco:
      return {lattice, 3.82, 11.68, 90.0, 6, 0.125};
    case SynthLattice::kPerovskite:
      return {lattice, 3.905, 3.905, 90.0, 2, 0.125};
    case SynthLattice::kHex:
      return {lattice, 2.46, 2.46, 120.0, 2, 0.078};
  }
  return {};
}

SynthFrame Generate(SynthLattice lattice, double noise, uint64_t seed, int size = 256,
                    double amorphous = 0.0, double drift_px = 0.0) {
  SynthOptions o;
  o.width = o.height = size;
  o.lattice = lattice;
  o.noise = noise;
  o.seed = seed;
  o.amorphous_fraction = amorphous;
  o.drift_px = drift_px;
  absl::StatusOr<SynthFrame> frame = Synthesize(o);
  EXPECT_TRUE(frame.ok()) << frame.status();
  return *std::move(frame);
}

LatticeMeasurement Measure(const cv::Mat& frame, ExecutionContext* context = nullptr) {
  absl::StatusOr<LatticeMeasurement> m = MeasureLattice(frame, {}, context);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : LatticeMeasurement{};
}

double Length(PointXY p) { return std::hypot(p.x, p.y); }

// How far (x, y) lies from the nearest column the measured cell puts
// anywhere in the crystal: a column's position plus the lattice translation
// nearest the difference (and its neighbours).
double DistanceToColumn(const LatticeMeasurement& m, double x, double y) {
  const double det = m.a.x * m.b.y - m.a.y * m.b.x;
  double best = std::numeric_limits<double>::infinity();
  for (const LatticeColumn& col : m.columns) {
    const double dx = x - col.position_px.x, dy = y - col.position_px.y;
    const double u = std::round((dx * m.b.y - dy * m.b.x) / det);
    const double v = std::round((m.a.x * dy - m.a.y * dx) / det);
    for (double du = -1; du <= 1; ++du) {
      for (double dv = -1; dv <= 1; ++dv) {
        best = std::min(best, std::hypot(dx - (u + du) * m.a.x - (v + dv) * m.b.x,
                                         dy - (u + du) * m.a.y - (v + dv) * m.b.y));
      }
    }
  }
  return best;
}

// ---------------------------------------------------------------------------
// Generated frames.

struct Case {
  SynthLattice lattice;
  double noise;
};

class GeneratedLatticeTest : public ::testing::TestWithParam<Case> {};

// Spacing and density against the generator's prior, the cell against the
// documented constants, over the held-back seeds.
TEST_P(GeneratedLatticeTest, MatchesGroundTruth) {
  const Case c = GetParam();
  const Truth truth = TruthOf(c.lattice);
  const double px = truth.pixel_size_angstrom;
  const double cell_px2 = truth.a_angstrom * truth.b_angstrom *
                          std::sin(truth.gamma_deg * std::numbers::pi / 180.0) / (px * px);
  double worst_spacing = 0.0, worst_density = 0.0, sum_spacing = 0.0;
  for (int seed = kFirstSeed; seed <= kLastSeed; ++seed) {
    const SynthFrame frame = Generate(c.lattice, c.noise, seed);
    const LatticeMeasurement m = Measure(frame.image);
    ASSERT_TRUE(m.found) << "seed " << seed << ": " << m.reason;
    const double spacing = RelativeError(m.nearest_neighbor_px, frame.prior.NearestNeighborPx());
    const double density =
        RelativeError(m.column_density_per_px2, frame.prior.ColumnDensityPerPx2());
    EXPECT_LE(std::abs(spacing), kSpacingTolerance) << "seed " << seed;
    EXPECT_LE(std::abs(density), kDensityTolerance) << "seed " << seed;
    EXPECT_EQ(m.columns_per_cell, truth.columns_per_cell) << "seed " << seed;
    EXPECT_NEAR(m.cell_area_px2, cell_px2, 0.02 * cell_px2) << "seed " << seed;
    EXPECT_NEAR(Length(m.a), std::min(truth.a_angstrom, truth.b_angstrom) / px, 0.01 * Length(m.a));
    EXPECT_NEAR(Length(m.b), std::max(truth.a_angstrom, truth.b_angstrom) / px, 0.01 * Length(m.b));
    EXPECT_NEAR(m.gamma_deg, truth.gamma_deg, 0.5) << "seed " << seed;
    EXPECT_GE(m.ordered_fraction, 0.9) << "seed " << seed;
    worst_spacing = std::max(worst_spacing, std::abs(spacing));
    worst_density = std::max(worst_density, std::abs(density));
    sum_spacing += std::abs(spacing);
  }
  const int n = kLastSeed - kFirstSeed + 1;
  std::cout << absl::StrFormat(
      "[ accuracy ] %-10s 256^2 noise %.1f, seeds %d-%d: spacing |err| mean %.2f %% max %.2f %%, "
      "density |err| max %.2f %%\n",
      SynthLatticeName(c.lattice), c.noise, kFirstSeed, kLastSeed, 100.0 * sum_spacing / n,
      100.0 * worst_spacing, 100.0 * worst_density);
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    for (double noise : {0.0, 0.3, 0.6}) cases.push_back({l, noise});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Lattices, GeneratedLatticeTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrFormat("%s_noise%02d",
                                                  SynthLatticeName(info.param.lattice),
                                                  static_cast<int>(info.param.noise * 10 + 0.5));
                         });

// Every generated column lies where the measured cell puts one: column
// position + i·a + j·b, within 0.75 px (away from the frame's edges; the
// basis' error, up to a few hundredths of a pixel per cell on a noisy 256²
// frame, adds up over the cells from the origin).
TEST(LatticeTest, ColumnsSitOnGeneratedAtoms) {
  for (const Case c : {Case{SynthLattice::kYbco, 0.3}, Case{SynthLattice::kPerovskite, 0.3},
                       Case{SynthLattice::kHex, 0.3}, Case{SynthLattice::kYbco, 0.0}}) {
    for (int seed = kFirstSeed; seed <= kFirstSeed + 2; ++seed) {
      const SynthFrame frame = Generate(c.lattice, c.noise, seed);
      const LatticeMeasurement m = Measure(frame.image);
      ASSERT_TRUE(m.found) << m.reason;
      int checked = 0;
      for (const SynthAtom& atom : frame.atoms) {
        if (atom.x < 20 || atom.y < 20 || atom.x > 235 || atom.y > 235) continue;
        const double best = DistanceToColumn(m, atom.x, atom.y);
        EXPECT_LT(best, 0.75) << SynthLatticeName(c.lattice) << " atom at (" << atom.x << ", "
                              << atom.y << "), seed " << seed;
        ++checked;
      }
      EXPECT_GT(checked, 20);
    }
  }
}

// Frames with more cells measure better: 512² YBCO at noise 0.6 (its faint
// Cu columns set the spacing's precision on 256²).
TEST(LatticeTest, LargerFrameIsMorePrecise) {
  for (int seed = kFirstSeed; seed <= kFirstSeed + 4; ++seed) {
    const SynthFrame frame = Generate(SynthLattice::kYbco, 0.6, seed, 512);
    const LatticeMeasurement m = Measure(frame.image);
    ASSERT_TRUE(m.found) << m.reason;
    EXPECT_LE(std::abs(RelativeError(m.nearest_neighbor_px, frame.prior.NearestNeighborPx())),
              0.01);
    EXPECT_LE(std::abs(RelativeError(m.column_density_per_px2, frame.prior.ColumnDensityPerPx2())),
              0.01);
  }
}

// Frames of 2048² and more search their lattice on a binned copy (issue 21:
// the full-resolution FFT was most of a first frame's time outside its
// windows) and fold it at full resolution. The cell must come out as
// precisely as before: against the documented constants to 0.05 %, and
// every generated column over the whole frame, 60-70 cells from the origin,
// where the measured cell puts one (a basis error of 0.01 px per cell would
// miss by 0.7 px there).
TEST(LatticeTest, LargeFrameSearchedBinnedIsAsPrecise) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    const Truth truth = TruthOf(l);
    const SynthFrame frame = Generate(l, 0.3, kFirstSeed, 2048);
    const LatticeMeasurement m = Measure(frame.image);
    ASSERT_TRUE(m.found) << SynthLatticeName(l) << ": " << m.reason;
    const double px = truth.pixel_size_angstrom;
    EXPECT_EQ(m.columns_per_cell, truth.columns_per_cell) << SynthLatticeName(l);
    EXPECT_NEAR(Length(m.a), std::min(truth.a_angstrom, truth.b_angstrom) / px, 5e-4 * Length(m.a))
        << SynthLatticeName(l);
    EXPECT_NEAR(Length(m.b), std::max(truth.a_angstrom, truth.b_angstrom) / px, 5e-4 * Length(m.b))
        << SynthLatticeName(l);
    EXPECT_NEAR(m.gamma_deg, truth.gamma_deg, 0.1) << SynthLatticeName(l);
    EXPECT_LE(std::abs(RelativeError(m.nearest_neighbor_px, frame.prior.NearestNeighborPx())), 0.01)
        << SynthLatticeName(l);
    EXPECT_LE(std::abs(RelativeError(m.column_density_per_px2, frame.prior.ColumnDensityPerPx2())),
              0.01)
        << SynthLatticeName(l);
    double worst = 0.0;
    int checked = 0;
    for (const SynthAtom& atom : frame.atoms) {
      if (atom.x < 20 || atom.y < 20 || atom.x > 2027 || atom.y > 2027) continue;
      worst = std::max(worst, DistanceToColumn(m, atom.x, atom.y));
      ++checked;
    }
    EXPECT_LT(worst, 0.75) << SynthLatticeName(l);
    EXPECT_GT(checked, 5000) << SynthLatticeName(l);
  }
}

// Columns too narrow for the binned search (YBCO at 0.45 Å/px: columns of
// 1 px, a = 8.5 px; binned, it came out a superlattice) are searched at full
// resolution, and come out right.
TEST(LatticeTest, LargeFrameWithAFineLatticeIsAsPrecise) {
  SynthOptions o;
  o.width = o.height = 2048;
  o.lattice = SynthLattice::kYbco;
  o.pixel_size_angstrom = 0.45;
  o.noise = 0.3;
  o.seed = kFirstSeed;
  absl::StatusOr<SynthFrame> frame = Synthesize(o);
  ASSERT_TRUE(frame.ok()) << frame.status();
  const LatticeMeasurement m = Measure(frame->image);
  ASSERT_TRUE(m.found) << m.reason;
  EXPECT_EQ(m.columns_per_cell, 6);
  EXPECT_NEAR(Length(m.a), 3.82 / 0.45, 5e-4 * Length(m.a));
  EXPECT_NEAR(Length(m.b), 11.68 / 0.45, 5e-4 * Length(m.b));
  EXPECT_LE(std::abs(RelativeError(m.nearest_neighbor_px, frame->prior.NearestNeighborPx())),
            kSpacingTolerance);
  EXPECT_LE(std::abs(RelativeError(m.column_density_per_px2, frame->prior.ColumnDensityPerPx2())),
            kDensityTolerance);
}

// The binned search's verdicts: a nanoparticle of a fifth of a 2048² frame
// shows its lattice, white noise shows none; and its parallel binning does
// not change the result.
TEST(LatticeTest, LargeFrameVerdicts) {
  SynthOptions o;
  o.width = o.height = 2048;
  o.scene = SynthScene::kNanoparticle;
  o.crystal_fraction = 0.2;
  o.lattice = SynthLattice::kPerovskite;
  o.noise = 0.3;
  o.seed = kFirstSeed;
  absl::StatusOr<SynthFrame> particle = Synthesize(o);
  ASSERT_TRUE(particle.ok()) << particle.status();
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create({.num_threads = 2});
  ASSERT_TRUE(context.ok());
  const LatticeMeasurement serial = Measure(particle->image);
  const LatticeMeasurement parallel = Measure(particle->image, context->get());
  ASSERT_TRUE(serial.found) << serial.reason;
  EXPECT_NEAR(serial.nearest_neighbor_px, particle->prior.NearestNeighborPx(),
              kSpacingTolerance * particle->prior.NearestNeighborPx());
  EXPECT_EQ(serial.nearest_neighbor_px, parallel.nearest_neighbor_px);
  EXPECT_EQ(serial.column_density_per_px2, parallel.column_density_per_px2);
  EXPECT_EQ(serial.a.x, parallel.a.x);
  EXPECT_EQ(serial.b.y, parallel.b.y);

  cv::Mat noise(2048, 2048, CV_32F);
  cv::randn(noise, 0.0, 1.0);
  EXPECT_FALSE(Measure(noise).found);
}

// A third of the frame amorphous (noise 0.3): the lattice is still found,
// the disorder adding to the noise. Not a target of issue 15; the
// measurement is expected to hold on 9 of 10 frames per lattice (the
// disordered patches make the autocorrelation fall off unevenly with the
// lag, which can make the first guess too coarse to recover on 256²).
TEST(LatticeTest, PartlyAmorphousFrameStillShowsItsLattice) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    int good = 0;
    for (int seed = kFirstSeed; seed <= kLastSeed; ++seed) {
      const SynthFrame frame = Generate(l, 0.3, seed, 256, /*amorphous=*/0.3);
      const LatticeMeasurement m = Measure(frame.image);
      const double spacing = RelativeError(m.nearest_neighbor_px, frame.prior.NearestNeighborPx());
      const double density =
          RelativeError(m.column_density_per_px2, frame.prior.ColumnDensityPerPx2());
      const bool ok =
          m.found && std::abs(spacing) <= 0.05 && std::abs(density) <= kDensityTolerance;
      good += ok;
      if (!ok) {
        std::cout << absl::StrFormat(
            "[ amorphous] %s seed %d: found %d, spacing %+.1f %%, density "
            "%+.1f %% %s\n",
            SynthLatticeName(l), seed, m.found, 100 * spacing, 100 * density, m.reason);
      }
    }
    EXPECT_GE(good, 9) << SynthLatticeName(l);
  }
}

// A crystal covering a fifth of the frame (a particle in vacuum, an edge, a
// particle on a support film) shows its lattice: its autocorrelation falls
// off with the lag because the crystal ends, not because it is disordered.
// Before the verdict allowed for the fall-off (the envelope, lattice.h 3c)
// 13 of the 18 perovskite and hex frames were found within 2 %, now 17.
// 512², noise 0.3, seeds 21-23 (the benchmark's 100-102 held back).
// YBCO (a 93 px cell: a fifth of the frame is under three cells across) is
// printed, not held to it: 6 of 9 within 2 % (4 before).
TEST(LatticeTest, SmallCrystalShowsItsLattice) {
  int good = 0, total = 0;
  for (SynthScene scene : {SynthScene::kNanoparticle, SynthScene::kEdge, SynthScene::kSupport}) {
    for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
      for (uint64_t seed = 21; seed <= 23; ++seed) {
        SynthOptions o;
        o.width = o.height = 512;
        o.lattice = l;
        o.noise = 0.3;
        o.seed = seed;
        o.scene = scene;
        o.crystal_fraction = 0.2;
        absl::StatusOr<SynthFrame> frame = Synthesize(o);
        ASSERT_TRUE(frame.ok()) << frame.status();
        const LatticeMeasurement m = Measure(frame->image);
        const double spacing =
            RelativeError(m.nearest_neighbor_px, frame->prior.NearestNeighborPx());
        const bool ok = m.found && std::abs(spacing) <= 0.02;
        if (l != SynthLattice::kYbco) {
          good += ok;
          ++total;
        }
        if (!ok) {
          std::cout << absl::StrFormat("[ small] %s %s seed %d: found %d, spacing %+.1f %% %s\n",
                                       SynthSceneName(scene), SynthLatticeName(l), seed, m.found,
                                       100 * spacing, m.reason);
        }
      }
    }
  }
  EXPECT_GE(good, total - 1) << good << " of " << total;
}

// A ripple on the shoulder of the zero lag's peak is no translation: on this
// frame (a perovskite edge, a fifth of the frame crystal, noise 0.3) a local
// maximum of the autocorrelation 3.5 px out spanned a "superlattice" with
// the true 31 px cell, and the settling of step 2 wandered from there to a
// 15.6 x 31 px cell that failed the order test: no lattice, counts over the
// whole frame, F1 0.33 instead of 0.98. Seed 100 is one of the trust
// benchmark's (tests/bench/trust_benchmark.py), where it was seen; the fix
// has no parameter tuned on it.
TEST(LatticeTest, AShoulderOfTheZeroLagIsNoTranslation) {
  SynthOptions o;
  o.width = o.height = 512;
  o.lattice = SynthLattice::kPerovskite;
  o.noise = 0.3;
  o.seed = 100;
  o.scene = SynthScene::kEdge;
  o.crystal_fraction = 0.2;
  absl::StatusOr<SynthFrame> frame = Synthesize(o);
  ASSERT_TRUE(frame.ok()) << frame.status();
  // As the analyzer sees it: normalised.
  absl::StatusOr<cv::Mat> image = NormalizeFrame(frame->image, {});
  ASSERT_TRUE(image.ok()) << image.status();
  const LatticeMeasurement m = Measure(*image);
  ASSERT_TRUE(m.found) << m.reason;
  EXPECT_LE(std::abs(RelativeError(m.nearest_neighbor_px, frame->prior.NearestNeighborPx())), 0.02);
  EXPECT_LE(std::abs(RelativeError(m.column_density_per_px2, frame->prior.ColumnDensityPerPx2())),
            0.1);
}

// Scan drift shears the lattice; a shear keeps the cell's area, so the
// density is unchanged.
TEST(LatticeTest, DriftShearsButKeepsDensity) {
  const SynthFrame frame = Generate(SynthLattice::kPerovskite, 0.2, kFirstSeed, 256, 0.0, 10.0);
  const LatticeMeasurement m = Measure(frame.image);
  ASSERT_TRUE(m.found) << m.reason;
  EXPECT_LE(std::abs(RelativeError(m.column_density_per_px2, frame.prior.ColumnDensityPerPx2())),
            0.01);
  // The vertical translation leans by drift · c / (H - 1).
  const double lean = 10.0 * 3.905 / 0.125 / 255.0;
  const PointXY vertical = std::abs(m.a.y) > std::abs(m.b.y) ? m.a : m.b;
  EXPECT_NEAR(std::abs(vertical.x), lean, 0.1);
}

// Draws Gaussian columns (width 3 px) at motif[k] + i·a + j·b with the given
// amplitudes over `image`, plus white noise; returns the drawn centres.
std::vector<PointXY> DrawLattice(cv::Mat& image, PointXY a, PointXY b,
                                 const std::vector<PointXY>& motif,
                                 const std::vector<double>& amplitudes, double noise, int seed) {
  std::vector<PointXY> drawn;
  const int reach = static_cast<int>(2.0 * (image.cols + image.rows) /
                                     std::min(std::hypot(a.x, a.y), std::hypot(b.x, b.y))) +
                    2;
  for (int i = -reach; i <= reach; ++i) {
    for (int j = -reach; j <= reach; ++j) {
      for (size_t k = 0; k < motif.size(); ++k) {
        const PointXY c{motif[k].x + i * a.x + j * b.x, motif[k].y + i * a.y + j * b.y};
        if (c.x < -15 || c.y < -15 || c.x > image.cols + 15 || c.y > image.rows + 15) continue;
        drawn.push_back(c);
        const double s = 3.0;
        for (int y = std::max(0, static_cast<int>(c.y) - 12);
             y < std::min(image.rows, static_cast<int>(c.y) + 13); ++y) {
          for (int x = std::max(0, static_cast<int>(c.x) - 12);
               x < std::min(image.cols, static_cast<int>(c.x) + 13); ++x) {
            image.at<float>(y, x) += static_cast<float>(
                amplitudes[k] *
                std::exp(-((x - c.x) * (x - c.x) + (y - c.y) * (y - c.y)) / (2 * s * s)));
          }
        }
      }
    }
  }
  cv::Mat n(image.size(), CV_32F);
  cv::setRNGSeed(seed);
  cv::randn(n, 0.0, noise);
  image += n;
  return drawn;
}

double ShortestSpacing(const std::vector<PointXY>& points) {
  double nn = std::numeric_limits<double>::infinity();
  for (size_t p = 0; p < points.size(); ++p) {
    for (size_t q = p + 1; q < points.size(); ++q) {
      nn = std::min(nn, std::hypot(points[p].x - points[q].x, points[p].y - points[q].y));
    }
  }
  return nn;
}

// A lattice drawn here: oblique (gamma 105°), rotated by 17°, two columns per
// cell of different brightness. Truth by brute force over the drawn columns.
TEST(LatticeTest, RotatedObliqueLattice) {
  const double angle = 17.0 * std::numbers::pi / 180.0, gamma = 105.0 * std::numbers::pi / 180.0;
  const PointXY a{23.0 * std::cos(angle), 23.0 * std::sin(angle)};
  const PointXY b{27.0 * std::cos(angle + gamma), 27.0 * std::sin(angle + gamma)};
  const PointXY first{5.3, 7.1};
  const PointXY second{5.3 + 0.4 * a.x + 0.3 * b.x, 7.1 + 0.4 * a.y + 0.3 * b.y};
  cv::Mat image(300, 280, CV_32F, cv::Scalar(0.1));
  const std::vector<PointXY> drawn =
      DrawLattice(image, a, b, {first, second}, {1.0, 0.5}, 0.2, kFirstSeed);
  const double nn = ShortestSpacing(drawn);
  const double area = std::abs(a.x * b.y - a.y * b.x);
  const LatticeMeasurement m = Measure(image);
  ASSERT_TRUE(m.found) << m.reason;
  EXPECT_EQ(m.columns_per_cell, 2);
  EXPECT_NEAR(m.cell_area_px2, area, 0.005 * area);
  EXPECT_NEAR(m.nearest_neighbor_px, nn, 0.02 * nn);
  // The reduced basis of this lattice is (a, b) up to signs: |a| < |b| <
  // |a + b|, and gamma reported in [90°, 120°] is 105°.
  EXPECT_NEAR(Length(m.a), 23.0, 0.05);
  EXPECT_NEAR(Length(m.b), 27.0, 0.05);
  EXPECT_NEAR(m.gamma_deg, 105.0, 0.2);
  const double a_angle = std::atan2(m.a.y, m.a.x);
  EXPECT_NEAR(std::min(std::abs(a_angle - angle), std::abs(a_angle - angle + std::numbers::pi)),
              0.0, 0.005);
  // Brightest column first.
  ASSERT_EQ(m.columns.size(), 2u);
  EXPECT_EQ(m.columns[0].relative_height, 1.0);
  EXPECT_NEAR(m.columns[1].relative_height, 0.5, 0.1);
}

// A large cell (96 × 88 px) holding 12 columns of brightness 0.3-1 at
// random places at least 14 px apart: every column is counted.
TEST(LatticeTest, ManyColumnsPerCell) {
  const PointXY a{96.0, 0.0}, b{3.0, 88.0};
  std::mt19937_64 rng(kFirstSeed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<PointXY> motif;
  std::vector<double> amplitudes;
  while (motif.size() < 12) {
    const double fu = u(rng), fv = u(rng);
    const PointXY p{fu * a.x + fv * b.x, fu * a.y + fv * b.y};
    bool free = true;
    for (const PointXY& q : motif) {
      for (int i = -1; i <= 1; ++i) {
        for (int j = -1; j <= 1; ++j) {
          free = free &&
                 std::hypot(p.x - q.x - i * a.x - j * b.x, p.y - q.y - i * a.y - j * b.y) >= 14.0;
        }
      }
    }
    if (!free) continue;
    motif.push_back(p);
    amplitudes.push_back(0.3 + 0.7 * u(rng));
  }
  cv::Mat image(600, 600, CV_32F, cv::Scalar(0.1));
  const std::vector<PointXY> drawn = DrawLattice(image, a, b, motif, amplitudes, 0.2, kFirstSeed);
  const LatticeMeasurement m = Measure(image);
  ASSERT_TRUE(m.found) << m.reason;
  EXPECT_EQ(m.columns_per_cell, 12);
  EXPECT_NEAR(m.cell_area_px2, 96.0 * 88.0, 0.005 * 96.0 * 88.0);
  const double nn = ShortestSpacing(drawn);
  EXPECT_NEAR(m.nearest_neighbor_px, nn, 0.02 * nn);
}

// ---------------------------------------------------------------------------
// Frames without a lattice.

// Random sequential packing of columns (no two closer than `min_px`) at
// `density_px2`, imaged like the generator's: an amorphous projection.
cv::Mat AmorphousFrame(int size, double density_px2, double min_px, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, size);
  std::vector<PointXY> placed;
  const size_t target = static_cast<size_t>(density_px2 * size * size);
  for (int tries = 0; tries < 200000 && placed.size() < target; ++tries) {
    const PointXY p{uniform(rng), uniform(rng)};
    bool free = true;
    for (const PointXY& q : placed) free = free && std::hypot(p.x - q.x, p.y - q.y) >= min_px;
    if (free) placed.push_back(p);
  }
  cv::Mat image(size, size, CV_32F, cv::Scalar(0.05));
  for (const PointXY& c : placed) {
    for (int y = std::max(0, static_cast<int>(c.y) - 12);
         y < std::min(size, static_cast<int>(c.y) + 13); ++y) {
      for (int x = std::max(0, static_cast<int>(c.x) - 12);
           x < std::min(size, static_cast<int>(c.x) + 13); ++x) {
        image.at<float>(y, x) += static_cast<float>(
            std::exp(-((x - c.x) * (x - c.x) + (y - c.y) * (y - c.y)) / (2 * 3.6 * 3.6)));
      }
    }
  }
  cv::Mat noise(image.size(), CV_32F);
  cv::setRNGSeed(static_cast<int>(seed));
  cv::randn(noise, 0.0, 0.1);
  return image + noise;
}

TEST(LatticeTest, NoiseHasNoLattice) {
  for (int size : {256, 512}) {
    for (int seed = kFirstSeed; seed <= kLastSeed; ++seed) {
      cv::Mat noise(size, size, CV_32F);
      cv::setRNGSeed(seed);
      cv::randn(noise, 5.0, 1.0);
      const LatticeMeasurement m = Measure(noise);
      EXPECT_FALSE(m.found) << size << "² seed " << seed;
      EXPECT_FALSE(m.reason.empty());
      EXPECT_EQ(m.columns_per_cell, 0);
    }
  }
}

TEST(LatticeTest, AmorphousHasNoLattice) {
  // YBCO's density at the generator's pixel size, columns at least 0.8 of
  // its spacing apart.
  const double density = 600.0 / (3.82 * 11.68) / 100.0 * 0.125 * 0.125;
  for (int seed = kFirstSeed; seed <= kLastSeed; ++seed) {
    const LatticeMeasurement m = Measure(AmorphousFrame(256, density, 16.0, seed));
    EXPECT_FALSE(m.found) << "seed " << seed;
    EXPECT_FALSE(m.reason.empty());
  }
}

TEST(LatticeTest, ConstantFrameHasNoLattice) {
  const LatticeMeasurement m = Measure(cv::Mat(64, 64, CV_32F, cv::Scalar(3.0)));
  EXPECT_FALSE(m.found);
  EXPECT_THAT(m.reason, HasSubstr("contrast"));
}

// ---------------------------------------------------------------------------
// Contract.

TEST(LatticeTest, InvariantToIntensityScaleAndOffset) {
  const SynthFrame frame = Generate(SynthLattice::kHex, 0.3, kFirstSeed);
  const LatticeMeasurement m = Measure(frame.image);
  const LatticeMeasurement scaled = Measure(frame.image * 250.0 + 1000.0);
  ASSERT_TRUE(m.found && scaled.found);
  EXPECT_NEAR(scaled.nearest_neighbor_px, m.nearest_neighbor_px, 1e-3);
  EXPECT_NEAR(scaled.cell_area_px2, m.cell_area_px2, 1e-3 * m.cell_area_px2);
  EXPECT_EQ(scaled.columns_per_cell, m.columns_per_cell);
}

TEST(LatticeTest, ContextDoesNotChangeTheResult) {
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create({.num_threads = 2});
  ASSERT_TRUE(context.ok());
  const SynthFrame frame = Generate(SynthLattice::kYbco, 0.3, kFirstSeed, 300);
  const LatticeMeasurement serial = Measure(frame.image);
  const LatticeMeasurement parallel = Measure(frame.image, context->get());
  ASSERT_TRUE(serial.found && parallel.found);
  EXPECT_EQ(serial.nearest_neighbor_px, parallel.nearest_neighbor_px);
  EXPECT_EQ(serial.column_density_per_px2, parallel.column_density_per_px2);
  EXPECT_EQ(serial.a.x, parallel.a.x);
  EXPECT_EQ(serial.b.y, parallel.b.y);
}

TEST(LatticeTest, RejectsBadFrames) {
  EXPECT_EQ(MeasureLattice(cv::Mat()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureLattice(cv::Mat(64, 64, CV_8U, cv::Scalar(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureLattice(cv::Mat(8, 64, CV_32F, cv::Scalar(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
  cv::Mat nan(64, 64, CV_32F, cv::Scalar(1));
  nan.at<float>(5, 7) = std::numeric_limits<float>::quiet_NaN();
  const absl::Status status = MeasureLattice(nan).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("non-finite"));
}

TEST(LatticeTest, OptionsValidateNameTheField) {
  auto expect_bad = [](LatticeOptions o, const std::string& field) {
    const absl::Status status = o.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(status.message(), HasSubstr(field));
    EXPECT_EQ(MeasureLattice(cv::Mat(64, 64, CV_32F, cv::Scalar(1)), o).status().code(),
              absl::StatusCode::kInvalidArgument);
  };
  EXPECT_TRUE(LatticeOptions{}.Validate().ok());
  LatticeOptions o;
  o.max_lag_fraction = 0.6;
  expect_bad(o, "max_lag_fraction");
  o = {};
  o.max_lag_px = 4;
  expect_bad(o, "max_lag_px");
  o = {};
  o.min_translation_px = 0.5;
  expect_bad(o, "min_translation_px");
  o = {};
  o.candidate_peak_fraction = 0.0;
  expect_bad(o, "candidate_peak_fraction");
  o = {};
  o.num_candidates = 1;
  expect_bad(o, "num_candidates");
  o = {};
  o.match_tolerance = 0.5;
  expect_bad(o, "match_tolerance");
  o = {};
  o.sublattice_ratio = 1.5;
  expect_bad(o, "sublattice_ratio");
  o = {};
  o.min_ordered_fraction = 0.0;
  expect_bad(o, "min_ordered_fraction");
  o = {};
  o.min_significance = std::numeric_limits<double>::quiet_NaN();
  expect_bad(o, "min_significance");
  o = {};
  o.min_column_height = 1.0;
  expect_bad(o, "min_column_height");
  o = {};
  o.nn_merge_fraction = -0.1;
  expect_bad(o, "nn_merge_fraction");
}

// ---------------------------------------------------------------------------
// CheckPrior and DerivePrior.

std::vector<PriorWarning> Check(const PhysicsPrior& prior, const LatticeMeasurement& m) {
  absl::StatusOr<std::vector<PriorWarning>> warnings = CheckPrior(prior, m);
  EXPECT_TRUE(warnings.ok()) << warnings.status();
  return warnings.ok() ? *warnings : std::vector<PriorWarning>{};
}

std::string Describe(const std::vector<PriorWarning>& warnings) {
  std::string out;
  for (const PriorWarning& w : warnings) out += w.field + ": " + w.message + "\n";
  return out;
}

TEST(CheckPriorTest, TruePriorPasses) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    for (double noise : {0.0, 0.3, 0.6}) {
      for (int seed = kFirstSeed; seed <= kFirstSeed + 2; ++seed) {
        const SynthFrame frame = Generate(l, noise, seed);
        const LatticeMeasurement m = Measure(frame.image);
        ASSERT_TRUE(m.found);
        EXPECT_TRUE(Check(frame.prior, m).empty()) << SynthLatticeName(l) << " noise " << noise;
      }
    }
  }
}

// The mistakes of issue 15: a pixel size 10× too large (or small) and a
// density 100× too low (or high).
TEST(CheckPriorTest, CatchesWrongPixelSize) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    const SynthFrame frame = Generate(l, 0.3, kFirstSeed);
    const LatticeMeasurement m = Measure(frame.image);
    ASSERT_TRUE(m.found);
    for (double factor : {10.0, 0.1, 2.0}) {
      PhysicsPrior prior = frame.prior;
      prior.pixel_size_angstrom *= factor;
      if (!prior.Validate().ok()) {
        // hex at 10×: 1.42 Å spans 1.8 px, which the prior itself rejects.
        EXPECT_EQ(CheckPrior(prior, m).status().code(), absl::StatusCode::kInvalidArgument);
        continue;
      }
      const std::vector<PriorWarning> warnings = Check(prior, m);
      ASSERT_EQ(warnings.size(), 1u) << SynthLatticeName(l) << " × " << factor;
      EXPECT_EQ(warnings[0].field, "pixel_size_angstrom");
      EXPECT_DOUBLE_EQ(warnings[0].given, prior.pixel_size_angstrom);
      EXPECT_NEAR(warnings[0].measured, frame.prior.pixel_size_angstrom,
                  0.02 * frame.prior.pixel_size_angstrom);
      EXPECT_THAT(warnings[0].message, HasSubstr("pixel_size_angstrom"));
    }
  }
}

TEST(CheckPriorTest, CatchesWrongDensity) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    const SynthFrame frame = Generate(l, 0.3, kFirstSeed);
    const LatticeMeasurement m = Measure(frame.image);
    ASSERT_TRUE(m.found);
    for (double factor : {0.01, 100.0, 0.6, 1.5}) {
      PhysicsPrior prior = frame.prior;
      *prior.column_density_per_nm2 *= factor;
      if (!prior.Validate().ok()) continue;  // 100× exceeds hexagonal packing at that spacing
      const std::vector<PriorWarning> warnings = Check(prior, m);
      ASSERT_EQ(warnings.size(), 1u) << SynthLatticeName(l) << " × " << factor;
      EXPECT_EQ(warnings[0].field, "column_density_per_nm2");
      EXPECT_DOUBLE_EQ(warnings[0].given, *prior.column_density_per_nm2);
      EXPECT_NEAR(warnings[0].measured, *frame.prior.column_density_per_nm2,
                  kDensityTolerance * *frame.prior.column_density_per_nm2);
    }
  }
}

TEST(CheckPriorTest, SpacingToleranceIsFifteenPercent) {
  const SynthFrame frame = Generate(SynthLattice::kPerovskite, 0.3, kFirstSeed);
  const LatticeMeasurement m = Measure(frame.image);
  ASSERT_TRUE(m.found);
  PhysicsPrior prior = frame.prior;
  prior.nearest_neighbor_angstrom *= 0.9;
  EXPECT_TRUE(Check(prior, m).empty()) << Describe(Check(prior, m));
  prior.nearest_neighbor_angstrom = frame.prior.nearest_neighbor_angstrom * 0.8;
  std::vector<PriorWarning> warnings = Check(prior, m);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].field, "nearest_neighbor_angstrom");
  EXPECT_NEAR(warnings[0].measured, frame.prior.nearest_neighbor_angstrom,
              kSpacingTolerance * frame.prior.nearest_neighbor_angstrom);
  // Density 20 % low is inside its 32 % tolerance.
  prior = frame.prior;
  *prior.column_density_per_nm2 *= 0.8;
  EXPECT_TRUE(Check(prior, m).empty());
}

// A prior for the bright A sites only of SrTiO3: half the visible density.
TEST(CheckPriorTest, NamesASublatticePrior) {
  const SynthFrame frame = Generate(SynthLattice::kPerovskite, 0.3, kFirstSeed);
  const LatticeMeasurement m = Measure(frame.image);
  ASSERT_TRUE(m.found);
  PhysicsPrior prior = frame.prior;
  *prior.column_density_per_nm2 *= 0.5;
  prior.nearest_neighbor_angstrom = 3.905;  // Sr-Sr
  const std::vector<PriorWarning> warnings = Check(prior, m);
  ASSERT_FALSE(warnings.empty());
  EXPECT_EQ(warnings.back().field, "column_density_per_nm2");
  EXPECT_THAT(warnings.back().message, HasSubstr("sublattice"));
}

TEST(CheckPriorTest, RejectsInvalidInputs) {
  const SynthFrame frame = Generate(SynthLattice::kHex, 0.3, kFirstSeed);
  const LatticeMeasurement m = Measure(frame.image);
  PhysicsPrior bad = frame.prior;
  bad.pixel_size_angstrom = -1.0;
  EXPECT_EQ(CheckPrior(bad, m).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckPrior(frame.prior, LatticeMeasurement{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  PriorTolerances tolerances;
  tolerances.spacing = 0.0;
  EXPECT_EQ(CheckPrior(frame.prior, m, tolerances).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DerivePriorTest, WithPixelSizeMatchesTheGenerator) {
  for (SynthLattice l : {SynthLattice::kYbco, SynthLattice::kPerovskite, SynthLattice::kHex}) {
    for (int seed = kFirstSeed; seed <= kFirstSeed + 2; ++seed) {
      const SynthFrame frame = Generate(l, 0.6, seed);
      const LatticeMeasurement m = Measure(frame.image);
      absl::StatusOr<DerivedPrior> derived = DerivePrior(m, frame.prior.pixel_size_angstrom);
      ASSERT_TRUE(derived.ok()) << derived.status();
      EXPECT_TRUE(derived->pixel_size_known);
      const PhysicsPrior& prior = derived->prior;
      EXPECT_TRUE(prior.Validate().ok());
      EXPECT_LE(std::abs(RelativeError(prior.nearest_neighbor_angstrom,
                                       frame.prior.nearest_neighbor_angstrom)),
                kSpacingTolerance);
      EXPECT_LE(
          std::abs(RelativeError(prior.ColumnDensityPerNm2(), *frame.prior.column_density_per_nm2)),
          kDensityTolerance);
      ASSERT_TRUE(prior.lattice.has_value());
      EXPECT_EQ(prior.lattice->columns_per_cell, TruthOf(l).columns_per_cell);
      EXPECT_TRUE(Check(prior, m).empty());
    }
  }
}

TEST(DerivePriorTest, WithoutPixelSizeWorksInPixels) {
  const SynthFrame frame = Generate(SynthLattice::kYbco, 0.3, kFirstSeed);
  const LatticeMeasurement m = Measure(frame.image);
  absl::StatusOr<DerivedPrior> derived = DerivePrior(m);
  ASSERT_TRUE(derived.ok()) << derived.status();
  EXPECT_FALSE(derived->pixel_size_known);
  EXPECT_EQ(derived->prior.pixel_size_angstrom, 1.0);
  EXPECT_NEAR(derived->prior.NearestNeighborPx(), frame.prior.NearestNeighborPx(),
              kSpacingTolerance * frame.prior.NearestNeighborPx());
  EXPECT_NEAR(derived->prior.ColumnDensityPerPx2(), frame.prior.ColumnDensityPerPx2(),
              kDensityTolerance * frame.prior.ColumnDensityPerPx2());
}

TEST(DerivePriorTest, RefusesAFrameWithoutLattice) {
  cv::Mat noise(256, 256, CV_32F);
  cv::setRNGSeed(kFirstSeed);
  cv::randn(noise, 0.0, 1.0);
  const LatticeMeasurement m = Measure(noise);
  ASSERT_FALSE(m.found);
  const absl::Status status = DerivePrior(m, 0.1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("lattice"));
  EXPECT_THAT(status.message(), HasSubstr(m.reason));
  const LatticeMeasurement crystal = Measure(Generate(SynthLattice::kHex, 0.1, 11).image);
  for (double bad : {0.0, -0.1, std::numeric_limits<double>::infinity()}) {
    const absl::Status s = DerivePrior(crystal, bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("pixel_size_angstrom"));
  }
}

// ---------------------------------------------------------------------------
// Real images (../shared/data/real, README there).

std::string RealDir() { return std::string(LOGSTAR_SHARED_DIR) + "/data/real/"; }

std::optional<cv::Mat> LoadReal(const std::string& name) {
  const std::string path = RealDir() + name + ".npy";
  if (!std::filesystem::exists(path)) return std::nullopt;
  absl::StatusOr<cv::Mat> frame = LoadFrame(path);
  EXPECT_TRUE(frame.ok()) << frame.status();
  cv::Mat f;
  frame->convertTo(f, CV_32F);
  return f;
}

// x, y of the first `rows` rows (all when < 0) of a positions CSV.
std::vector<cv::Point2f> LoadPositions(const std::string& name, int rows = -1) {
  std::ifstream in(RealDir() + name + ".positions.csv");
  std::vector<cv::Point2f> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line) && (rows < 0 || static_cast<int>(out.size()) < rows)) {
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    double x = 0, y = 0;
    if (f.size() >= 2 && absl::SimpleAtod(f[0], &x) && absl::SimpleAtod(f[1], &y)) {
      out.emplace_back(static_cast<float>(x), static_cast<float>(y));
    }
  }
  return out;
}

// The reference positions' spacing, the way lattice.h defines it per
// column: the mean of the spacings within 10 % of its nearest; the median
// over the columns.
double ReferenceSpacing(const std::vector<cv::Point2f>& points) {
  std::vector<double> per;
  for (size_t i = 0; i < points.size(); ++i) {
    std::vector<double> d;
    for (size_t j = 0; j < points.size(); ++j) {
      if (i != j) d.push_back(std::hypot(points[i].x - points[j].x, points[i].y - points[j].y));
    }
    const double least = *std::min_element(d.begin(), d.end());
    double sum = 0;
    int n = 0;
    for (double v : d) {
      if (v <= 1.1 * least) sum += v, ++n;
    }
    per.push_back(sum / n);
  }
  std::nth_element(per.begin(), per.begin() + per.size() / 2, per.end());
  return per[per.size() / 2];
}

// Columns per px² from the reference positions: interior cells of their
// Voronoi tessellation (OpenCV's Subdiv2D), count / total area.
double ReferenceDensity(const std::vector<cv::Point2f>& points) {
  cv::Subdiv2D subdiv(cv::Rect(-50, -50, 500, 500));
  for (const cv::Point2f& p : points) subdiv.insert(p);
  std::vector<std::vector<cv::Point2f>> facets;
  std::vector<cv::Point2f> centres;
  subdiv.getVoronoiFacetList({}, facets, centres);
  std::vector<cv::Point2f> hull;
  cv::convexHull(points, hull);
  double area = 0.0;
  int n = 0;
  for (const std::vector<cv::Point2f>& facet : facets) {
    const bool interior = std::all_of(facet.begin(), facet.end(), [&](const cv::Point2f& v) {
      return cv::pointPolygonTest(hull, v, false) >= 0;
    });
    if (!interior) continue;
    area += cv::contourArea(facet);
    ++n;
  }
  return n / area;
}

struct RealCase {
  std::string name;
  int rows;  // reference rows of the crystal measured (-1: all)
  double pixel_size_angstrom;
  int columns_per_cell;
};

TEST(RealImagesTest, SpacingAndDensityMatchReferencePositions) {
  const RealCase cases[] = {
      {"graphene_si_dopant_madf", -1, 0.078, 2},
      {"pb_nanoparticle_adf", 212, 0.22, 1},  // the last 7 rows are other particles
      {"cspbbr3_100_adf", -1, 0.3109, 2},     // Pb and Cs; the faint Br columns are not listed
  };
  for (const RealCase& c : cases) {
    const std::optional<cv::Mat> frame = LoadReal(c.name);
    if (!frame.has_value()) GTEST_SKIP() << "shared images not found in " << RealDir();
    const std::vector<cv::Point2f> points = LoadPositions(c.name, c.rows);
    ASSERT_GT(points.size(), 100u) << c.name;
    const LatticeMeasurement m = Measure(*frame);
    ASSERT_TRUE(m.found) << c.name << ": " << m.reason;
    const double spacing = ReferenceSpacing(points), density = ReferenceDensity(points);
    std::cout << absl::StrFormat(
        "[ real     ] %-24s spacing %.2f px (reference %.2f, %+.1f %%), density %.5f /px^2 "
        "(reference %.5f, %+.1f %%), %d columns per cell, |a| %.2f |b| %.2f gamma %.1f\n",
        c.name, m.nearest_neighbor_px, spacing, 100 * RelativeError(m.nearest_neighbor_px, spacing),
        m.column_density_per_px2, density, 100 * RelativeError(m.column_density_per_px2, density),
        m.columns_per_cell, Length(m.a), Length(m.b), m.gamma_deg);
    // Reference positions are model fits with their own scatter.
    EXPECT_LE(std::abs(RelativeError(m.nearest_neighbor_px, spacing)), 0.03) << c.name;
    EXPECT_LE(std::abs(RelativeError(m.column_density_per_px2, density)), 0.05) << c.name;
    EXPECT_EQ(m.columns_per_cell, c.columns_per_cell) << c.name;
    // A prior built from the stored pixel size and the reference passes.
    PhysicsPrior prior;
    prior.pixel_size_angstrom = c.pixel_size_angstrom;
    prior.nearest_neighbor_angstrom = spacing * c.pixel_size_angstrom;
    prior.column_density_per_nm2 =
        density * 100.0 / (c.pixel_size_angstrom * c.pixel_size_angstrom);
    EXPECT_TRUE(Check(prior, m).empty()) << c.name;
  }
}

// SrTiO3 along [110]: a projected cell of a/√2 × a (a = 3.905 Å) with the
// SrO and Ti columns a/2 apart along a; at the stored 0.09326 Å/px.
TEST(RealImagesTest, SrTiO3MatchesItsLatticeConstant) {
  const std::optional<cv::Mat> frame = LoadReal("srtio3_110_haadf");
  if (!frame.has_value()) GTEST_SKIP() << "shared images not found in " << RealDir();
  const LatticeMeasurement m = Measure(*frame);
  ASSERT_TRUE(m.found) << m.reason;
  const double px = 0.09326, a = 3.905;
  std::cout << absl::StrFormat(
      "[ real     ] srtio3_110_haadf         |a| %.3f A (a/sqrt2 %.3f), |b| %.3f A (a %.3f), "
      "spacing %.3f A (a/2 %.4f), %d columns per cell\n",
      Length(m.a) * px, a / std::sqrt(2.0), Length(m.b) * px, a, m.nearest_neighbor_px * px, a / 2,
      m.columns_per_cell);
  EXPECT_NEAR(Length(m.a) * px, a / std::sqrt(2.0), 0.02 * a / std::sqrt(2.0));
  EXPECT_NEAR(Length(m.b) * px, a, 0.02 * a);
  EXPECT_NEAR(m.gamma_deg, 90.0, 1.0);
  EXPECT_EQ(m.columns_per_cell, 2);
  EXPECT_NEAR(m.NearestNeighborAngstrom(px), a / 2, 0.02 * a / 2);
}

TEST(RealImagesTest, SingleAtomsOnAmorphousSupportHaveNoLattice) {
  const std::optional<cv::Mat> frame = LoadReal("pt_single_atoms_support_haadf");
  if (!frame.has_value()) GTEST_SKIP() << "shared images not found in " << RealDir();
  const LatticeMeasurement m = Measure(*frame);
  EXPECT_FALSE(m.found);
  std::cout << "[ real     ] pt_single_atoms_support_haadf: " << m.reason << "\n";
}

// ---------------------------------------------------------------------------

TEST(LatticeTest, Runtime2048) {
  const SynthFrame frame = Generate(SynthLattice::kYbco, 0.3, kFirstSeed, 2048);
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create({.num_threads = 2});
  ASSERT_TRUE(context.ok());
  for (ExecutionContext* ctx : {static_cast<ExecutionContext*>(nullptr), context->get()}) {
    const auto t0 = std::chrono::steady_clock::now();
    const LatticeMeasurement m = Measure(frame.image, ctx);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(m.found) << m.reason;
    std::cout << absl::StrFormat(
        "[ runtime  ] 2048^2 ybco: %.0f ms (%s); spacing %+.2f %%, density %+.2f %%\n", ms,
        ctx == nullptr ? "no context" : "2 threads",
        100 * RelativeError(m.nearest_neighbor_px, frame.prior.NearestNeighborPx()),
        100 * RelativeError(m.column_density_per_px2, frame.prior.ColumnDensityPerPx2()));
    EXPECT_LE(std::abs(RelativeError(m.nearest_neighbor_px, frame.prior.NearestNeighborPx())),
              0.005);
    EXPECT_LT(ms, 20000.0);  // a generous bound: a shared 2-core machine
  }
}

}  // namespace
}  // namespace logstar
