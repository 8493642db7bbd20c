// SharedMemoryRegistry and DecodeFrame's shared memory path against bytes
// the test writes itself into real POSIX shared memory objects.
#include "server/shared_memory.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert.h"
#include "server/peer.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;

// A shm object holding `bytes`, unlinked when the test ends.
class ShmObject {
 public:
  ShmObject(const std::string& tag, const std::string& bytes, mode_t mode = 0600)
      : key_(absl::StrCat("/logstar-test-", getpid(), "-", tag)) {
    shm_unlink(key_.c_str());
    const int fd = shm_open(key_.c_str(), O_CREAT | O_EXCL | O_RDWR, mode);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    fchmod(fd, mode);  // not narrowed by the umask
    close(fd);
  }
  ~ShmObject() { shm_unlink(key_.c_str()); }
  const std::string& key() const { return key_; }
  void Truncate(off_t size) {
    const int fd = shm_open(key_.c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, size), 0);
    close(fd);
  }

 private:
  std::string key_;
};

std::string Counting(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 + 3);
  return s;
}

std::unique_ptr<SharedMemoryRegistry> NewRegistry(int max_regions = 64) {
  auto r = SharedMemoryRegistry::Create({max_regions});
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(r);
}

TEST(SharedMemoryRegistryTest, ReadsTheBytesAtTheOffset) {
  const std::string bytes = Counting(10000);
  ShmObject obj("read", bytes);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", obj.key(), bytes.size()).ok());
  std::string out(1234, '\0');
  ASSERT_TRUE(reg->Read("cam", 4321, out.size(), out.data(), "f").ok());
  EXPECT_EQ(out, bytes.substr(4321, 1234));
  // The last byte of the registered range is readable; one past it is not.
  ASSERT_TRUE(reg->Read("cam", bytes.size() - 1, 1, out.data(), "f").ok());
  EXPECT_EQ(out[0], bytes.back());
  const absl::Status beyond = reg->Read("cam", bytes.size() - 1, 2, out.data(), "frame.x");
  EXPECT_EQ(beyond.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(beyond.message(), HasSubstr("frame.x: bytes [9999, 10001)"));
  // An offset so large that offset + size wraps around 64 bits.
  EXPECT_EQ(reg->Read("cam", std::numeric_limits<uint64_t>::max() - 2, 8, out.data(), "f").code(),
            absl::StatusCode::kInvalidArgument);
}

// Frames of megabytes are read in 1 MiB chunks by the context's threads:
// the same bytes as one thread, and a shrink names the frame's end.
TEST(SharedMemoryRegistryTest, ThreadsReadTheSameBytesInChunks) {
  const std::string bytes = Counting((7 << 19) + 12345);  // 3.5 MiB and a bit
  ShmObject obj("chunks", bytes);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", obj.key(), bytes.size()).ok());
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context = ExecutionContext::Create({2});
  ASSERT_TRUE(context.ok());
  const uint64_t offset = 777, size = bytes.size() - 1000;
  std::string out(size, '\0');
  ASSERT_TRUE(reg->Read("cam", offset, size, out.data(), "f", context->get()).ok());
  EXPECT_TRUE(out == bytes.substr(offset, size));
  obj.Truncate(3 << 19);  // 1.5 MiB: the second chunk ends short, the rest are empty
  const absl::Status s = reg->Read("cam", offset, size, out.data(), "f", context->get());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("ends at byte ", 3 << 19,
                                                  ", before the frame's end at ", offset + size)));
}

TEST(SharedMemoryRegistryTest, ARegisteredPrefixBoundsTheReads) {
  const std::string bytes = Counting(4096);
  ShmObject obj("prefix", bytes);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", obj.key(), 1000).ok());
  char c;
  EXPECT_TRUE(reg->Read("cam", 999, 1, &c, "f").ok());
  EXPECT_FALSE(reg->Read("cam", 1000, 1, &c, "f").ok());
}

TEST(SharedMemoryRegistryTest, AShrunkObjectIsAnErrorNotACrash) {
  const std::string bytes = Counting(1 << 20);
  ShmObject obj("shrink", bytes);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", obj.key(), bytes.size()).ok());
  obj.Truncate(1000);
  std::string out(4096, '\0');
  const absl::Status s = reg->Read("cam", 0, out.size(), out.data(), "frame.pixels.shared_memory");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("ends at byte 1000, before the frame's end at 4096"));
  EXPECT_TRUE(reg->Read("cam", 0, 1000, out.data(), "f").ok());
  EXPECT_EQ(out.substr(0, 1000), bytes.substr(0, 1000));
}

