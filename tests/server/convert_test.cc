// server/convert.h, server/session_config.h and server/status.h: frames in
// every dtype, every way a frame or settings can be wrong (and that the error
// names the field), the cache round trip, and the status mapping.
#include "server/convert.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "engine/image/synth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/session_config.h"
#include "server/status.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;

template <typename T>
v1::Frame FrameOf(v1::DType dtype, int width, int height, T (*value)(int x, int y)) {
  v1::Frame f;
  f.mutable_pixels()->set_dtype(dtype);
  f.mutable_pixels()->set_width(width);
  f.mutable_pixels()->set_height(height);
  std::string data(sizeof(T) * width * height, '\0');
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const T v = value(x, y);
      std::memcpy(data.data() + sizeof(T) * (y * width + x), &v, sizeof(T));
    }
  }
  f.mutable_pixels()->set_data(data);
  return f;
}

TEST(DecodeFrameTest, EveryDtypeKeepsValuesAndLayout) {
  // x = column, y = row: pixel (x, y) must land at image(y, x).
  auto check = [](const v1::Frame& f, int depth, double at_3_1) {
    absl::StatusOr<DecodedFrame> d = DecodeFrame(f, 1 << 20);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->image.depth(), depth);
    EXPECT_EQ(d->image.cols, 5);
    EXPECT_EQ(d->image.rows, 4);
    cv::Mat as_double;
    d->image.convertTo(as_double, CV_64F);
    EXPECT_EQ(as_double.at<double>(1, 3), at_3_1);
    EXPECT_FALSE(d->partial);
    // The range measured with the finite check, for the engine.
    double lo = 0.0, hi = 0.0;
    cv::minMaxLoc(as_double, &lo, &hi);
    ASSERT_TRUE(d->range.has_value());
    EXPECT_EQ(d->range->min, lo);
    EXPECT_EQ(d->range->max, hi);
  };
  check(FrameOf<uint8_t>(v1::DTYPE_UINT8, 5, 4, [](int x, int y) { return uint8_t(10 * y + x); }),
        CV_8U, 13);
  check(FrameOf<uint16_t>(v1::DTYPE_UINT16, 5, 4,
                          [](int x, int y) { return uint16_t(1000 * y + x); }),
        CV_16U, 1003);
  check(FrameOf<int16_t>(v1::DTYPE_INT16, 5, 4, [](int x, int y) { return int16_t(-100 * y - x); }),
        CV_16S, -103);
  check(FrameOf<float>(v1::DTYPE_FLOAT32, 5, 4, [](int x, int y) { return 0.5f * y + x; }), CV_32F,
        3.5);
  check(FrameOf<double>(v1::DTYPE_FLOAT64, 5, 4, [](int x, int y) { return 0.25 * y + x; }), CV_64F,
        3.25);
}

v1::Frame Good() {
  return FrameOf<float>(v1::DTYPE_FLOAT32, 8, 6, [](int x, int y) { return float(x + y); });
}

TEST(DecodeFrameTest, BadFramesNameTheField) {
  v1::Frame f = Good();
  f.mutable_pixels()->set_height(7);
  absl::Status s = DecodeFrame(f, 1 << 20).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_THAT(s.message(), HasSubstr("frame.pixels.data holds 192 bytes"));

  f = Good();
  f.mutable_pixels()->set_dtype(v1::DTYPE_UNSPECIFIED);
  EXPECT_THAT(DecodeFrame(f, 1 << 20).status().message(), HasSubstr("frame.pixels.dtype"));

  f = Good();
  f.mutable_pixels()->set_width(0);
  EXPECT_THAT(DecodeFrame(f, 1 << 20).status().message(), HasSubstr("positive width"));

  for (double bad : {std::numeric_limits<double>::quiet_NaN(), -HUGE_VAL}) {
    v1::Frame d = FrameOf<double>(v1::DTYPE_FLOAT64, 8, 6, [](int x, int) { return double(x); });
    std::memcpy(d.mutable_pixels()->mutable_data()->data() + 8 * (4 * 8 + 6), &bad, 8);
    s = DecodeFrame(d, 1 << 20).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s));
    EXPECT_THAT(s.message(), HasSubstr("pixel x=6 y=4 is NaN or infinite"));
  }

  f = Good();
  EXPECT_TRUE(absl::IsResourceExhausted(DecodeFrame(f, 47).status()));
  EXPECT_TRUE(absl::IsResourceExhausted(CheckFrameLimits(f, 47)));
  EXPECT_TRUE(CheckFrameLimits(f, 48).ok());

  f = Good();
  f.set_valid_rows(7);
  EXPECT_THAT(DecodeFrame(f, 1 << 20).status().message(), HasSubstr("frame.valid_rows"));
  f.set_pixel_size_x_angstrom(0.1);
  f.set_pixel_size_y_angstrom(0.2);
  f.set_valid_rows(0);
  EXPECT_THAT(DecodeFrame(f, 1 << 20).status().message(), HasSubstr("frame.pixel_size_y_angstrom"));
}

// Found by tests/fuzz/fuzz_frame: width × height of wire values near 2^32
// overflowed a signed product (undefined; it could come out negative and
// pass any pixel limit), and so could pixels × bytes without a limit.
TEST(DecodeFrameTest, HugeShapesAreRejectedWithoutOverflow) {
  v1::Frame f = Good();
  f.mutable_pixels()->set_width(0xFFFFFFFFu);
  f.mutable_pixels()->set_height(0xFFFFFFFFu);
  EXPECT_TRUE(absl::IsResourceExhausted(CheckFrameLimits(f, 1 << 20)));
  EXPECT_TRUE(absl::IsResourceExhausted(DecodeFrame(f, 1 << 20).status()));
  EXPECT_TRUE(
      absl::IsResourceExhausted(DecodeFrame(f, std::numeric_limits<int64_t>::max()).status()));
  // Without a limit, the clients' direction: tests/proto/wire/pixels_test.cc.
}

