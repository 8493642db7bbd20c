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
#include <limits>
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

// A frame of `lattice` with A/B brightness ratio `ratio` (0: the lattice's
// own), 256², the crystal filling it.
SynthOptions AbOptions(SynthLattice lattice, double ratio, double noise, uint64_t seed) {
  SynthOptions options;
  options.lattice = lattice;
  options.ab_brightness_ratio = ratio;
  options.noise = noise;
  options.seed = seed;
  return options;
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
    SynthOptions options = AbOptions(lattice, ratio, noise, seed);
    options.scene = scene;
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

// ---------------------------------------------------------------------------
// Real images (../shared/data/real, README there).

std::string RealDir() { return std::string(LOGSTAR_SHARED_DIR) + "/data/real/"; }

// The image normalised min-max, or nullopt when ../shared is absent.
std::optional<cv::Mat> LoadReal(const std::string& name) {
  const std::string path = RealDir() + name + ".npy";
  if (!std::filesystem::exists(path)) return std::nullopt;
  absl::StatusOr<cv::Mat> frame = LoadFrame(path);
  EXPECT_TRUE(frame.ok()) << frame.status();
  if (!frame.ok()) return std::nullopt;
  cv::Mat f;
  frame->convertTo(f, CV_32F);
  return NormalizeFrame(f, NormalizeOptions{}).value();
}

// A prior for two sublattices of one column per measured cell each, their
// brightness order only.
PhysicsPrior TwoSublatticePrior(const LatticeMeasurement& m, double pixel_size_angstrom,
                                const std::string& bright, const std::string& faint) {
  PhysicsPrior prior;
  prior.pixel_size_angstrom = pixel_size_angstrom;
  const double pixel_nm = pixel_size_angstrom / 10.0;
  const double per_sublattice = 1.0 / (m.cell_area_px2 * pixel_nm * pixel_nm);
  prior.column_density_per_nm2 = 2.0 * per_sublattice;
  prior.nearest_neighbor_angstrom = m.nearest_neighbor_px * pixel_size_angstrom;
  prior.sublattices = {{.name = bright, .column_density_per_nm2 = per_sublattice},
                       {.name = faint, .column_density_per_nm2 = per_sublattice}};
  return prior;
}

// SrTiO3 along [110]: bright Sr (SrO) and fainter Ti columns alternating
// 21 px apart along [001]. No reference positions, so the columns are
// found by LoG, and the reference label of each is the column of the
// lattice's fold (engine/physics/lattice.h: the cell folded from the whole
// frame, its columns ordered by height) its position falls on: geometry
// from the autocorrelation, independent of the per-column brightness and
// link votes being tested. Writes the overlay for the docs to
// $LOGSTAR_SUBLATTICE_OVERLAY (default: the test's temporary directory).
TEST(AssignSublatticesRealTest, SrTiO3SrAndTiColumnsToldApart) {
  const std::optional<cv::Mat> image = LoadReal("srtio3_110_haadf");
  if (!image.has_value()) GTEST_SKIP() << "shared images not found in " << RealDir();
  const LatticeMeasurement lattice = MeasureLattice(*image, {}, Context()).value();
  ASSERT_TRUE(lattice.found) << lattice.reason;
  ASSERT_EQ(lattice.columns_per_cell, 2);
  LogOptions log;
  // Not on the outermost pixels: a column whose centre lies outside the
  // frame peaks there, 1-2 px from where it is.
  log.scale = {.min_sigma = 4.0, .max_sigma = 10.0, .num_sigma = 6, .exclude_border = 2};
  log.detect = {.threshold = 0.05, .overlap = 0.5};
  const std::vector<Blob> blobs = DetectBlobsLog(*image, log, Context()).value();
  std::vector<PointXY> positions;
  std::vector<double> sigmas;
  for (const Blob& b : blobs) {
    positions.push_back({b.x, b.y});
    sigmas.push_back(b.sigma);
  }
  const PhysicsPrior prior = TwoSublatticePrior(lattice, 0.09326, "Sr", "Ti-O");
  const SublatticeAssignment a = AssignSublattices(*image, positions, sigmas, prior, &lattice,
                                                   static_cast<double>(image->rows) * image->cols)
                                     .value();

  // The fold's label: the cell column k minimising the distance of p -
  // column_k to the nearest lattice point (within a quarter of nn).
  const double det = lattice.a.x * lattice.b.y - lattice.a.y * lattice.b.x;
  std::vector<int> reference;
  for (const PointXY& p : positions) {
    int best = -1;
    double best_d = 0.25 * lattice.nearest_neighbor_px;
    for (size_t k = 0; k < lattice.columns.size(); ++k) {
      const double dx = p.x - lattice.columns[k].position_px.x;
      const double dy = p.y - lattice.columns[k].position_px.y;
      const double u = std::round((dx * lattice.b.y - dy * lattice.b.x) / det);
      const double v = std::round((lattice.a.x * dy - lattice.a.y * dx) / det);
      const double d = std::hypot(dx - u * lattice.a.x - v * lattice.b.x,
                                  dy - u * lattice.a.y - v * lattice.b.y);
      if (d < best_d) best_d = d, best = static_cast<int>(k);
    }
    reference.push_back(best);
  }
  std::vector<int> truth, got;
  for (size_t i = 0; i < positions.size(); ++i) {
    if (reference[i] < 0) continue;
    truth.push_back(reference[i]);
    got.push_back(a.labels[i]);
  }
  const double f1 = SublatticeF1(truth, got, 2);
  std::cout << absl::StrFormat(
      "SrTiO3: %d columns found; Sr %d (expected %.1f), Ti-O %d (expected %.1f), unassigned %d; "
      "Ti-O/Sr brightness %.2f (fold %.2f); F1 against the fold's labels %.3f over %d columns\n",
      positions.size(), a.counts[0].num_found, a.counts[0].num_expected, a.counts[1].num_found,
      a.counts[1].num_expected, std::count(a.labels.begin(), a.labels.end(), -1),
      a.counts[1].relative_brightness, lattice.columns[1].relative_height, f1, truth.size());
  EXPECT_THAT(a.note, IsEmpty());
  EXPECT_GE(truth.size(), 0.9 * positions.size());
  EXPECT_GE(f1, 0.97);
  for (int s = 0; s < 2; ++s) {
    const auto in_fold = std::count(truth.begin(), truth.end(), s);
    EXPECT_NEAR(a.counts[s].num_found, in_fold, 0.03 * in_fold) << prior.sublattices[s].name;
  }
  // Ti-O fainter than Sr by about what the fold says.
  EXPECT_NEAR(a.counts[1].relative_brightness, lattice.columns[1].relative_height, 0.1);

  const char* out = std::getenv("LOGSTAR_SUBLATTICE_OVERLAY");
  const std::string path =
      out != nullptr ? std::string(out) : ::testing::TempDir() + "/sublattice-srtio3.png";
  const cv::Mat picture =
      RenderOverlay(*image, blobs, {}, {.labels = a.labels, .names = {"Sr", "Ti-O"}}, {.zoom = 2})
          .value();
  ASSERT_TRUE(WritePng(path, picture).ok()) << path;
  std::cout << "overlay: " << path << "\n";
}

// CsPbBr3 along [100] with StatSTEM's columns, types set by hand in the
// source: Pb (brightest) and Cs. Classified at the reference positions.
TEST(AssignSublatticesRealTest, CsPbBr3AgainstHandTypedColumns) {
  const std::optional<cv::Mat> image = LoadReal("cspbbr3_100_adf");
  if (!image.has_value()) GTEST_SKIP() << "shared images not found in " << RealDir();
  std::ifstream in(RealDir() + "cspbbr3_100_adf.positions.csv");
  std::string line;
  std::getline(in, line);  // x,y,sublattice
  std::vector<PointXY> positions;
  std::vector<int> truth;
  while (std::getline(in, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    double x = 0, y = 0;
    ASSERT_EQ(f.size(), 3u) << line;
    ASSERT_TRUE(absl::SimpleAtod(f[0], &x) && absl::SimpleAtod(f[1], &y)) << line;
    positions.push_back({x, y});
    truth.push_back(f[2] == "Pb" ? 0 : 1);
  }
  ASSERT_EQ(positions.size(), 415u);
  const LatticeMeasurement lattice = MeasureLattice(*image, {}, Context()).value();
  ASSERT_TRUE(lattice.found) << lattice.reason;
  // The frame's Pb-Cs spacing (the fold also holds the faint Br columns, so
  // its cell holds 3): 11.3 px (README); one Pb and one Cs per cell.
  PhysicsPrior prior = TwoSublatticePrior(lattice, 0.3109, "Pb", "Cs");
  prior.nearest_neighbor_angstrom = 11.3 * 0.3109;
  const std::vector<double> sigmas(positions.size(), 0.0);  // width from nn
  const SublatticeAssignment a = AssignSublattices(*image, positions, sigmas, prior, &lattice,
                                                   static_cast<double>(image->rows) * image->cols)
                                     .value();
  const double f1 = SublatticeF1(truth, a.labels, 2);
  std::cout << absl::StrFormat(
      "CsPbBr3: Pb %d, Cs %d (hand: 217, 198), Cs/Pb brightness %.2f, "
      "F1 %.3f; note: %s\n",
      a.counts[0].num_found, a.counts[1].num_found, a.counts[1].relative_brightness, f1, a.note);
  EXPECT_GE(f1, 0.97);
}

// ---------------------------------------------------------------------------
// Three sublattices, the notes, the contract.

Case YbcoCase(double noise, uint64_t seed) {
  return MakeCase(AbOptions(SynthLattice::kYbco, 0.0, noise, seed));
}

// YBCO along [100]: Ba, Y and Cu columns (Z^1.7: Y 0.54, Cu 0.33 of Ba),
// 2 : 1 : 3 per cell.
TEST(AssignSublatticesTest, ThreeSublatticesOfYbco) {
  for (const double noise : {0.1, 0.3}) {
    for (const uint64_t seed : {101, 102, 103}) {
      const Case c = YbcoCase(noise, seed);
      ASSERT_EQ(c.prior.sublattices.size(), 3u);
      const SublatticeAssignment a = Assign(c, c.positions, c.sigmas);
      EXPECT_GE(SublatticeF1(c.truth, a.labels, 3), 0.95) << "noise " << noise << " seed " << seed;
      EXPECT_THAT(a.note, IsEmpty());
      EXPECT_NEAR(a.counts[1].relative_brightness, c.prior.sublattices[1].relative_brightness,
                  0.06);
      EXPECT_NEAR(a.counts[2].relative_brightness, c.prior.sublattices[2].relative_brightness,
                  0.06);
    }
  }
}

// A prior that lists YBCO's sublattices in the wrong order (Cu as the
// brightest): the groups' shares (2 : 1 : 3, brightest first) fit Ba, Y, Cu
// and the note says so.
TEST(AssignSublatticesTest, OrderContradictingThePriorIsNamed) {
  Case c = YbcoCase(0.1, 101);
  std::vector<SublatticePrior> wrong = {c.prior.sublattices[2], c.prior.sublattices[0],
                                        c.prior.sublattices[1]};  // Cu, Ba, Y
  for (SublatticePrior& s : wrong) s.relative_brightness = 0.0;   // the order only
  c.prior.sublattices = wrong;
  ASSERT_TRUE(c.prior.Validate().ok());
  const SublatticeAssignment a = Assign(c, c.positions, c.sigmas);
  EXPECT_THAT(a.note, HasSubstr("fit the sublattices in the order Ba, Y, Cu"));
  EXPECT_THAT(a.note, HasSubstr("brightness order or densities may be wrong"));
}

// Equal brightness (graphene-like hex, perovskite at ratio 1) under a prior
// of two sublattices: one brightness, nothing assigned.
TEST(AssignSublatticesTest, OneBrightnessIsSaidAndNothingAssigned) {
  for (const SynthLattice lattice : {SynthLattice::kHex, SynthLattice::kPerovskite}) {
    for (const double noise : {0.1, 0.3}) {
      const Case c = MakeCase(AbOptions(lattice, 1.0, noise, 101));
      const SublatticeAssignment a = Assign(c, c.positions, c.sigmas);
      EXPECT_THAT(a.note, HasSubstr("the frame shows one brightness of columns where the prior "
                                    "lists 2 sublattices (A, B): none assigned"))
          << SynthLatticeName(lattice) << " noise " << noise;
      EXPECT_EQ(std::count(a.labels.begin(), a.labels.end(), -1),
                static_cast<long>(a.labels.size()));
      EXPECT_EQ(a.counts[0].num_found, 0);
      EXPECT_EQ(a.counts[1].num_found, 0);
    }
  }
}

TEST(AssignSublatticesTest, BrightnessOffThePriorIsNamed) {
  Case c = MakeCase(AbOptions(SynthLattice::kPerovskite, 3.0, 0.1, 101));
  c.prior.sublattices[1].relative_brightness = 0.9;
  const SublatticeAssignment a = Assign(c, c.positions, c.sigmas);
  EXPECT_THAT(a.note, HasSubstr("sublattices[1] 'B': measured relative brightness 0.3"));
  EXPECT_THAT(a.note, HasSubstr("the prior says 0.90"));
  EXPECT_DOUBLE_EQ(SublatticeF1(c.truth, a.labels, 2), 1.0);  // labelled all the same
}

// Expected counts are density × area (with the pixel size), qc against them.
TEST(AssignSublatticesTest, CountsAgainstDensityTimesArea) {
  const Case c = MakeCase(AbOptions(SynthLattice::kPerovskite, 2.0, 0.1, 102));
  for (const double area : {0.0, 40000.0, 65536.0}) {
    const SublatticeAssignment a =
        AssignSublattices(c.image, c.positions, c.sigmas, c.prior, nullptr, area).value();
    for (int s = 0; s < 2; ++s) {
      const double expected = c.prior.sublattices[s].column_density_per_nm2 *
                              (c.prior.pixel_size_angstrom / 10.0) *
                              (c.prior.pixel_size_angstrom / 10.0) * area;
      EXPECT_EQ(a.counts[s].name, c.prior.sublattices[s].name);
      EXPECT_EQ(a.counts[s].num_found, std::count(c.truth.begin(), c.truth.end(), s));
      EXPECT_NEAR(a.counts[s].num_expected, expected, 1e-9 * (1 + expected));
      EXPECT_NEAR(a.counts[s].qc,
                  expected > 0 ? std::abs(a.counts[s].num_found - expected) / expected : 0.0,
                  1e-12);
    }
  }
}

// Detections at the background between the columns (where a noise peak
// would be) are no column of either sublattice; the columns keep theirs.
TEST(AssignSublatticesTest, PositionsOnTheBackgroundStayUnassigned) {
  const Case c = MakeCase(AbOptions(SynthLattice::kPerovskite, 2.0, 0.1, 103));
  std::vector<PointXY> positions = c.positions;
  std::vector<double> sigmas = c.sigmas;
  // Midway between two A columns along x: half a cell from A and from B.
  const double a_px = 3.905 / c.prior.pixel_size_angstrom;
  int added = 0;
  for (size_t i = 0; i < c.positions.size() && added < 8; ++i) {
    const PointXY p{c.positions[i].x + 0.5 * a_px, c.positions[i].y};
    if (c.truth[i] != 0 || p.x > c.image.cols - 10 || p.y < 10 || p.y > c.image.rows - 10) continue;
    positions.push_back(p);
    sigmas.push_back(c.sigmas[i]);
    ++added;
  }
  ASSERT_EQ(added, 8);
  const SublatticeAssignment a = Assign(c, positions, sigmas);
  for (size_t i = c.positions.size(); i < positions.size(); ++i) EXPECT_EQ(a.labels[i], -1);
  const std::vector<int> columns(a.labels.begin(), a.labels.begin() + c.positions.size());
  EXPECT_DOUBLE_EQ(SublatticeF1(c.truth, columns, 2), 1.0);
}

TEST(AssignSublatticesTest, TooFewColumnsToTell) {
  const Case c = MakeCase(AbOptions(SynthLattice::kPerovskite, 2.0, 0.1, 101));
  const std::vector<PointXY> few(c.positions.begin(), c.positions.begin() + 5);
  const std::vector<double> sigmas(5, c.sigmas[0]);
  const SublatticeAssignment a = Assign(c, few, sigmas);
  EXPECT_EQ(a.note,
            "only 5 columns could be measured; at least 6 are needed to tell 2 "
            "sublattices apart: none assigned");
  EXPECT_EQ(a.labels, std::vector<int>(5, -1));
  const SublatticeAssignment none = Assign(c, {}, {});
  EXPECT_THAT(none.labels, IsEmpty());
  EXPECT_EQ(none.counts.size(), 2u);
}

TEST(AssignSublatticesTest, SameResultWithAnyContext) {
  SynthOptions options = AbOptions(SynthLattice::kHex, 1.5, 0.3, 102);
  options.width = options.height = 512;  // several blocks of columns
  const Case c = MakeCase(options);
  const std::vector<PointXY> positions = Jitter(c.positions, 0.5, 7);
  const SublatticeAssignment serial =
      AssignSublattices(c.image, positions, c.sigmas, c.prior, &*c.lattice, c.crystalline_area_px2,
                        {}, nullptr)
          .value();
  const SublatticeAssignment parallel =
      AssignSublattices(c.image, positions, c.sigmas, c.prior, &*c.lattice, c.crystalline_area_px2,
                        {}, Context())
          .value();
  EXPECT_EQ(serial.labels, parallel.labels);
  EXPECT_EQ(serial.note, parallel.note);
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(serial.counts[s].num_found, parallel.counts[s].num_found);
    EXPECT_EQ(serial.counts[s].relative_brightness, parallel.counts[s].relative_brightness);
  }
  EXPECT_GE(SublatticeF1(c.truth, serial.labels, 2), 0.99);
}

TEST(AssignSublatticesTest, RejectsBadInputs) {
  const Case c = MakeCase(AbOptions(SynthLattice::kPerovskite, 2.0, 0.1, 101));
  auto expect = [&](const absl::StatusOr<SublatticeAssignment>& r, const std::string& text) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(text));
  };
  const double area = c.crystalline_area_px2;
  expect(AssignSublattices(cv::Mat(), c.positions, c.sigmas, c.prior, nullptr, area),
         "single-channel float32");
  cv::Mat as_double;
  c.image.convertTo(as_double, CV_64F);
  expect(AssignSublattices(as_double, c.positions, c.sigmas, c.prior, nullptr, area),
         "single-channel float32");
  cv::Mat with_nan = c.image.clone();
  with_nan.at<float>(3, 4) = std::numeric_limits<float>::quiet_NaN();
  expect(AssignSublattices(with_nan, c.positions, c.sigmas, c.prior, nullptr, area), "non-finite");
  const std::vector<double> short_sigmas(c.sigmas.begin(), c.sigmas.end() - 1);
  expect(AssignSublattices(c.image, c.positions, short_sigmas, c.prior, nullptr, area),
         "sigmas for");
  PhysicsPrior plain = c.prior;
  plain.sublattices.clear();
  expect(AssignSublattices(c.image, c.positions, c.sigmas, plain, nullptr, area),
         "the prior lists no sublattices");
  PhysicsPrior contradicting = c.prior;
  contradicting.sublattices[1].name = "A";
  expect(AssignSublattices(c.image, c.positions, c.sigmas, contradicting, nullptr, area),
         "sublattices[1].name \"A\" repeats");
  for (const double bad : {-1.0, std::numeric_limits<double>::infinity()}) {
    expect(AssignSublattices(c.image, c.positions, c.sigmas, c.prior, nullptr, bad),
           "crystalline_area_px2");
  }
  expect(AssignSublattices(c.image, c.positions, c.sigmas, c.prior, nullptr, area,
                           {.link_tolerance_nn = 0.5}),
         "link_tolerance_nn");
  expect(AssignSublattices(c.image, c.positions, c.sigmas, c.prior, nullptr, area,
                           {.filter_radius_sigmas = 0.5}),
         "filter_radius_sigmas");
  // A position that is not finite is not an error: that atom stays out.
  std::vector<PointXY> positions = c.positions;
  positions[0] = {std::numeric_limits<double>::quiet_NaN(), 3.0};
  const SublatticeAssignment a = Assign(c, positions, c.sigmas);
  EXPECT_EQ(a.labels[0], -1);
}

// A heterointerface: perovskite beside a honeycomb (narrower columns,
// another lattice), both with A/B columns. One set of brightness groups
// serves the frame, so the columns' different widths shift the amplitudes
// of one crystal against the other's: at ratio 2 and more the groups stay
// apart (at 1.2 F1 falls to 0.84-0.97, see the header).
TEST(AssignSublatticesTest, HeterointerfaceAtRatioTwoAndMore) {
  for (const double ratio : {2.0, 3.0}) {
    for (const uint64_t seed : {101, 102, 103}) {
      SynthOptions options = AbOptions(SynthLattice::kPerovskite, ratio, 0.3, seed);
      options.scene = SynthScene::kInterface;
      options.interface_lattice = SynthLattice::kHex;
      options.crystal_fraction = 0.5;
      options.pixel_size_angstrom = 0.1;
      const Case c = MakeCase(options);
      const SublatticeAssignment a = Assign(c, Jitter(c.positions, 0.5, seed), c.sigmas);
      EXPECT_GE(SublatticeF1(c.truth, a.labels, 2), 0.95) << "ratio " << ratio << " seed " << seed;
    }
  }
}

}  // namespace
}  // namespace logstar
