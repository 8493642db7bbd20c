// ReconnectingStream against in-process logstards: the server is stopped
// mid-stream and a new one started on the same port (with the same state
// directory, as a restarted daemon); every frame must be answered exactly
// once, in push order, with the results of the same frames streamed without
// a restart (and the generator's ground truth), with pixels in the message
// and through a shared memory ring the new server has never heard of. Also:
// a budget that runs out, and no reconnect at all.
#include "clients/cpp/reconnecting_stream.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "clients/cpp/shared_memory_ring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/clients/client_harness.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::Address;
using ::logstar::testing::Score;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::StartServer;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;

constexpr int kFrames = 8;
constexpr int kInFlight = 4;

struct Outcome {
  std::vector<ReconnectingStream::Answer> answers;
  ReconnectingStream::Counters counters;
  std::vector<ReconnectEvent> events;
  absl::Status push_status, final_status;
};

std::string FreshDir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/reconnecting_stream_" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// Streams the frames as fast as the stream takes them. With `restart`, once
// a window's worth of frames is in flight, another thread stops the server
// (it answers what it has read, drops what it reads meanwhile) and starts a
// new one on its port with the same state directory, while the frames go on.
// With `ring`, pixels go through shared memory.
Outcome Stream(const std::vector<SynthFrame>& truth, const std::string& state_dir, bool restart,
               bool ring) {
  Outcome out;
  server::ServerOptions options;
  options.state_dir = state_dir;
  std::unique_ptr<server::LogStarServer> server = StartServer(options);
  if (server == nullptr) return out;
  const int port = server->port();
  v1::SessionSettings settings = SmallSettings(truth[0]);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  auto stream = ReconnectingStream::Open(
      {.address = Address(*server)}, {.settings = settings, .max_in_flight = kInFlight},
      {.reconnect_s = 60,
       .on_reconnect = [&](const ReconnectEvent& e) { out.events.push_back(e); }});
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (!stream.ok()) return out;
  std::unique_ptr<SharedMemoryRing> shm;
  if (ring) {
    auto made =
        SharedMemoryRing::Create({.slots = kInFlight, .slot_bytes = 128 * 128 * sizeof(float)});
    EXPECT_TRUE(made.ok()) << made.status();
    if (!made.ok()) return out;
    shm = *std::move(made);
    EXPECT_TRUE(shm->Register(*(*stream)->client()).ok());
    (*stream)->UseSharedMemory(shm.get());
  }

  std::thread reader([&] {
    while (auto a = (*stream)->Read()) out.answers.push_back(*std::move(a));
  });
  std::atomic<int> pushed{0};
  std::thread restarter;
  if (restart) {
    restarter = std::thread([&] {
      while (pushed < kInFlight) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      server->Shutdown();  // answers what it has read, ends the stream UNAVAILABLE
      server.reset();
      server = StartServer(options, port);
    });
  }
  for (int i = 0; i < kFrames && out.push_status.ok(); ++i) {
    v1::Frame f = ToFrame(truth[i], 1 + i);
    out.push_status =
        ring ? (*stream)->PushViaSharedMemory(std::move(f)) : (*stream)->Push(std::move(f));
    ++pushed;
  }
  if (restarter.joinable()) restarter.join();
  out.final_status = (*stream)->Finish();
  reader.join();
  out.counters = (*stream)->counters();
  if (shm != nullptr) {
    EXPECT_TRUE(shm->Close((*stream)->client()).ok());
  }
  return out;
}

class ReconnectingStreamRestartTest : public ::testing::TestWithParam<bool> {};

