// server/session.h and server/options.h.
#include "server/session.h"

#include <filesystem>
#include <fstream>

#include <opencv2/core.hpp>

#include "engine/base/context.h"
#include "engine/image/synth.h"
#include "engine/physics/accuracy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/options.h"
#include "server/session_config.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;

struct Fixture {
  SynthFrame frame;
  v1::Frame wire;
  v1::SessionSettings settings;
};

Fixture Make(uint64_t seed, int size = 128, SynthLattice lattice = SynthLattice::kYbco) {
  Fixture f;
  SynthOptions o;
  o.lattice = lattice;
  o.width = o.height = size;
  o.noise = 0.05;
  o.seed = seed;
  f.frame = *Synthesize(o);
  f.wire.mutable_pixels()->set_dtype(v1::DTYPE_FLOAT32);
  f.wire.mutable_pixels()->set_width(size);
  f.wire.mutable_pixels()->set_height(size);
  f.wire.mutable_pixels()->set_data(
      std::string(reinterpret_cast<const char*>(f.frame.image.data), size * size * 4));
  v1::PhysicsPrior* p = f.settings.mutable_prior();
  p->set_pixel_size_angstrom(f.frame.prior.pixel_size_angstrom);
  p->set_column_density_per_nm2(f.frame.prior.ColumnDensityPerNm2());
  p->set_nearest_neighbor_angstrom(f.frame.prior.nearest_neighbor_angstrom);
  f.settings.mutable_analysis()->set_window(64);
  f.settings.mutable_analysis()->set_evaluations(8);
  return f;
}

SessionConfig Config(const v1::SessionSettings& settings) {
  absl::StatusOr<SessionConfig> c = ParseSessionSettings(settings);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : SessionConfig{};
}

FrameAnalysis Analyze(Session& s, const v1::Frame& wire) {
  const DecodedFrame d = *DecodeFrame(wire, 1 << 24);
  absl::StatusOr<Session::Analysis> a = s.Analyze(d, ExecutionContext::Default(), nullptr);
  EXPECT_TRUE(a.ok()) << a.status();
  return a->frame;
}

TEST(SessionTest, SettingsChangesKeepOrEmptyTheCache) {
  const Fixture f = Make(1);
  Session s("s", Config(f.settings), absl::Now());
  EXPECT_EQ(Analyze(s, f.wire).misses, 4);
  EXPECT_EQ(Analyze(s, f.wire).misses, 0);
  // More evaluations: the windows and prior are the same, the cache stays.
  v1::SessionSettings more = f.settings;
  more.mutable_analysis()->set_evaluations(10);
  ASSERT_TRUE(s.UpdateSettings(Config(more)).ok());
  EXPECT_EQ(Analyze(s, f.wire).misses, 0);
  // Another window size: everything is tuned again.
  v1::SessionSettings bigger = more;
  bigger.mutable_analysis()->set_window(128);
  ASSERT_TRUE(s.UpdateSettings(Config(bigger)).ok());
  EXPECT_EQ(Analyze(s, f.wire).misses, 1);
  // A frame at another pixel size (magnification) empties it too.
  v1::Frame zoomed = f.wire;
  zoomed.set_pixel_size_x_angstrom(f.frame.prior.pixel_size_angstrom * 1.5);
  EXPECT_EQ(Analyze(s, zoomed).misses, 1);
  s.ResetCache();
  EXPECT_EQ(Analyze(s, zoomed).misses, 1);
  EXPECT_EQ(s.counters().frames_analysed(), 0u);  // counted by the service, not here
}

