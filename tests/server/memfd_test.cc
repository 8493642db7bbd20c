// Sealed memory files (server/memfd.h) and the registry's memfd regions
// (server/shared_memory.h), against bytes the test writes itself into real
// memfds and descriptors passed over real Unix sockets.
#include "server/memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "clients/cpp/memfd_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert.h"
#include "server/pixel_check.h"
#include "server/shared_memory.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A memfd holding `bytes`, with `seals` added.
int Memfd(const std::string& bytes, int seals) {
  const int fd = memfd_create("memfd-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  if (seals != 0) {
    EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0) << std::strerror(errno);
  }
  return fd;
}

std::string Counting(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 + 3);
  return s;
}

std::unique_ptr<SharedMemoryRegistry> NewRegistry() {
  auto r = SharedMemoryRegistry::Create({});
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(r);
}

// The key that registers `fd` (handed over by this process's user).
std::string HandOver(int fd) {
  return absl::StrCat(kMemfdKeyPrefix, MemfdInbox::Global().Put(fd, geteuid()));
}

TEST(MemfdTest, SocketAddressSitsBesideTheUnixSocket) {
  EXPECT_EQ(MemfdSocketAddress("unix:/run/logstar.sock"), "/run/logstar.sock.fd");
  EXPECT_EQ(MemfdSocketAddress("unix:///run/logstar.sock"), "/run/logstar.sock.fd");
  EXPECT_EQ(MemfdSocketAddress("unix-abstract:logstar"), std::string("\0logstar.fd", 11));
  EXPECT_EQ(MemfdSocketAddress("127.0.0.1:50051"), "");
  EXPECT_EQ(MemfdSocketAddress("unix:"), "");
}

TEST(MemfdTest, SealCheckRefusesAnUnsealedFileNamingTheFieldAndTheSeal) {
  const int open_fd = Memfd(Counting(4096), 0);
  const absl::Status s = CheckSealed(open_fd, 4096, "key memfd:abc");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message().data(), StartsWith("key memfd:abc"));
  EXPECT_THAT(s.message().data(), HasSubstr("F_SEAL_SHRINK"));
  // Growing sealed alone is not enough: shrinking is what faults a mapping.
  ASSERT_EQ(fcntl(open_fd, F_ADD_SEALS, F_SEAL_GROW), 0);
  EXPECT_THAT(CheckSealed(open_fd, 4096, "f").message().data(), HasSubstr("F_SEAL_SHRINK"));
  ASSERT_EQ(fcntl(open_fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
  EXPECT_TRUE(CheckSealed(open_fd, 4096, "f").ok());
  // Larger than the file: refused, naming both sizes.
  EXPECT_THAT(CheckSealed(open_fd, 4097, "f").message().data(), HasSubstr("4097"));
  close(open_fd);
  // Sealed but sparse: its holes would be the daemon's to allocate.
  const int sparse = memfd_create("sparse", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_EQ(ftruncate(sparse, 1 << 20), 0);
  ASSERT_EQ(fcntl(sparse, F_ADD_SEALS, F_SEAL_SHRINK), 0);
  EXPECT_THAT(CheckSealed(sparse, 1 << 20, "key memfd:s").message().data(), HasSubstr("allocated"));
  ASSERT_EQ(posix_fallocate(sparse, 0, 1 << 20), 0);
  EXPECT_TRUE(CheckSealed(sparse, 1 << 20, "f").ok());
  close(sparse);
  // A pipe carries no seals at all.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_EQ(CheckSealed(p[0], 1, "key memfd:x").code(), absl::StatusCode::kInvalidArgument);
  close(p[0]);
  close(p[1]);
}

TEST(MemfdTest, RegistryMapsASealedFileAndViewsFramesInPlace) {
  const std::string bytes = Counting(64 * 64 * 4 + 100);
  const int fd = Memfd(bytes, F_SEAL_SHRINK | F_SEAL_GROW);
  auto reg = NewRegistry();
  const std::string key = HandOver(dup(fd));
  ASSERT_TRUE(reg->Register("cam", key, bytes.size()).ok());
  ASSERT_EQ(reg->List().size(), 1u);
  EXPECT_EQ(reg->List()[0].key, key);

  // Read copies the bytes at the offset.
  std::string out(1000, '\0');
  ASSERT_TRUE(reg->Read("cam", 77, out.size(), out.data(), "f").ok());
  EXPECT_EQ(out, bytes.substr(77, 1000));
  // ReadImage gives the same bytes as a view of the file: a write by the
  // client after it shows (no copy was made).
  absl::StatusOr<cv::Mat> image = reg->ReadImage("cam", 100, 64, 64, CV_32FC1, "f");
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->rows, 64);
  ASSERT_EQ(image->type(), CV_32FC1);
  EXPECT_EQ(std::memcmp(image->data, bytes.data() + 100, 64 * 64 * 4), 0);
  const float changed = 12345.0f;
  ASSERT_EQ(pwrite(fd, &changed, sizeof(changed), 100 + 4 * (3 * 64 + 5)), 4);
  EXPECT_EQ(image->at<float>(3, 5), changed);
  // Beyond the registered bytes: refused naming the field.
  EXPECT_THAT(reg->ReadImage("cam", 200, 64, 64, CV_32FC1, "frame.pixels.shared_memory")
                  .status()
                  .message()
                  .data(),
              HasSubstr("frame.pixels.shared_memory"));

  // Unregistered while a view lives: the view still reads the file.
  cv::Mat copy = *image;  // a second header, one mapping
  image = cv::Mat();
  ASSERT_TRUE(reg->Unregister("cam").ok());
  EXPECT_EQ(copy.at<float>(3, 5), changed);
  EXPECT_EQ(std::memcmp(copy.data + 4, bytes.data() + 104, 100), 0);
  close(fd);  // the client's end; the daemon's descriptor is its own
  EXPECT_EQ(copy.at<float>(3, 5), changed);
}

TEST(MemfdTest, UnsealedFileIsRefusedAtRegistrationNamingTheKey) {
  const int fd = Memfd(Counting(4096), 0);
  auto reg = NewRegistry();
  const std::string key = HandOver(dup(fd));
  const absl::Status s = reg->Register("cam", key, 4096);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message().data(), HasSubstr(absl::StrCat("key ", key)));
  EXPECT_THAT(s.message().data(), HasSubstr("F_SEAL_SHRINK"));
  EXPECT_TRUE(reg->List().empty());
  // The token was spent: registering it again is refused as unknown.
  EXPECT_THAT(reg->Register("cam", key, 4096).message().data(), HasSubstr("no memory file"));
  // The client truncates freely: nothing of it was kept.
  EXPECT_EQ(ftruncate(fd, 0), 0);
  close(fd);
}

