// logstar::Client against an in-process logstard (server::LogStarServer):
// every frame answered in order with atoms that match the generated frames'
// ground truth, back-pressure, the session RPCs, health, the bearer token,
// mutual TLS and an unreachable server. SharedMemoryBuffer against what
// /dev/shm shows and the images' own bytes.
#include "clients/cpp/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "clients/cpp/shared_memory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert.h"
#include "server/server.h"
#include "tests/clients/client_harness.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::Address;
using ::logstar::testing::ConnectOrDie;
using ::logstar::testing::ExpectSameAtoms;
using ::logstar::testing::PushEach;
using ::logstar::testing::Score;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::StartServer;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;

TEST(ClientTest, EveryFrameIsAnsweredInOrderWithTheTrueAtoms) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  auto health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kServing);

  std::vector<SynthFrame> frames;
  for (int i = 0; i < 4; ++i) frames.push_back(Synth(128, 100 + i));
  auto stream = client->OpenStream({.settings = SmallSettings(frames[0]), .max_in_flight = 2});
  ASSERT_TRUE(stream.ok()) << stream.status();
  const std::string id = (*stream)->opened().session_id();
  EXPECT_FALSE(id.empty());
  // Push from one thread, read from another, as a microscope loop would.
  std::vector<StreamAnswer> answers;
  std::thread reader([&] {
    while (auto a = (*stream)->Read()) answers.push_back(*std::move(a));
  });
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE((*stream)->Push(ToFrame(frames[i], 10 + i)).ok());
    EXPECT_LE((*stream)->in_flight(), 2);
  }
  EXPECT_TRUE((*stream)->Finish().ok());
  reader.join();
  ASSERT_EQ(answers.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(answers[i].response.sequence(), 10u + i);
    ASSERT_TRUE(answers[i].response.has_result());
    EXPECT_GT(Score(frames[i], answers[i].response.result()).f1, 0.85);
    EXPECT_GT(answers[i].latency_ms, 0.0);
  }

  // The session RPCs on the session the stream made.
  auto info = client->GetSession(id, /*include_cache=*/true);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->counters().frames_analysed(), 4u);
  EXPECT_GT(info->cache().windows_size(), 0);
  v1::UpdateSessionRequest update;
  update.set_session_id(id);
  *update.mutable_settings() = SmallSettings(frames[0], 64, 5);
  auto updated = client->UpdateSession(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->settings().analysis().evaluations(), 5);
  auto listed = client->ListSessions();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);  // the server's only session
  EXPECT_EQ((*listed)[0].session_id(), id);
  EXPECT_EQ((*listed)[0].counters().frames_analysed(), 4u);
  EXPECT_FALSE((*listed)[0].has_cache());
  ASSERT_TRUE(client->ResetSession(id, /*delete_session=*/true).ok());
  listed = client->ListSessions();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  auto gone = client->GetSession(id);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gone.status().message(), HasSubstr(Address(*server)));
}

// AutoPrior: the daemon derives the prior from the first frame, and the
// unary result says so with the derived spacing (against the generator's).
TEST(ClientTest, AutoPriorIsDerivedByTheDaemon) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  const SynthFrame f = Synth(256, 120);
  v1::SessionSettings settings = SmallSettings(f, 128);
  *settings.mutable_prior() = AutoPrior(f.prior.pixel_size_angstrom);
  EXPECT_TRUE(settings.prior().auto_());
  auto result = client->AnalyzeFrame(ToFrame(f, 1), &settings);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->prior_used().derived());
  EXPECT_NEAR(
      result->prior_used().prior().nearest_neighbor_angstrom() / f.prior.nearest_neighbor_angstrom,
      1.0, 0.02);
  EXPECT_EQ(result->warnings_size(), 0);
  EXPECT_GT(Score(f, *result).f1, 0.85);
}

TEST(ClientTest, PushBlocksWhileTheWindowIsFull) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  const SynthFrame f = Synth(128, 7);
  v1::SessionSettings settings = SmallSettings(f);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
  auto stream = client->OpenStream({.settings = settings, .max_in_flight = 1});
  ASSERT_TRUE(stream.ok()) << stream.status();
  const std::string id = (*stream)->opened().session_id();
  for (int k = 1; k <= 4; ++k) {
    ASSERT_TRUE((*stream)->Push(ToFrame(f, k)).ok());
    // With one frame in flight, Push(k) returns only after frame k-1 was
    // answered: the server's own counters say it was analysed by then.
    auto info = client->GetSession(id);
    ASSERT_TRUE(info.ok());
    EXPECT_GE(info->counters().frames_analysed(), static_cast<uint64_t>(k - 1));
    EXPECT_LE(info->counters().frames_received(), static_cast<uint64_t>(k));
  }
  EXPECT_TRUE((*stream)->Finish().ok());
  int answered = 0;
  while (auto a = (*stream)->Read()) answered += a->response.has_result();
  EXPECT_EQ(answered, 4);
}

