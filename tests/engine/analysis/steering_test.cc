// engine/analysis/steering.h: the ranking, each reason's region and score
// from hand-made results (closed forms), and on real analyses that the ER
// regions hold exactly the atoms each window's rewards counted.
#include "engine/analysis/steering.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "engine/physics/rewards.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

TEST(SteeringTest, RegionsAreRankedAndCapped) {
  FrameAnalysis a;
  a.width = a.height = 128;
  for (int i = 0; i < 2; ++i) {
    WindowResult w;
    w.window = {i, {64 * i, 0, 64, 128}, {64 * i, 0, 64, 128}};
    w.state = CacheState::kHit;
    w.rewards.qc = i == 0 ? 0.9 : 0.01;        // window 0: count far off
    w.tuned_rewards.qc = i == 1 ? 0.08 : 0.9;  // window 1: drifting (0.07 of 0.1)
    w.rewards.num_expected = 50;
    a.windows.push_back(w);
  }
  SteeringOptions o;
  std::vector<SteeringRegion> r = FindRegionsOfInterest(a, o);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].reason, SteeringRegion::Reason::kCountDeviation);
  EXPECT_EQ(r[0].window, 0);
  EXPECT_NEAR(r[0].score, 4.5, 1e-9);
  EXPECT_EQ(r[1].reason, SteeringRegion::Reason::kRewardDrift);
  EXPECT_EQ(r[1].window, 1);
  EXPECT_NEAR(r[1].score, 0.7, 1e-9);
  o.max_regions = 1;
  EXPECT_EQ(FindRegionsOfInterest(a, o).size(), 1u);
  o.max_regions = 0;
  EXPECT_TRUE(FindRegionsOfInterest(a, o).empty());
}

TEST(SteeringTest, ErRegionIsTheWindowsFlaggedAtoms) {
  FrameAnalysis a;
  a.width = 100;
  a.height = 80;
  WindowResult w;
  w.window = {3, {50, 0, 50, 80}, {50, 0, 50, 80}};
  w.state = CacheState::kMiss;
  w.rewards.num_expected = 40;
  w.rewards.num_erroneous = 4;
  w.rewards.ds_px = 5;
  w.er_flagged = {{90, 10}, {96, 12}, {92, 14}, {94, 4}};
  a.windows.push_back(w);
  const std::vector<SteeringRegion> r = FindRegionsOfInterest(a, SteeringOptions{});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].reason, SteeringRegion::Reason::kErFlaggedAtoms);
  EXPECT_EQ(r[0].window, 3);
  EXPECT_DOUBLE_EQ(r[0].x, 93.0);
  EXPECT_DOUBLE_EQ(r[0].y, 10.0);
  // Centres 90..96 x 4..14 with DS = 5 around them, clipped at x = 99.
  EXPECT_EQ(r[0].box.col0, 85);
  EXPECT_EQ(r[0].box.row0, 0);  // 4 - 5 < 0
  EXPECT_EQ(r[0].box.cols, 100 - 85);
  EXPECT_EQ(r[0].box.rows, 19 + 1);
  EXPECT_NEAR(r[0].score, 4.0 / 40.0 / 0.05, 1e-12);
  EXPECT_THAT(r[0].detail, HasSubstr("4 atoms"));
}

TEST(SteeringTest, AmorphousRegionsScoreTheirShare) {
  FrameAnalysis a;
  a.width = a.height = 100;
  a.amorphous.emplace();
  Region g;
  g.area_px2 = 500;  // 5 % of the frame
  g.centroid = {20, 30};
  g.bbox = {10, 20, 25, 25};
  a.amorphous->regions.regions.push_back(g);
  SteeringOptions o;
  o.amorphous_min_share = 0.02;
  const std::vector<SteeringRegion> r = FindRegionsOfInterest(a, o);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].reason, SteeringRegion::Reason::kAmorphousRegion);
  EXPECT_NEAR(r[0].score, 2.5, 1e-12);
  EXPECT_EQ(r[0].box.cols, 25);
  EXPECT_EQ(r[0].x, 20);
}

TEST(SteeringTest, OptionsFollowTheAnalyzerAndAreChecked) {
  AnalyzerOptions analyzer;
  analyzer.drift_tolerance = 0.3;
  analyzer.amorphous.options.min_share = 0.05;
  const SteeringOptions o = SteeringOptionsFor(analyzer, 4);
  EXPECT_EQ(o.max_regions, 4);
  EXPECT_EQ(o.drift_tolerance, 0.3);
  EXPECT_EQ(o.amorphous_min_share, 0.05);
  EXPECT_TRUE(o.Validate().ok());
  SteeringOptions bad = o;
  bad.max_regions = -1;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("max_regions"));
  bad = o;
  bad.drift_tolerance = 0;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("drift_tolerance"));
  bad = o;
  bad.amorphous_min_share = NAN;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("amorphous_min_share"));
}