// A new amorphous window size mid-stream empties only the stage's cache:
// the LoG windows stay cached, the stage's new windows start afresh.
TEST(SessionTest, AmorphousWindowChangeKeepsTheLogCache) {
  Fixture f = Make(2);
  f.settings.mutable_analysis()->mutable_amorphous()->set_enabled(true);
  f.settings.mutable_analysis()->mutable_amorphous()->set_evaluations(6);
  Session s("a", Config(f.settings), absl::Now());
  const FrameAnalysis first = Analyze(s, f.wire);
  ASSERT_TRUE(first.amorphous.has_value());
  EXPECT_EQ(first.amorphous->windows.size(), 1u);
  v1::SessionSettings other = f.settings;
  other.mutable_analysis()->mutable_amorphous()->set_window(64);
  ASSERT_TRUE(s.UpdateSettings(Config(other)).ok());
  const FrameAnalysis next = Analyze(s, f.wire);
  EXPECT_EQ(next.misses, 0);
  ASSERT_TRUE(next.amorphous.has_value());
  ASSERT_EQ(next.amorphous->windows.size(), 4u);
  for (const AmorphousWindowResult& w : next.amorphous->windows) {
    EXPECT_NE(w.state, CacheState::kHit) << w.window.index;
  }
}

TEST(SessionTest, OperatorChoiceSetsTheWindowsParameters) {
  const Fixture f = Make(2);
  Session s("s", Config(f.settings), absl::Now());
  EXPECT_THAT(s.ChooseOnFront(0, 0).message(), HasSubstr("no cache"));
  const FrameAnalysis a = Analyze(s, f.wire);
  const int last = static_cast<int>(a.windows[2].front.size()) - 1;
  ASSERT_TRUE(s.ChooseOnFront(2, last).ok());
  const v1::SessionInfo info = s.Info(true, 600);
  const v1::CachedWindow& w = info.cache().windows(2);
  EXPECT_EQ(w.chosen(), last);
  EXPECT_EQ(w.parameters().threshold(), a.windows[2].front[last].parameters.threshold);
  EXPECT_EQ(w.tuned_rewards().qc(), a.windows[2].front[last].qc);
  EXPECT_THAT(s.ChooseOnFront(7, 0).message(), HasSubstr("choices.window"));
  EXPECT_THAT(s.ChooseOnFront(-1, 1000).message(), HasSubstr("choices.front_index"));
}

TEST(SessionTest, StateRoundTripRestoresCacheAndCounters) {
  const Fixture f = Make(3);
  Session s("saved", Config(f.settings), absl::Now());
  const FrameAnalysis first = Analyze(s, f.wire);
  s.CountReceived();
  s.CountAnalysed(first);
  const v1::SessionState state = s.State();
  EXPECT_EQ(state.cache().windows_size(), 4);
  absl::StatusOr<std::unique_ptr<Session>> back = Session::FromState(state, {}, absl::Now());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->counters().frames_analysed(), 1u);
  // Before any frame the restored cache is visible, and the first frame uses it.
  EXPECT_TRUE((*back)->Info(true, 600).cache().windows(3).tuned());
  EXPECT_EQ(Analyze(**back, f.wire).misses, 0);
  // The operator's picks survive the restart, in their order (issue 18).
  const int last = static_cast<int>(first.windows[1].front.size()) - 1;
  ASSERT_TRUE(s.ChooseOnFront(1, last).ok());
  ASSERT_TRUE(s.ChooseOnFront(0, 0).ok());
  absl::StatusOr<std::unique_ptr<Session>> picked = Session::FromState(s.State(), {}, absl::Now());
  ASSERT_TRUE(picked.ok()) << picked.status();
  const v1::SessionInfo picked_info = (*picked)->Info(false, 600);
  ASSERT_EQ(picked_info.picks_size(), 2);
  EXPECT_EQ(picked_info.picks(0).window(), 1);
  EXPECT_EQ(picked_info.picks(0).front_index(), last);
  EXPECT_EQ(picked_info.picks(1).window(), 0);
  EXPECT_EQ(picked_info.picks(0).frames_analysed(), 1u);
  // Saved mid-stream with two frames still in flight: the restart dropped them.
  v1::SessionState in_flight = state;
  in_flight.mutable_counters()->set_frames_received(3);
  absl::StatusOr<std::unique_ptr<Session>> crashed = Session::FromState(in_flight, {}, absl::Now());
  ASSERT_TRUE(crashed.ok()) << crashed.status();
  EXPECT_EQ((*crashed)->counters().frames_analysed(), 1u);
  EXPECT_EQ((*crashed)->counters().frames_dropped(), 2u);
  v1::SessionState wrong = state;
  wrong.set_version(7);
  EXPECT_FALSE(Session::FromState(wrong, {}, absl::Now()).ok());
  // Saved settings are parsed under the daemon's caps of today.
  SettingsCaps tight;
  tight.max_evaluations = 4;
  EXPECT_THAT(Session::FromState(state, tight, absl::Now()).status().message(),
              HasSubstr("settings.analysis.evaluations"));
}