TEST(MemfdTest, TokensAreBoundToTheUserWhoHandedTheFileOver) {
  MemfdInbox inbox;
  const std::string token = inbox.Put(Memfd("x", F_SEAL_SHRINK), 4242);
  EXPECT_THAT(inbox.Take(token, 4343, false, "key memfd:t").status().message().data(),
              HasSubstr("key memfd:t"));
  absl::StatusOr<int> fd = inbox.Take(token, 4242, false, "f");
  ASSERT_TRUE(fd.ok()) << fd.status();
  close(*fd);
  EXPECT_FALSE(inbox.Take(token, 4242, false, "f").ok()) << "used once";
  EXPECT_FALSE(inbox.Take("not-a-token", 0, true, "f").ok());
}

// The descriptor socket's exchange over a socketpair, the client library's
// side against the daemon's: the file the daemon receives is the one the
// client wrote.
TEST(MemfdTest, ServeReceivesTheDescriptorAndAnswersItsToken) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const int fd = Memfd("hello memfd", F_SEAL_SHRINK);
  MemfdInbox inbox;
  std::thread daemon([&] { ServeMemfdConnection(sv[1], inbox, absl::Seconds(5)); });
  // The client library's side of the exchange.
  absl::StatusOr<std::string> key = SendMemfd(sv[0], fd);
  daemon.join();
  close(sv[0]);
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_THAT(*key, StartsWith("memfd:"));
  const std::string token = key->substr(6);
  absl::StatusOr<int> got = inbox.Take(token, geteuid(), false, "f");
  ASSERT_TRUE(got.ok()) << got.status();
  close(fd);  // the client's copy: the daemon's stays
  char read_back[11] = {};
  ASSERT_EQ(pread(*got, read_back, 11, 0), 11);
  EXPECT_EQ(std::string(read_back, 11), "hello memfd");
  close(*got);
}

TEST(MemfdTest, ServeAnswersWhyWithoutADescriptorOrWhenTheClientLeaves) {
  for (const bool leaves : {false, true}) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    MemfdInbox inbox;
    std::thread daemon([&] { ServeMemfdConnection(sv[1], inbox, absl::Seconds(5)); });
    if (leaves) {
      close(sv[0]);  // nothing sent
      daemon.join();
      continue;
    }
    ASSERT_EQ(write(sv[0], "LSF1", 4), 4);
    char answer[256] = {};
    const ssize_t n = read(sv[0], answer, sizeof(answer) - 1);
    daemon.join();
    close(sv[0]);
    EXPECT_THAT(std::string(answer, std::max<ssize_t>(n, 0)), StartsWith("ERR "));
  }
}

