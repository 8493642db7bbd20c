// Compressed pixels through real RPCs (issue 21, item 3): a stream that
// asks for zstd gets it from an in-process logstard and its frames give the
// very atoms the same frames give uncompressed; corrupt, oversized and
// bomb-like payloads get error records naming the field while the stream
// goes on; an unknown codec at open is INVALID_ARGUMENT naming
// open.compression; and against a daemon that predates compression (a
// stand-in that never sets SessionInfo.compression) the client sends the
// bytes as they are.
#include <zstd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "clients/cpp/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/wire/compression.h"
#include "proto/wire/pixels.h"
#include "tests/clients/client_harness.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::Address;
using ::logstar::testing::ConnectOrDie;
using ::logstar::testing::FrameRequest;
using ::logstar::testing::Open;
using ::logstar::testing::RunStream;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::StartServer;
using ::logstar::testing::Synth;
using ::testing::HasSubstr;

// A generated frame as a detector's uint16 counts: 0 to 300 over the
// frame's range, rounded (deterministic, so both paths see the same bytes).
v1::Frame CountsFrame(const SynthFrame& f, uint64_t sequence) {
  double lo = 0, hi = 0;
  cv::minMaxLoc(f.image, &lo, &hi);
  cv::Mat counts;
  f.image.convertTo(counts, CV_16U, 300.0 / (hi - lo), -300.0 * lo / (hi - lo));
  v1::Frame frame;
  frame.set_sequence(sequence);
  *frame.mutable_pixels() = *wire::ImageToPixels(counts);
  return frame;
}

// A stub of its own, for requests the client library would not send.
std::unique_ptr<v1::LogStar::Stub> RawStub(const server::LogStarServer& server) {
  return v1::LogStar::NewStub(
      grpc::CreateChannel(Address(server), grpc::InsecureChannelCredentials()));
}

std::vector<StreamAnswer> RunFrames(Client& client, const v1::SessionSettings& settings,
                                    const std::vector<v1::Frame>& frames, v1::PixelCodec* used) {
  auto stream = client.OpenStream({.settings = settings, .max_in_flight = 2});
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (!stream.ok()) return {};
  *used = (*stream)->compression();
  std::vector<StreamAnswer> answers;
  std::thread reader([&] {
    while (auto a = (*stream)->Read()) answers.push_back(*std::move(a));
  });
  for (const v1::Frame& f : frames) EXPECT_TRUE((*stream)->Push(f).ok());
  EXPECT_TRUE((*stream)->Finish().ok());
  reader.join();
  return answers;
}

TEST(CompressionClientTest, CompressedFramesGiveTheAtomsOfUncompressedOnes) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  std::vector<SynthFrame> synth;
  std::vector<v1::Frame> frames;
  for (int i = 0; i < 3; ++i) {
    synth.push_back(Synth(128, 300 + i));
    frames.push_back(CountsFrame(synth.back(), i + 1));
  }
  const v1::SessionSettings settings = SmallSettings(synth[0]);
  auto plain = ConnectOrDie({.address = Address(*server)});
  auto zstd = ConnectOrDie({.address = Address(*server), .compression = v1::PIXEL_CODEC_ZSTD});
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(zstd, nullptr);
  v1::PixelCodec plain_codec, zstd_codec;
  const std::vector<StreamAnswer> expected = RunFrames(*plain, settings, frames, &plain_codec);
  const std::vector<StreamAnswer> got = RunFrames(*zstd, settings, frames, &zstd_codec);
  EXPECT_EQ(plain_codec, v1::PIXEL_CODEC_NONE);
  EXPECT_EQ(zstd_codec, v1::PIXEL_CODEC_ZSTD);
  ASSERT_EQ(expected.size(), 3u);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(expected[i].response.has_result()) << expected[i].response.DebugString();
    ASSERT_TRUE(got[i].response.has_result()) << got[i].response.DebugString();
    const auto& a = expected[i].response.result().atoms();
    const auto& b = got[i].response.result().atoms();
    EXPECT_GT(a.size(), 10);
    ASSERT_EQ(a.size(), b.size());
    for (int k = 0; k < a.size(); ++k) {
      EXPECT_EQ(a[k].x(), b[k].x());
      EXPECT_EQ(a[k].y(), b[k].y());
    }
  }
}

