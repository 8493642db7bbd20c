// The crystalline area against the generator's truth (crystalline_mask of
// engine/image/synth.h), CrystalMask against brute force, and the pixel
// noise against the noise put in.
#include "engine/physics/crystallinity.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/status/statusor.h"
#include "engine/base/context.h"
#include "engine/image/normalize.h"
#include "engine/image/synth.h"
#include "engine/physics/lattice.h"
#include "gtest/gtest.h"
#include "tests/engine/amorphous/mask_iou.h"
#include "tests/engine/real_images.h"

namespace logstar {
namespace {

using ::logstar::testing::MaskIou;

TEST(CrystalMaskTest, AreaAndContainsMatchBruteForce) {
  std::mt19937 rng(5);
  cv::Mat mask(70, 90, CV_8U);
  cv::randu(mask, 0, 2);
  absl::StatusOr<CrystalMask> m = CrystalMask::FromMask(mask * 7);  // any nonzero is crystal
  ASSERT_TRUE(m.ok()) << m.status();
  std::uniform_int_distribution<int> u(-20, 100);
  for (int trial = 0; trial < 200; ++trial) {
    const int col0 = u(rng), row0 = u(rng), dx = u(rng) / 4, dy = u(rng) / 4;
    const PixelRegion r{col0, row0, std::abs(u(rng)), std::abs(u(rng))};
    const CrystalMask view = m->Offset(dx, dy);
    int64_t expected = 0;
    for (int y = r.row0; y < r.row0 + r.rows; ++y) {
      for (int x = r.col0; x < r.col0 + r.cols; ++x) {
        const int fx = x + dx, fy = y + dy;
        if (fx >= 0 && fy >= 0 && fx < mask.cols && fy < mask.rows) {
          expected += mask.at<uint8_t>(fy, fx) != 0;
        }
      }
    }
    ASSERT_EQ(view.Area(r), expected) << trial;
    // A point belongs to the pixel whose centre is nearest (x = column).
    const PointXY p{r.col0 + 0.49, r.row0 - 0.49};
    const int px = r.col0 + dx, py = r.row0 + dy;
    const bool in =
        px >= 0 && py >= 0 && px < mask.cols && py < mask.rows && mask.at<uint8_t>(py, px) != 0;
    ASSERT_EQ(view.Contains(p), in) << trial;
  }
  EXPECT_FALSE(CrystalMask{}.Contains({0, 0}));
  EXPECT_EQ(CrystalMask{}.Area({0, 0, 10, 10}), 0);
  EXPECT_FALSE(CrystalMask::FromMask(cv::Mat(4, 4, CV_32F)).ok());
}

TEST(PixelNoiseStdTest, FindsTheWhiteNoisePutIn) {
  // Gaussian columns 3.6 px wide on a ramp, plus white noise: the estimate
  // sees the noise, not the columns or the ramp.
  cv::Mat clean(400, 400, CV_32F);
  for (int y = 0; y < clean.rows; ++y) {
    for (int x = 0; x < clean.cols; ++x) {
      const double dx = std::remainder(x, 31.0), dy = std::remainder(y, 31.0);
      clean.at<float>(y, x) =
          static_cast<float>(0.001 * x + std::exp(-(dx * dx + dy * dy) / (2 * 3.6 * 3.6)));
    }
  }
  for (double sigma : {0.0, 0.05, 0.3}) {
    cv::Mat noisy = clean.clone(), noise(clean.size(), CV_32F);
    cv::randn(noise, 0.0, sigma);
    noisy += noise;
    absl::StatusOr<double> s = PixelNoiseStd(noisy);
    ASSERT_TRUE(s.ok()) << s.status();
    // The columns alone read as 0.004 (their curvature over 3 px).
    EXPECT_NEAR(*s, sigma, 0.05 * sigma + 0.005) << sigma;
  }
  EXPECT_FALSE(PixelNoiseStd(cv::Mat(2, 2, CV_32F)).ok());
}

struct Scene {
  SynthScene scene;
  double fraction = 0.4;   // crystal_fraction
  double amorphous = 0.0;  // amorphous_fraction (kCrystal)
};

struct Measured {
  double iou = 0.0;
  double fraction = 0.0;  // measured crystalline share
  double truth = 0.0;     // generator's
};

SynthFrame MakeFrame(const Scene& s, SynthLattice lattice, double noise, uint64_t seed,
                     int size = 512) {
  SynthOptions o;
  o.width = o.height = size;
  o.lattice = lattice;
  o.noise = noise;
  o.seed = seed;
  o.scene = s.scene;
  o.crystal_fraction = s.fraction;
  o.amorphous_fraction = s.amorphous;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

// The map of `frame` by the lattice measured on it (which must be found).
absl::StatusOr<Measured> Measure(const SynthFrame& f, LatticeMeasurement* lattice_out = nullptr) {
  absl::StatusOr<cv::Mat> image = NormalizeFrame(f.image, NormalizeOptions{});
  if (!image.ok()) return image.status();
  absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(*image);
  if (!lattice.ok()) return lattice.status();
  if (!lattice->found) return absl::FailedPreconditionError(lattice->reason);
  if (lattice_out != nullptr) *lattice_out = *lattice;
  absl::StatusOr<Crystallinity> c = MeasureCrystallinity(*image, *lattice);
  if (!c.ok()) return c.status();
  return Measured{MaskIou(c->mask.frame_mask(), f.crystalline_mask), c->fraction,
                  cv::mean(f.crystalline_mask)[0]};
}

// Seed 7 (held back: the method was tuned on seeds 1, 2, 100 and 101).
// Measured IoU (noise 0 / 0.3 / 0.6), lowest over the scenes below:
// perovskite 0.94 / 0.94 / 0.94, hex 0.96 / 0.96 / 0.96, YBCO 0.90 / 0.89 /
// 0.87 (its 93 px cell makes the window long, so a particle's rim is
// lost: the share is 0.05 low). MeasureLattice finds no lattice on the YBCO
// edge frame at noise 0.3 and 0.6 ("no long-range order", "no significant
// periodicity"): those frames are skipped.
TEST(CrystallinityTest, MatchesTheGeneratorsCrystallineMask) {
  const std::vector<Scene> scenes = {{SynthScene::kNanoparticle, 0.4},
                                     {SynthScene::kNanoparticle, 0.6},
                                     {SynthScene::kEdge, 0.4},
                                     {SynthScene::kSupport, 0.4},
                                     {SynthScene::kCrystal, 0.4, 0.3}};
  struct Bound {
    SynthLattice lattice;
    double iou;
  };
  int without_lattice = 0;
  for (const Bound& b : {Bound{SynthLattice::kPerovskite, 0.87}, Bound{SynthLattice::kHex, 0.9},
                         Bound{SynthLattice::kYbco, 0.8}}) {
    for (double noise : {0.0, 0.3, 0.6}) {
      for (const Scene& s : scenes) {
        const SynthFrame f = MakeFrame(s, b.lattice, noise, 7);
        absl::StatusOr<Measured> m = Measure(f);
        if (m.status().code() == absl::StatusCode::kFailedPrecondition) {
          // MeasureLattice found none (engine/physics/lattice.h): nothing to map.
          std::printf("%s %s noise %.1f: %s\n", SynthSceneName(s.scene),
                      SynthLatticeName(b.lattice), noise,
                      std::string(m.status().message()).c_str());
          ++without_lattice;
          continue;
        }
        ASSERT_TRUE(m.ok()) << m.status() << " " << SynthSceneName(s.scene);
        std::printf("%-12s %.1f %-10s noise %.1f: IoU %.3f, share %.3f (truth %.3f)\n",
                    SynthSceneName(s.scene), s.fraction, SynthLatticeName(b.lattice), noise, m->iou,
                    m->fraction, m->truth);
        EXPECT_GE(m->iou, b.iou) << SynthSceneName(s.scene) << " " << noise;
        EXPECT_NEAR(m->fraction, m->truth, 0.06) << SynthSceneName(s.scene) << " " << noise;
      }
    }
  }
  EXPECT_LE(without_lattice, 2);
}

// A particle that thins toward its rim, as real ones do (the Pb particle of
// ../shared/data/real: its columns' contrast falls from about 2200 counts at
// the centre to 400 at the rim, over a noise of 100): the generator's
// noise-free particle with its columns' contrast scaled by the distance to
// its edge, from 0.15 at the rim to 1 at the centre, then white noise of
// `noise` × the frame's range. The lattice map goes as the contrast squared,
// so a threshold at half the crystal's typical level kept only the thick
// centre (IoU 0.48-0.52 here, share 0.24-0.26 of 0.5); followed as far as
// its lattice shows (CrystallinityOptions::follow_contrast), IoU 0.85-0.89
// (perovskite), 0.85-0.87 (hex), seeds 31-32.
TEST(CrystallinityTest, AParticleThinningTowardItsRimIsMappedWhole) {
  for (SynthLattice lattice : {SynthLattice::kPerovskite, SynthLattice::kHex}) {
    for (double noise : {0.05, 0.15}) {
      for (uint64_t seed : {31, 32}) {
        const SynthFrame f = MakeFrame({SynthScene::kNanoparticle, 0.5}, lattice, 0.0, seed);
        cv::Mat distance;
        cv::distanceTransform(f.crystalline_mask, distance, cv::DIST_L2, 5);
        double deepest = 0.0;
        cv::minMaxLoc(distance, nullptr, &deepest);
        cv::Mat vacuum = f.crystalline_mask == 0;
        const double background = cv::mean(f.image, vacuum)[0];
        cv::Mat profile = 0.15 + 0.85 * distance / deepest;
        cv::Mat thinned = background + (f.image - background).mul(profile);
        double lo = 0.0, hi = 0.0;
        cv::minMaxLoc(thinned, &lo, &hi);
        cv::Mat white(thinned.size(), CV_32F);
        cv::theRNG().state = seed;
        cv::randn(white, 0.0, noise * (hi - lo));
        thinned += white;
        absl::StatusOr<cv::Mat> image = NormalizeFrame(thinned, NormalizeOptions{});
        ASSERT_TRUE(image.ok()) << image.status();
        absl::StatusOr<LatticeMeasurement> m = MeasureLattice(*image);
        ASSERT_TRUE(m.ok() && m->found) << SynthLatticeName(lattice) << " " << noise;
        absl::StatusOr<Crystallinity> c = MeasureCrystallinity(*image, *m);
        ASSERT_TRUE(c.ok()) << c.status();
        const double iou = MaskIou(c->mask.frame_mask(), f.crystalline_mask);
        std::printf(
            "thinning particle %-10s noise %.2f seed %d: IoU %.3f, share %.3f (truth %.3f)\n",
            SynthLatticeName(lattice), noise, static_cast<int>(seed), iou, c->fraction,
            cv::mean(f.crystalline_mask)[0]);
        EXPECT_GE(iou, 0.8) << SynthLatticeName(lattice) << " noise " << noise << " seed " << seed;
        // The frame's one threshold alone keeps the thick centre only: the
        // test tells the two apart.
        CrystallinityOptions one_threshold;
        one_threshold.follow_contrast = false;
        absl::StatusOr<Crystallinity> centre = MeasureCrystallinity(*image, *m, one_threshold);
        ASSERT_TRUE(centre.ok()) << centre.status();
        EXPECT_LT(MaskIou(centre->mask.frame_mask(), f.crystalline_mask), 0.65);
      }
    }
  }
}

// The Pb nanoparticle of ../shared/data/real (README there): its columns'
// contrast falls from about 2200 counts at the centre to 400 at the rim.
// Against the 212 reference columns of the central particle (StatSTEM's
// fit, hand-corrected), the map held 102 (0.48) with one threshold for the
// frame, 144 (0.68) following the contrast; the columns it still misses
// lie at the rim, where the map is under its noise floor.
TEST(CrystallinityTest, RealPbParticleIsFollowedTowardItsRim) {
  const absl::StatusOr<std::optional<cv::Mat>> raw = testing::LoadRealFrame("pb_nanoparticle_adf");
  ASSERT_TRUE(raw.ok()) << raw.status();
  if (!raw->has_value()) GTEST_SKIP() << "shared images not found in " << testing::RealDir();
  absl::StatusOr<cv::Mat> image = NormalizeFrame(**raw, NormalizeOptions{});
  ASSERT_TRUE(image.ok()) << image.status();
  // The central particle's columns come first.
  const absl::StatusOr<std::vector<PointXY>> read =
      testing::LoadRealPositions("pb_nanoparticle_adf", 212);
  ASSERT_TRUE(read.ok()) << read.status();
  const std::vector<PointXY>& columns = *read;
  ASSERT_EQ(columns.size(), 212u);
  absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(*image);
  ASSERT_TRUE(lattice.ok() && lattice->found);
  auto share_on = [&](const CrystallinityOptions& options) {
    absl::StatusOr<Crystallinity> c = MeasureCrystallinity(*image, *lattice, options);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return 0.0;
    int on = 0;
    for (const PointXY& p : columns) on += c->mask.Contains(p) ? 1 : 0;
    return static_cast<double>(on) / static_cast<double>(columns.size());
  };
  CrystallinityOptions one_threshold;
  one_threshold.follow_contrast = false;
  const double before = share_on(one_threshold), after = share_on({});
  std::printf(
      "[ real     ] pb_nanoparticle_adf: reference columns on the map %.2f (one threshold "
      "%.2f)\n",
      after, before);
  EXPECT_GE(after, 0.6);
  EXPECT_GE(after, before + 0.1);
}

TEST(CrystallinityTest, AWholeCrystalIsCrystallineToItsEdges) {
  for (SynthLattice lattice : {SynthLattice::kYbco, SynthLattice::kPerovskite}) {
    const SynthFrame f = MakeFrame({SynthScene::kCrystal}, lattice, 0.6, 8, 512);
    absl::StatusOr<Measured> m = Measure(f);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_GE(m->fraction, 0.95) << SynthLatticeName(lattice);
  }
}

// A cell measured twice too large (two copies of each column) maps the same
// crystal: the half translation its columns show is put back.
TEST(CrystallinityTest, ADoubledCellIsReducedFirst) {
  const SynthFrame f =
      MakeFrame({SynthScene::kCrystal, 0.4, 0.3}, SynthLattice::kPerovskite, 0.3, 9, 384);
  LatticeMeasurement lattice;
  absl::StatusOr<Measured> single = Measure(f, &lattice);
  ASSERT_TRUE(single.ok()) << single.status();
  LatticeMeasurement doubled = lattice;
  doubled.b = {2 * lattice.b.x, 2 * lattice.b.y};
  doubled.cell_area_px2 *= 2;
  for (const LatticeColumn& c : lattice.columns) {
    doubled.columns.push_back(
        {{c.position_px.x + lattice.b.x, c.position_px.y + lattice.b.y}, c.relative_height});
  }
  absl::StatusOr<cv::Mat> image = NormalizeFrame(f.image, NormalizeOptions{});
  ASSERT_TRUE(image.ok());
  absl::StatusOr<Crystallinity> c = MeasureCrystallinity(*image, doubled);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NEAR(MaskIou(c->mask.frame_mask(), f.crystalline_mask), single->iou, 0.01);
}

// A frame too small for its cell is not mapped (the crystal's level would be
// read on windows cut by the frame's edge): a 256² YBCO frame.
TEST(CrystallinityTest, AFrameTooSmallForItsCellIsNotMapped) {
  const SynthFrame f = MakeFrame({SynthScene::kCrystal}, SynthLattice::kYbco, 0.1, 5, 256);
  absl::StatusOr<Measured> m = Measure(f);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  EXPECT_NE(std::string(m.status().message()).find("too small"), std::string::npos);
}

TEST(CrystallinityTest, NeedsAMeasuredLatticeAndAFiniteFrame) {
  cv::Mat frame(64, 64, CV_32F, cv::Scalar(0.5));
  LatticeMeasurement none;
  none.reason = "no significant periodicity";
  absl::StatusOr<Crystallinity> c = MeasureCrystallinity(frame, none);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(c.status().message()).find("no significant periodicity"),
            std::string::npos);
  LatticeMeasurement square;
  square.found = true;
  square.a = {10, 0};
  square.b = {0, 10};
  square.cell_area_px2 = 100;
  square.nearest_neighbor_px = 10;
  frame.at<float>(3, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(MeasureCrystallinity(frame, square).status().code(),
            absl::StatusCode::kInvalidArgument);
  CrystallinityOptions bad;
  bad.threshold_fraction = 1.5;
  EXPECT_FALSE(bad.Validate().ok());
}

// Prints the IoU table of the header over three held-back seeds and the cost
// on 1024² and 2048² (run with --gtest_also_run_disabled_tests).
TEST(CrystallinityTest, DISABLED_IouTableAndCost) {
  for (SynthLattice lattice :
       {SynthLattice::kPerovskite, SynthLattice::kYbco, SynthLattice::kHex}) {
    for (const Scene& s :
         {Scene{SynthScene::kNanoparticle, 0.2}, Scene{SynthScene::kNanoparticle, 0.4},
          Scene{SynthScene::kNanoparticle, 0.6}, Scene{SynthScene::kEdge, 0.4},
          Scene{SynthScene::kSupport, 0.4}, Scene{SynthScene::kCrystal, 0.4, 0.3}}) {
      for (double noise : {0.0, 0.3, 0.6}) {
        double sum = 0.0, low = 1.0;
        int n = 0, missing = 0;
        for (uint64_t seed : {21, 22, 23}) {
          absl::StatusOr<Measured> m = Measure(MakeFrame(s, lattice, noise, seed));
          if (!m.ok()) {
            ++missing;
            continue;
          }
          sum += m->iou, low = std::min(low, m->iou), ++n;
        }
        std::printf(
            "%-12s %.1f am %.1f %-10s noise %.1f: IoU mean %.3f min %.3f (%d without lattice)\n",
            SynthSceneName(s.scene), s.fraction, s.amorphous, SynthLatticeName(lattice), noise,
            n > 0 ? sum / n : 0.0, low, missing);
      }
    }
  }
  for (int size : {1024, 2048}) {
    const SynthFrame f =
        MakeFrame({SynthScene::kNanoparticle}, SynthLattice::kPerovskite, 0.3, 3, size);
    const cv::Mat image = NormalizeFrame(f.image, NormalizeOptions{}).value();
    const LatticeMeasurement lattice = MeasureLattice(image).value();
    // One threshold (follow_contrast false) and following the contrast,
    // interleaved so that a loaded machine slows both alike.
    CrystallinityOptions one_threshold;
    one_threshold.follow_contrast = false;
    double ms[2] = {0.0, 0.0};
    for (int i = 0; i < 10; ++i) {
      for (int k = 0; k < 2; ++k) {
        const auto t0 = std::chrono::steady_clock::now();
        ASSERT_TRUE(
            MeasureCrystallinity(image, lattice, k == 0 ? one_threshold : CrystallinityOptions{})
                .ok());
        ms[k] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count();
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(PixelNoiseStd(image).ok());
    const auto t2 = std::chrono::steady_clock::now();
    std::printf(
        "%d²: MeasureCrystallinity %.2f ms (one threshold %.2f ms, ratio %.2f), "
        "PixelNoiseStd %.2f ms (one thread)\n",
        size, ms[1] / 10, ms[0] / 10, ms[1] / ms[0],
        std::chrono::duration<double, std::milli>(t2 - t1).count() / 10);
  }
}

}  // namespace
}  // namespace logstar