// DecodeFrame's shared memory path takes a memfd region's frame in place:
// its pixels are the frame's own.
TEST(MemfdTest, DecodeFrameViewsTheFramesPixels) {
  cv::Mat image(40, 30, CV_32FC1);
  cv::randu(image, 0.0f, 1.0f);
  const std::string bytes(reinterpret_cast<const char*>(image.data), image.total() * 4);
  const int fd = Memfd(std::string(64, '\0') + bytes, F_SEAL_SHRINK);
  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", HandOver(dup(fd)), 64 + bytes.size()).ok());
  v1::Frame frame;
  v1::PixelData* px = frame.mutable_pixels();
  px->set_dtype(v1::DTYPE_FLOAT32);
  px->set_width(30);
  px->set_height(40);
  px->mutable_shared_memory()->set_region("cam");
  px->mutable_shared_memory()->set_offset(64);
  absl::StatusOr<DecodedFrame> d = DecodeFrame(frame, 1 << 20, reg.get());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->image.size(), image.size());
  EXPECT_EQ(cv::norm(d->image, image, cv::NORM_INF), 0.0);
  // A NaN the client wrote later is seen (in place) and named with the
  // field and its place.
  const float nan = std::nanf("");
  ASSERT_EQ(pwrite(fd, &nan, 4, 64 + 4 * (2 * 30 + 7)), 4);
  const absl::Status bad = DecodeFrame(frame, 1 << 20, reg.get()).status();
  EXPECT_THAT(bad.message().data(), HasSubstr("frame.pixels.shared_memory"));
  EXPECT_THAT(bad.message().data(), HasSubstr("x=7 y=2"));
  close(fd);
  frame.set_valid_rows(2);  // the rows above the NaN
  absl::StatusOr<DecodedFrame> partial = DecodeFrame(frame, 1 << 20, reg.get());
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_EQ(partial->image.rows, 2);
  EXPECT_EQ(cv::norm(partial->image, image.rowRange(0, 2), cv::NORM_INF), 0.0);
}

// A client's slot (SharedSlot) is the buffer's bytes: what it writes into
// the slot's image, the daemon's DecodeFrame reads there, at the slot's
// offset, with the shape and dtype the slot's PixelData names; and slots
// that do not fit or have no wire type are refused.
TEST(MemfdTest, SlotsAreWrittenInPlace) {
  absl::StatusOr<std::unique_ptr<MemfdBuffer>> buffer = MemfdBuffer::Create(4096);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  absl::StatusOr<SharedFrameSlot> slot = SharedSlot(**buffer, "cam", 1000, 20, 30, CV_16UC1);
  ASSERT_TRUE(slot.ok()) << slot.status();
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 30; ++x)
      slot->image.at<uint16_t>(y, x) = static_cast<uint16_t>(100 * y + x);
  }
  uint16_t at_7_3 = 0;  // x = 7, y = 3, read back from the raw bytes
  std::memcpy(&at_7_3, (*buffer)->data() + 1000 + 2 * (3 * 30 + 7), 2);
  EXPECT_EQ(at_7_3, 307);
  EXPECT_EQ(slot->pixels.dtype(), v1::DTYPE_UINT16);
  EXPECT_EQ(slot->pixels.width(), 30u);
  EXPECT_EQ(slot->pixels.height(), 20u);
  EXPECT_EQ(slot->pixels.shared_memory().region(), "cam");
  EXPECT_EQ(slot->pixels.shared_memory().offset(), 1000u);

  auto reg = NewRegistry();
  ASSERT_TRUE(reg->Register("cam", HandOver(dup((*buffer)->fd())), (*buffer)->size()).ok());
  v1::Frame frame;
  *frame.mutable_pixels() = slot->pixels;
  absl::StatusOr<DecodedFrame> d = DecodeFrame(frame, 1 << 20, reg.get());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->image.at<uint16_t>(3, 7), 307);
  EXPECT_EQ(d->image.at<uint16_t>(19, 29), 1929);
  ASSERT_TRUE(d->range.has_value());
  EXPECT_EQ(d->range->min, 0.0);
  EXPECT_EQ(d->range->max, 1929.0);

  EXPECT_THAT(SharedSlot(**buffer, "cam", 4096 - 1199, 20, 30, CV_16UC1).status().message().data(),
              HasSubstr("does not fit in the memory file of 4096 bytes"));
  EXPECT_TRUE(SharedSlot(**buffer, "cam", 4096 - 1200, 20, 30, CV_16UC1).ok());
  EXPECT_FALSE(SharedSlot(**buffer, "cam", 0, 2, 3, CV_32SC1).ok());
  EXPECT_FALSE(SharedSlot(**buffer, "cam", 0, 2, 3, CV_8UC3).ok());
  EXPECT_FALSE(SharedSlot(**buffer, "cam", 0, 0, 3, CV_8UC1).ok());
}

