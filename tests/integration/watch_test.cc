// The Watch RPC (issue 18, item 1) through real RPCs against an in-process
// server, with the C++ client's Watcher: watchers see a session's results
// as the controlling stream does, a slow watcher skips (and is told how
// many) while the stream's frames are all answered, the watcher cap, errors
// naming the field, the token, shutdown, all-sessions summaries, the
// operator's picks recorded in the session and used by the next frame, and
// the preview against a closed form.
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "clients/cpp/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/watch.h"
#include "tests/clients/client_harness.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::Address;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;

class WatchTest : public ::testing::Test {
 protected:
  void StartServer(server::ServerOptions options = {}) {
    server_ = ::logstar::testing::StartServer(options);
    ASSERT_NE(server_, nullptr);
    client_ = Connect("");
  }
  std::unique_ptr<Client> Connect(const std::string& token) {
    return ::logstar::testing::ConnectOrDie({.address = Address(*server_), .token = token});
  }
  void SetUp() override { StartServer(); }

  // Streams `n` frames of `f` into session `id` and returns every answer
  // (the block policy: every frame is analysed).
  std::vector<v1::StreamResponse> StreamFrames(const std::string& id, const SynthFrame& f, int n,
                                               int evaluations = 8, int window = 64,
                                               v1::ObjectivePair objectives = {}) {
    v1::SessionSettings settings = SmallSettings(f, window, evaluations);
    settings.mutable_analysis()->set_objectives(objectives);
    settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
    absl::StatusOr<std::unique_ptr<Stream>> stream =
        client_->OpenStream({.session_id = id, .settings = settings});
    EXPECT_TRUE(stream.ok()) << stream.status();
    std::vector<v1::StreamResponse> answers;
    if (!stream.ok()) return answers;
    std::thread reader([&] {
      while (std::optional<StreamAnswer> a = (*stream)->Read()) answers.push_back(a->response);
    });
    for (int i = 1; i <= n; ++i) EXPECT_TRUE((*stream)->Push(ToFrame(f, i)).ok());
    (*stream)->CloseSend();
    reader.join();
    EXPECT_TRUE((*stream)->Finish().ok());
    return answers;
  }

  // The status a watch the daemon refused ends with (it answers nothing).
  absl::Status Refusal(const WatchOptions& options) {
    absl::StatusOr<std::unique_ptr<Watcher>> w = client_->Watch(options);
    if (!w.ok()) return w.status();
    EXPECT_FALSE((*w)->Read().has_value());
    return (*w)->Finish();
  }

  // Makes session `id` exist (one frame analysed).
  void MakeSession(const std::string& id, const SynthFrame& f, int evaluations = 8, int window = 64,
                   v1::ObjectivePair objectives = {}) {
    ASSERT_EQ(StreamFrames(id, f, 1, evaluations, window, objectives).size(), 1u);
  }

  std::unique_ptr<server::LogStarServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(WatchTest, AWatcherSeesEveryResultTheStreamGets) {
  const SynthFrame f = Synth(128, 1);
  MakeSession("s", f);
  absl::StatusOr<std::unique_ptr<Watcher>> watcher =
      client_->Watch({.session_id = "s", .include_preview = true});
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  EXPECT_EQ(server_->metrics().watchers->Value(), 1);
  // A watcher that keeps up (the frames are far apart) skips nothing.
  std::vector<v1::StreamResponse> answers;
  std::vector<v1::WatchResponse> seen;
  absl::StatusOr<std::unique_ptr<Stream>> stream = client_->OpenStream({.session_id = "s"});
  ASSERT_TRUE(stream.ok()) << stream.status();
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE((*stream)->Push(ToFrame(f, i)).ok());
    answers.push_back((*stream)->Read()->response);
    std::optional<v1::WatchResponse> w = (*watcher)->Read();
    ASSERT_TRUE(w.has_value());
    seen.push_back(*w);
  }
  ASSERT_TRUE((*stream)->Finish().ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(seen[i].has_result());
    EXPECT_EQ(seen[i].skipped(), 0u);
    EXPECT_EQ(seen[i].result().sequence(), answers[i].result().sequence());
    EXPECT_EQ(seen[i].result().atoms_size(), answers[i].result().atoms_size());
    EXPECT_EQ(seen[i].result().counters().frames_analysed(),
              answers[i].result().counters().frames_analysed());
    // The preview is the whole 128² frame (no downscale), 8-bit.
    EXPECT_EQ(seen[i].preview().scale(), 1.0);
    EXPECT_EQ(seen[i].preview().pixels().width(), 128u);
    EXPECT_EQ(seen[i].preview().pixels().data().size(), 128u * 128u);
  }
  (*watcher)->Cancel();
  EXPECT_FALSE((*watcher)->Read().has_value());
  EXPECT_EQ((*watcher)->Finish().code(), absl::StatusCode::kCancelled);
}

