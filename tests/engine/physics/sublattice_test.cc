// AssignSublattices against the generator's ground truth (engine/image/synth.h
// labels every column with its sublattice) and on real images
// (../shared/data/real: CsPbBr3 with hand-typed Pb and Cs columns, SrTiO3
// whose Sr and Ti-O columns are told from the lattice's fold).
//
// Seeds 101-103 were not used while the method and its constants were
// chosen (that used seeds 1-2).
#include "engine/physics/sublattice.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/image/normalize.h"
#include "engine/image/overlay.h"
#include "engine/image/synth.h"
#include "engine/log/log_detector.h"
#include "engine/physics/lattice.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Two threads: the machine is shared.
ExecutionContext* Context() {
  static ExecutionContext* context = ExecutionContext::Create({.num_threads = 2}).value().release();
  return context;
}

// ---------------------------------------------------------------------------
// Generated frames.

struct Case {
  SynthFrame frame;
  cv::Mat image;  // normalised min-max, as the analyzer sees it
  PhysicsPrior prior;
  std::vector<PointXY> positions;  // the crystal's columns (not amorphous)
  std::vector<double> sigmas;
  std::vector<int> truth;  // index into prior.sublattices
  double crystalline_area_px2 = 0.0;
  std::optional<LatticeMeasurement> lattice;
};

// The first crystal's sublattices as the prior (the interface's second
// crystal has the same names); the columns of every crystal as the atoms.
Case MakeCase(const SynthOptions& options) {
  Case c;
  c.frame = Synthesize(options).value();
  c.image = NormalizeFrame(c.frame.image, NormalizeOptions{}).value();
  c.prior = c.frame.prior;
  std::map<std::string, int> index;
  for (const SynthSublattice& s : c.frame.sublattices) {
    if (s.crystal != 0) continue;
    index[s.name] = static_cast<int>(c.prior.sublattices.size());
    c.prior.sublattices.push_back({.name = s.name,
                                   .column_density_per_nm2 = s.density_per_nm2,
                                   .relative_brightness = s.relative_brightness});
  }
  for (const SynthAtom& a : c.frame.atoms) {
    if (a.amorphous || a.crystal < 0) continue;
    c.positions.push_back({a.x, a.y});
    c.sigmas.push_back(a.sigma_px);
    c.truth.push_back(index.at(a.sublattice));
  }
  c.crystalline_area_px2 = cv::countNonZero(c.frame.crystalline_mask);
  absl::StatusOr<LatticeMeasurement> lattice = MeasureLattice(c.image, {}, Context());
  if (lattice.ok()) c.lattice = *lattice;
  return c;
}

// The smallest per-sublattice F1 (a label -1 is a miss of the true class).
double SublatticeF1(const std::vector<int>& truth, const std::vector<int>& labels, int k) {
  double worst = 1.0;
  for (int s = 0; s < k; ++s) {
    int tp = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < truth.size(); ++i) {
      tp += labels[i] == s && truth[i] == s;
      fp += labels[i] == s && truth[i] != s;
      fn += labels[i] != s && truth[i] == s;
    }
    worst = std::min(worst, tp + fp + fn == 0 ? 1.0 : 2.0 * tp / (2.0 * tp + fp + fn));
  }
  return worst;
}

SublatticeAssignment Assign(const Case& c, const std::vector<PointXY>& positions,
                            const std::vector<double>& sigmas) {
  absl::StatusOr<SublatticeAssignment> a =
      AssignSublattices(c.image, positions, sigmas, c.prior,
                        c.lattice.has_value() ? &*c.lattice : nullptr, c.crystalline_area_px2);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *a : SublatticeAssignment{};
}

// The true positions moved by a Gaussian error of `rms_px` (2-D rms).
std::vector<PointXY> Jitter(const std::vector<PointXY>& positions, double rms_px, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, rms_px / std::sqrt(2.0));
  std::vector<PointXY> out = positions;
  for (PointXY& p : out) {
    p.x += normal(rng);
    p.y += normal(rng);
  }
  return out;
}

// LoG detections (fixed parameters around the columns' width) matched to
// the nearest true column within a third of the nearest-neighbour spacing;
// `truth` gets the matched column's label, detections without a match are
// classified too but not scored.
struct Detected {
  std::vector<PointXY> positions;
  std::vector<double> sigmas;
  std::vector<int> truth;  // -2 = no true column
};

Detected Detect(const Case& c) {
  const double s = c.sigmas.empty() ? 3.0 : c.sigmas[0];
  LogOptions options;
  options.scale = {.min_sigma = 0.6 * s, .max_sigma = 1.6 * s, .num_sigma = 6};
  options.detect = {.threshold = 0.05, .overlap = 0.5};
  const std::vector<Blob> blobs = DetectBlobsLog(c.image, options, Context()).value();
  const double reach = c.prior.NearestNeighborPx() / 3.0;
  Detected d;
  for (const Blob& b : blobs) {
    int best = -2;
    double best_d = reach;
    for (size_t i = 0; i < c.positions.size(); ++i) {
      const double dist = std::hypot(b.x - c.positions[i].x, b.y - c.positions[i].y);
      if (dist < best_d) best_d = dist, best = c.truth[i];
    }
    d.positions.push_back({b.x, b.y});
    d.sigmas.push_back(b.sigma);
    d.truth.push_back(best);
  }
  return d;
}

