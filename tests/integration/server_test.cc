// The daemon through real RPCs against an in-process server: streams,
// overload policies, bad frames, cancel, deadline, shutdown, concurrency,
// reconnects, the session RPCs, shared memory frames, limits and the bearer
// token. Results are
// checked against the generated frames' ground truth.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include <opencv2/imgproc.hpp>
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::FrameRequest;
using ::logstar::testing::HealthStatus;
using ::logstar::testing::HttpGet;
using ::logstar::testing::Open;
using ::logstar::testing::RunStream;
using ::logstar::testing::Score;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(server::ServerOptions options = {}) {
    options.listen_address = "127.0.0.1:0";
    options.engine_threads = 2;
    options.log_level = "warning";
    absl::StatusOr<std::unique_ptr<server::LogStarServer>> s =
        server::LogStarServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::LogStar::NewStub(channel_);
  }
  void SetUp() override { StartServer(); }

  // Frames that keep a worker busy for seconds unless cancelled: many
  // small windows, many evaluations each, cancel checked between windows.
  // A frame's work that outlasts the tests' deadlines: 64 px windows with
  // 300 evaluations each (the four seed windows of a warm-started frame
  // search their whole budget; 16 px windows of 60 evaluations, warm started,
  // finished within 0.5 s).
  v1::SessionSettings SlowSettings(const SynthFrame& f) {
    v1::SessionSettings s = SmallSettings(f, 64, 300);
    s.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
    return s;
  }

  // Polls until the server runs no analysis; false after `timeout`.
  bool Idle(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (server_->metrics().frames_running->Value() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::unique_ptr<server::LogStarServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LogStar::Stub> stub_;
};

TEST_F(ServerTest, StreamAnswersEveryFrameInOrderAndFindsTheAtoms) {
  std::vector<SynthFrame> truth;
  std::vector<v1::Frame> frames;
  for (int i = 0; i < 4; ++i) {
    truth.push_back(Synth(128, 10 + i));
    frames.push_back(ToFrame(truth.back(), 100 + i));
  }
  v1::SessionSettings settings = SmallSettings(truth[0]);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  const auto out = RunStream(stub_.get(), Open("normal", &settings), frames);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 5u);
  ASSERT_TRUE(out.responses[0].has_opened());
  EXPECT_EQ(out.responses[0].opened().session_id(), "normal");
  EXPECT_FALSE(out.responses[0].opened().resumed());
  for (int i = 0; i < 4; ++i) {
    const v1::StreamResponse& r = out.responses[i + 1];
    ASSERT_TRUE(r.has_result()) << r.DebugString();
    EXPECT_EQ(r.sequence(), 100u + i);
    EXPECT_EQ(r.result().sequence(), 100u + i);
    EXPECT_EQ(r.result().channel(), "HAADF");
    EXPECT_EQ(r.result().width(), 128u);
    EXPECT_EQ(r.result().windows_size(), 4);
    // Against the generator's atoms, not against the engine's own output.
    const Accuracy a = Score(truth[i], r.result());
    EXPECT_GT(a.f1, 0.85) << "frame " << i << ": precision " << a.precision << ", recall "
                          << a.recall;
    EXPECT_LT(a.rms_px, 0.5);
    const v1::LatencyBreakdown& l = r.result().latency();
    EXPECT_GE(l.queue_ms(), 0.0);
    EXPECT_GT(l.total_ms(), 0.0);
    EXPECT_GE(l.total_ms(), l.decode_ms() + l.normalize_ms() + l.log_ms());
    // The result's counters are the session's just after this frame.
    EXPECT_EQ(r.result().counters().frames_analysed(), static_cast<uint64_t>(i + 1));
  }
  // The first frame tunes every window; later ones use the cache.
  EXPECT_EQ(out.responses[1].result().cache_misses(), 4);
  EXPECT_EQ(out.responses[4].result().cache_misses(), 0);
  const v1::SessionCounters& c = out.responses[4].counters();
  EXPECT_EQ(c.frames_received(), 4u);
  EXPECT_EQ(c.frames_dropped() + c.frames_failed(), 0u);
}