// A frame of white noise in the fixture's envelope: no lattice.
v1::Frame NoiseFrame(const Fixture& f) {
  cv::Mat noise(f.frame.image.size(), CV_32F);
  cv::randn(noise, 0.0, 1.0);
  v1::Frame wire = f.wire;
  wire.mutable_pixels()->set_data(
      std::string(reinterpret_cast<const char*>(noise.data), noise.total() * sizeof(float)));
  return wire;
}

v1::SessionSettings AutoSettings(const Fixture& f, double pixel_size_angstrom) {
  v1::SessionSettings s = f.settings;
  s.clear_prior();
  s.mutable_prior()->set_auto_(true);
  s.mutable_prior()->set_pixel_size_angstrom(pixel_size_angstrom);
  return s;
}

absl::StatusOr<Session::Analysis> AnalyzeFull(Session& s, const v1::Frame& wire) {
  const DecodedFrame d = *DecodeFrame(wire, 1 << 24);
  return s.Analyze(d, ExecutionContext::Default(), nullptr);
}

// prior auto: derived from the first frame against the generator's truth
// (spacing within 2 %, density within 10 %), kept for the next frames and
// across a restart, derived again after a reset.
TEST(SessionTest, AutoPriorIsDerivedFromTheFirstFrameAndKept) {
  const Fixture f = Make(3, 256);
  const double pixel = f.frame.prior.pixel_size_angstrom;
  Session s("auto", Config(AutoSettings(f, pixel)), absl::Now());
  EXPECT_FALSE(s.Info(false, 600).has_prior_used());
  absl::StatusOr<Session::Analysis> first = AnalyzeFull(s, f.wire);
  ASSERT_TRUE(first.ok()) << first.status();
  const PhysicsPrior& derived = first->prior.prior;
  EXPECT_TRUE(first->prior.derived);
  EXPECT_FALSE(first->prior.pixel_units);
  EXPECT_EQ(derived.pixel_size_angstrom, pixel);
  EXPECT_NEAR(derived.nearest_neighbor_angstrom / f.frame.prior.nearest_neighbor_angstrom, 1.0,
              0.02);
  EXPECT_NEAR(derived.ColumnDensityPerNm2() / f.frame.prior.ColumnDensityPerNm2(), 1.0, 0.10);
  EXPECT_EQ(first->frame.misses, 16);
  EXPECT_TRUE(first->frame.warnings.empty());  // checked against itself
  EXPECT_TRUE(s.Info(false, 600).prior_used().derived());

  // The next frame (another one of the same crystal) keeps the prior and the cache.
  const Fixture g = Make(4, 256);
  absl::StatusOr<Session::Analysis> second = AnalyzeFull(s, g.wire);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->prior.prior.nearest_neighbor_angstrom, derived.nearest_neighbor_angstrom);
  EXPECT_EQ(second->frame.misses, 0);

  // A restart keeps it with the cache it was tuned for.
  const v1::SessionState state = s.State();
  EXPECT_TRUE(state.derived_prior().derived());
  absl::StatusOr<std::unique_ptr<Session>> back = Session::FromState(state, {}, absl::Now());
  ASSERT_TRUE(back.ok()) << back.status();
  absl::StatusOr<Session::Analysis> restored = AnalyzeFull(**back, g.wire);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->prior.prior.nearest_neighbor_angstrom, derived.nearest_neighbor_angstrom);
  EXPECT_EQ(restored->frame.misses, 0);

  // A reset derives it again (from this frame) and tunes afresh.
  s.ResetCache();
  absl::StatusOr<Session::Analysis> again = AnalyzeFull(s, g.wire);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->frame.misses, 16);
  EXPECT_NEAR(again->prior.prior.nearest_neighbor_angstrom / derived.nearest_neighbor_angstrom, 1.0,
              0.02);
}