TEST(DecodeFrameTest, PartialFramesKeepTheirValidRowsAndNaNsBelowDoNotCount) {
  v1::Frame f = Good();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(f.mutable_pixels()->mutable_data()->data() + 4 * (5 * 8 + 1), &nan, 4);
  f.set_valid_rows(3);
  f.set_pixel_size_x_angstrom(0.125);
  absl::StatusOr<DecodedFrame> d = DecodeFrame(f, 1 << 20);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->partial);
  EXPECT_EQ(d->image.rows, 3);
  EXPECT_EQ(d->pixel_size_angstrom, 0.125);
}

v1::SessionSettings Valid() {
  v1::SessionSettings s;
  s.mutable_prior()->set_pixel_size_angstrom(0.125);
  s.mutable_prior()->set_column_density_per_nm2(13.4);
  s.mutable_prior()->set_nearest_neighbor_angstrom(2.55);
  return s;
}

TEST(SettingsTest, ValidSettingsMapToTheEngine) {
  v1::SessionSettings s = Valid();
  EXPECT_TRUE(ParseSessionSettings(s).ok());
  s.mutable_analysis()->set_window(128);
  s.mutable_analysis()->set_evaluations(5);
  s.mutable_analysis()->set_choice(v1::FRONT_CHOICE_RULE_WEIGHTS);
  s.mutable_analysis()->set_weight_er(3);
  s.mutable_analysis()->set_drift_tolerance(0.25);
  s.mutable_steering()->set_max_regions(3);
  s.set_queue_capacity(7);
  absl::StatusOr<SessionConfig> c = ParseSessionSettings(s);
  ASSERT_TRUE(c.ok()) << c.status();
  const AnalyzerOptions& o = c->analyzer;
  EXPECT_EQ(o.window, 128);
  EXPECT_EQ(o.logstar.optimizer.num_evaluations, 5);
  EXPECT_EQ(o.logstar.optimizer.num_initial, 5);  // cut to the budget
  EXPECT_EQ(o.logstar.choice, FrontChoiceRule::kWeights);
  EXPECT_EQ(o.logstar.choice_weights[1], 3.0);
  // Unset fields keep the engine's defaults.
  EXPECT_EQ(o.stride, AnalyzerOptions().stride);
  EXPECT_EQ(o.logstar.num_sigma, AnalyzerOptions().logstar.num_sigma);
  // Steering follows the analyzer's thresholds.
  EXPECT_EQ(c->steering.max_regions, 3);
  EXPECT_EQ(c->steering.drift_tolerance, 0.25);
  EXPECT_EQ(c->steering.amorphous_min_share, AmorphousOptions().min_share);
  // Unspecified policy: latest wins; capacity 0 (the server's default) unless given.
  EXPECT_EQ(c->overload_policy, v1::OVERLOAD_POLICY_LATEST_WINS);
  EXPECT_EQ(c->queue_capacity, 7u);
  EXPECT_EQ(c->settings.analysis().window(), 128);  // the message as sent
  // A frame's pixel size overrides the prior's; without either the prior is incomplete.
  EXPECT_EQ(c->PriorAt(0.2)->pixel_size_angstrom, 0.2);
  EXPECT_EQ(c->PriorAt(0)->pixel_size_angstrom, 0.125);
  s.mutable_prior()->set_pixel_size_angstrom(0);
  c = ParseSessionSettings(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->PriorAt(0).status().message(), HasSubstr("settings.prior.pixel_size_angstrom"));
  EXPECT_EQ(c->PriorAt(0.2)->pixel_size_angstrom, 0.2);
  // The sampling check waits for the pixel size: 2.55 Å at 2 Å/px is too coarse.
  EXPECT_THAT(c->PriorAt(2.0).status().message(), HasSubstr("settings.prior."));
}

TEST(SettingsTest, InvalidSettingsNameTheField) {
  auto message = [](void (*change)(v1::SessionSettings&)) {
    v1::SessionSettings s = Valid();
    change(s);
    const absl::Status st = ParseSessionSettings(s).status();
    EXPECT_TRUE(absl::IsInvalidArgument(st));
    return std::string(st.message());
  };
  EXPECT_THAT(message([](auto& s) { s.mutable_prior()->set_nearest_neighbor_angstrom(-1); }),
              HasSubstr("settings.prior.nearest_neighbor_angstrom"));
  EXPECT_THAT(message([](auto& s) { s.mutable_prior()->set_pixel_size_angstrom(NAN); }),
              HasSubstr("settings.prior.pixel_size_angstrom"));
  EXPECT_THAT(message([](auto& s) { s.mutable_prior()->clear_column_density_per_nm2(); }),
              HasSubstr("settings.prior."));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_window(8); }),
              HasSubstr("settings.analysis.window"));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_stride(1000); }),
              HasSubstr("settings.analysis.stride"));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_evaluations(0); }),
              HasSubstr("settings.analysis.evaluations"));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_drift_tolerance(0); }),
              HasSubstr("settings.analysis.drift_tolerance"));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_num_sigma(65); }),
              HasSubstr("settings.analysis.num_sigma"));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_column_sigma_angstrom(-1); }),
              HasSubstr("settings.analysis.column_sigma_angstrom"));
  EXPECT_THAT(message([](auto& s) { s.mutable_analysis()->set_weight_qc(-1); }),
              HasSubstr("settings.analysis.weight_qc"));
  EXPECT_THAT(message([](auto& s) { s.set_overload_policy(static_cast<v1::OverloadPolicy>(9)); }),
              HasSubstr("settings.overload_policy"));
  EXPECT_THAT(message([](auto& s) { s.set_queue_capacity(5000); }),
              HasSubstr("settings.queue_capacity"));
  EXPECT_THAT(message([](auto& s) { s.mutable_steering()->set_max_regions(-1); }),
              HasSubstr("settings.steering.max_regions"));
  EXPECT_THAT(message([](auto& s) { s.mutable_steering()->set_max_regions(1001); }),
              HasSubstr("settings.steering.max_regions"));
}