double DetectedF1(const Detected& d, const std::vector<int>& labels, int k) {
  std::vector<int> truth, got;
  for (size_t i = 0; i < d.truth.size(); ++i) {
    if (d.truth[i] < 0) continue;
    truth.push_back(d.truth[i]);
    got.push_back(labels[i]);
  }
  return SublatticeF1(truth, got, k);
}

struct Row {
  std::string lattice;
  double ratio = 0.0, noise = 0.0;
  double f1_true = 1.0, f1_jitter = 1.0, f1_detected = 1.0;  // worst over the seeds
  // B's measured relative brightness on the true positions, farthest from
  // the generator's over the seeds.
  double brightness = -1.0, brightness_truth = 0.0;
};

Row Sweep(SynthLattice lattice, SynthScene scene, double ratio, double noise) {
  Row row{.lattice = absl::StrCat(SynthLatticeName(lattice),
                                  scene == SynthScene::kInterface ? "/interface" : ""),
          .ratio = ratio,
          .noise = noise};
  for (const uint64_t seed : {101, 102, 103}) {
    SynthOptions options;
    options.lattice = lattice;
    options.scene = scene;
    options.ab_brightness_ratio = ratio;
    options.noise = noise;
    options.seed = seed;
    if (scene == SynthScene::kInterface) options.crystal_fraction = 0.5;
    const Case c = MakeCase(options);
    const int k = static_cast<int>(c.prior.sublattices.size());
    const SublatticeAssignment on_truth = Assign(c, c.positions, c.sigmas);
    const SublatticeAssignment jittered = Assign(c, Jitter(c.positions, 0.5, seed), c.sigmas);
    const Detected d = Detect(c);
    const SublatticeAssignment detected = Assign(c, d.positions, d.sigmas);
    row.f1_true = std::min(row.f1_true, SublatticeF1(c.truth, on_truth.labels, k));
    row.f1_jitter = std::min(row.f1_jitter, SublatticeF1(c.truth, jittered.labels, k));
    row.f1_detected = std::min(row.f1_detected, DetectedF1(d, detected.labels, k));
    EXPECT_THAT(on_truth.note, IsEmpty()) << row.lattice << " ratio " << ratio << " seed " << seed;
    row.brightness_truth = c.prior.sublattices[1].relative_brightness;
    const double measured = on_truth.counts[1].relative_brightness;
    if (row.brightness < 0.0 ||
        std::abs(measured - row.brightness_truth) > std::abs(row.brightness - row.brightness_truth))
      row.brightness = measured;
  }
  return row;
}

// The target: sublattice F1 >= 0.90 at noise <= 0.3 for A/B ratios
// 1.2-3, on both A/B lattices and at an interface, on the true positions
// and on positions 0.5 px off. Prints the table (worst of three seeds) that
// the header's accuracy refers to; noise 0.5 is shown, not held to it.
TEST(AssignSublatticesTest, F1OnGeneratedFrames) {
  std::vector<Row> rows;
  for (const auto& [lattice, scene] :
       {std::pair{SynthLattice::kPerovskite, SynthScene::kCrystal},
        std::pair{SynthLattice::kHex, SynthScene::kCrystal},
        std::pair{SynthLattice::kPerovskite, SynthScene::kInterface}}) {
    for (const double ratio : {1.2, 1.5, 2.0, 3.0}) {
      for (const double noise : {0.1, 0.3, 0.5}) {
        rows.push_back(Sweep(lattice, scene, ratio, noise));
        const Row& r = rows.back();
        if (noise <= 0.3) {
          EXPECT_GE(r.f1_true, 0.90) << r.lattice << " ratio " << ratio << " noise " << noise;
          EXPECT_GE(r.f1_jitter, 0.90) << r.lattice << " ratio " << ratio << " noise " << noise;
          EXPECT_NEAR(r.brightness, r.brightness_truth, 0.06)
              << r.lattice << " ratio " << ratio << " noise " << noise;
        }
      }
    }
  }
  std::string table =
      "lattice               ratio  noise  F1 true  F1 0.5px  F1 LoG  B/A measured (given)\n";
  for (const Row& r : rows) {
    absl::StrAppendFormat(&table, "%-20s  %5.1f  %5.1f  %7.3f  %8.3f  %6.3f  %.3f (%.3f)\n",
                          r.lattice, r.ratio, r.noise, r.f1_true, r.f1_jitter, r.f1_detected,
                          r.brightness, r.brightness_truth);
  }
  std::cout << table;
}

}  // namespace
}  // namespace logstar