TEST(SharedMemoryRegistryTest, RegistrationChecksNameKeySizeAndObject) {
  const std::string bytes = Counting(100);
  ShmObject obj("checks", bytes);
  auto reg = NewRegistry();
  auto code = [&](const std::string& region, const std::string& key, uint64_t size) {
    return reg->Register(region, key, size).code();
  };
  EXPECT_EQ(code("", obj.key(), 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("a b", obj.key(), 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(std::string(129, 'a'), obj.key(), 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("r", "no-slash", 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("r", "/a/b", 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("r", "/..", 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("r", "/", 10), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("r", obj.key(), 0), absl::StatusCode::kInvalidArgument);
  const absl::Status big = reg->Register("r", obj.key(), 101);
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.message(), HasSubstr("byte_size 101 is more than the 100 bytes"));
  const absl::Status missing = reg->Register("r", "/logstar-test-no-such-object", 10);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("/logstar-test-no-such-object"));
  EXPECT_TRUE(reg->List().empty());  // nothing half-registered
  if (geteuid() != 0) {              // root reads anything
    ShmObject unreadable("unreadable", bytes, 0200);
    const absl::Status denied = reg->Register("r", unreadable.key(), 10);
    EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(denied.message(), HasSubstr("mode 0644"));
  }
}

TEST(SharedMemoryRegistryTest, ReRegisteringReplacesAndTheLimitCountsNames) {
  ShmObject a("a", Counting(100));
  ShmObject b("b", std::string(50, 'b'));
  auto reg = NewRegistry(2);
  ASSERT_TRUE(reg->Register("one", a.key(), 100).ok());
  ASSERT_TRUE(reg->Register("two", a.key(), 100).ok());
  EXPECT_EQ(reg->Register("three", a.key(), 100).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(reg->Register("one", b.key(), 50).ok());  // same name: replaced, not a third
  const std::vector<SharedMemoryRegistry::RegionInfo> list = reg->List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].region, "one");
  EXPECT_EQ(list[0].key, b.key());
  EXPECT_EQ(list[0].byte_size, 50u);
  EXPECT_EQ(list[1].region, "two");
  char c;
  ASSERT_TRUE(reg->Read("one", 10, 1, &c, "f").ok());
  EXPECT_EQ(c, 'b');
  ASSERT_TRUE(reg->Unregister("one").ok());
  EXPECT_EQ(reg->Unregister("one").code(), absl::StatusCode::kNotFound);
  const absl::Status gone = reg->Read("one", 0, 1, &c, "frame.pixels.shared_memory");
  EXPECT_EQ(gone.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gone.message(),
              HasSubstr("frame.pixels.shared_memory.region \"one\" is not registered"));
}

// A FIFO in /dev/shm used as a key: refused at once. A blocking open would
// wait for a writer and hold the calling gRPC thread (issue 16, item 1); if
// it does, the test opens the FIFO for writing to get its thread back.
TEST(SharedMemoryRegistryTest, AFifoIsRefusedWithoutBlocking) {
  const std::string key = absl::StrCat("/logstar-test-", getpid(), "-fifo");
  const std::string path = "/dev/shm" + key;
  unlink(path.c_str());
  ASSERT_EQ(mkfifo(path.c_str(), 0666), 0) << std::strerror(errno);
  auto reg = NewRegistry();
  auto result = std::async(std::launch::async, [&] { return reg->Register("cam", key, 10); });
  absl::Status s;
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "Register blocked on the FIFO " << key;
    const int w = open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) close(w);
    s = result.get();
  } else {
    s = result.get();
  }
  unlink(path.c_str());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("is a FIFO, not a regular file"));
  EXPECT_TRUE(reg->List().empty());
}

TEST(SharedMemoryRegistryTest, AnUnlinkedObjectStaysReadableWhileRegistered) {
  const std::string bytes = Counting(100);
  auto reg = NewRegistry();
  {
    ShmObject obj("unlinked", bytes);
    ASSERT_TRUE(reg->Register("cam", obj.key(), 100).ok());
  }  // unlinked here
  std::string out(100, '\0');
  ASSERT_TRUE(reg->Read("cam", 0, 100, out.data(), "f").ok());
  EXPECT_EQ(out, bytes);
}

// A uid that is not the test's own (nor root), for callers that are not us.
uid_t OtherUid() { return geteuid() == 4242 ? 4243 : 4242; }