// The amorphous stage through the daemon: regions, per-atom flags, steering
// and the cache, checked against the generator's amorphous mask.
TEST_F(ServerTest, AmorphousStageFindsTheTruthsRegionAndCachesItsParameters) {
  SynthOptions o;
  o.width = o.height = 256;
  o.noise = 0.1;
  o.amorphous_fraction = 0.25;
  o.seed = 5;
  const SynthFrame f = Synthesize(o).value();
  v1::SessionSettings settings = SmallSettings(f, 0, 16);
  settings.mutable_analysis()->mutable_amorphous()->set_enabled(true);
  settings.mutable_analysis()->mutable_amorphous()->set_evaluations(16);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  const auto out =
      RunStream(stub_.get(), Open("amorphous", &settings), {ToFrame(f, 1), ToFrame(f, 2)});
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 3u);
  for (int i = 1; i <= 2; ++i) {
    ASSERT_TRUE(out.responses[i].has_result()) << out.responses[i].DebugString();
    const v1::FrameResult& r = out.responses[i].result();
    ASSERT_TRUE(r.has_amorphous());
    ASSERT_EQ(r.amorphous().windows_size(), 1);
    EXPECT_EQ(r.amorphous().windows(0).cache_state(),
              i == 1 ? v1::CACHE_STATE_MISS : v1::CACHE_STATE_HIT);
    ASSERT_GT(r.amorphous_regions_size(), 0);
    // The regions' outlines, filled, against the truth mask.
    cv::Mat mask = cv::Mat::zeros(256, 256, CV_8U);
    for (const v1::AmorphousRegion& g : r.amorphous_regions()) {
      std::vector<cv::Point> poly;
      for (int k = 0; k < g.contour_x_size(); ++k) {
        poly.emplace_back(static_cast<int>(g.contour_x(k)), static_cast<int>(g.contour_y(k)));
      }
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{poly}, cv::Scalar(255));
      EXPECT_NEAR(g.area_angstrom2(), g.area_px2() * std::pow(f.prior.pixel_size_angstrom, 2),
                  1e-6 * g.area_angstrom2());
    }
    const double inter = cv::countNonZero(mask & (f.amorphous_mask != 0));
    const double uni = cv::countNonZero(mask | (f.amorphous_mask != 0));
    EXPECT_GE(inter / uni, 0.6) << "frame " << i;
    // Atoms flagged amorphous lie in the truth's amorphous area.
    int flagged = 0, inside = 0;
    for (const v1::Atom& a : r.atoms()) {
      if (!a.amorphous()) continue;
      ++flagged;
      const int x = std::clamp(static_cast<int>(std::lround(a.x())), 0, 255);
      const int y = std::clamp(static_cast<int>(std::lround(a.y())), 0, 255);
      inside += f.amorphous_mask.at<uint8_t>(y, x) != 0;
      EXPECT_GT(a.amorphous_posterior(), 0.0);
    }
    ASSERT_GT(flagged, 0);
    EXPECT_GE(static_cast<double>(inside) / flagged, 0.7);
    bool steered = false;
    for (const v1::RegionOfInterest& roi : r.regions_of_interest()) {
      steered |= roi.reason() == v1::RegionOfInterest::REASON_AMORPHOUS_REGION;
    }
    EXPECT_TRUE(steered);
    EXPECT_GT(r.latency().gmm_ms(), 0.0);
  }
  const v1::SessionCounters& c = out.responses[2].counters();
  EXPECT_EQ(c.amorphous_misses(), 1u);
  EXPECT_EQ(c.amorphous_hits(), 1u);
  grpc::ClientContext ctx;
  v1::GetSessionRequest get;
  get.set_session_id("amorphous");
  get.set_include_cache(true);
  v1::SessionInfo info;
  ASSERT_TRUE(stub_->GetSession(&ctx, get, &info).ok());
  ASSERT_EQ(info.cache().amorphous_windows_size(), 1);
  EXPECT_TRUE(info.cache().amorphous_windows(0).tuned());
  EXPECT_EQ(info.cache().amorphous_windows(0).pca_mean_size(),
            static_cast<int>(
                std::pow(info.cache().amorphous_windows(0).parameters().patch_size_px(), 2)));
}

