// The analyzer with a prior that lists sublattices: every atom is labelled,
// the frame counts each sublattice, and a stream that asks for one
// sublattice gets those columns. Checked against the generator's truth.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/analysis/analyzer.h"
#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

SynthFrame MakeAb(double ratio, uint64_t seed) {
  SynthOptions o;
  o.width = o.height = 384;
  o.lattice = SynthLattice::kPerovskite;
  o.ab_brightness_ratio = ratio;
  o.noise = 0.2;
  o.seed = seed;
  absl::StatusOr<SynthFrame> f = Synthesize(o);
  EXPECT_TRUE(f.ok()) << f.status();
  return *std::move(f);
}

std::vector<PointXY> TruthOf(const SynthFrame& f, const std::string& sublattice) {
  std::vector<PointXY> out;
  for (const SynthAtom& t : f.atoms) {
    if (sublattice.empty() || t.sublattice == sublattice) out.push_back({t.x, t.y});
  }
  return out;
}

std::vector<PointXY> AtomsOf(const FrameAnalysis& a, int sublattice) {
  std::vector<PointXY> out;
  for (const Atom& x : a.atoms) {
    if (x.sublattice == sublattice) out.push_back({x.x, x.y});
  }
  return out;
}

TEST(AnalyzerSublatticeTest, LabelsEachAtomAndCountsEachSublattice) {
  auto context = ExecutionContext::Create({.num_threads = 2});
  ASSERT_TRUE(context.ok());
  const SynthFrame f = MakeAb(1.5, 41);  // held back: not a seed the classifier was tuned on
  const PhysicsPrior prior = SynthPriorWithSublattices(f);
  ASSERT_EQ(prior.sublattices.size(), 2u);
  auto analyzer = LogStarAnalyzer::Create({}, prior);
  ASSERT_TRUE(analyzer.ok()) << analyzer.status();
  absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(f.image, context->get());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->sublattices.size(), 2u);
  const double radius = 0.3 * prior.NearestNeighborPx();
  for (int k = 0; k < 2; ++k) {
    const std::string& name = prior.sublattices[k].name;
    absl::StatusOr<Accuracy> acc = MatchToTruth(AtomsOf(*a, k), TruthOf(f, name), radius);
    ASSERT_TRUE(acc.ok());
    EXPECT_GE(acc->f1, 0.9) << name;
    EXPECT_EQ(a->sublattices[k].name, name);
    EXPECT_EQ(a->sublattices[k].num_found, static_cast<int>(AtomsOf(*a, k).size()));
  }
  EXPECT_TRUE(a->sublattice_note.empty()) << a->sublattice_note;
}

TEST(AnalyzerSublatticeTest, OneSublatticeAskedForGetsThoseColumns) {
  auto context = ExecutionContext::Create({.num_threads = 2});
  ASSERT_TRUE(context.ok());
  const SynthFrame f = MakeAb(2.0, 42);
  const PhysicsPrior prior = SynthPriorWithSublattices(f);
  AnalyzerOptions options;
  options.sublattice = prior.sublattices[1].name;  // the fainter B sites
  auto analyzer = LogStarAnalyzer::Create(options, prior);
  ASSERT_TRUE(analyzer.ok()) << analyzer.status();
  absl::StatusOr<FrameAnalysis> a = (*analyzer)->Analyze(f.image, context->get());
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<PointXY> reported;
  for (const Atom& x : a->atoms) {
    EXPECT_EQ(x.sublattice, 1);
    reported.push_back({x.x, x.y});
  }
  absl::StatusOr<Accuracy> acc =
      MatchToTruth(reported, TruthOf(f, options.sublattice), 0.3 * prior.NearestNeighborPx());
  ASSERT_TRUE(acc.ok());
  EXPECT_GE(acc->precision, 0.9);
  EXPECT_GE(acc->recall, 0.9);
  // Both sublattices are still counted.
  ASSERT_EQ(a->sublattices.size(), 2u);
  EXPECT_GT(a->sublattices[0].num_found, 0);
}

TEST(AnalyzerSublatticeTest, UnknownSublatticeIsRefusedNamingIt) {
  const SynthFrame f = MakeAb(2.0, 43);
  AnalyzerOptions options;
  options.sublattice = "Zr";
  absl::StatusOr<std::unique_ptr<LogStarAnalyzer>> a =
      LogStarAnalyzer::Create(options, SynthPriorWithSublattices(f));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("sublattice \"Zr\""));
  EXPECT_THAT(a.status().message(), HasSubstr("(A, B)"));

  a = LogStarAnalyzer::Create(options, f.prior);  // no sublattices at all
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("describes no sublattices"));
}

}  // namespace
}  // namespace logstar