// refine picks the engine's RefineMode; refine_positions = false is its
// older spelling of none, and contradicting it is refused naming the field.
TEST(SettingsTest, RefineModeAndItsOlderSpelling) {
  auto mode = [](v1::RefineMode refine, std::optional<bool> positions) {
    v1::SessionSettings s = Valid();
    s.mutable_analysis()->set_refine(refine);
    if (positions) s.mutable_analysis()->set_refine_positions(*positions);
    return ParseSessionSettings(s);
  };
  EXPECT_EQ(mode(v1::REFINE_MODE_UNSPECIFIED, std::nullopt)->analyzer.logstar.refine_mode,
            RefineMode::kParaboloid);
  EXPECT_EQ(mode(v1::REFINE_MODE_UNSPECIFIED, false)->analyzer.logstar.refine_mode,
            RefineMode::kNone);
  EXPECT_EQ(mode(v1::REFINE_MODE_NONE, std::nullopt)->analyzer.logstar.refine_mode,
            RefineMode::kNone);
  EXPECT_EQ(mode(v1::REFINE_MODE_PARABOLOID, true)->analyzer.logstar.refine_mode,
            RefineMode::kParaboloid);
  EXPECT_EQ(mode(v1::REFINE_MODE_GAUSSIAN, std::nullopt)->analyzer.logstar.refine_mode,
            RefineMode::kGaussian);
  EXPECT_THAT(mode(v1::REFINE_MODE_GAUSSIAN, false).status().message(),
              HasSubstr("settings.analysis.refine"));
  EXPECT_THAT(mode(static_cast<v1::RefineMode>(9), std::nullopt).status().message(),
              HasSubstr("settings.analysis.refine"));
  // The settings echoed back say the mode, and parse to it again.
  for (RefineMode m : {RefineMode::kNone, RefineMode::kParaboloid, RefineMode::kGaussian}) {
    AnalyzerOptions o;
    o.logstar.refine_mode = m;
    PhysicsPrior prior;
    prior.pixel_size_angstrom = 0.125;
    prior.nearest_neighbor_angstrom = 2.55;
    prior.column_density_per_nm2 = 13.4;
    absl::StatusOr<SessionConfig> c = ParseSessionSettings(SettingsFromOptions(o, prior));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->analyzer.logstar.refine_mode, m) << RefineModeName(m);
  }
}

TEST(SettingsTest, PolicyCapsAreTheDaemons) {
  v1::SessionSettings s = Valid();
  s.mutable_analysis()->set_evaluations(50);
  s.set_queue_capacity(16);
  EXPECT_TRUE(ParseSessionSettings(s).ok());
  SettingsCaps caps;
  caps.max_evaluations = 20;
  EXPECT_THAT(ParseSessionSettings(s, caps).status().message(),
              HasSubstr("settings.analysis.evaluations must be in [1, 20], got 50"));
  // The default budget: the 10000 evaluations per window held an
  // analysis slot for minutes.
  s.mutable_analysis()->set_evaluations(10000);
  EXPECT_THAT(ParseSessionSettings(s).status().message(),
              HasSubstr("settings.analysis.evaluations must be in [1, 500], got 10000"));
  s.mutable_analysis()->set_evaluations(50);
  caps = {};
  caps.max_queue_capacity = 8;
  EXPECT_THAT(ParseSessionSettings(s, caps).status().message(),
              HasSubstr("settings.queue_capacity must be <= 8, got 16"));
}

// Issue 16, item 2: the per-frame work budget, evaluations × the largest
// frame's pixels × (window / stride)² for each stage, against closed forms.
TEST(SettingsTest, FrameWorkIsEvaluationsTimesPixelsTimesCoverage) {
  AnalyzerOptions o;  // 50 evaluations, window 256, stride = window
  EXPECT_EQ(FrameWork(o, 1024 * 1024), 50.0 * 1024 * 1024);
  o.stride = 128;  // each pixel in 2 × 2 windows
  EXPECT_EQ(FrameWork(o, 1024 * 1024), 50.0 * 1024 * 1024 * 4);
  o.window = 0;  // one window, the stride has nothing to step over
  EXPECT_EQ(FrameWork(o, 1000), 50.0 * 1000);
  o.amorphous.enabled = true;  // 30 evaluations over the whole frame
  EXPECT_EQ(FrameWork(o, 1000), 50.0 * 1000 + 30.0 * 1000);
  o.amorphous.window = 64;
  o.amorphous.stride = 16;
  EXPECT_EQ(FrameWork(o, 1000), 50.0 * 1000 + 30.0 * 1000 * 16);
}

TEST(SettingsTest, SettingsOverTheWorkBudgetAreRefusedNamingBoth) {
  v1::SessionSettings s = Valid();
  // The defaults, and the largest searches without overlap, fit the default
  // budget at the default largest frame (4096²).
  EXPECT_TRUE(ParseSessionSettings(s).ok());
  s.mutable_analysis()->set_window(0);
  s.mutable_analysis()->set_evaluations(500);
  s.mutable_analysis()->mutable_amorphous()->set_enabled(true);
  s.mutable_analysis()->mutable_amorphous()->set_evaluations(500);
  EXPECT_TRUE(ParseSessionSettings(s).ok()) << ParseSessionSettings(s).status();
  // 50 evaluations over windows of 256 every 32 px: 50 × 4096² × 64 =
  // 5.37e10 evaluation-pixels, over 2^34 = 1.72e10.
  s = Valid();
  s.mutable_analysis()->set_evaluations(50);
  s.mutable_analysis()->set_window(256);
  s.mutable_analysis()->set_stride(32);
  const absl::Status refused = ParseSessionSettings(s).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("estimated 5.37e+10 evaluation-pixels"));
  EXPECT_THAT(refused.message(), HasSubstr("windows of 256 px every 32 px"));
  EXPECT_THAT(refused.message(), HasSubstr("budget of 1.72e+10 (max_frame_work)"));
  // The budget and the frame size are the daemon's.
  SettingsCaps caps;
  caps.max_frame_pixels = 512 * 512;  // 50 × 512² × 64 = 8.4e8
  EXPECT_TRUE(ParseSessionSettings(s, caps).ok());
  caps.max_frame_work = 800'000'000;
  EXPECT_THAT(ParseSessionSettings(s, caps).status().message(),
              HasSubstr("estimated 8.39e+08 evaluation-pixels"));
}

