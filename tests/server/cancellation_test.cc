// Issue 16, item 2: work that cannot be cancelled. A frame abandoned by its
// client (a cancelled stream, an expired deadline) must free its analysis
// slot within a second, also when it is one window with a large search
// budget, where cancellation between windows alone leaves it running for
// tens of seconds. Against an in-process server with one analysis slot: a
// second client's frame starts within a second of the first one's
// abandonment.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::FrameRequest;
using ::logstar::testing::Open;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using Clock = std::chrono::steady_clock;

class ServerCancelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.engine_threads = 2;
    options.max_concurrent_frames = 1;  // one slot: a frame holding it blocks everyone
    options.log_level = "warning";
    absl::StatusOr<std::unique_ptr<server::LogStarServer>> s =
        server::LogStarServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::LogStar::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                     grpc::InsecureChannelCredentials()));
  }

  // One 128² frame as a single window searched with the daemon's largest
  // budget: tens of seconds of work (the model's cost grows with the cube
  // of the evaluations).
  static v1::SessionSettings Heavy(const SynthFrame& f) {
    return SmallSettings(f, /*window=*/0, /*evals=*/500);
  }

  // Waits until a frame is being analysed; false after 30 s.
  bool Running() {
    const auto end = Clock::now() + std::chrono::seconds(30);
    while (server_->metrics().frames_running->Value() == 0) {
      if (Clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // A quick frame from another client, sent now: how long it waited for the
  // slot (its latency.queue_ms, from its arrival to its analysis' start).
  double SecondClientsWaitMs() {
    const SynthFrame f = Synth(128, 22);
    v1::AnalyzeFrameRequest request;
    *request.mutable_frame() = ToFrame(f, 1);
    *request.mutable_settings() = SmallSettings(f);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::FrameResult result;
    const grpc::Status s = stub_->AnalyzeFrame(&context, request, &result);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (s.ok()) std::printf("second client's frame waited %.1f ms\n", result.latency().queue_ms());
    return s.ok() ? result.latency().queue_ms() : 1e9;
  }

  std::unique_ptr<server::LogStarServer> server_;
  std::unique_ptr<v1::LogStar::Stub> stub_;
};

TEST_F(ServerCancelTest, AnAbandonedStreamFreesItsSlotWithinASecond) {
  const SynthFrame f = Synth(128, 21);
  const v1::SessionSettings settings = Heavy(f);
  grpc::ClientContext context;
  auto stream = stub_->Stream(&context);
  ASSERT_TRUE(stream->Write(Open("abandoned", &settings)));
  v1::StreamResponse r;
  ASSERT_TRUE(stream->Read(&r));
  ASSERT_TRUE(r.has_opened());
  ASSERT_TRUE(stream->Write(FrameRequest(ToFrame(f, 1))));
  ASSERT_TRUE(Running());
  // Into the search (its design and the first model fits take milliseconds).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(server_->metrics().frames_running->Value(), 1);
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(SecondClientsWaitMs(), 1000.0);
}

// A deadline reaches the frame's work the same way (gRPC cancels the call
// when it expires).
TEST_F(ServerCancelTest, AnExpiredDeadlineFreesTheSlotWithinASecond) {
  const SynthFrame f = Synth(128, 23);
  v1::AnalyzeFrameRequest request;
  *request.mutable_frame() = ToFrame(f, 1);
  *request.mutable_settings() = Heavy(f);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::FrameResult result;
  EXPECT_EQ(stub_->AnalyzeFrame(&context, request, &result).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(SecondClientsWaitMs(), 1000.0);
}

// The per-frame work budget: settings whose frames would cost more are
// refused at open, and by AnalyzeFrame before any work, naming the estimate
// and the budget (server/session_config.h FrameWork).
TEST_F(ServerCancelTest, SettingsOverTheWorkBudgetAreRefusedAtOpen) {
  const SynthFrame f = Synth(128, 24);
  v1::SessionSettings settings = SmallSettings(f, /*window=*/64, /*evals=*/400);
  settings.mutable_analysis()->set_stride(8);  // 400 × 4096² × 64 = 4.29e11
  const auto out = ::logstar::testing::RunStream(stub_.get(), Open("", &settings), {});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(out.status.error_message(),
              ::testing::HasSubstr("estimated 4.29e+11 evaluation-pixels"));
  EXPECT_THAT(out.status.error_message(), ::testing::HasSubstr("max_frame_work"));
  EXPECT_TRUE(out.responses.empty());

  v1::AnalyzeFrameRequest request;
  *request.mutable_frame() = ToFrame(f, 1);
  *request.mutable_settings() = settings;
  grpc::ClientContext context;
  v1::FrameResult result;
  const grpc::Status s = stub_->AnalyzeFrame(&context, request, &result);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("max_frame_work"));
}

}  // namespace
}  // namespace logstar