TEST_P(ReconnectingStreamRestartTest, EveryFrameIsAnsweredOnceWithTheResultsOfAnUnbrokenStream) {
  const bool ring = GetParam();
  std::vector<SynthFrame> truth;
  for (int i = 0; i < kFrames; ++i) truth.push_back(Synth(128, 70 + i));
  const std::string name = ring ? "ring" : "message";
  const Outcome expected = Stream(truth, FreshDir(name + "_reference"), false, ring);
  const Outcome got = Stream(truth, FreshDir(name + "_restart"), true, ring);

  ASSERT_TRUE(expected.final_status.ok()) << expected.final_status;
  EXPECT_EQ(expected.counters.reconnects, 0);
  EXPECT_TRUE(got.push_status.ok()) << got.push_status;
  EXPECT_TRUE(got.final_status.ok()) << got.final_status;
  EXPECT_GE(got.counters.reconnects, 1);
  ASSERT_EQ(got.events.size(), static_cast<size_t>(got.counters.reconnects));
  EXPECT_EQ(got.events[0].connection, 1);
  EXPECT_TRUE(got.events[0].resumed) << "the new server restored the session from the state dir";
  int64_t resending = 0;
  for (const ReconnectEvent& e : got.events) resending += static_cast<int64_t>(e.resending);
  EXPECT_EQ(got.counters.resent, resending);
  // A window of frames was in flight at the stop, and more followed: the
  // ones the old server never analysed went again.
  EXPECT_GE(got.counters.resent, 1);

  // Exactly one answer per frame, in push order, the last ones from the
  // new connection; each the result of the unbroken stream.
  ASSERT_EQ(expected.answers.size(), static_cast<size_t>(kFrames));
  ASSERT_EQ(got.answers.size(), static_cast<size_t>(kFrames));
  EXPECT_EQ(got.answers.back().connection, got.counters.reconnects);
  for (int i = 0; i < kFrames; ++i) {
    SCOPED_TRACE(i);
    const v1::StreamResponse& a = expected.answers[i].response;
    const v1::StreamResponse& b = got.answers[i].response;
    EXPECT_EQ(b.sequence(), 1u + i);
    ASSERT_TRUE(a.has_result()) << a.DebugString();
    ASSERT_TRUE(b.has_result()) << b.DebugString();
    EXPECT_GT(Score(truth[i], b.result()).f1, 0.85);
    ASSERT_EQ(a.result().atoms_size(), b.result().atoms_size());
    for (int k = 0; k < a.result().atoms_size(); ++k) {
      EXPECT_EQ(a.result().atoms(k).x(), b.result().atoms(k).x()) << k;
      EXPECT_EQ(a.result().atoms(k).y(), b.result().atoms(k).y()) << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PixelsInTheMessageAndInSharedMemory, ReconnectingStreamRestartTest,
                         ::testing::Bool(), [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "SharedMemory" : "Message";
                         });

TEST(ReconnectingStreamTest, GivesUpWhenTheBudgetRunsOutNamingTheSession) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const SynthFrame f = Synth(128, 80);
  auto stream = ReconnectingStream::Open({.address = Address(*server), .connect_timeout_s = 1},
                                         {.session_id = "budget", .settings = SmallSettings(f)},
                                         {.reconnect_s = 0.5, .budget_name = "--reconnect-s"});
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_TRUE((*stream)->Push(ToFrame(f, 1)).ok());
  auto first = (*stream)->Read();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->response.has_result());
  server->Shutdown();  // and no server comes back
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = (*stream)->Push(ToFrame(f, 2));
  if (s.ok()) s = (*stream)->Finish();  // the push may have gone out before the end was seen
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("gave up reconnecting to session budget after 0.5 s "
                                     "(--reconnect-s)"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ((*stream)->Finish(), s) << "the stream stays over";
  EXPECT_FALSE((*stream)->Read().has_value());
  EXPECT_EQ((*stream)->client(), nullptr);
}

TEST(ReconnectingStreamTest, WithoutABudgetABrokenStreamEndsAsAStreamDoes) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const SynthFrame f = Synth(128, 81);
  auto stream =
      ReconnectingStream::Open({.address = Address(*server)}, {.settings = SmallSettings(f)}, {});
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_TRUE((*stream)->Push(ToFrame(f, 1)).ok());
  ASSERT_TRUE((*stream)->Read().has_value());
  server->Shutdown();
  absl::Status s = (*stream)->Push(ToFrame(f, 2));
  if (s.ok()) s = (*stream)->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("gave up")));
  EXPECT_EQ((*stream)->counters().reconnects, 0);
  (void)(*stream)->Finish();
  EXPECT_FALSE((*stream)->Read().has_value());
}

TEST(ReconnectingStreamTest, OptionsAreChecked) {
  EXPECT_FALSE(ReconnectOptions{.reconnect_s = -1}.Validate().ok());
  EXPECT_FALSE(ReconnectOptions{.first_backoff_s = 0}.Validate().ok());
  EXPECT_FALSE((ReconnectOptions{.first_backoff_s = 3, .max_backoff_s = 2}.Validate().ok()));
  EXPECT_EQ(
      ReconnectingStream::Open({.address = "127.0.0.1:1"}, {}, {.reconnect_s = -1}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logstar