// SrTiO3 along [100] with its two sublattices: a = 3.905 Å, one Sr and one
// Ti-O column per cell, 100 / 3.905² = 6.558 columns per nm² each.
v1::SessionSettings WithSublattices() {
  v1::SessionSettings s;
  v1::PhysicsPrior* p = s.mutable_prior();
  p->set_pixel_size_angstrom(0.125);
  p->set_column_density_per_nm2(2 * 100 / (3.905 * 3.905));
  p->set_nearest_neighbor_angstrom(3.905 / std::sqrt(2.0));
  v1::SublatticePrior* a = p->add_sublattices();
  a->set_name("Sr");
  a->set_column_density_per_nm2(100 / (3.905 * 3.905));
  a->set_relative_brightness(1.0);
  v1::SublatticePrior* b = p->add_sublattices();
  b->set_name("Ti-O");
  b->set_column_density_per_nm2(100 / (3.905 * 3.905));
  b->set_relative_brightness(0.4);
  return s;
}

TEST(SettingsTest, SublatticesReachTheEngineAndComeBack) {
  const v1::SessionSettings s = WithSublattices();
  absl::StatusOr<PriorSetting> prior = ParsePrior(s.prior());
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_FALSE(prior->derive);
  ASSERT_EQ(prior->prior.sublattices.size(), 2u);
  EXPECT_EQ(prior->prior.sublattices[1].name, "Ti-O");
  EXPECT_DOUBLE_EQ(prior->prior.sublattices[1].column_density_per_nm2, 100 / (3.905 * 3.905));
  EXPECT_DOUBLE_EQ(prior->prior.sublattices[1].relative_brightness, 0.4);
  // The client's direction gives the message back as it was sent.
  EXPECT_EQ(PriorToProto(prior->prior).SerializeAsString(), s.prior().SerializeAsString());
  EXPECT_EQ(PriorToProto(*prior).SerializeAsString(), s.prior().SerializeAsString());
}

TEST(SettingsTest, AutoPriorAndAPixelSizeAloneAreDerived) {
  v1::PhysicsPrior p;
  p.set_auto_(true);
  absl::StatusOr<PriorSetting> prior = ParsePrior(p);
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_TRUE(prior->derive);
  EXPECT_EQ(prior->prior.pixel_size_angstrom, 0.0);
  p.set_pixel_size_angstrom(0.1);
  prior = ParsePrior(p);
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_TRUE(prior->derive);
  EXPECT_EQ(prior->prior.pixel_size_angstrom, 0.1);
  EXPECT_TRUE(PriorToProto(*prior).auto_());
  EXPECT_EQ(PriorToProto(*prior).pixel_size_angstrom(), 0.1);
  // A pixel size alone says the same.
  p.set_auto_(false);
  prior = ParsePrior(p);
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_TRUE(prior->derive);
  // ... but nothing alone is still an incomplete prior.
  EXPECT_THAT(ParsePrior(v1::PhysicsPrior()).status().message(), HasSubstr("settings.prior."));
  // auto with anything it would derive contradicts itself.
  p.set_auto_(true);
  p.set_nearest_neighbor_angstrom(2.55);
  absl::Status st = ParsePrior(p).status();
  EXPECT_TRUE(absl::IsInvalidArgument(st));
  EXPECT_THAT(st.message(), HasSubstr("settings.prior.auto"));
  EXPECT_THAT(st.message(), HasSubstr("nearest_neighbor_angstrom"));
  // A session with an auto prior has no prior until a frame comes.
  v1::SessionSettings settings;
  settings.mutable_prior()->set_auto_(true);
  absl::StatusOr<SessionConfig> c = ParseSessionSettings(settings);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->prior.derive);
  EXPECT_TRUE(absl::IsFailedPrecondition(c->PriorAt(0.1).status()));
  EXPECT_TRUE(SettingsFromOptions(c->analyzer, c->prior).prior().auto_());
}

TEST(SettingsTest, SublatticeChoiceAndToleranceErrorsNameTheField) {
  v1::SessionSettings s = WithSublattices();
  s.mutable_analysis()->set_sublattice("Sr");
  absl::StatusOr<SessionConfig> c = ParseSessionSettings(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->analyzer.sublattice, "Sr");
  // A name the prior lacks: one error naming the field and the name, when
  // the settings are sent.
  s.mutable_analysis()->set_sublattice("Ba");
  absl::Status st = ParseSessionSettings(s).status();
  EXPECT_TRUE(absl::IsInvalidArgument(st));
  EXPECT_THAT(st.message(), HasSubstr("settings.analysis.sublattice"));
  EXPECT_THAT(st.message(), HasSubstr("Ba"));
  // A prior without sublattices, and an auto prior, have none to choose.
  v1::SessionSettings plain = Valid();
  plain.mutable_analysis()->set_sublattice("Sr");
  EXPECT_THAT(ParseSessionSettings(plain).status().message(),
              HasSubstr("settings.analysis.sublattice"));
  v1::SessionSettings automatic;
  automatic.mutable_prior()->set_auto_(true);
  automatic.mutable_analysis()->set_sublattice("Sr");
  EXPECT_THAT(ParseSessionSettings(automatic).status().message(),
              HasSubstr("settings.analysis.sublattice"));
  // Tolerances: set ones reach the engine; bad ones are named.
  v1::SessionSettings t = Valid();
  t.mutable_analysis()->mutable_prior_tolerances()->set_spacing(0.05);
  c = ParseSessionSettings(t);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->analyzer.prior_tolerances.spacing, 0.05);
  EXPECT_EQ(c->analyzer.prior_tolerances.density, PriorTolerances().density);
  t.mutable_analysis()->mutable_prior_tolerances()->set_density(-1);
  EXPECT_THAT(ParseSessionSettings(t).status().message(),
              HasSubstr("settings.analysis.prior_tolerances"));
}