TEST_F(WatchTest, ASlowWatcherSkipsAndTheStreamIsAnsweredInFull) {
  const SynthFrame f = Synth(256, 2);
  MakeSession("slow", f);
  // A raw watcher on a channel with a small HTTP/2 window that never grows,
  // so the transport cannot absorb the answers it does not read.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt("grpc.http2.lookahead_bytes", 16 * 1024);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = v1::LogStar::NewStub(channel);
  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_session_id("slow");
  request.set_include_preview(true);  // 64 KiB per answer
  auto reader = stub->Watch(&context, request);
  reader->WaitForInitialMetadata();

  constexpr int kFrames = 12;
  const auto start = std::chrono::steady_clock::now();
  const std::vector<v1::StreamResponse> answers = StreamFrames("slow", f, kFrames);
  const double stream_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(answers.size(), static_cast<size_t>(kFrames));
  for (const v1::StreamResponse& a : answers) ASSERT_TRUE(a.has_result()) << a.DebugString();
  ASSERT_EQ(answers.back().result().counters().frames_analysed(), kFrames + 1u);

  // Now read: results in order, the last frame's among them, and every
  // frame either delivered or counted as skipped.
  uint64_t delivered = 0, skipped = 0, last = 1;  // frame 1 was MakeSession's
  v1::WatchResponse w;
  while (last < kFrames + 1u && reader->Read(&w)) {
    ASSERT_TRUE(w.has_result());
    EXPECT_GT(w.result().counters().frames_analysed(), last);
    ++delivered;
    skipped += w.skipped();
    last = w.result().counters().frames_analysed();
  }
  EXPECT_EQ(last, kFrames + 1u);  // the latest is always delivered
  EXPECT_EQ(delivered + skipped, static_cast<uint64_t>(kFrames));
  EXPECT_GT(skipped, 0u) << "the transport absorbed every answer; stream took " << stream_s << " s";
  EXPECT_EQ(server_->metrics().watch_skipped->Value(), static_cast<double>(skipped));
  context.TryCancel();
  while (reader->Read(&w)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(WatchTest, WatchersAreCappedAndErrorsNameTheField) {
  server_->Shutdown();
  server::ServerOptions options;
  options.max_watchers = 2;
  StartServer(options);
  const SynthFrame f = Synth(128, 3);
  MakeSession("a", f);
  auto w1 = client_->Watch({.session_id = "a"});
  auto w2 = client_->Watch({.all_sessions = true});
  ASSERT_TRUE(w1.ok() && w2.ok());
  const absl::Status refused = Refusal({.session_id = "a"});
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("max_watchers"));
  EXPECT_EQ(server_->metrics().watchers->Value(), 2);

  // A watcher that leaves frees its place.
  (*w1)->Cancel();
  EXPECT_FALSE((*w1)->Read().has_value());
  (void)(*w1)->Finish();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->metrics().watchers->Value() > 1 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto w4 = client_->Watch({.session_id = "a"});
  ASSERT_TRUE(w4.ok());
  EXPECT_EQ(server_->metrics().watchers->Value(), 2);

  // Unknown session: NOT_FOUND naming session_id; neither: INVALID_ARGUMENT.
  const absl::Status not_found = Refusal({.session_id = "nobody"});
  EXPECT_EQ(not_found.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(not_found.message(), HasSubstr("session_id"));
  EXPECT_THAT(not_found.message(), HasSubstr("nobody"));
  EXPECT_EQ(client_->Watch({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WatchTest, TheTokenIsRequired) {
  server_->Shutdown();
  const std::string path = ::testing::TempDir() + "/watch_token";
  std::ofstream(path) << "s3cret\n";
  server::ServerOptions options;
  options.auth_token_file = path;
  StartServer(options);
  EXPECT_EQ(Refusal({.all_sessions = true}).code(), absl::StatusCode::kUnauthenticated);
  std::unique_ptr<Client> with_token = Connect("s3cret");
  auto watcher = with_token->Watch({.all_sessions = true});
  ASSERT_TRUE(watcher.ok());
  EXPECT_EQ(server_->metrics().watchers->Value(), 1);
}

TEST_F(WatchTest, ShutdownEndsWatchersWithUnavailable) {
  const SynthFrame f = Synth(128, 4);
  MakeSession("s", f);
  auto watcher = client_->Watch({.session_id = "s"});
  ASSERT_TRUE(watcher.ok());
  std::thread reader([&] {
    while ((*watcher)->Read().has_value()) {
    }
  });
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown();
  reader.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ((*watcher)->Finish().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_->metrics().watchers->Value(), 0);
}

TEST_F(WatchTest, AllSessionsWatcherGetsEachSessionsSummary) {
  const SynthFrame f = Synth(128, 5);
  auto watcher = client_->Watch({.all_sessions = true});
  ASSERT_TRUE(watcher.ok());
  StreamFrames("one", f, 1);
  StreamFrames("two", f, 2);
  std::map<std::string, uint64_t> analysed;  // the latest summary's count per session
  uint64_t answers = 0;
  while (analysed["one"] + analysed["two"] < 3) {
    std::optional<v1::WatchResponse> w = (*watcher)->Read();
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->has_summary());
    EXPECT_FALSE(w->summary().has_settings());
    EXPECT_FALSE(w->summary().has_cache());
    answers += 1 + w->skipped();
    analysed[w->summary().session_id()] = w->summary().counters().frames_analysed();
  }
  EXPECT_EQ(analysed["one"], 1u);
  EXPECT_EQ(analysed["two"], 2u);
  EXPECT_EQ(answers, 3u);
}

// The console's click, at the API level: a pick on a window's front is
// recorded in the session and the next frame's window runs with that
// point's parameters.
TEST_F(WatchTest, APickIsRecordedAndTheNextFrameUsesIt) {
  // The lattice pair: its fronts have several points (the published pair's
  // often one that dominates). It needs the crystal mapped, which a
  // perovskite's small cell is at 256² (YBCO's 93 px cell is not, and its
  // windows would fall back to the published pair).
  const SynthFrame f = Synth(256, 6, 0.3, SynthLattice::kPerovskite);
  MakeSession("pick", f, 30, 128, v1::OBJECTIVE_PAIR_LATTICE);
  absl::StatusOr<v1::SessionInfo> info = client_->GetSession("pick", true);
  ASSERT_TRUE(info.ok());
  // The window with the longest front, and a point of it not chosen.
  int window = 0;
  for (const v1::CachedWindow& c : info->cache().windows()) {
    if (c.front_size() > info->cache().windows(window).front_size()) window = c.index();
  }
  const v1::CachedWindow w1 = info->cache().windows(window);
  ASSERT_GE(w1.front_size(), 2) << "a front needs a second point to pick";
  // The point farthest from the one in use: drift is measured from the
  // pick's rewards from now on (both pairs), so it stays.
  int pick = 0;
  const auto distance = [&](int i) {
    return std::hypot(w1.front(i).misses() - w1.front(w1.chosen()).misses(),
                      w1.front(i).spurious() - w1.front(w1.chosen()).spurious());
  };
  for (int i = 0; i < w1.front_size(); ++i) {
    if (distance(i) > distance(pick)) pick = i;
  }
  ASSERT_NE(pick, w1.chosen());
  v1::UpdateSessionRequest update;
  update.set_session_id("pick");
  v1::FrontChoice* choice = update.add_choices();
  choice->set_window(window);
  choice->set_front_index(pick);
  ASSERT_TRUE(client_->UpdateSession(update).ok());

  auto watcher = client_->Watch({.session_id = "pick"});
  ASSERT_TRUE(watcher.ok());
  const std::vector<v1::StreamResponse> next =
      StreamFrames("pick", f, 1, 30, 128, v1::OBJECTIVE_PAIR_LATTICE);
  ASSERT_EQ(next.size(), 1u);
  std::optional<v1::WatchResponse> seen = (*watcher)->Read();
  ASSERT_TRUE(seen.has_value());
  const v1::WindowResult& used = seen->result().windows(window);
  EXPECT_EQ(used.cache_state(), v1::CACHE_STATE_HIT);
  EXPECT_EQ(used.chosen(), pick);
  EXPECT_EQ(used.parameters().threshold(), w1.front(pick).parameters().threshold());
  EXPECT_EQ(used.parameters().min_sigma(), w1.front(pick).parameters().min_sigma());

  info = client_->GetSession("pick");
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->picks_size(), 1);
  EXPECT_EQ(info->picks(0).window(), window);
  EXPECT_EQ(info->picks(0).front_index(), pick);
  EXPECT_EQ(info->picks(0).frames_analysed(), 1u);
  EXPECT_TRUE(info->picks(0).has_time());
  // Bounded: the last kMaxPicks are kept.
  for (size_t i = 0; i < server::Session::kMaxPicks + 5; ++i) {
    ASSERT_TRUE(client_->UpdateSession(update).ok());
  }
  info = client_->GetSession("pick");
  EXPECT_EQ(static_cast<size_t>(info->picks_size()), server::Session::kMaxPicks);
}

// The preview against its closed form: a ramp's 1st..99th percentile maps
// to 0..255; a 2048 × 512 frame is halved to 1024 × 256.
TEST(FramePreviewTest, StretchesPercentilesAndFitsTheLongerSide) {
  cv::Mat ramp(512, 2048, CV_16U);
  for (int y = 0; y < ramp.rows; ++y) {
    for (int x = 0; x < ramp.cols; ++x) ramp.at<uint16_t>(y, x) = static_cast<uint16_t>(x);
  }
  v1::FramePreview p;
  server::MakeFramePreview(ramp, 1024, &p);
  EXPECT_EQ(p.scale(), 0.5);
  ASSERT_EQ(p.pixels().width(), 1024u);
  ASSERT_EQ(p.pixels().height(), 256u);
  const auto at = [&](int x) { return static_cast<uint8_t>(p.pixels().data()[x]); };
  // Preview column x averages frame columns 2x, 2x+1: value 2x + 0.5; the
  // percentiles of 0.5..2046.5 in steps of 2 are about 20.5 and 2026.5.
  EXPECT_EQ(at(0), 0);
  EXPECT_EQ(at(1023), 255);
  EXPECT_NEAR(at(512), 255.0 * (1024.5 - 20.5) / (2026.5 - 20.5), 1.5);
}

}  // namespace
}  // namespace logstar
