// The memfd frame path end to end (clients/cpp/memfd_buffer.h, issue 21
// item 2): an in-process logstard on a Unix socket takes sealed memory
// files from the client library, and frames read in place give the atoms
// the generator put there and the ones the same frames give over TCP.
#include "clients/cpp/memfd_buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

// A daemon on a Unix socket in a fresh directory.
struct UnixServer {
  std::string dir;
  std::string address;
  std::unique_ptr<server::LogStarServer> server;
};

UnixServer StartUnixServer() {
  UnixServer u;
  char tmpl[] = "/tmp/logstar-memfd-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  u.dir = tmpl;
  u.address = absl::StrCat("unix:", u.dir, "/sock");
  server::ServerOptions options;
  options.listen_address = u.address;
  options.engine_threads = 2;
  options.log_level = "warning";
  auto s = server::LogStarServer::Start(options);
  EXPECT_TRUE(s.ok()) << s.status();
  if (s.ok()) u.server = *std::move(s);
  return u;
}

TEST(MemfdBufferTest, IsSealedAgainstResizingAndWritable) {
  auto b = MemfdBuffer::Create(10000);
  ASSERT_TRUE(b.ok()) << b.status();
  const int seals = fcntl((*b)->fd(), F_GET_SEALS);
  EXPECT_NE(seals & F_SEAL_SHRINK, 0);
  EXPECT_NE(seals & F_SEAL_GROW, 0);
  EXPECT_NE(ftruncate((*b)->fd(), 10), 0) << "sealed: cannot shrink";
  std::memset((*b)->data(), 7, (*b)->size());
  char c = 0;
  ASSERT_EQ(pread((*b)->fd(), &c, 1, 9999), 1);
  EXPECT_EQ(c, 7);
  EXPECT_EQ(MemfdBuffer::Create(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MemfdBufferTest, SocketForFollowsTheDaemonsAddress) {
  EXPECT_EQ(MemfdSocketFor("unix:/run/l.sock"), "/run/l.sock.fd");
  EXPECT_EQ(MemfdSocketFor("unix:///run/l.sock"), "/run/l.sock.fd");
  EXPECT_EQ(MemfdSocketFor("unix-abstract:l"), std::string("\0l.fd", 5));
  EXPECT_EQ(MemfdSocketFor("127.0.0.1:1"), "");
}

// Frames in a memfd over the Unix socket give the generator's atoms, and
// exactly the atoms the same frames give in the message over TCP (same
// settings and seed). The client then drops its buffer: the daemon keeps
// serving the frames already written, and a client that connects to the
// descriptor socket and leaves does not disturb it.
TEST(MemfdClientTest, FramesInAMemfdGiveTheAtomsOfTheFramesOverTcp) {
  UnixServer unix_server = StartUnixServer();
  ASSERT_NE(unix_server.server, nullptr);
  auto tcp_server = StartServer();
  ASSERT_NE(tcp_server, nullptr);
  auto local = ConnectOrDie({.address = unix_server.address});
  auto remote = ConnectOrDie({.address = Address(*tcp_server)});
  ASSERT_NE(local, nullptr);
  ASSERT_NE(remote, nullptr);

  const std::vector<SynthFrame> truth = {Synth(128, 50), Synth(128, 51), Synth(128, 52)};
  const uint64_t slot = 128 * 128 * sizeof(float) + 100;  // offsets not page-aligned
  auto buffer = MemfdBuffer::Create(3 * slot);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  auto registered = RegisterMemfd(*local, "camera-0", **buffer);
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_THAT(registered->key(), ::testing::StartsWith("memfd:"));
  EXPECT_EQ(registered->byte_size(), 3 * slot);

  std::vector<v1::Frame> in_message, in_memfd;
  for (int i = 0; i < 3; ++i) {
    in_message.push_back(ToFrame(truth[i], 1 + i));
    v1::Frame f;
    f.set_sequence(1 + i);
    auto pixels = ImageToSharedPixels(truth[i].image, **buffer, "camera-0", i * slot);
    ASSERT_TRUE(pixels.ok()) << pixels.status();
    *f.mutable_pixels() = *std::move(pixels);
    in_memfd.push_back(f);
  }
  // The client's side goes before the frames are analysed: the daemon's
  // mapping is its own.
  buffer->reset();
  // A client that connects to the descriptor socket and leaves at once.
  {
    const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = unix_server.dir + "/sock.fd";
    std::memcpy(addr.sun_path, path.data(), path.size());
    EXPECT_EQ(connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    close(s);
  }

  const v1::SessionSettings settings = SmallSettings(truth[0]);
  auto by_tcp = remote->OpenStream({.settings = settings, .max_in_flight = 1});
  ASSERT_TRUE(by_tcp.ok()) << by_tcp.status();
  auto by_memfd = local->OpenStream({.settings = settings, .max_in_flight = 1});
  ASSERT_TRUE(by_memfd.ok()) << by_memfd.status();
  const std::vector<v1::StreamResponse> expected = PushEach(**by_tcp, in_message);
  const std::vector<v1::StreamResponse> got = PushEach(**by_memfd, in_memfd);
  ASSERT_EQ(expected.size(), 3u);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(expected[i].has_result()) << expected[i].DebugString();
    ASSERT_TRUE(got[i].has_result()) << got[i].DebugString();
    EXPECT_GT(Score(truth[i], got[i].result()).f1, 0.85);
    ExpectSameAtoms(expected[i].result(), got[i].result());
  }
  EXPECT_TRUE((*by_tcp)->Finish().ok());
  EXPECT_TRUE((*by_memfd)->Finish().ok());
  EXPECT_TRUE(local->UnregisterSharedMemory("camera-0").ok());
  // Still serving: a second memfd registers after all that.
  auto again = MemfdBuffer::Create(4096);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(RegisterMemfd(*local, "camera-1", **again).ok());
  unix_server.server.reset();
  rmdir(unix_server.dir.c_str());
}

// An unsealed memfd handed over by hand is refused when registered, naming
// the key and the seal; over TCP the memfd path is not offered and the
// local buffer falls back to POSIX shared memory.
TEST(MemfdClientTest, UnsealedFilesAreRefusedAndTcpFallsBackToPosix) {
  UnixServer unix_server = StartUnixServer();
  ASSERT_NE(unix_server.server, nullptr);
  auto local = ConnectOrDie({.address = unix_server.address});
  ASSERT_NE(local, nullptr);

  // MemfdBuffer seals; a bare memfd wrapped the same way does not.
  const int bare = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(bare, 0);
  ASSERT_EQ(ftruncate(bare, 4096), 0);
  auto sealed = MemfdBuffer::Create(4096);
  ASSERT_TRUE(sealed.ok());
  // Hand over the bare descriptor through the library's exchange by
  // putting it where a sealed buffer's would be.
  ASSERT_GE(dup2(bare, (*sealed)->fd()), 0);
  auto key = HandOverMemfd(unix_server.address, **sealed);
  ASSERT_TRUE(key.ok()) << key.status();
  const auto refused = local->RegisterSharedMemory("raw", *key, 4096);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(absl::StrCat("key ", *key)));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("F_SEAL_SHRINK"));
  close(bare);

  auto on_unix = RegisterLocalFrameBuffer(*local, "local", 8192);
  ASSERT_TRUE(on_unix.ok()) << on_unix.status();
  EXPECT_TRUE((*on_unix)->is_memfd());

  auto tcp_server = StartServer();
  ASSERT_NE(tcp_server, nullptr);
  auto remote = ConnectOrDie({.address = Address(*tcp_server)});
  ASSERT_NE(remote, nullptr);
  EXPECT_EQ(HandOverMemfd(Address(*tcp_server), **sealed).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto on_tcp = RegisterLocalFrameBuffer(*remote, "local", 96 * 96 * sizeof(float));
  ASSERT_TRUE(on_tcp.ok()) << on_tcp.status();
  EXPECT_FALSE((*on_tcp)->is_memfd());
  // And its frames are served.
  const SynthFrame truth = Synth(96, 60);
  auto pixels = ImageToSharedPixels(truth.image, **on_tcp, 0);
  ASSERT_TRUE(pixels.ok()) << pixels.status();
  v1::Frame f;
  *f.mutable_pixels() = *std::move(pixels);
  const v1::SessionSettings settings = SmallSettings(truth);
  auto result = remote->AnalyzeFrame(f, &settings);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(Score(truth, *result).f1, 0.85);
  EXPECT_TRUE(remote->UnregisterSharedMemory("local").ok());
  unix_server.server.reset();
  rmdir(unix_server.dir.c_str());
}

}  // namespace
}  // namespace logstar