// Sublattices that contradict each other or the prior. The engine's checks
// of them (PhysicsPrior::Validate) are being written beside this branch:
// until they land a contradiction passes and this test skips; once they do,
// each must be one INVALID_ARGUMENT naming settings.prior's sublattices.
TEST(SettingsTest, ContradictingSublatticesNameTheField) {
  std::vector<std::pair<std::string, v1::SessionSettings>> cases;
  v1::SessionSettings sum = WithSublattices();  // densities add up to half the total
  sum.mutable_prior()->mutable_sublattices(1)->set_column_density_per_nm2(0.01);
  cases.push_back({"densities", sum});
  v1::SessionSettings names = WithSublattices();
  names.mutable_prior()->mutable_sublattices(1)->set_name("Sr");
  cases.push_back({"duplicate name", names});
  v1::SessionSettings order = WithSublattices();  // fainter first
  order.mutable_prior()->mutable_sublattices(0)->set_relative_brightness(0.4);
  order.mutable_prior()->mutable_sublattices(1)->set_relative_brightness(1.0);
  cases.push_back({"brightness order", order});
  v1::SessionSettings chars = WithSublattices();
  chars.mutable_prior()->mutable_sublattices(1)->set_name("Ti O");
  cases.push_back({"name characters", chars});
  int checked = 0;
  for (const auto& [what, settings] : cases) {
    const absl::Status st = ParseSessionSettings(settings).status();
    if (st.ok()) continue;
    ++checked;
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << what;
    EXPECT_THAT(st.message(), HasSubstr("settings.prior.")) << what;
    EXPECT_THAT(st.message(), HasSubstr("sublattice")) << what;
  }
  if (checked == 0) GTEST_SKIP() << "the engine does not check sublattices yet";
  EXPECT_EQ(checked, static_cast<int>(cases.size()));
}

TEST(CacheConversionTest, RoundTrip) {
  LogStarAnalyzer::CacheSnapshot s;
  s.width = 128;
  s.height = 64;
  s.layout = *LayoutWindows(128, 64, 64, 64);
  s.windows.resize(2);
  CachedWindow c;
  c.parameters = {1.5, 3.0, 7, 0.12, 0.3};
  c.tuned_rewards.qc = 0.05;
  c.tuned_rewards.er = 0.01;
  c.front = {{c.parameters, 0.05, 0.01}, {{1.0, 2.0, 7, 0.2, 0.1}, 0.1, 0.0}};
  c.chosen = 1;
  s.windows[1] = c;
  v1::CacheContents p;
  CacheToProto(s, &p);
  EXPECT_FALSE(p.windows(0).tuned());
  EXPECT_EQ(p.windows(1).tile().col0(), 64);
  absl::StatusOr<LogStarAnalyzer::CacheSnapshot> back = CacheFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->width, 128);
  ASSERT_EQ(back->windows.size(), 2u);
  EXPECT_FALSE(back->windows[0].has_value());
  EXPECT_EQ(back->windows[1]->parameters.threshold, 0.12);
  EXPECT_EQ(back->windows[1]->front[1].parameters.max_sigma, 2.0);
  EXPECT_EQ(back->windows[1]->chosen, 1);
  p.mutable_windows(1)->set_index(5);
  EXPECT_FALSE(CacheFromProto(p).ok());
}

// A restarted stream counts over the crystal the saved one mapped: the
// lattice with its cell's columns, the crystalline mask pixel for pixel and
// the lattice pair's rewards at tuning all survive the state file.
TEST(CacheConversionTest, LatticeCrystalMapAndLatticeRewardsRoundTrip) {
  LogStarAnalyzer::CacheSnapshot s;
  s.width = 40;
  s.height = 30;
  s.layout = *LayoutWindows(40, 30, 64, 64);
  CachedWindow c;
  c.parameters = {1.5, 3.0, 7, 0.12, 0.3};
  c.front = {{c.parameters, 0.05, 0.01, 0.2, 0.1}};
  c.objectives = ObjectivePair::kLattice;
  c.tuned_lattice_rewards = LatticeRewards{0.2, 0.1, 11, 12, 2, 1};
  s.windows = {c};
  LatticeMeasurement m;
  m.found = true;
  m.a = {8.0, 0.0};
  m.b = {0.0, 9.0};
  m.cell_area_px2 = 72.0;
  m.gamma_deg = 90.0;
  m.columns_per_cell = 2;
  m.columns = {{{0.5, 0.25}, 1.0}, {{4.5, 4.75}, 0.6}};
  s.lattice = m;
  // A disc of crystal whose first pixel is crystalline too (a run of 0 first).
  cv::Mat mask(30, 40, CV_8U, cv::Scalar(0));
  cv::circle(mask, {20, 15}, 9, cv::Scalar(1), cv::FILLED);
  mask.at<uint8_t>(0, 0) = 1;
  mask.at<uint8_t>(29, 39) = 1;
  Crystallinity crystal;
  crystal.mask = *CrystalMask::FromMask(mask);
  crystal.fraction = cv::countNonZero(mask) / 1200.0;
  crystal.level = 0.8;
  crystal.noise = 0.05;
  crystal.threshold = 0.4;
  s.crystallinity = crystal;

  v1::CacheContents p;
  CacheToProto(s, &p);
  absl::StatusOr<LogStarAnalyzer::CacheSnapshot> back = CacheFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->windows[0]->tuned_lattice_rewards.has_value());
  EXPECT_EQ(back->windows[0]->tuned_lattice_rewards->num_sites, 12);
  EXPECT_DOUBLE_EQ(back->windows[0]->tuned_lattice_rewards->misses, 0.2);
  ASSERT_TRUE(back->lattice.has_value());
  ASSERT_EQ(back->lattice->columns.size(), 2u);
  EXPECT_DOUBLE_EQ(back->lattice->columns[1].position_px.y, 4.75);
  EXPECT_DOUBLE_EQ(back->lattice->columns[1].relative_height, 0.6);
  EXPECT_DOUBLE_EQ(back->lattice->b.y, 9.0);
  ASSERT_TRUE(back->crystallinity.has_value());
  cv::Mat diff;
  cv::compare(back->crystallinity->mask.frame_mask(), mask, diff, cv::CMP_NE);
  EXPECT_EQ(cv::countNonZero(diff), 0);
  EXPECT_DOUBLE_EQ(back->crystallinity->threshold, 0.4);
  // The restored snapshot is one the analyzer takes.
  AnalyzerOptions options;
  options.window = 64;
  PhysicsPrior prior;
  prior.pixel_size_angstrom = 0.5;
  prior.column_density_per_nm2 = 12.0;
  prior.nearest_neighbor_angstrom = 2.0;
  absl::StatusOr<std::unique_ptr<LogStarAnalyzer>> analyzer =
      LogStarAnalyzer::Create(options, prior);
  ASSERT_TRUE(analyzer.ok()) << analyzer.status();
  EXPECT_TRUE((*analyzer)->RestoreCache(*back).ok()) << (*analyzer)->RestoreCache(*back);

  // A map of the wrong size, or runs that do not cover it, name the field.
  v1::CacheContents bad = p;
  bad.mutable_crystallinity()->set_width(41);
  EXPECT_THAT(std::string(CacheFromProto(bad).status().message()),
              HasSubstr("cache.crystallinity"));
  bad = p;
  bad.mutable_crystallinity()->add_runs(5);
  EXPECT_THAT(std::string(CacheFromProto(bad).status().message()),
              HasSubstr("cache.crystallinity.runs"));
  bad = p;
  bad.mutable_crystallinity()->mutable_runs()->RemoveLast();
  EXPECT_THAT(std::string(CacheFromProto(bad).status().message()),
              HasSubstr("cache.crystallinity.runs"));
}