TEST(ClientTest, OptionsAreChecked) {
  EXPECT_THAT(Client::Connect({}).status().message(), HasSubstr("address"));
  EXPECT_FALSE(Client::Connect({.address = "x:1", .tls_client_cert_file = "c.pem"}).ok());
  EXPECT_FALSE(StreamOptions{.max_in_flight = 0}.Validate().ok());
  EXPECT_THAT(StreamOptions{}.Validate().message(), HasSubstr("settings"));
}

TEST(ClientTest, UnreachableServerIsUnavailableNamingTheAddress) {
  // A port that was free a moment ago: nothing listens there.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  auto c = Client::Connect({.address = address, .connect_timeout_s = 1.0});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.status().message(), HasSubstr("cannot reach logstard at " + address));
}

TEST(ClientTest, BearerToken) {
  const std::string path = ::testing::TempDir() + "/client_token";
  std::ofstream(path) << "s3cret\n";
  server::ServerOptions options;
  options.auth_token_file = path;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  const SynthFrame f = Synth(128, 3);
  for (const char* token : {"", "wrong"}) {
    auto client = ConnectOrDie({.address = Address(*server), .token = token});
    ASSERT_NE(client, nullptr);
    EXPECT_EQ(client->OpenStream({.settings = SmallSettings(f)}).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client->GetSession("x").status().code(), absl::StatusCode::kUnauthenticated);
  }
  auto client = ConnectOrDie({.address = Address(*server), .token = "s3cret"});
  ASSERT_NE(client, nullptr);
  const v1::SessionSettings settings = SmallSettings(f);
  auto result = client->AnalyzeFrame(ToFrame(f, 1), &settings);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(Score(f, *result).f1, 0.85);
}

bool Shell(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
}