TEST_F(ServerTest, BadFramesGetErrorRecordsAndEveryGoodFrameIsAnswered) {
  const SynthFrame f = Synth(128, 3);
  std::vector<v1::Frame> frames;
  frames.push_back(ToFrame(f, 1));
  v1::Frame shape = ToFrame(f, 2);
  shape.mutable_pixels()->set_width(127);
  frames.push_back(shape);
  frames.push_back(ToFrame(f, 3));
  v1::Frame nan = ToFrame(f, 4);
  const float bad = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan.mutable_pixels()->mutable_data()->data() + 4 * (17 * 128 + 5), &bad, 4);
  frames.push_back(nan);
  v1::Frame dtype = ToFrame(f, 5);
  dtype.mutable_pixels()->set_dtype(static_cast<v1::DType>(42));
  frames.push_back(dtype);
  frames.push_back(ToFrame(f, 6));
  v1::Frame huge = ToFrame(f, 7);
  huge.mutable_pixels()->set_width(1u << 20);  // over max_pixels: refused before decoding
  frames.push_back(huge);
  v1::Frame rows = ToFrame(f, 8);
  rows.set_valid_rows(129);
  frames.push_back(rows);
  frames.push_back(ToFrame(f, 9));

  v1::SessionSettings settings = SmallSettings(f);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  const auto out = RunStream(stub_.get(), Open("bad-frames", &settings), frames);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 10u);
  auto error = [&](int seq) { return out.responses[seq].error(); };
  for (int seq : {1, 3, 6, 9}) {
    ASSERT_TRUE(out.responses[seq].has_result()) << seq;
    EXPECT_EQ(out.responses[seq].sequence(), static_cast<uint64_t>(seq));
    EXPECT_GT(Score(f, out.responses[seq].result()).f1, 0.85);
  }
  EXPECT_EQ(error(2).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(error(2).message(), HasSubstr("frame.pixels.data"));
  EXPECT_EQ(error(4).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(error(4).message(), HasSubstr("pixel x=5 y=17 is NaN"));
  EXPECT_THAT(error(5).message(), HasSubstr("frame.pixels.dtype"));
  EXPECT_EQ(error(7).code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(error(8).message(), HasSubstr("frame.valid_rows"));
  EXPECT_EQ(out.responses[9].counters().frames_failed(), 5u);
  EXPECT_EQ(out.responses[9].counters().frames_analysed(), 4u);
}

// Frames whose pixels stay in a registered POSIX shared memory region are
// analysed as the same frames sent in the message; a region's problems
// (beyond its size, not registered, shrunk by the client) are errors of
// that frame alone, and the stream goes on.
TEST_F(ServerTest, SharedMemoryFramesAreAnalysedLikeFramesInTheMessage) {
  const std::vector<SynthFrame> truth = {Synth(128, 70), Synth(128, 71)};
  const uint64_t frame_bytes = 128 * 128 * sizeof(float);
  const uint64_t first = 4096;  // row 0 of truth[0]; truth[1] follows it
  const uint64_t region_bytes = first + 2 * frame_bytes;
  const std::string key = absl::StrCat("/logstar-server-test-", getpid());
  shm_unlink(key.c_str());
  const int fd = shm_open(key.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(region_bytes)), 0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(truth[i].image.isContinuous());
    ASSERT_EQ(pwrite(fd, truth[i].image.data, frame_bytes, first + i * frame_bytes),
              static_cast<ssize_t>(frame_bytes));
  }
  {
    v1::RegisterSharedMemoryRequest req;
    req.set_region("cam");
    req.set_key(key);
    req.set_byte_size(region_bytes);
    v1::SharedMemoryRegion region;
    grpc::ClientContext c;
    const grpc::Status s = stub_->RegisterSharedMemory(&c, req, &region);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(region.byte_size(), region_bytes);
  }
  {
    v1::ListSharedMemoryResponse list;
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->ListSharedMemory(&c, {}, &list).ok());
    ASSERT_EQ(list.regions_size(), 1);
    EXPECT_EQ(list.regions(0).region(), "cam");
    EXPECT_EQ(list.regions(0).key(), key);
  }
  auto shared = [](const SynthFrame& f, uint64_t sequence, const std::string& region,
                   uint64_t offset) {
    v1::Frame frame = ToFrame(f, sequence);
    frame.mutable_pixels()->mutable_shared_memory()->set_region(region);
    frame.mutable_pixels()->mutable_shared_memory()->set_offset(offset);
    return frame;  // setting the oneof dropped the bytes
  };
  ASSERT_FALSE(shared(truth[0], 0, "cam", 0).pixels().has_data());
  std::vector<v1::Frame> frames = {
      ToFrame(truth[0], 1),                                 // tunes the windows
      shared(truth[0], 2, "cam", first),                    //
      ToFrame(truth[0], 3),                                 // the same frame in the message
      shared(truth[1], 4, "cam", first + frame_bytes),      //
      shared(truth[1], 5, "cam", first + frame_bytes + 4),  // runs 4 bytes past the region
      shared(truth[1], 6, "nope", 0),                       // not registered
      ToFrame(truth[1], 7)};
  v1::SessionSettings settings = SmallSettings(truth[0]);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  auto out = RunStream(stub_.get(), Open("shm", &settings), frames);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 8u);
  for (int seq : {1, 2, 3, 4, 7}) {
    ASSERT_TRUE(out.responses[seq].has_result()) << seq << ": " << out.responses[seq].DebugString();
    EXPECT_GT(Score(truth[seq < 4 ? 0 : 1], out.responses[seq].result()).f1, 0.85) << seq;
  }
  const v1::FrameResult& via_shm = out.responses[2].result();
  const v1::FrameResult& via_message = out.responses[3].result();
  ASSERT_EQ(via_shm.atoms_size(), via_message.atoms_size());
  for (int i = 0; i < via_shm.atoms_size(); ++i) {
    EXPECT_EQ(via_shm.atoms(i).x(), via_message.atoms(i).x());
    EXPECT_EQ(via_shm.atoms(i).y(), via_message.atoms(i).y());
  }
  EXPECT_EQ(out.responses[5].error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.responses[5].error().message(),
              HasSubstr("frame.pixels.shared_memory: bytes [69636, 135172) of the frame are "
                        "beyond the 135168 bytes"));
  EXPECT_THAT(out.responses[6].error().message(),
              HasSubstr("frame.pixels.shared_memory.region \"nope\" is not registered"));

  // The client shrinks its object: that frame fails, the next is answered.
  ASSERT_EQ(ftruncate(fd, 100), 0);
  close(fd);
  out = RunStream(stub_.get(), Open("shm", nullptr),
                  {shared(truth[0], 8, "cam", first), ToFrame(truth[0], 9)});
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 3u);
  EXPECT_THAT(out.responses[1].error().message(), HasSubstr("the object was shrunk"));
  EXPECT_TRUE(out.responses[2].has_result());
  shm_unlink(key.c_str());

  v1::UnregisterSharedMemoryRequest unregister;
  unregister.set_region("cam");
  v1::UnregisterSharedMemoryResponse unregistered;
  {
    grpc::ClientContext c;
    EXPECT_TRUE(stub_->UnregisterSharedMemory(&c, unregister, &unregistered).ok());
  }
  {
    grpc::ClientContext c;
    EXPECT_EQ(stub_->UnregisterSharedMemory(&c, unregister, &unregistered).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  v1::RegisterSharedMemoryRequest missing;
  missing.set_region("cam");
  missing.set_key(key);  // unlinked above
  missing.set_byte_size(1);
  v1::SharedMemoryRegion region;
  grpc::ClientContext c;
  EXPECT_EQ(stub_->RegisterSharedMemory(&c, missing, &region).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, LatestWinsDropsTheOldestQueuedFrameAndAnswersTheNewest) {
  const SynthFrame f = Synth(128, 4);
  v1::SessionSettings settings = SmallSettings(f, 64, 30);  // the first frame tunes for a while
  settings.set_queue_capacity(1);
  std::vector<v1::Frame> frames;
  for (int i = 1; i <= 6; ++i) frames.push_back(ToFrame(f, i));
  const auto out = RunStream(stub_.get(), Open("", &settings), frames);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 7u);
  int dropped = 0;
  for (int i = 1; i <= 6; ++i) {
    const v1::StreamResponse& r = out.responses[i];
    EXPECT_EQ(r.sequence(), static_cast<uint64_t>(i));  // in order, none missing
    ASSERT_TRUE(r.has_result() || r.has_dropped()) << r.DebugString();
    if (r.has_dropped()) {
      ++dropped;
      EXPECT_EQ(r.dropped().reason(), v1::FrameDropped::REASON_SUPERSEDED);
    }
  }
  EXPECT_TRUE(out.responses[1].has_result());  // started before the others came
  EXPECT_TRUE(out.responses[6].has_result());  // the newest always wins
  EXPECT_GE(dropped, 1);
  EXPECT_EQ(out.responses[6].counters().frames_dropped(), static_cast<uint64_t>(dropped));
}

TEST_F(ServerTest, RejectRefusesFramesWhileTheQueueIsFull) {
  const SynthFrame f = Synth(128, 4);
  v1::SessionSettings settings = SmallSettings(f, 64, 30);
  settings.set_queue_capacity(1);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_REJECT);
  std::vector<v1::Frame> frames;
  for (int i = 1; i <= 6; ++i) frames.push_back(ToFrame(f, i));
  const auto out = RunStream(stub_.get(), Open("", &settings), frames);
  ASSERT_TRUE(out.status.ok());
  ASSERT_EQ(out.responses.size(), 7u);
  int rejected = 0;
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(out.responses[i].sequence(), static_cast<uint64_t>(i));
    if (out.responses[i].has_dropped()) {
      ++rejected;
      EXPECT_EQ(out.responses[i].dropped().reason(), v1::FrameDropped::REASON_QUEUE_FULL);
    }
  }
  EXPECT_TRUE(out.responses[1].has_result());
  EXPECT_TRUE(out.responses[2].has_result());  // it waited in the queue
  EXPECT_GE(rejected, 1);
}