PeerCredentials Caller(uid_t uid, gid_t gid, std::vector<gid_t> groups, bool groups_known) {
  PeerCredentials c;
  c.uid = uid;
  c.gid = gid;
  c.groups = std::move(groups);
  c.groups_known = groups_known;
  c.how = "test";
  return c;
}

// Issue 16, item 5: the kernel's rules on the mode bits, for a file owned
// by uid 1000, group 100.
TEST(CheckCallerMayReadTest, ModeBitsAsTheKernelAppliesThem) {
  struct stat st {};
  st.st_uid = 1000;
  st.st_gid = 100;
  auto may = [&](mode_t mode, const PeerCredentials& c, bool acl = false) {
    st.st_mode = S_IFREG | mode;
    return CheckCallerMayRead(c, st, acl, "obj").ok();
  };
  const PeerCredentials owner = Caller(1000, 5, {}, true);
  const PeerCredentials member = Caller(2000, 7, {100}, true);
  const PeerCredentials primary_member = Caller(2000, 100, {}, true);
  const PeerCredentials other = Caller(3000, 7, {8}, true);
  const PeerCredentials tcp = Caller(3000, 0, {}, false);  // groups unknown
  const PeerCredentials root = Caller(0, 0, {}, false);
  EXPECT_TRUE(may(0600, owner));
  EXPECT_FALSE(may(0600, member));
  EXPECT_FALSE(may(0600, other));
  EXPECT_TRUE(may(0600, root));
  EXPECT_FALSE(may(0044, owner));  // the owner's own bits decide for the owner
  EXPECT_TRUE(may(0640, member));
  EXPECT_TRUE(may(0640, primary_member));
  EXPECT_FALSE(may(0640, other));
  EXPECT_FALSE(may(0604, member));  // the group's bits decide for a member
  EXPECT_TRUE(may(0604, other));
  EXPECT_TRUE(may(0644, other));
  // Groups unknown: only when every non-owner could read it.
  EXPECT_FALSE(may(0640, tcp));
  EXPECT_FALSE(may(0604, tcp));
  EXPECT_TRUE(may(0644, tcp));
  EXPECT_TRUE(may(0600, Caller(1000, 0, {}, false)));
  // An ACL: the owner only.
  EXPECT_TRUE(may(0644, owner, true));
  EXPECT_FALSE(may(0644, other, true));
  st.st_mode = S_IFREG | 0600;
  const absl::Status s = CheckCallerMayRead(other, st, false, "shared memory object /x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(),
              HasSubstr("shared memory object /x (owner 1000, group 100, mode 0600) is not "
                        "readable by the caller (uid 3000"));
}

TEST(LocalPeerCredentialsTest, RemoteAndUnknownPeersAreNotIdentified) {
  for (const char* peer :
       {"ipv4:10.0.0.5:50051", "ipv4:128.0.0.1:50051", "ipv6:[::2]:50051", "ipv6:[::1234]:50051",
        "ipv6:[::ffff:10.0.0.1]:50051", "", "unix:/run/logstar.sock", "fd:x", "ipv4:127.0.0.1"}) {
    EXPECT_EQ(LocalPeerCredentials(peer).status().code(), absl::StatusCode::kPermissionDenied)
        << peer;
  }
  // A loopback port nobody uses: no socket to own it.
  EXPECT_EQ(LocalPeerCredentials("ipv4:127.0.0.1:1").status().code(),
            absl::StatusCode::kPermissionDenied);
}

// A connected TCP loopback pair: the client's (address, port) is owned by us.
TEST(LocalPeerCredentialsTest, ATcpLoopbackPeerIsItsSocketsOwner) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  sockaddr_in mine{};
  len = sizeof(mine);
  ASSERT_EQ(getsockname(client, reinterpret_cast<sockaddr*>(&mine), &len), 0);
  const absl::StatusOr<PeerCredentials> c =
      LocalPeerCredentials(absl::StrCat("ipv4:127.0.0.1:", ntohs(mine.sin_port)));
  close(client);
  close(listener);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->uid, geteuid());
  EXPECT_FALSE(c->groups_known);
}