// Without any pixel size the derived prior is in pixels, and LoG* still
// finds the columns (its column width then follows the measured spacing).
TEST(SessionTest, AutoPriorWithoutPixelSizeIsInPixels) {
  const Fixture f = Make(3, 256);
  Session s("px", Config(AutoSettings(f, 0.0)), absl::Now());
  absl::StatusOr<Session::Analysis> a = AnalyzeFull(s, f.wire);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->prior.pixel_units);
  EXPECT_NEAR(a->prior.prior.NearestNeighborPx() / f.frame.prior.NearestNeighborPx(), 1.0, 0.02);
  std::vector<PointXY> found, truth;
  for (const Atom& atom : a->frame.atoms) found.push_back({atom.x, atom.y});
  for (const SynthAtom& t : f.frame.atoms) truth.push_back({t.x, t.y});
  const Accuracy acc = *MatchToTruth(found, truth, 0.3 * f.frame.prior.NearestNeighborPx());
  EXPECT_GT(acc.f1, 0.9) << acc.precision << " " << acc.recall;
  // A column width in Å cannot be read without a pixel size.
  v1::SessionSettings width = AutoSettings(f, 0.0);
  width.mutable_analysis()->set_column_sigma_angstrom(0.45);
  Session w("width", Config(width), absl::Now());
  EXPECT_THAT(AnalyzeFull(w, f.wire).status().message(),
              HasSubstr("settings.analysis.column_sigma_angstrom"));
}

// A frame without lattice fails naming the prior; the session goes on and
// the next frame derives the prior.
TEST(SessionTest, AutoPriorOnANoiseFrameFailsAndTheNextFrameDerivesIt) {
  const Fixture f = Make(3, 256);
  Session s("noise", Config(AutoSettings(f, f.frame.prior.pixel_size_angstrom)), absl::Now());
  const absl::Status st = AnalyzeFull(s, NoiseFrame(f)).status();
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("settings.prior"));
  EXPECT_THAT(st.message(), HasSubstr("no lattice"));
  absl::StatusOr<Session::Analysis> next = AnalyzeFull(s, f.wire);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(next->prior.derived);
}

TEST(SessionManagerTest, OpenResumePersistExpire) {
  const Fixture f = Make(4);
  const std::string dir = ::testing::TempDir() + "/sessions_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  {
    SessionManager m({600.0, dir});
    ASSERT_TRUE(m.LoadState().ok());
    EXPECT_FALSE(m.Open("x", nullptr).ok());  // new sessions need settings
    EXPECT_THAT(m.Open("bad/id", &f.settings).status().message(), HasSubstr("session_id"));
    auto opened = m.Open("", &f.settings);
    ASSERT_TRUE(opened.ok());
    EXPECT_FALSE(opened->second);
    EXPECT_EQ(opened->first->id().size(), 16u);
    auto a = m.Open("abc", &f.settings);
    auto again = m.Open("abc", nullptr);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->second);
    EXPECT_EQ(again->first.get(), a->first.get());
    // Bad settings are rejected, naming the field, before they reach the
    // session, which keeps its own.
    v1::SessionSettings bad = f.settings;
    bad.mutable_analysis()->set_evaluations(-1);
    EXPECT_THAT(m.Open("abc", &bad).status().message(), HasSubstr("settings.analysis.evaluations"));
    EXPECT_THAT(m.Open("new", &bad).status().message(), HasSubstr("settings.analysis.evaluations"));
    EXPECT_FALSE(m.Find("new").ok());
    EXPECT_EQ(a->first->settings().analysis().evaluations(), 8);
    Analyze(*a->first, f.wire);
    ASSERT_TRUE(m.Persist(*a->first).ok());
    EXPECT_TRUE(std::filesystem::exists(dir + "/abc.session.pb"));
    // Idle: dropped, unless a stream is attached.
    a->first->Attach();
    m.ExpireIdle(absl::Now() + absl::Hours(1));
    EXPECT_TRUE(m.Find("abc").ok());
    EXPECT_FALSE(m.Find(opened->first->id()).ok());
    a->first->Detach();
  }
  SessionManager restarted({600.0, dir});
  ASSERT_TRUE(restarted.LoadState().ok());
  absl::StatusOr<std::shared_ptr<Session>> back = restarted.Find("abc");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(Analyze(**back, f.wire).misses, 0);
  restarted.ExpireIdle(absl::Now() + absl::Hours(1));
  EXPECT_FALSE(std::filesystem::exists(dir + "/abc.session.pb"));
}