TEST_F(ServerTest, CancelMidStreamStopsTheAnalysisAndTheServerGoesOn) {
  const SynthFrame f = Synth(256, 5);
  const v1::SessionSettings settings = SlowSettings(f);
  grpc::ClientContext context;
  auto stream = stub_->Stream(&context);
  ASSERT_TRUE(stream->Write(Open("cancel-me", &settings)));
  v1::StreamResponse r;
  ASSERT_TRUE(stream->Read(&r));
  ASSERT_TRUE(r.has_opened());
  ASSERT_TRUE(stream->Write(FrameRequest(ToFrame(f, 1))));
  ASSERT_TRUE(stream->Write(FrameRequest(ToFrame(f, 2))));
  // Wait until the analysis runs, then give up on it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server_->metrics().frames_running->Value() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(server_->metrics().frames_running->Value(), 1);
  context.TryCancel();
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  // 256 windows × 60 evaluations would take many seconds; cancelled, the
  // windows already running finish and the rest are skipped.
  EXPECT_TRUE(Idle(std::chrono::seconds(20)));
  // Nothing of the abandoned frame reached the cache, and the session and
  // server serve the next stream.
  v1::GetSessionRequest get;
  get.set_session_id("cancel-me");
  get.set_include_cache(true);
  v1::SessionInfo info;
  grpc::ClientContext get_context;
  ASSERT_TRUE(stub_->GetSession(&get_context, get, &info).ok());
  EXPECT_EQ(info.counters().frames_analysed(), 0u);
  // (The second frame may still have been on the wire when the stream ended.)
  EXPECT_GE(info.counters().frames_received(), 1u);
  const SynthFrame small = Synth(128, 6);
  const v1::SessionSettings quick = SmallSettings(small);
  const auto next = RunStream(stub_.get(), Open("cancel-me", &quick), {ToFrame(small, 3)});
  ASSERT_TRUE(next.status.ok());
  ASSERT_EQ(next.responses.size(), 2u);
  EXPECT_TRUE(next.responses[0].opened().resumed());
  EXPECT_TRUE(next.responses[1].has_result());
}

TEST_F(ServerTest, DeadlineCancelsTheFramesWork) {
  const SynthFrame f = Synth(256, 7);
  v1::AnalyzeFrameRequest request;
  *request.mutable_frame() = ToFrame(f, 1);
  *request.mutable_settings() = SlowSettings(f);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  v1::FrameResult result;
  const grpc::Status status = stub_->AnalyzeFrame(&context, request, &result);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(Idle(std::chrono::seconds(20)));

  // The same for a stream with a deadline.
  grpc::ClientContext stream_context;
  stream_context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  const auto out =
      RunStream(stub_.get(), Open("", &request.settings()), {request.frame()}, &stream_context);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(Idle(std::chrono::seconds(20)));
}

TEST_F(ServerTest, ShutdownAnswersReceivedFramesThenEndsTheStream) {
  const SynthFrame f = Synth(128, 8);
  v1::SessionSettings settings = SmallSettings(f, 64, 20);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  settings.set_queue_capacity(4);
  grpc::ClientContext context;
  auto stream = stub_->Stream(&context);
  ASSERT_TRUE(stream->Write(Open("shutdown", &settings)));
  v1::StreamResponse r;
  ASSERT_TRUE(stream->Read(&r));
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(stream->Write(FrameRequest(ToFrame(f, i))));
  // All three are received once the first is being analysed and the others queued.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server_->metrics().frames_received->Value() < 3 &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(server_->metrics().frames_received->Value(), 3);
  std::thread stopper([&] { server_->Shutdown(); });
  std::vector<v1::StreamResponse> answers;
  while (stream->Read(&r)) answers.push_back(r);
  const grpc::Status status = stream->Finish();
  stopper.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  ASSERT_EQ(answers.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(answers[i].has_result()) << answers[i].DebugString();
    EXPECT_GT(Score(f, answers[i].result()).f1, 0.85);
  }
  // No new streams after shutdown.
  const auto late = RunStream(stub_.get(), Open("late", &settings), {});
  EXPECT_FALSE(late.status.ok());
}