TEST(CacheConversionTest, AmorphousEntriesRoundTrip) {
  LogStarAnalyzer::CacheSnapshot s;
  s.width = s.height = 64;
  s.layout = *LayoutWindows(64, 64, 64, 64);
  s.windows.resize(1);
  s.amorphous_layout = s.layout;
  CachedAmorphousWindow c;
  c.parameters = {5, 0.4, CovarianceType::kDiag, 3};
  c.tuned_objectives = {0.3, 1.2};
  c.front = {{c.parameters, c.tuned_objectives}, {{7, 0.6, CovarianceType::kTied, 2}, {0.1, 2.0}}};
  c.chosen = 0;
  c.tuned_area_fraction = 0.2;
  c.tuned_evidence_area = 0.25;
  c.tuned_noise_floor = 3.5e-4;
  c.tuned_evidence_bic_gain = 43.0;
  c.tuned_evidence_separation = 1.4;
  c.tuned_evidence_high_weight = 0.11;
  c.translations_px = {{12.5, 0.25}, {-0.5, 12.0}};
  c.projection.patch_size_px = 5;
  c.projection.mean = Eigen::RowVectorXd::LinSpaced(25, 0.0, 1.0);
  c.projection.components = Eigen::MatrixXd::Zero(2, 25);
  c.projection.components(0, 3) = 1.0;
  c.projection.components(1, 24) = -1.0;
  s.amorphous = {c};
  s.amorphous_tracks.next_id = 4;
  s.amorphous_tracks.tracks = {
      {.id = 3, .missed = 1, .area_px2 = 9.0, .contour = {{1, 1}, {3, 1}, {3, 3}, {1, 3}}}};
  v1::CacheContents p;
  CacheToProto(s, &p);
  ASSERT_EQ(p.amorphous_windows_size(), 1);
  EXPECT_EQ(p.amorphous_windows(0).parameters().covariance_type(), "diag");
  absl::StatusOr<LogStarAnalyzer::CacheSnapshot> back = CacheFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->amorphous.size(), 1u);
  const CachedAmorphousWindow& b = *back->amorphous[0];
  EXPECT_EQ(b.parameters.patch_size_px, 5);
  EXPECT_EQ(b.parameters.covariance_type, CovarianceType::kDiag);
  EXPECT_EQ(b.front[1].parameters.covariance_type, CovarianceType::kTied);
  EXPECT_EQ(b.front[1].objectives[1], 2.0);
  EXPECT_EQ(b.tuned_noise_floor, 3.5e-4);
  EXPECT_EQ(b.translations_px[1].y, 12.0);
  EXPECT_EQ(b.projection.mean, c.projection.mean);
  EXPECT_EQ(b.projection.components, c.projection.components);
  EXPECT_EQ(b.tuned_evidence_bic_gain, 43.0);
  EXPECT_EQ(b.tuned_evidence_separation, 1.4);
  EXPECT_EQ(b.tuned_evidence_high_weight, 0.11);
  EXPECT_EQ(back->amorphous_tracks.next_id, 4);
  ASSERT_EQ(back->amorphous_tracks.tracks.size(), 1u);
  EXPECT_EQ(back->amorphous_tracks.tracks[0].id, 3);
  EXPECT_EQ(back->amorphous_tracks.tracks[0].missed, 1);
  EXPECT_EQ(back->amorphous_tracks.tracks[0].area_px2, 9.0);
  EXPECT_EQ(back->amorphous_tracks.tracks[0].contour[2].x, 3.0);
  // A cache saved before region tracking: no tracks, ids start at 1.
  v1::CacheContents old = p;
  old.clear_amorphous_tracks();
  old.clear_amorphous_next_region_id();
  EXPECT_EQ(CacheFromProto(old)->amorphous_tracks.next_id, 1);
  EXPECT_TRUE(CacheFromProto(old)->amorphous_tracks.tracks.empty());
  // A basis that does not fit the patch size names the field.
  p.mutable_amorphous_windows(0)->mutable_pca_mean()->RemoveLast();
  EXPECT_THAT(std::string(CacheFromProto(p).status().message()),
              HasSubstr("cache.amorphous_windows[0].pca_mean"));
  p = {};
  CacheToProto(s, &p);
  p.mutable_amorphous_windows(0)->mutable_parameters()->set_covariance_type("round");
  EXPECT_THAT(std::string(CacheFromProto(p).status().message()), HasSubstr("covariance_type"));
}