// Frames whose payload is broken in each way the daemon must refuse, then
// a good one: every bad frame gets its error record naming the field, and
// the stream still analyses the last.
TEST(CompressionClientTest, BadPayloadsAreRefusedAndTheStreamGoesOn) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto stub = RawStub(*server);
  const SynthFrame f = Synth(128, 310);
  v1::Frame good = CountsFrame(f, 0);
  ASSERT_TRUE(wire::CompressPixels(v1::PIXEL_CODEC_ZSTD, good.mutable_pixels()).ok());

  std::vector<v1::Frame> frames;
  auto with = [&](uint64_t sequence, auto change) {
    v1::Frame bad = good;
    bad.set_sequence(sequence);
    change(*bad.mutable_pixels()->mutable_compressed());
    frames.push_back(bad);
  };
  with(1, [](v1::CompressedPixels& c) { (*c.mutable_data())[0] ^= 0x5a; });
  with(2, [](v1::CompressedPixels& c) { c.set_uncompressed_size(uint64_t{1} << 40); });
  with(3, [](v1::CompressedPixels& c) {  // 64 MiB of zeros in a few kB
    const std::string zeros(64u << 20, '\0');
    std::string bomb(ZSTD_compressBound(zeros.size()), '\0');
    bomb.resize(ZSTD_compress(bomb.data(), bomb.size(), zeros.data(), zeros.size(), 1));
    c.set_data(bomb);
  });
  with(4, [](v1::CompressedPixels& c) { c.set_codec(static_cast<v1::PixelCodec>(5)); });
  with(5, [](v1::CompressedPixels& c) { c.set_shuffle_bytes(8); });
  good.set_sequence(6);
  frames.push_back(good);

  v1::SessionSettings settings = SmallSettings(f);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);  // every frame analysed
  v1::StreamRequest open = Open("", &settings);
  open.mutable_open()->set_compression(v1::PIXEL_CODEC_ZSTD);
  const testing::StreamOutcome out = RunStream(stub.get(), open, frames);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.responses.size(), 7u);
  EXPECT_EQ(out.responses[0].opened().compression(), v1::PIXEL_CODEC_ZSTD);
  const std::vector<std::string> fields = {
      "frame.pixels.compressed.data", "frame.pixels.compressed.uncompressed_size",
      "frame.pixels.compressed.data", "frame.pixels.compressed.codec",
      "frame.pixels.compressed.shuffle_bytes"};
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    const v1::StreamResponse& r = out.responses[1 + i];
    EXPECT_EQ(r.sequence(), 1u + i);
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().code(), 3);  // INVALID_ARGUMENT
    EXPECT_THAT(r.error().message(), HasSubstr(fields[i]));
  }
  EXPECT_EQ(out.responses[6].sequence(), 6u);
  EXPECT_TRUE(out.responses[6].has_result()) << out.responses[6].DebugString();
}

TEST(CompressionClientTest, AnUnknownCodecAtOpenIsRefusedNamingTheField) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto stub = RawStub(*server);
  const SynthFrame f = Synth(64, 311);
  const v1::SessionSettings settings = SmallSettings(f);
  v1::StreamRequest open = Open("", &settings);
  open.mutable_open()->set_compression(static_cast<v1::PixelCodec>(42));
  const testing::StreamOutcome out = RunStream(stub.get(), open, {});
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.status.error_message(), HasSubstr("open.compression"));
  EXPECT_THAT(out.status.error_message(), HasSubstr("got 42"));
  // The client library refuses it before connecting.
  auto client = Client::Connect(
      {.address = Address(*server), .compression = static_cast<v1::PixelCodec>(42)});
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), HasSubstr("compression"));
}

// A daemon from before compression: it answers `opened` without
// SessionInfo.compression and reads only PixelData.data, so it records
// which source each frame's pixels came in.
class OldDaemon final : public v1::LogStar::Service {
 public:
  grpc::Status Stream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::StreamResponse, v1::StreamRequest>* stream) override {
    v1::StreamRequest request;
    if (!stream->Read(&request)) return grpc::Status::OK;
    v1::StreamResponse opened;
    opened.mutable_opened()->set_session_id("old");
    stream->Write(opened);
    while (stream->Read(&request)) {
      sources.push_back(request.frame().pixels().source_case());
      v1::StreamResponse answer;
      answer.set_sequence(request.frame().sequence());
      answer.mutable_result();
      stream->Write(answer);
    }
    return grpc::Status::OK;
  }
  std::vector<v1::PixelData::SourceCase> sources;  // read after the stream ends
};

TEST(CompressionClientTest, AnOlderDaemonGetsTheBytesAsTheyAre) {
  OldDaemon old;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&old);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie(
      {.address = absl::StrCat("127.0.0.1:", port), .compression = v1::PIXEL_CODEC_ZSTD});
  ASSERT_NE(client, nullptr);
  const SynthFrame f = Synth(64, 312);
  v1::PixelCodec used = v1::PIXEL_CODEC_ZSTD;
  const std::vector<StreamAnswer> answers =
      RunFrames(*client, SmallSettings(f), {CountsFrame(f, 1), CountsFrame(f, 2)}, &used);
  EXPECT_EQ(used, v1::PIXEL_CODEC_NONE);
  EXPECT_EQ(answers.size(), 2u);
  server->Shutdown();
  EXPECT_THAT(old.sources, ::testing::ElementsAre(v1::PixelData::kData, v1::PixelData::kData));
}

}  // namespace
}  // namespace logstar