TEST_F(ServerTest, SixteenConcurrentStreams) {
  constexpr int kStreams = 16;
  std::vector<SynthFrame> truth;
  for (int i = 0; i < 3; ++i) truth.push_back(Synth(128, 20 + i));
  std::vector<v1::Frame> frames;
  for (int i = 0; i < 3; ++i) frames.push_back(ToFrame(truth[i], i + 1));
  std::vector<testing::StreamOutcome> outcomes(kStreams);
  std::vector<std::thread> threads;
  for (int s = 0; s < kStreams; ++s) {
    threads.emplace_back([&, s] {
      v1::SessionSettings settings = SmallSettings(truth[0], 64, 6);
      settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
      outcomes[s] = RunStream(stub_.get(), Open(absl::StrCat("concurrent-", s), &settings), frames);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int s = 0; s < kStreams; ++s) {
    ASSERT_TRUE(outcomes[s].status.ok()) << s << ": " << outcomes[s].status.error_message();
    ASSERT_EQ(outcomes[s].responses.size(), 4u) << s;
    EXPECT_EQ(outcomes[s].responses[0].opened().session_id(), absl::StrCat("concurrent-", s));
    for (int i = 0; i < 3; ++i) {
      const v1::StreamResponse& r = outcomes[s].responses[i + 1];
      ASSERT_TRUE(r.has_result());
      EXPECT_EQ(r.result().session_id(), absl::StrCat("concurrent-", s));
      EXPECT_EQ(r.sequence(), static_cast<uint64_t>(i + 1));
      EXPECT_GT(Score(truth[i], r.result()).f1, 0.8);
    }
  }
  EXPECT_EQ(server_->sessions().size(), kStreams);
}

TEST_F(ServerTest, ReconnectResumesTheSessionAndItsCache) {
  const SynthFrame a = Synth(128, 30), b = Synth(128, 31);
  const v1::SessionSettings settings = SmallSettings(a);
  const auto first = RunStream(stub_.get(), Open("resume", &settings), {ToFrame(a, 1)});
  ASSERT_TRUE(first.status.ok());
  ASSERT_EQ(first.responses.size(), 2u);
  EXPECT_EQ(first.responses[1].result().cache_misses(), 4);
  // A new connection, same id, no settings: the session's own are kept.
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::LogStar::NewStub(channel);
  const auto second = RunStream(stub.get(), Open("resume", nullptr), {ToFrame(b, 2)});
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  ASSERT_EQ(second.responses.size(), 2u);
  EXPECT_TRUE(second.responses[0].opened().resumed());
  EXPECT_EQ(second.responses[0].opened().settings().analysis().window(), 64);
  const v1::FrameResult& r = second.responses[1].result();
  EXPECT_EQ(r.cache_misses(), 0);
  EXPECT_EQ(r.cache_hits() + r.cache_retunes(), 4);
  EXPECT_GT(Score(b, r).f1, 0.85);
  EXPECT_EQ(second.responses[1].counters().frames_received(), 2u);
  // An unknown id without settings cannot be opened.
  const auto unknown = RunStream(stub.get(), Open("nobody", nullptr), {});
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, SessionRpcsShowTheCacheTakeTheOperatorsChoiceAndReset) {
  const SynthFrame f = Synth(128, 40);
  v1::AnalyzeFrameRequest request;
  *request.mutable_frame() = ToFrame(f, 1);
  request.mutable_frame()->set_session_id("unary");
  *request.mutable_settings() = SmallSettings(f, 64, 12);
  v1::FrameResult result;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->AnalyzeFrame(&c, request, &result).ok());
  }
  EXPECT_GT(Score(f, result).f1, 0.85);
  v1::GetSessionRequest get;
  get.set_session_id("unary");
  get.set_include_cache(true);
  v1::SessionInfo info;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->GetSession(&c, get, &info).ok());
  }
  ASSERT_EQ(info.cache().windows_size(), 4);
  EXPECT_EQ(info.cache().width(), 128u);
  for (int w = 0; w < 4; ++w) {
    const v1::CachedWindow& c = info.cache().windows(w);
    EXPECT_TRUE(c.tuned());
    EXPECT_EQ(c.front_size(), result.windows(w).front_size());
    EXPECT_EQ(c.parameters().threshold(), result.windows(w).parameters().threshold());
  }
  // The operator picks the front's first point (best QC) for window 0.
  v1::UpdateSessionRequest update;
  update.set_session_id("unary");
  update.add_choices()->set_window(0);
  v1::SessionInfo updated;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->UpdateSession(&c, update, &updated).ok());
  }
  const v1::CachedWindow& w0 = updated.cache().windows(0);
  EXPECT_EQ(w0.chosen(), 0);
  EXPECT_EQ(w0.parameters().threshold(), w0.front(0).parameters().threshold());
  // An index off the front names the field.
  update.mutable_choices(0)->set_front_index(1000);
  {
    grpc::ClientContext c;
    const grpc::Status s = stub_->UpdateSession(&c, update, &updated);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("front_index"));
  }
  // A new prior through UpdateSession empties the cache; an invalid one is refused by name.
  v1::UpdateSessionRequest bad;
  bad.set_session_id("unary");
  *bad.mutable_settings() = request.settings();
  bad.mutable_settings()->mutable_prior()->set_nearest_neighbor_angstrom(-1);
  {
    grpc::ClientContext c;
    const grpc::Status s = stub_->UpdateSession(&c, bad, &updated);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("settings.prior.nearest_neighbor_angstrom"));
  }
  v1::ResetSessionRequest reset;
  reset.set_session_id("unary");
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->ResetSession(&c, reset, &updated).ok());
  }
  for (const v1::CachedWindow& c : updated.cache().windows()) EXPECT_FALSE(c.tuned());
  reset.set_delete_session(true);
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->ResetSession(&c, reset, &updated).ok());
  }
  {
    grpc::ClientContext c;
    EXPECT_EQ(stub_->GetSession(&c, get, &info).error_code(), grpc::StatusCode::NOT_FOUND);
  }
}