TEST(LocalPeerCredentialsTest, AUnixSocketPeerIsTheConnectingProcess) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const absl::StatusOr<PeerCredentials> c = LocalPeerCredentials(absl::StrCat("fd:", sv[0]));
  close(sv[0]);
  close(sv[1]);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->uid, geteuid());
  EXPECT_EQ(c->gid, getegid());
  EXPECT_TRUE(c->groups_known);
  // A descriptor that is not a Unix socket says nothing.
  const int tcp = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(LocalPeerCredentials(absl::StrCat("fd:", tcp)).status().code(),
            absl::StatusCode::kPermissionDenied);
  close(tcp);
}

// Issue 16, item 5: a caller registers only what it may read itself, and
// sees, reads and unregisters only its own regions.
TEST(SharedMemoryRegistryTest, CallersHaveTheirOwnRegionsAndOnlyObjectsTheyMayRead) {
  ShmObject mine("mine", Counting(100), 0600), open_to_all("all", std::string(100, 'o'), 0644);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", mine.key(), 100).ok());
  SharedMemoryRegistry other = reg->ForCaller(Caller(OtherUid(), OtherUid(), {}, true));
  const absl::Status denied = other.Register("x", mine.key(), 100);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), HasSubstr("mode 0600"));
  char c;
  EXPECT_THAT(other.Read("cam", 0, 1, &c, "f").message(), HasSubstr("is not registered"));
  EXPECT_TRUE(other.List().empty());
  EXPECT_EQ(other.Unregister("cam").code(), absl::StatusCode::kNotFound);
  // Its own "cam" is another region.
  ASSERT_TRUE(other.Register("cam", open_to_all.key(), 100).ok());
  ASSERT_TRUE(other.Read("cam", 5, 1, &c, "f").ok());
  EXPECT_EQ(c, 'o');
  ASSERT_TRUE(reg->Read("cam", 5, 1, &c, "f").ok());
  EXPECT_EQ(c, Counting(100)[5]);
  ASSERT_EQ(reg->List().size(), 1u);
  EXPECT_EQ(reg->List()[0].key, mine.key());
}

// DecodeFrame: pixels from a region equal the bytes written there, row 0
// at the offset; only the valid rows are read; NaN is named as in the
// message path.
TEST(DecodeSharedFrameTest, PixelsComeFromTheRegionAtTheOffset) {
  const int w = 5, h = 3;
  std::vector<float> values(w * h);
  for (int i = 0; i < w * h; ++i) values[i] = 0.5f * i - 2.0f;
  std::string bytes(64, 'x');  // 64 bytes before row 0
  bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  ShmObject obj("decode", bytes);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", obj.key(), bytes.size()).ok());
  v1::Frame frame;
  frame.mutable_pixels()->set_dtype(v1::DTYPE_FLOAT32);
  frame.mutable_pixels()->set_width(w);
  frame.mutable_pixels()->set_height(h);
  frame.mutable_pixels()->mutable_shared_memory()->set_region("cam");
  frame.mutable_pixels()->mutable_shared_memory()->set_offset(64);
  absl::StatusOr<DecodedFrame> d = DecodeFrame(frame, 1 << 20, reg.get());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->image.type(), CV_32F);
  ASSERT_EQ(d->image.rows, h);
  ASSERT_EQ(d->image.cols, w);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) EXPECT_EQ(d->image.at<float>(y, x), 0.5f * (y * w + x) - 2.0f);
  }
  // Two valid rows need only 2 × 5 floats: a region ending there suffices.
  ASSERT_TRUE(reg->Register("short", obj.key(), 64 + 2 * w * 4).ok());
  frame.mutable_pixels()->mutable_shared_memory()->set_region("short");
  EXPECT_FALSE(DecodeFrame(frame, 1 << 20, reg.get()).ok());
  frame.set_valid_rows(2);
  d = DecodeFrame(frame, 1 << 20, reg.get());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->partial);
  EXPECT_EQ(d->image.rows, 2);

  // A NaN at x=3, y=1 in the region.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + 64 + 4 * (1 * w + 3), &nan, 4);
  ShmObject bad("decode-nan", bytes);
  ASSERT_TRUE(reg->Register("cam", bad.key(), bytes.size()).ok());
  frame.mutable_pixels()->mutable_shared_memory()->set_region("cam");
  const absl::Status s = DecodeFrame(frame, 1 << 20, reg.get()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("frame.pixels.shared_memory pixel x=3 y=1 is NaN"));

  // Without a registry (the clients' decoding) shared memory is refused.
  EXPECT_THAT(DecodeFrame(frame, 1 << 20).status().message(),
              HasSubstr("frame.pixels.shared_memory is not available here"));
}

}  // namespace
}  // namespace logstar::server