// The amorphous verdict and region ids reach the wire and come back.
TEST(ResultConversionTest, AmorphousVerdictAndRegionIds) {
  FrameAnalysis a;
  a.width = a.height = 64;
  FrameAmorphous m;
  m.verdict = AmorphousVerdict::Uncertain(AmorphousVerdict::Code::kBelowResolution, "too noisy");
  Region r;
  r.id = 7;
  r.area_px2 = 10.0;
  r.contour = {{1, 1}, {2, 1}};
  m.regions.regions = {r};
  AmorphousWindowResult w;
  w.skipped = "no atoms";
  w.verdict = AmorphousVerdict::Uncertain(AmorphousVerdict::Code::kNotRun, "no atoms");
  m.windows = {w};
  a.amorphous = m;
  v1::FrameResult p;
  FrameAnalysisToProto(a, {}, 0.1, &p);
  EXPECT_EQ(p.amorphous().verdict().state(), v1::AmorphousVerdict::STATE_UNCERTAIN);
  EXPECT_EQ(p.amorphous().verdict().code(), v1::AmorphousVerdict::CODE_BELOW_RESOLUTION);
  EXPECT_EQ(p.amorphous().verdict().reason(), "too noisy");
  EXPECT_EQ(p.amorphous().windows(0).verdict().code(), v1::AmorphousVerdict::CODE_NOT_RUN);
  ASSERT_EQ(p.amorphous_regions_size(), 1);
  EXPECT_EQ(p.amorphous_regions(0).id(), 7);
  const FrameAnalysis back = AnalysisFromResult(p);
  ASSERT_TRUE(back.amorphous.has_value());
  EXPECT_EQ(back.amorphous->verdict.code, AmorphousVerdict::Code::kBelowResolution);
  EXPECT_TRUE(back.amorphous->verdict.uncertain());
  EXPECT_EQ(back.amorphous->regions.regions[0].id, 7);
  // A confident verdict, and a result from a server without verdicts, read
  // as confident.
  a.amorphous->verdict = {};
  p.Clear();
  FrameAnalysisToProto(a, {}, 0.1, &p);
  EXPECT_EQ(p.amorphous().verdict().state(), v1::AmorphousVerdict::STATE_CONFIDENT);
  p.mutable_amorphous()->clear_verdict();
  EXPECT_FALSE(AnalysisFromResult(p).amorphous->verdict.uncertain());
}

// A Gaussian fit reaches the wire with its status and comes back; an atom
// without one (another refinement, an older server) has no fit_status and
// reads back as not fitted.
TEST(ResultConversionTest, ColumnFitsRoundTrip) {
  FrameAnalysis a;
  a.width = a.height = 64;
  a.atoms.resize(3);
  a.atoms[0].x = 10.25;
  a.atoms[0].y = 20.5;
  ColumnFit fit;
  fit.x = 10.25;
  fit.y = 20.5;
  fit.x_err = 0.03;
  fit.y_err = 0.04;
  fit.amplitude = 0.8;
  fit.sigma_x = 2.0;
  fit.sigma_y = 1.5;
  fit.intensity = 2.0 * 3.141592653589793 * 0.8 * 2.0 * 1.5;
  fit.rotation = 0.3;
  a.atoms[0].fit = fit;
  fit.status = ColumnFitStatus::kWandered;
  a.atoms[1].fit = fit;
  v1::FrameResult p;
  FrameAnalysisToProto(a, {}, 0.1, &p);
  ASSERT_EQ(p.atoms_size(), 3);
  EXPECT_EQ(p.atoms(0).fit_status(), "ok");
  EXPECT_EQ(p.atoms(0).x_err(), 0.03);
  EXPECT_EQ(p.atoms(0).y_err(), 0.04);
  EXPECT_EQ(p.atoms(0).amplitude(), 0.8);
  EXPECT_EQ(p.atoms(0).intensity(), fit.intensity);
  EXPECT_EQ(p.atoms(0).sigma_x(), 2.0);
  EXPECT_EQ(p.atoms(0).sigma_y(), 1.5);
  EXPECT_EQ(p.atoms(0).rotation(), 0.3);
  EXPECT_EQ(p.atoms(1).fit_status(), "wandered");
  EXPECT_EQ(p.atoms(2).fit_status(), "");
  EXPECT_EQ(p.atoms(2).x_err(), 0.0);
  const FrameAnalysis back = AnalysisFromResult(p);
  ASSERT_EQ(back.atoms.size(), 3u);
  ASSERT_TRUE(back.atoms[0].fit.has_value());
  EXPECT_EQ(back.atoms[0].fit->status, ColumnFitStatus::kOk);
  EXPECT_EQ(back.atoms[0].fit->x, 10.25);
  EXPECT_EQ(back.atoms[0].fit->y_err, 0.04);
  EXPECT_EQ(back.atoms[0].fit->rotation, 0.3);
  EXPECT_EQ(back.atoms[0].fit->intensity, fit.intensity);
  ASSERT_TRUE(back.atoms[1].fit.has_value());
  EXPECT_EQ(back.atoms[1].fit->status, ColumnFitStatus::kWandered);
  EXPECT_FALSE(back.atoms[2].fit.has_value());
}