TEST(ClientTest, MutualTls) {
  if (!Shell("openssl version")) GTEST_SKIP() << "openssl is not installed";
  const std::string d = ::testing::TempDir() + "/client_tls";
  std::filesystem::create_directories(d);
  ASSERT_TRUE(Shell("cd " + d +
                    " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca"
                    " -keyout ca.key -out ca.pem"
                    " && printf 'subjectAltName=IP:127.0.0.1' > san.ext"
                    " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key"
                    " -out server.csr && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key"
                    " -CAcreateserial -days 2 -extfile san.ext -out server.pem"
                    " && openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key"
                    " -out client.csr && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key"
                    " -CAcreateserial -days 2 -out client.pem"));
  server::ServerOptions options;
  options.tls_cert_file = d + "/server.pem";
  options.tls_key_file = d + "/server.key";
  options.tls_client_ca_file = d + "/ca.pem";
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  // An address, not a name: no resolver runs (see daemon_process_test).
  auto client = ConnectOrDie({.address = Address(*server),
                              .use_tls = true,
                              .tls_root_certs_file = d + "/ca.pem",
                              .tls_client_cert_file = d + "/client.pem",
                              .tls_client_key_file = d + "/client.key"});
  ASSERT_NE(client, nullptr);
  const SynthFrame f = Synth(128, 5);
  auto stream = client->OpenStream({.settings = SmallSettings(f)});
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_TRUE((*stream)->Push(ToFrame(f, 1)).ok());
  auto answer = (*stream)->Read();
  ASSERT_TRUE(answer.has_value());
  EXPECT_GT(Score(f, answer->response.result()).f1, 0.85);
  EXPECT_TRUE((*stream)->Finish().ok());
  // Without TLS, or without a client certificate, nothing gets through:
  // Connect fails, or (TLS 1.3 finishes the client's side of the handshake
  // before the server checks its certificate) the first RPC does.
  auto first_failure = [](const ClientOptions& o) {
    auto c = Client::Connect(o);
    if (!c.ok()) return c.status().code();
    return (*c)->GetSession("x").status().code();
  };
  EXPECT_EQ(first_failure({.address = Address(*server), .connect_timeout_s = 1.0}),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(first_failure({.address = Address(*server),
                           .use_tls = true,
                           .tls_root_certs_file = d + "/ca.pem",
                           .connect_timeout_s = 1.0}),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(
      Client::Connect(
          {.address = Address(*server), .use_tls = true, .tls_root_certs_file = d + "/missing.pem"})
          .status()
          .code(),
      absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------- shared memory

// What the kernel says about a key's object: nullopt when there is none.
std::optional<struct stat> StatShm(const std::string& key) {
  struct stat st;
  if (stat(("/dev/shm" + key).c_str(), &st) != 0) return std::nullopt;
  return st;
}

std::string UniqueKey(const char* what) {
  return absl::StrCat("/logstar-client-test-", getpid(), "-", what);
}

TEST(SharedMemoryBufferTest, CreatesTheObjectWithTheSizeAndModeAskedAndUnlinksIt) {
  for (const mode_t mode : {mode_t{0600}, mode_t{0644}, mode_t{0660}}) {
    SCOPED_TRACE(mode);
    const std::string key = UniqueKey("mode");
    {
      auto buffer = SharedMemoryBuffer::Create(12345, {.key = key, .mode = mode});
      ASSERT_TRUE(buffer.ok()) << buffer.status();
      EXPECT_EQ((*buffer)->key(), key);
      EXPECT_EQ((*buffer)->size(), 12345u);
      const std::optional<struct stat> st = StatShm(key);
      ASSERT_TRUE(st.has_value());
      EXPECT_EQ(st->st_size, 12345);
      EXPECT_EQ(st->st_mode & 0777, mode);  // the umask notwithstanding
      EXPECT_EQ(st->st_uid, getuid());
      // The mapping is the object: what is written shows in /dev/shm.
      std::memcpy((*buffer)->data() + 12340, "tail", 4);
      std::ifstream in("/dev/shm" + key, std::ios::binary);
      in.seekg(12340);
      char got[4] = {};
      in.read(got, 4);
      EXPECT_EQ(std::string(got, 4), "tail");
    }
    EXPECT_FALSE(StatShm(key).has_value()) << "the destructor unlinks " << key;
  }
}

TEST(SharedMemoryBufferTest, DefaultKeyIsFreshAndPrivate) {
  auto a = SharedMemoryBuffer::Create(4096, {});
  auto b = SharedMemoryBuffer::Create(4096, {});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT((*a)->key(), ::testing::StartsWith(absl::StrCat("/logstar-", getpid(), "-")));
  EXPECT_NE((*a)->key(), (*b)->key());
  const std::optional<struct stat> st = StatShm((*a)->key());
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_mode & 0777, 0600u);
}

TEST(SharedMemoryBufferTest, BadOptionsAndExistingKeysAreRefusedNamingThem) {
  for (const char* key : {"no-slash", "/", "/a/b", "//x"}) {
    SCOPED_TRACE(key);
    auto b = SharedMemoryBuffer::Create(64, {.key = key});
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(b.status().message(), HasSubstr(absl::StrCat("key '", key, "'")));
  }
  EXPECT_EQ(SharedMemoryBuffer::Create(64, {.key = "/" + std::string(251, 'k')}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(SharedMemoryBuffer::Create(64, {.mode = 04600}).status().message(),
              HasSubstr("mode 04600"));
  const std::string key = UniqueKey("size");
  auto zero = SharedMemoryBuffer::Create(0, {.key = key});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr(key));
  EXPECT_FALSE(StatShm(key).has_value());

  // O_EXCL: another's object is never taken over, nor unlinked.
  auto first = SharedMemoryBuffer::Create(64, {.key = key});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = SharedMemoryBuffer::Create(64, {.key = key});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(second.status().message(), HasSubstr("'" + key + "'"));
  EXPECT_THAT(second.status().message(), HasSubstr(std::strerror(EEXIST)));
  EXPECT_TRUE(StatShm(key).has_value());
}

// The bytes at [offset, offset + n) of the buffer, and whether every byte
// outside that range still holds `fill`.
std::string BytesAt(const SharedMemoryBuffer& b, uint64_t offset, size_t n) {
  return std::string(b.data() + offset, n);
}
bool UntouchedOutside(const SharedMemoryBuffer& b, uint64_t offset, size_t n, char fill) {
  for (uint64_t i = 0; i < b.size(); ++i) {
    if ((i < offset || i >= offset + n) && b.data()[i] != fill) return false;
  }
  return true;
}

// The image's pixels row-major with no padding, from OpenCV's own accessors.
std::string RowMajorBytes(const cv::Mat& image) {
  std::string out;
  for (int y = 0; y < image.rows; ++y) {
    out.append(reinterpret_cast<const char*>(image.ptr(y)), image.cols * image.elemSize());
  }
  return out;
}

TEST(SharedMemoryBufferTest, ImageToSharedPixelsWritesExactlyTheImagesBytesAtTheOffset) {
  auto buffer = SharedMemoryBuffer::Create(64 << 10, {});
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  SharedMemoryBuffer& b = **buffer;
  cv::RNG rng(7);
  // The wire's dtypes as proto/logstar/v1/frame.proto lists them.
  const std::vector<std::pair<int, v1::DType>> types = {{CV_8U, v1::DTYPE_UINT8},
                                                        {CV_16U, v1::DTYPE_UINT16},
                                                        {CV_16S, v1::DTYPE_INT16},
                                                        {CV_32F, v1::DTYPE_FLOAT32},
                                                        {CV_64F, v1::DTYPE_FLOAT64}};
  for (const auto& [depth, dtype] : types) {
    for (const bool roi : {false, true}) {
      SCOPED_TRACE(absl::StrCat(v1::DType_Name(dtype), roi ? " ROI" : ""));
      cv::Mat full(40, 50, CV_MAKETYPE(depth, 1));
      rng.fill(full, cv::RNG::UNIFORM, -1000, 1000);
      // A 23 x 17 view from inside: rows are 50 elements apart, not 23.
      const cv::Mat image = roi ? full(cv::Rect(5, 9, 23, 17)) : full;
      ASSERT_EQ(image.isContinuous(), !roi);
      const uint64_t offset = roi ? 1001 : 4096;  // unaligned too: the daemon pread()s
      std::memset(b.data(), 0x5a, b.size());
      auto pixels = ImageToSharedPixels(image, b, "frames", offset);
      ASSERT_TRUE(pixels.ok()) << pixels.status();
      EXPECT_EQ(pixels->dtype(), dtype);
      EXPECT_EQ(pixels->width(), static_cast<uint32_t>(image.cols));
      EXPECT_EQ(pixels->height(), static_cast<uint32_t>(image.rows));
      EXPECT_EQ(pixels->source_case(), v1::PixelData::kSharedMemory);
      EXPECT_EQ(pixels->shared_memory().region(), "frames");
      EXPECT_EQ(pixels->shared_memory().offset(), offset);
      const size_t n = image.total() * image.elemSize();
      const cv::Mat copy = image.clone();  // OpenCV's own packed copy
      EXPECT_EQ(BytesAt(b, offset, n), std::string(reinterpret_cast<const char*>(copy.data), n));
      EXPECT_EQ(BytesAt(b, offset, n), RowMajorBytes(image));
      EXPECT_TRUE(UntouchedOutside(b, offset, n, 0x5a));
    }
  }
}

TEST(SharedMemoryBufferTest, ImageToSharedPixelsRefusesWhatDoesNotFitOrIsNotAFrame) {
  auto buffer = SharedMemoryBuffer::Create(1000, {});
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  SharedMemoryBuffer& b = **buffer;
  std::memset(b.data(), 0x5a, b.size());
  const cv::Mat image(10, 25, CV_32F, cv::Scalar(1.0f));  // exactly 1000 bytes
  EXPECT_TRUE(ImageToSharedPixels(image, b, "r", 0).ok());
  std::memset(b.data(), 0x5a, b.size());
  for (const uint64_t offset : {uint64_t{1}, uint64_t{1000}, uint64_t{5000}, ~uint64_t{0} - 10}) {
    SCOPED_TRACE(offset);
    auto p = ImageToSharedPixels(image, b, "r", offset);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr(absl::StrCat("1000 bytes at offset ", offset)));
    EXPECT_THAT(p.status().message(), HasSubstr(absl::StrCat("'", b.key(), "' of 1000 bytes")));
  }
  EXPECT_EQ(ImageToSharedPixels(cv::Mat(4, 4, CV_32FC3), b, "r", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageToSharedPixels(cv::Mat(4, 4, CV_32S), b, "r", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageToSharedPixels(cv::Mat(), b, "r", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(UntouchedOutside(b, 0, 0, 0x5a)) << "nothing is written on error";
}

// ---------------------------------------------------------------- shared memory RPCs

// A frame whose pixels travel in the message.
v1::Frame BytesFrame(const cv::Mat& image, uint64_t sequence) {
  v1::Frame frame;
  frame.set_sequence(sequence);
  absl::StatusOr<v1::PixelData> pixels = server::ImageToPixels(image);
  EXPECT_TRUE(pixels.ok()) << pixels.status();
  *frame.mutable_pixels() = *std::move(pixels);
  return frame;
}

// The same images through one stream as bytes and through another (same
// settings and seed: the same tuning) from shared memory give the same
// atoms; the region's life through Register, List and Unregister.
TEST(ClientTest, SharedMemoryFramesGiveTheAtomsOfTheSameFramesInTheMessage) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);

  const std::vector<SynthFrame> truth = {Synth(128, 40), Synth(128, 41), Synth(160, 42)};
  // The third image is a 128² view inside a 160² frame: its rows are not
  // contiguous, as a crop of a detector's frame would be.
  const std::vector<cv::Mat> images = {truth[0].image, truth[1].image,
                                       truth[2].image(cv::Rect(16, 8, 128, 128))};
  ASSERT_FALSE(images[2].isContinuous());
  const uint64_t slot = 128 * 128 * sizeof(float) + 100;  // offsets not page-aligned
  auto buffer = SharedMemoryBuffer::Create(3 * slot, {});
  ASSERT_TRUE(buffer.ok()) << buffer.status();

  auto registered = client->RegisterSharedMemory("camera-0", **buffer);
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(registered->region(), "camera-0");
  EXPECT_EQ(registered->key(), (*buffer)->key());
  EXPECT_EQ(registered->byte_size(), 3 * slot);
  auto listed = client->ListSharedMemory();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].region(), "camera-0");
  EXPECT_EQ((*listed)[0].key(), (*buffer)->key());
  EXPECT_EQ((*listed)[0].byte_size(), 3 * slot);

  std::vector<v1::Frame> in_message, in_shm;
  for (int i = 0; i < 3; ++i) {
    in_message.push_back(BytesFrame(images[i], 1 + i));
    v1::Frame f;
    f.set_sequence(1 + i);
    auto pixels = ImageToSharedPixels(images[i], **buffer, "camera-0", i * slot);
    ASSERT_TRUE(pixels.ok()) << pixels.status();
    *f.mutable_pixels() = *std::move(pixels);
    in_shm.push_back(f);
  }
  const v1::SessionSettings settings = SmallSettings(truth[0]);
  auto by_message = client->OpenStream({.settings = settings, .max_in_flight = 1});
  ASSERT_TRUE(by_message.ok()) << by_message.status();
  auto by_shm = client->OpenStream({.settings = settings, .max_in_flight = 1});
  ASSERT_TRUE(by_shm.ok()) << by_shm.status();
  const std::vector<v1::StreamResponse> expected = PushEach(**by_message, in_message);
  const std::vector<v1::StreamResponse> got = PushEach(**by_shm, in_shm);
  ASSERT_EQ(expected.size(), 3u);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(expected[i].has_result()) << expected[i].DebugString();
    ASSERT_TRUE(got[i].has_result()) << got[i].DebugString();
    if (i < 2) {  // the view's atoms are shifted from its frame's truth
      EXPECT_GT(Score(truth[i], got[i].result()).f1, 0.85);
    }
    ExpectSameAtoms(expected[i].result(), got[i].result());
  }
  EXPECT_TRUE((*by_message)->Finish().ok());

  // Unregistered: a frame that names the region gets an error record that
  // names it, and the stream answers the next frame.
  ASSERT_TRUE(client->UnregisterSharedMemory("camera-0").ok());
  listed = client->ListSharedMemory();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  in_shm[0].set_sequence(10);
  const std::vector<v1::StreamResponse> after =
      PushEach(**by_shm, {in_shm[0], BytesFrame(images[0], 11)});
  ASSERT_EQ(after.size(), 2u);
  ASSERT_TRUE(after[0].has_error()) << after[0].DebugString();
  EXPECT_EQ(after[0].sequence(), 10u);
  EXPECT_THAT(after[0].error().message(), HasSubstr("camera-0"));
  EXPECT_TRUE(after[1].has_result()) << after[1].DebugString();
  EXPECT_TRUE((*by_shm)->Finish().ok());

  const absl::Status unknown = client->UnregisterSharedMemory("camera-0");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.message(), HasSubstr(Address(*server)));
  EXPECT_THAT(unknown.message(), HasSubstr("UnregisterSharedMemory"));
  EXPECT_EQ(client->UnregisterSharedMemory("never-registered").code(), absl::StatusCode::kNotFound);
  // A key with no object behind it.
  EXPECT_EQ(
      client->RegisterSharedMemory("camera-1", "/logstar-client-test-missing", 64).status().code(),
      absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace logstar