// The threaded check names the first bad pixel in row-major order, as the
// one-thread pass does, wherever the blocks split the frame.
TEST(PixelCheckTest, NamesTheFirstNonFinitePixelWithThreads) {
  cv::Mat image(1200, 700, CV_32FC1, cv::Scalar(0.5f));  // 3.2 MiB: several blocks
  EXPECT_TRUE(CheckFinitePixels(image, "f", ExecutionContext::Default()).ok());
  image.at<float>(1100, 3) = std::numeric_limits<float>::infinity();  // a late block
  image.at<float>(650, 699) = std::nanf("");                          // the first
  image.at<float>(651, 0) = std::nanf("");
  const absl::Status s = CheckFinitePixels(image, "frame.pixels.data", ExecutionContext::Default());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message().data(), HasSubstr("frame.pixels.data"));
  EXPECT_THAT(s.message().data(), HasSubstr("x=699 y=650"));
  EXPECT_EQ(s, CheckFinitePixels(image, "frame.pixels.data", nullptr));
  cv::Mat doubles(10, 10, CV_64FC1, cv::Scalar(1.0));
  doubles.at<double>(9, 9) = -std::numeric_limits<double>::infinity();
  EXPECT_THAT(CheckFinitePixels(doubles, "f", nullptr).message().data(), HasSubstr("x=9 y=9"));
  EXPECT_TRUE(CheckFinitePixels(cv::Mat(10, 10, CV_16UC1, cv::Scalar(65535)), "f", nullptr).ok());
}

// The daemon's check (one read per block, engine/image/pixel_scan.h)
// refuses a 2048² frame whose only bad pixel is its last, naming the field
// and the pixel, with and without threads.
TEST(PixelCheckTest, RefusesANanAtTheLastPixelNamingTheField) {
  cv::Mat image(2048, 2048, CV_32FC1, cv::Scalar(0.5f));
  image.at<float>(2047, 2047) = std::nanf("");
  for (ExecutionContext* context :
       {static_cast<ExecutionContext*>(nullptr), ExecutionContext::Default()}) {
    const absl::StatusOr<PixelRange> r =
        CheckAndMeasurePixels(image, "frame.pixels.shared_memory", context);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message().data(), HasSubstr("frame.pixels.shared_memory"));
    EXPECT_THAT(r.status().message().data(), HasSubstr("x=2047 y=2047"));
  }
}

// The check's range is the frame's minimum and maximum (found here by a
// plain loop), wherever they lie among the blocks, for every type.
TEST(PixelCheckTest, MeasuresTheRangeWithTheCheck) {
  for (int depth : {CV_8U, CV_16U, CV_16S, CV_32F, CV_64F}) {
    cv::Mat image(1200, 700, CV_MAKETYPE(depth, 1), cv::Scalar(40));  // several blocks
    cv::Mat low(1, 1, image.type(), cv::Scalar(-7)), high(1, 1, image.type(), cv::Scalar(90));
    if (depth == CV_8U || depth == CV_16U) low.setTo(3);
    low.copyTo(image(cv::Rect(699, 1199, 1, 1)));  // the last block
    high.copyTo(image(cv::Rect(350, 600, 1, 1)));  // a middle one
    cv::Mat as_double;
    image.convertTo(as_double, CV_64F);
    double lo = as_double.at<double>(0, 0), hi = lo;
    for (int y = 0; y < image.rows; ++y) {
      for (int x = 0; x < image.cols; ++x) {
        lo = std::min(lo, as_double.at<double>(y, x));
        hi = std::max(hi, as_double.at<double>(y, x));
      }
    }
    for (ExecutionContext* context :
         {static_cast<ExecutionContext*>(nullptr), ExecutionContext::Default()}) {
      absl::StatusOr<PixelRange> r = CheckAndMeasurePixels(image, "f", context);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->min, lo) << "depth " << depth;
      EXPECT_EQ(r->max, hi) << "depth " << depth;
    }
  }
}

}  // namespace
}  // namespace logstar::server