TEST(SessionManagerTest, SettingsAreParsedUnderTheDaemonsCaps) {
  const Fixture f = Make(4);
  SettingsCaps caps;
  caps.max_evaluations = 4;  // the fixture asks for 8
  SessionManager m({600.0, ""}, caps);
  EXPECT_THAT(m.Open("", &f.settings).status().message(),
              HasSubstr("settings.analysis.evaluations must be in [1, 4], got 8"));
  EXPECT_THAT(m.ParseSettings(f.settings).status().message(),
              HasSubstr("settings.analysis.evaluations"));
  EXPECT_EQ(m.size(), 0);
}

// Unset objectives: the published pair, as in process; each can be asked
// for, with or without the amorphous stage; an unknown value names the field.
TEST(SessionConfigTest, ObjectivePairDefaultsAndChoices) {
  Fixture f = Make(5);
  EXPECT_EQ(Config(f.settings).analyzer.logstar.objectives, ObjectivePair::kPublished);
  f.settings.mutable_analysis()->mutable_amorphous()->set_enabled(true);
  EXPECT_EQ(Config(f.settings).analyzer.logstar.objectives, ObjectivePair::kPublished);
  f.settings.mutable_analysis()->set_objectives(v1::OBJECTIVE_PAIR_LATTICE);
  EXPECT_EQ(Config(f.settings).analyzer.logstar.objectives, ObjectivePair::kLattice);
  f.settings.mutable_analysis()->mutable_amorphous()->set_enabled(false);
  f.settings.mutable_analysis()->set_objectives(v1::OBJECTIVE_PAIR_PUBLISHED);
  EXPECT_EQ(Config(f.settings).analyzer.logstar.objectives, ObjectivePair::kPublished);
  f.settings.mutable_analysis()->set_objectives(static_cast<v1::ObjectivePair>(7));
  EXPECT_THAT(ParseSessionSettings(f.settings).status().message(),
              HasSubstr("settings.analysis.objectives"));
}

// A session on the lattice pair reports it per window, with its rewards,
// and for the frame; a cached frame reports them too.
TEST(SessionTest, LatticePairIsReported) {
  // The lattice pair needs the crystal mapped, which at 256² a perovskite's
  // small cell is (YBCO's 93 px cell is not: its windows would fall back to
  // the published pair).
  Fixture f = Make(6, 256, SynthLattice::kPerovskite);
  f.settings.mutable_analysis()->set_window(128);
  f.settings.mutable_analysis()->set_objectives(v1::OBJECTIVE_PAIR_LATTICE);
  Session s("s", Config(f.settings), absl::Now());
  for (int frame = 0; frame < 2; ++frame) {
    const FrameAnalysis a = Analyze(s, f.wire);
    ASSERT_TRUE(a.lattice_rewards.has_value()) << a.windows[0].lattice_note;
    EXPECT_LT(a.lattice_rewards->misses, 0.2);
    EXPECT_LT(a.lattice_rewards->spurious, 0.2);
    for (const WindowResult& w : a.windows) {
      EXPECT_EQ(w.objectives, ObjectivePair::kLattice) << w.lattice_note;
      EXPECT_TRUE(w.lattice_rewards.has_value());
    }
  }
}