// A frame whose detections ER flags in part: with ds_factor 1.1 an atom
// counts when its 4 nearest neighbours lie closer, on average, than 1.1
// nearest-neighbour distances (a short tuning leaves such spots), and
// whether it does near a window's edge depends on the neighbours beyond
// the edge, which the window's rewards do not see.
FrameAnalysis AnalyzeFlagging(int window, int stride) {
  SynthOptions so;
  so.width = so.height = 192;
  so.pixel_size_angstrom = 0.3;  // ~10 px between columns: ~40 per window
  so.noise = 0.05;
  so.seed = 11;
  const absl::StatusOr<SynthFrame> f = Synthesize(so);
  EXPECT_TRUE(f.ok()) << f.status();
  AnalyzerOptions o;
  o.window = window;
  o.stride = stride;
  o.logstar.optimizer.num_evaluations = 8;
  o.logstar.optimizer.num_initial = 5;
  o.logstar.rewards.ds_factor = 1.1;
  absl::StatusOr<std::unique_ptr<LogStarAnalyzer>> analyzer = LogStarAnalyzer::Create(o, f->prior);
  EXPECT_TRUE(analyzer.ok()) << analyzer.status();
  absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(f->image, ExecutionContext::Default());
  EXPECT_TRUE(a.ok()) << a.status();
  return *a;
}

bool InTile(const PixelRegion& t, const PointXY& p) {
  return p.x >= t.col0 - 0.5 && p.x < t.col0 + t.cols - 0.5 && p.y >= t.row0 - 0.5 &&
         p.y < t.row0 + t.rows - 0.5;
}

// Overlapping windows: each ER region holds exactly the atoms its window's
// rewards counted, even where the frame-wide rule (what the steering used
// to compute, grouping the frame's atoms by owner) disagrees at the seams.
TEST(SteeringTest, ErRegionsAgreeWithTheWindowsRewards) {
  const FrameAnalysis a = AnalyzeFlagging(/*window=*/64, /*stride=*/48);
  ASSERT_GE(a.windows.size(), 9u);
  std::vector<PointXY> all;
  for (const Atom& atom : a.atoms) all.push_back({atom.x, atom.y});
  std::map<int, int> frame_wide;  // owner window -> atoms the frame-wide rule flags
  for (int i : ErFlaggedPoints(all, a.rewards.ds_px, 4)) ++frame_wide[a.atoms[i].window];
  SteeringOptions o;
  o.max_regions = 1000;
  std::map<int, const SteeringRegion*> er_regions;
  const std::vector<SteeringRegion> regions = FindRegionsOfInterest(a, o);
  for (const SteeringRegion& r : regions) {
    if (r.reason == SteeringRegion::Reason::kErFlaggedAtoms) er_regions[r.window] = &r;
  }
  int flagged = 0, partly = 0, seam_differs = 0;
  for (const WindowResult& w : a.windows) {
    SCOPED_TRACE(w.window.index);
    const int n = static_cast<int>(w.er_flagged.size());
    EXPECT_EQ(n, w.rewards.num_erroneous);
    for (const PointXY& p : w.er_flagged) EXPECT_TRUE(InTile(w.window.tile, p));
    flagged += n > 0;
    partly += n > 0 && n < w.rewards.num_found;
    seam_differs += frame_wide[w.window.index] != n;
    auto it = er_regions.find(w.window.index);
    ASSERT_EQ(it != er_regions.end(), n > 0);
    if (n == 0) continue;
    EXPECT_NEAR(it->second->score, n / std::max(w.rewards.num_expected, 1.0) / 0.05, 1e-9);
    EXPECT_THAT(it->second->detail, HasSubstr(absl::StrCat(n, " atoms")));
  }
  // The frame discriminates: windows flag some atoms and not others, and
  // the frame-wide rule would have counted differently.
  EXPECT_GE(partly, 4);
  EXPECT_GE(seam_differs, 1);
  EXPECT_EQ(flagged, static_cast<int>(er_regions.size()));
}

// One window: its detection is the frame's atoms, so its flagged atoms are
// those a brute-force evaluation of the rule flags among them.
TEST(SteeringTest, OneWindowFlagsWhatABruteForceRuleFlags) {
  const FrameAnalysis a = AnalyzeFlagging(/*window=*/0, /*stride=*/0);
  ASSERT_EQ(a.windows.size(), 1u);
  const double ds = a.windows[0].rewards.ds_px;
  std::vector<PointXY> expected;
  for (size_t i = 0; i < a.atoms.size(); ++i) {
    std::vector<double> d;
    for (size_t j = 0; j < a.atoms.size(); ++j) {
      if (j != i) d.push_back(std::hypot(a.atoms[i].x - a.atoms[j].x, a.atoms[i].y - a.atoms[j].y));
    }
    std::sort(d.begin(), d.end());
    if (d.size() >= 4 && d[0] + d[1] + d[2] + d[3] < ds) {
      expected.push_back({a.atoms[i].x, a.atoms[i].y});
    }
  }
  const std::vector<PointXY>& got = a.windows[0].er_flagged;
  ASSERT_EQ(got.size(), expected.size());
  ASSERT_GT(expected.size(), 0u);
  ASSERT_LT(expected.size(), a.atoms.size());
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].x, expected[k].x);
    EXPECT_EQ(got[k].y, expected[k].y);
  }
  EXPECT_EQ(a.rewards.num_erroneous, static_cast<int>(expected.size()));
}

}  // namespace
}  // namespace logstar