TEST_F(ServerTest, InvalidSettingsAndOversizedMessages) {
  const SynthFrame f = Synth(128, 50);
  v1::SessionSettings settings = SmallSettings(f);
  settings.mutable_prior()->set_nearest_neighbor_angstrom(0);
  auto out = RunStream(stub_.get(), Open("", &settings), {});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(), HasSubstr("settings.prior.nearest_neighbor_angstrom"));
  settings = SmallSettings(f);
  settings.mutable_analysis()->set_window(8);
  out = RunStream(stub_.get(), Open("", &settings), {});
  EXPECT_THAT(out.status.error_message(), HasSubstr("settings.analysis.window"));

  // Over max_message_bytes gRPC itself refuses the message.
  settings = SmallSettings(f);
  server_->Shutdown();
  server::ServerOptions small;
  small.max_message_bytes = 32 << 10;
  StartServer(small);
  out = RunStream(stub_.get(), Open("", &settings), {ToFrame(f, 1)});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// A pixel size 10× too large: every result of the stream carries a warning
// on pixel_size_angstrom that names the generator's pixel size, and the
// daemon goes on serving (a session with the true prior gets none).
TEST_F(ServerTest, WrongPixelSizeWarnsOnEveryResultAndTheDaemonKeepsServing) {
  SynthOptions o;
  o.width = o.height = 256;
  o.noise = 0.05;
  o.seed = 21;
  o.pixel_size_angstrom = 0.1;  // so that 10× still samples the columns
  const SynthFrame f = *Synthesize(o);
  v1::SessionSettings wrong = SmallSettings(f);
  wrong.mutable_prior()->set_pixel_size_angstrom(10 * o.pixel_size_angstrom);
  wrong.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  auto out = RunStream(stub_.get(), Open("wrong-pixel", &wrong), {ToFrame(f, 1), ToFrame(f, 2)});
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 3u);
  for (int i = 1; i <= 2; ++i) {
    ASSERT_TRUE(out.responses[i].has_result()) << out.responses[i].ShortDebugString();
    const v1::FrameResult& r = out.responses[i].result();
    ASSERT_EQ(r.warnings_size(), 1) << r.ShortDebugString();
    EXPECT_EQ(r.warnings(0).field(), "pixel_size_angstrom");
    EXPECT_EQ(r.warnings(0).given(), 10 * o.pixel_size_angstrom);
    EXPECT_NEAR(r.warnings(0).measured(), o.pixel_size_angstrom, 0.05 * o.pixel_size_angstrom);
    EXPECT_THAT(r.warnings(0).message(), HasSubstr("pixel_size_angstrom"));
    EXPECT_FALSE(r.prior_used().derived());
    EXPECT_EQ(r.prior_used().prior().pixel_size_angstrom(), 10 * o.pixel_size_angstrom);
    EXPECT_TRUE(r.lattice().found());
  }
  v1::SessionSettings right = SmallSettings(f);
  right.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  out = RunStream(stub_.get(), Open("right-pixel", &right), {ToFrame(f, 1)});
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 2u);
  ASSERT_TRUE(out.responses[1].has_result());
  EXPECT_EQ(out.responses[1].result().warnings_size(), 0);
  EXPECT_GT(Score(f, out.responses[1].result()).f1, 0.85);
}

// prior auto through real RPCs: a noise frame gets an error record naming
// settings.prior and the stream goes on; the next frame derives the prior
// (checked against the generator's spacing and density) and finds the atoms;
// the third uses the cache; GetSession shows the prior.
TEST_F(ServerTest, AutoPriorIsDerivedFromTheFirstFrameWithALattice) {
  const SynthFrame f = Synth(256, 31);
  const SynthFrame g = Synth(256, 32);
  v1::SessionSettings settings = SmallSettings(f);
  settings.clear_prior();
  settings.mutable_prior()->set_auto_(true);  // the frames give the pixel size
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  cv::Mat noise(256, 256, CV_32F);
  cv::randn(noise, 0.0, 1.0);
  SynthFrame noisy = f;
  noisy.image = noise;
  std::vector<v1::Frame> frames = {ToFrame(noisy, 1), ToFrame(f, 2), ToFrame(g, 3)};
  for (v1::Frame& frame : frames) {
    frame.set_pixel_size_x_angstrom(f.prior.pixel_size_angstrom);
    frame.set_pixel_size_y_angstrom(f.prior.pixel_size_angstrom);
  }
  const auto out = RunStream(stub_.get(), Open("auto", &settings), frames);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 4u);
  ASSERT_TRUE(out.responses[1].has_error()) << out.responses[1].ShortDebugString();
  EXPECT_EQ(out.responses[1].error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(out.responses[1].error().message(), HasSubstr("settings.prior"));
  EXPECT_THAT(out.responses[1].error().message(), HasSubstr("no lattice"));

  ASSERT_TRUE(out.responses[2].has_result()) << out.responses[2].ShortDebugString();
  const v1::FrameResult& r = out.responses[2].result();
  EXPECT_TRUE(r.prior_used().derived());
  EXPECT_FALSE(r.prior_used().pixel_units());
  const v1::PhysicsPrior& derived = r.prior_used().prior();
  EXPECT_EQ(derived.pixel_size_angstrom(), f.prior.pixel_size_angstrom);
  EXPECT_NEAR(derived.nearest_neighbor_angstrom() / f.prior.nearest_neighbor_angstrom, 1.0, 0.02);
  EXPECT_NEAR(derived.column_density_per_nm2() / f.prior.ColumnDensityPerNm2(), 1.0, 0.10);
  EXPECT_EQ(r.warnings_size(), 0);
  EXPECT_GT(Score(f, r).f1, 0.85);

  ASSERT_TRUE(out.responses[3].has_result());
  const v1::FrameResult& next = out.responses[3].result();
  EXPECT_EQ(next.prior_used().prior().nearest_neighbor_angstrom(),
            derived.nearest_neighbor_angstrom());
  EXPECT_EQ(next.cache_misses(), 0);
  EXPECT_GT(Score(g, next).f1, 0.85);
  EXPECT_EQ(next.counters().frames_failed(), 1u);

  v1::GetSessionRequest get;
  get.set_session_id("auto");
  v1::SessionInfo info;
  grpc::ClientContext c;
  ASSERT_TRUE(stub_->GetSession(&c, get, &info).ok());
  EXPECT_TRUE(info.prior_used().derived());
  EXPECT_TRUE(info.settings().prior().auto_());
}