// Counts between tuning frames reach the disk on the sweeper's timer, so a
// SIGKILL (no PersistAll) loses at most one interval of them; a session
// that did not change is not written again.
TEST(SessionManagerTest, ChangedSessionsAreSavedOnTheTimer) {
  const Fixture f = Make(4);
  const std::string dir = ::testing::TempDir() + "/timer_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  const std::string path = dir + "/t.session.pb";
  auto saved_counts = [&]() -> uint64_t {
    SessionManager reader({600.0, dir, 3600.0});
    if (!reader.LoadState().ok()) return 0;
    absl::StatusOr<std::shared_ptr<Session>> s = reader.Find("t");
    return s.ok() ? (*s)->counters().frames_analysed() : 0;
  };
  {
    SessionManager m({600.0, dir, /*save_interval_s=*/0.2});
    ASSERT_TRUE(m.LoadState().ok());
    auto t = m.Open("t", &f.settings);
    ASSERT_TRUE(t.ok());
    const FrameAnalysis first = Analyze(*t->first, f.wire);
    ASSERT_TRUE(m.Persist(*t->first).ok());  // as the daemon does after a tuning frame
    ASSERT_EQ(saved_counts(), 0u);
    for (int i = 0; i < 3; ++i) {
      t->first->CountReceived();
      t->first->CountAnalysed(first);
    }
    // Within a few intervals the file holds the three counts.
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (saved_counts() != 3u && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
    EXPECT_EQ(saved_counts(), 3u);
    // Unchanged: not rewritten. (A save that read the generation while the
    // counts above were landing is followed by one more; wait that out.)
    absl::SleepFor(absl::Milliseconds(500));
    const auto written = std::filesystem::last_write_time(path);
    absl::SleepFor(absl::Milliseconds(700));
    EXPECT_EQ(std::filesystem::last_write_time(path), written);
  }  // destroyed without PersistAll: what a SIGKILL leaves
  EXPECT_EQ(saved_counts(), 3u);
  std::filesystem::remove_all(dir);
}

TEST(OptionsTest, FileThenFlags) {
  const std::string dir = ::testing::TempDir();
  std::ofstream(dir + "/c.json") << R"({"listenAddress": "127.0.0.1:7000", "maxPixels": "1000"})";
  bool help = false;
  absl::StatusOr<v1::DaemonConfig> c =
      ConfigFromCommandLine({"--config=" + dir + "/c.json", "--max_pixels=5000"}, &help);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<ServerOptions> o = OptionsFromConfig(*c);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen_address, "127.0.0.1:7000");
  EXPECT_EQ(o->max_pixels, 5000);
  EXPECT_EQ(o->max_concurrent_frames, ServerOptions().max_concurrent_frames);

  std::ofstream(dir + "/c.textproto") << "state_dir: \"/tmp/x\"\nbogus: 1\n";
  EXPECT_THAT(ConfigFromCommandLine({"--config=" + dir + "/c.textproto"}, &help).status().message(),
              HasSubstr("bogus"));
  EXPECT_THAT(ConfigFromCommandLine({"--max_pixels=abc"}, &help).status().message(),
              HasSubstr("--max_pixels"));
  EXPECT_THAT(ConfigFromCommandLine({"positional"}, &help).status().message(),
              HasSubstr("--name=value"));
  ASSERT_TRUE(ConfigFromCommandLine({"--help"}, &help).ok());
  EXPECT_TRUE(help);
  v1::DaemonConfig tls;
  tls.set_tls_client_ca_file("ca.pem");
  EXPECT_THAT(OptionsFromConfig(tls).status().message(), HasSubstr("tls_client_ca_file"));
  v1::DaemonConfig level;
  level.set_log_level("loud");
  EXPECT_THAT(OptionsFromConfig(level).status().message(), HasSubstr("log_level"));
}

// Issue 16, item 2: the session caps are daemon settings.
TEST(OptionsTest, WorkCapsFromFlags) {
  bool help = false;
  absl::StatusOr<v1::DaemonConfig> c =
      ConfigFromCommandLine({"--max_evaluations=200", "--max_frame_work=123456789"}, &help);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<ServerOptions> o = OptionsFromConfig(*c);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->max_evaluations, 200);
  EXPECT_EQ(o->max_frame_work, 123456789);
  EXPECT_EQ(ServerOptions().max_evaluations, SettingsCaps().max_evaluations);
  EXPECT_EQ(ServerOptions().max_frame_work, SettingsCaps().max_frame_work);
  for (const char* flag : {"--max_evaluations=0", "--max_frame_work=0"}) {
    c = ConfigFromCommandLine({flag}, &help);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_THAT(OptionsFromConfig(*c).status().message(),
                HasSubstr(std::string(flag).substr(2, std::string(flag).find('=') - 2)));
  }
}

}  // namespace
}  // namespace logstar::server