// The prior's checks reach the wire and come back: warnings, the measured
// lattice (in angstrom at the prior's pixel size, computed here from the
// pixel figures), crystalline shares, sublattices (1-based on the wire) and
// the prior used.
TEST(ResultConversionTest, PriorChecksAndSublattices) {
  FrameAnalysis a;
  a.width = a.height = 64;
  a.atoms = {{.x = 1, .y = 2, .sigma = 1, .response = 0.5f, .window = 0, .sublattice = 1},
             {.x = 3, .y = 4, .sigma = 1, .response = 0.4f, .window = 0, .sublattice = -1},
             {.x = 5, .y = 6, .sigma = 1, .response = 0.3f, .window = 0, .sublattice = 0}};
  WindowResult w;
  w.crystalline_fraction = 0.25;
  w.crystal_note = "too little crystal";
  w.adopted = true;
  a.windows = {w};
  a.warnings = {{.field = "pixel_size_angstrom", .given = 1.0, .measured = 0.1, .message = "10x"}};
  LatticeMeasurement m;
  m.found = true;
  m.a = {30.0, 0.0};
  m.b = {0.0, 40.0};
  m.cell_area_px2 = 1200.0;
  m.gamma_deg = 90.0;
  m.columns_per_cell = 2;
  m.nearest_neighbor_px = 25.0;
  m.column_density_per_px2 = 2.0 / 1200.0;
  m.significance = 50.0;
  a.lattice = m;
  a.crystalline_fraction = 0.4;
  a.sublattices = {{.name = "Sr",
                    .num_found = 5,
                    .num_expected = 6.0,
                    .qc = 1.0 / 6.0,
                    .relative_brightness = 1.0},
                   {.name = "Ti-O",
                    .num_found = 4,
                    .num_expected = 6.0,
                    .qc = 1.0 / 3.0,
                    .relative_brightness = 0.45}};
  a.sublattice_note = "note";
  PriorInUse used;
  used.prior.pixel_size_angstrom = 0.1;
  used.prior.nearest_neighbor_angstrom = 2.5;
  used.prior.column_density_per_nm2 = 16.7;
  used.prior.sublattices = {{"Sr", 8.3, 1.0}, {"Ti-O", 8.4, 0.4}};
  used.derived = true;
  v1::FrameResult p;
  FrameAnalysisToProto(a, {}, 0.1, &p, &used);
  ASSERT_EQ(p.atoms_size(), 3);
  EXPECT_EQ(p.atoms(0).sublattice(), 2);
  EXPECT_EQ(p.atoms(1).sublattice(), 0);
  EXPECT_EQ(p.atoms(2).sublattice(), 1);
  EXPECT_EQ(p.windows(0).crystalline_fraction(), 0.25);
  EXPECT_EQ(p.windows(0).crystal_note(), "too little crystal");
  EXPECT_TRUE(p.windows(0).adopted());
  ASSERT_EQ(p.warnings_size(), 1);
  EXPECT_EQ(p.warnings(0).field(), "pixel_size_angstrom");
  EXPECT_EQ(p.warnings(0).measured(), 0.1);
  EXPECT_EQ(p.crystalline_fraction(), 0.4);
  EXPECT_TRUE(p.lattice().found());
  EXPECT_DOUBLE_EQ(p.lattice().a_px(), 30.0);
  EXPECT_DOUBLE_EQ(p.lattice().b_px(), 40.0);
  EXPECT_DOUBLE_EQ(p.lattice().nearest_neighbor_angstrom(), 25.0 * 0.1);
  // 2 columns per 1200 px² of 0.01 Å² = 12 Å² = 0.12 nm².
  EXPECT_NEAR(p.lattice().column_density_per_nm2(), 2.0 / 0.12, 1e-9);
  ASSERT_EQ(p.sublattices_size(), 2);
  EXPECT_EQ(p.sublattices(1).name(), "Ti-O");
  EXPECT_EQ(p.sublattices(1).num_found(), 4);
  EXPECT_EQ(p.sublattice_note(), "note");
  EXPECT_TRUE(p.prior_used().derived());
  EXPECT_FALSE(p.prior_used().pixel_units());
  EXPECT_EQ(p.prior_used().prior().sublattices(1).name(), "Ti-O");

  const FrameAnalysis back = AnalysisFromResult(p);
  ASSERT_EQ(back.atoms.size(), 3u);
  EXPECT_EQ(back.atoms[0].sublattice, 1);
  EXPECT_EQ(back.atoms[1].sublattice, -1);
  EXPECT_EQ(back.atoms[2].sublattice, 0);
  EXPECT_EQ(back.windows[0].crystalline_fraction, 0.25);
  EXPECT_EQ(back.windows[0].crystal_note, "too little crystal");
  EXPECT_TRUE(back.windows[0].adopted);
  ASSERT_EQ(back.warnings.size(), 1u);
  EXPECT_EQ(back.warnings[0].message, "10x");
  ASSERT_TRUE(back.lattice.has_value());
  EXPECT_EQ(back.lattice->columns_per_cell, 2);
  EXPECT_DOUBLE_EQ(back.lattice->nearest_neighbor_px, 25.0);
  EXPECT_EQ(back.lattice->a.x, 30.0);
  EXPECT_EQ(back.crystalline_fraction, 0.4);
  ASSERT_EQ(back.sublattices.size(), 2u);
  EXPECT_EQ(back.sublattices[0].num_expected, 6.0);
  EXPECT_EQ(back.sublattice_note, "note");
  const PriorInUse used_back = PriorUsedFromProto(p.prior_used());
  EXPECT_TRUE(used_back.derived);
  EXPECT_EQ(used_back.prior.nearest_neighbor_angstrom, 2.5);
  ASSERT_EQ(used_back.prior.sublattices.size(), 2u);
  EXPECT_EQ(used_back.prior.sublattices[0].relative_brightness, 1.0);

  // A prior in pixel units has no angstrom to give the lattice in.
  used.pixel_units = true;
  p.Clear();
  FrameAnalysisToProto(a, {}, 0.0, &p, &used);
  EXPECT_TRUE(p.prior_used().pixel_units());
  EXPECT_EQ(p.lattice().nearest_neighbor_angstrom(), 0.0);
  EXPECT_DOUBLE_EQ(p.lattice().nearest_neighbor_px(), 25.0);
  // A result from a server without these fields: no warnings, no lattice,
  // the whole frame crystalline, atoms without sublattice.
  v1::FrameResult old;
  old.add_atoms()->set_x(1.0);
  old.add_windows();
  const FrameAnalysis old_back = AnalysisFromResult(old);
  EXPECT_TRUE(old_back.warnings.empty());
  EXPECT_FALSE(old_back.lattice.has_value());
  EXPECT_EQ(old_back.crystalline_fraction, 1.0);
  EXPECT_EQ(old_back.windows[0].crystalline_fraction, 1.0);
  EXPECT_EQ(old_back.atoms[0].sublattice, -1);
}

TEST(StatusTest, CodesAndMessagesPassThrough) {
  const grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError("frame.pixels.dtype bad"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "frame.pixels.dtype bad");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::CancelledError("x")).error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace logstar::server