// A sublattice the prior does not describe: the open fails naming the field.
TEST_F(ServerTest, UnknownSublatticeIsRefusedNamingTheField) {
  const SynthFrame f = Synth(128, 50);
  v1::SessionSettings settings = SmallSettings(f);
  settings.mutable_analysis()->set_sublattice("Sr");
  const auto out = RunStream(stub_.get(), Open("", &settings), {ToFrame(f, 1)});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(), HasSubstr("settings.analysis.sublattice"));
  EXPECT_THAT(out.status.error_message(), HasSubstr("Sr"));
  EXPECT_EQ(HealthStatus(channel_.get(), ""), 1);
}

TEST_F(ServerTest, HealthServesUntilShutdown) {
  EXPECT_EQ(HealthStatus(channel_.get(), ""), 1);
  EXPECT_EQ(HealthStatus(channel_.get(), "logstar.v1.LogStar"), 1);
}

TEST_F(ServerTest, BearerTokenIsRequiredOnEveryRpc) {
  server_->Shutdown();
  const std::string path = ::testing::TempDir() + "/token";
  std::ofstream(path) << "s3cret\n";
  server::ServerOptions options;
  options.auth_token_file = path;
  StartServer(options);
  const SynthFrame f = Synth(128, 60);
  const v1::SessionSettings settings = SmallSettings(f);
  auto out = RunStream(stub_.get(), Open("", &settings), {ToFrame(f, 1)});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  v1::GetSessionRequest get;
  get.set_session_id("x");
  v1::SessionInfo info;
  {
    grpc::ClientContext c;
    EXPECT_EQ(stub_->GetSession(&c, get, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext c;
    c.AddMetadata("authorization", "Bearer wrong");
    EXPECT_EQ(stub_->GetSession(&c, get, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext c;
    v1::ListSharedMemoryResponse list;
    EXPECT_EQ(stub_->ListSharedMemory(&c, {}, &list).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer s3cret");
  out = RunStream(stub_.get(), Open("", &settings), {ToFrame(f, 1)}, &c);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_TRUE(out.responses.back().has_result());
}

TEST_F(ServerTest, ListSessionsShowsEverySessionsCountersAndNeedsTheToken) {
  server_->Shutdown();
  const std::string path = ::testing::TempDir() + "/list_token";
  std::ofstream(path) << "list-s3cret\n";
  server::ServerOptions options;
  options.auth_token_file = path;
  StartServer(options);
  auto authorized = [](grpc::ClientContext* c) {
    c->AddMetadata("authorization", "Bearer list-s3cret");
  };
  auto list = [&](bool include_settings, v1::ListSessionsResponse* out) {
    v1::ListSessionsRequest request;
    request.set_include_settings(include_settings);
    grpc::ClientContext c;
    authorized(&c);
    return stub_->ListSessions(&c, request, out);
  };

  // What was sent is the truth: "list-b" gets two good frames (128² in 64 px
  // windows: 4 windows, tuned on the first frame, reused on the second);
  // "list-a" one good frame and one whose pixels are truncated.
  const SynthFrame f = Synth(128, 70), g = Synth(128, 71);
  const v1::SessionSettings settings = SmallSettings(f);
  v1::Frame truncated = ToFrame(g, 2);
  truncated.mutable_pixels()->mutable_data()->resize(100);
  {
    grpc::ClientContext c;
    authorized(&c);
    const auto b =
        RunStream(stub_.get(), Open("list-b", &settings), {ToFrame(f, 1), ToFrame(g, 2)}, &c);
    ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  }
  {
    grpc::ClientContext c;
    authorized(&c);
    const auto a =
        RunStream(stub_.get(), Open("list-a", &settings), {ToFrame(f, 1), truncated}, &c);
    ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  }

  // A stream left open on "list-a": the listing counts it as attached.
  grpc::ClientContext open_context;
  authorized(&open_context);
  auto open_stream = stub_->Stream(&open_context);
  ASSERT_TRUE(open_stream->Write(Open("list-a", nullptr)));
  v1::StreamResponse opened;
  ASSERT_TRUE(open_stream->Read(&opened));
  ASSERT_TRUE(opened.has_opened());

  v1::ListSessionsResponse response;
  const absl::Time before = absl::Now();
  grpc::Status status = list(false, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.sessions_size(), 2);
  const v1::SessionInfo& a = response.sessions(0);  // in id order
  const v1::SessionInfo& b = response.sessions(1);
  EXPECT_EQ(a.session_id(), "list-a");
  EXPECT_EQ(b.session_id(), "list-b");
  EXPECT_EQ(a.counters().frames_received(), 2u);
  EXPECT_EQ(a.counters().frames_analysed(), 1u);
  EXPECT_EQ(a.counters().frames_failed(), 1u);
  EXPECT_EQ(a.counters().cache_misses(), 4u);
  EXPECT_EQ(b.counters().frames_received(), 2u);
  EXPECT_EQ(b.counters().frames_analysed(), 2u);
  EXPECT_EQ(b.counters().frames_failed(), 0u);
  EXPECT_EQ(b.counters().frames_dropped(), 0u);
  EXPECT_EQ(b.counters().cache_misses(), 4u);
  EXPECT_EQ(b.counters().cache_hits() + b.counters().cache_retunes(), 4u);
  EXPECT_EQ(a.attached_streams(), 1);
  EXPECT_EQ(b.attached_streams(), 0);
  for (const v1::SessionInfo& s : response.sessions()) {
    SCOPED_TRACE(s.session_id());
    EXPECT_FALSE(s.has_cache());
    EXPECT_FALSE(s.has_settings());  // not asked for
    EXPECT_LE(s.created().seconds(), s.last_active().seconds());
    EXPECT_LE(s.last_active().seconds(), absl::ToUnixSeconds(before));
    EXPECT_GT(s.idle_timeout_s(), 0.0);
  }
  ASSERT_TRUE(open_stream->WritesDone());
  ASSERT_TRUE(open_stream->Finish().ok());

  response.Clear();
  status = list(true, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.sessions_size(), 2);
  EXPECT_EQ(response.sessions(0).settings().analysis().window(), 64);
  EXPECT_EQ(response.sessions(0).attached_streams(), 0);

  // Refused without the token and with a wrong one, as every LogStar RPC.
  for (const char* token : {"", "wrong"}) {
    SCOPED_TRACE(token);
    grpc::ClientContext c;
    if (*token != '\0') c.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    v1::ListSessionsResponse refused;
    EXPECT_EQ(stub_->ListSessions(&c, v1::ListSessionsRequest(), &refused).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(refused.sessions_size(), 0);
  }

  // A deleted session is no longer listed.
  {
    grpc::ClientContext c;
    authorized(&c);
    v1::ResetSessionRequest reset;
    reset.set_session_id("list-b");
    reset.set_delete_session(true);
    v1::SessionInfo info;
    ASSERT_TRUE(stub_->ResetSession(&c, reset, &info).ok());
  }
  response.Clear();
  status = list(false, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.sessions_size(), 1);
  EXPECT_EQ(response.sessions(0).session_id(), "list-a");
}

// GET /metrics over a plain socket (the endpoint speaks HTTP/1.1).
TEST_F(ServerTest, PrometheusEndpointCountsFramesAndStages) {
  server_->Shutdown();
  server::ServerOptions options;
  options.metrics_address = "127.0.0.1:0";
  StartServer(options);
  ASSERT_GT(server_->metrics().port(), 0);
  const SynthFrame f = Synth(128, 80);
  v1::SessionSettings settings = SmallSettings(f);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  v1::Frame bad = ToFrame(f, 2);
  bad.mutable_pixels()->set_height(3);
  ASSERT_TRUE(RunStream(stub_.get(), Open("m", &settings), {ToFrame(f, 1), bad, ToFrame(f, 3)})
                  .status.ok());
  const std::string text = HttpGet(server_->metrics().port(), "/metrics");
  EXPECT_THAT(text, HasSubstr("logstar_frames_received_total 3"));
  EXPECT_THAT(text, HasSubstr("logstar_frames_analysed_total 2"));
  EXPECT_THAT(text, HasSubstr("logstar_frames_failed_total 1"));
  EXPECT_THAT(text, HasSubstr("logstar_cache_misses_total 4"));
  EXPECT_THAT(text, HasSubstr("logstar_queue_depth 0"));
  EXPECT_THAT(text, HasSubstr("logstar_stage_latency_ms_count{stage=\"log\"} 2"));
  EXPECT_THAT(text, HasSubstr("logstar_tunings_running 0"));
}

// What a client that lost the daemon relies on to resume (logstar replay
// --reconnect-s re-sends only unanswered frames): once a tuning frame's
// answer arrives, its cache is already on disk.
TEST_F(ServerTest, TunedFrameIsSavedBeforeItsAnswer) {
  server_->Shutdown();
  const std::string state = ::testing::TempDir() + "/server_test_saved_" + std::to_string(getpid());
  std::filesystem::remove_all(state);
  server::ServerOptions options;
  options.state_dir = state;
  StartServer(options);
  const SynthFrame a = Synth(128, 80);
  v1::SessionSettings settings = SmallSettings(a);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  grpc::ClientContext context;
  auto stream = stub_->Stream(&context);
  ASSERT_TRUE(stream->Write(Open("saved", &settings)));
  v1::StreamResponse r;
  ASSERT_TRUE(stream->Read(&r));
  ASSERT_TRUE(stream->Write(FrameRequest(ToFrame(a, 1))));
  ASSERT_TRUE(stream->Read(&r));
  ASSERT_TRUE(r.has_result());
  EXPECT_EQ(r.result().cache_misses(), 4);
  // Read at once, before anything else can have saved it.
  std::ifstream in(state + "/saved.session.pb", std::ios::binary);
  v1::SessionState saved;
  ASSERT_TRUE(in && saved.ParseFromIstream(&in));
  int tuned = 0;
  for (const v1::CachedWindow& w : saved.cache().windows()) tuned += w.tuned();
  EXPECT_EQ(tuned, 4);
  EXPECT_EQ(saved.counters().frames_analysed(), 1u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  std::filesystem::remove_all(state);
}

TEST_F(ServerTest, IdleSessionsExpire) {
  server_->Shutdown();
  server::ServerOptions options;
  // Long enough that a slow (sanitizer) build still sees the session
  // right after its stream, which detaches it as the stream ends.
  options.session_idle_timeout_s = 1.0;
  StartServer(options);
  const SynthFrame f = Synth(128, 70);
  const v1::SessionSettings settings = SmallSettings(f);
  ASSERT_TRUE(RunStream(stub_.get(), Open("short-lived", &settings), {}).status.ok());
  EXPECT_EQ(server_->sessions().size(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  EXPECT_EQ(server_->sessions().size(), 0);
}

}  // namespace
}  // namespace logstar
