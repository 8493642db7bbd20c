// SharedMemoryRing: slots taken in turn and written again only after their
// frame's answer, frames too large refused, the object as /dev/shm shows it,
// Close unregistering and removing it, and frames through the ring against
// an in-process logstard giving the atoms of the same frames sent in the
// message (and of the generator's ground truth).
#include "clients/cpp/shared_memory_ring.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "clients/cpp/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/clients/client_harness.h"
#include "tests/integration/harness.h"

namespace logstar {
namespace {

using ::logstar::testing::Address;
using ::logstar::testing::ConnectOrDie;
using ::logstar::testing::Score;
using ::logstar::testing::SmallSettings;
using ::logstar::testing::StartServer;
using ::logstar::testing::Synth;
using ::logstar::testing::ToFrame;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A frame of `n` bytes, each byte its index's low bits plus `tag`.
v1::Frame BytesOf(size_t n, uint64_t sequence, char tag) {
  v1::Frame f;
  f.set_sequence(sequence);
  std::string bytes(n, '\0');
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>((i & 0x3f) + tag);
  f.mutable_pixels()->set_dtype(v1::DTYPE_UINT8);
  f.mutable_pixels()->set_width(static_cast<uint32_t>(n));
  f.mutable_pixels()->set_height(1);
  f.mutable_pixels()->set_data(bytes);
  return f;
}

// The object's bytes [offset, offset + n) as the kernel has them.
std::string ObjectBytes(const std::string& key, uint64_t offset, size_t n) {
  std::ifstream in("/dev/shm" + key, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string out(n, '\0');
  in.read(out.data(), static_cast<std::streamsize>(n));
  return out;
}

bool ObjectExists(const std::string& key) {
  struct stat st;
  return stat(("/dev/shm" + key).c_str(), &st) == 0;
}

TEST(SharedMemoryRingTest, SlotsAreTakenInTurnAndWrittenAgainOnlyAfterTheAnswer) {
  auto ring = SharedMemoryRing::Create({.slots = 2, .slot_bytes = 100});
  ASSERT_TRUE(ring.ok()) << ring.status();
  SharedMemoryRing& r = **ring;
  EXPECT_THAT(r.key(), StartsWith(absl::StrCat("/logstar-", getpid(), "-")));
  EXPECT_EQ("/" + r.region(), r.key());
  std::vector<v1::Frame> frames;
  for (int i = 0; i < 3; ++i) frames.push_back(BytesOf(100 - i, 1 + i, static_cast<char>('A' + i)));
  const std::vector<v1::Frame> originals = frames;

  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(r.Place(frames[i]).ok());
    const v1::PixelData& p = frames[i].pixels();
    EXPECT_EQ(p.source_case(), v1::PixelData::kSharedMemory);
    EXPECT_EQ(p.shared_memory().region(), r.region());
    EXPECT_EQ(p.shared_memory().offset(), 100u * i);
    EXPECT_EQ(p.width(), originals[i].pixels().width());  // the rest stays
    EXPECT_EQ(ObjectBytes(r.key(), 100 * i, 100 - i), originals[i].pixels().data());
  }
  EXPECT_EQ(r.in_use(), 2);
  // Both slots hold unanswered frames: the third waits for the first's answer.
  auto third = std::async(std::launch::async, [&] { return r.Place(frames[2]); });
  EXPECT_EQ(third.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(ObjectBytes(r.key(), 0, 100), originals[0].pixels().data()) << "slot 0 overwritten";
  r.Release();
  ASSERT_TRUE(third.get().ok());
  EXPECT_EQ(frames[2].pixels().shared_memory().offset(), 0u);  // slot 2 mod 2
  EXPECT_EQ(ObjectBytes(r.key(), 0, 98), originals[2].pixels().data());
  EXPECT_EQ(ObjectBytes(r.key(), 100, 99), originals[1].pixels().data()) << "slot 1 untouched";
  EXPECT_EQ(r.in_use(), 2);
}

TEST(SharedMemoryRingTest, FramesTooLargeOrWithoutBytesAreRefusedWithoutTakingASlot) {
  auto ring =
      SharedMemoryRing::Create({.slots = 1, .slot_bytes = 64, .region = "ring-test-refuse"});
  ASSERT_TRUE(ring.ok()) << ring.status();
  SharedMemoryRing& r = **ring;
  EXPECT_EQ(r.key(), "/logstar-ring-test-refuse");
  v1::Frame big = BytesOf(65, 7, 'x');
  const v1::Frame before = big;
  const absl::Status s = r.Place(big);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("65 bytes"));
  EXPECT_THAT(s.message(), HasSubstr("slots of 64 bytes"));
  EXPECT_EQ(big.SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(r.in_use(), 0);
  v1::Frame empty = BytesOf(0, 8, 'x');
  EXPECT_EQ(r.Place(empty).code(), absl::StatusCode::kInvalidArgument);
  v1::Frame fits = BytesOf(64, 9, 'y');
  ASSERT_TRUE(r.Place(fits).ok());
  v1::Frame again = fits;  // already in shared memory
  EXPECT_EQ(r.Place(again).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.in_use(), 1);

  // An image of a type the wire lacks gives its slot back: the next frame
  // takes the same slot.
  r.Release();
  EXPECT_EQ(r.PlaceImage(cv::Mat(4, 4, CV_32S)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.in_use(), 0);
  EXPECT_EQ(r.PlaceImage(cv::Mat(5, 4, CV_32F)).status().code(),
            absl::StatusCode::kInvalidArgument);        // 80 bytes
  const cv::Mat image(4, 4, CV_32F, cv::Scalar(2.5f));  // exactly 64 bytes
  auto placed = r.PlaceImage(image);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(placed->shared_memory().offset(), 0u);
  EXPECT_EQ(placed->dtype(), v1::DTYPE_FLOAT32);
  EXPECT_EQ(ObjectBytes(r.key(), 0, 64),
            std::string(reinterpret_cast<const char*>(image.data), 64));
  EXPECT_EQ(r.in_use(), 1);
}

TEST(SharedMemoryRingTest, AWaitingPlaceGivesUpWhenStopSaysSo) {
  auto ring = SharedMemoryRing::Create({.slots = 1, .slot_bytes = 16});
  ASSERT_TRUE(ring.ok()) << ring.status();
  v1::Frame first = BytesOf(16, 1, 'a'), second = BytesOf(16, 2, 'b');
  ASSERT_TRUE((*ring)->Place(first).ok());
  std::atomic<bool> stop{false};
  auto waiting = std::async(std::launch::async,
                            [&] { return (*ring)->Place(second, [&] { return stop.load(); }); });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  stop = true;
  (*ring)->Wake();
  EXPECT_EQ(waiting.get().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(second.pixels().source_case(), v1::PixelData::kData);
  EXPECT_EQ((*ring)->in_use(), 1);
}

TEST(SharedMemoryRingTest, CloseUnregistersAndRemovesTheObject) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  auto ring = SharedMemoryRing::Create({.slots = 3, .slot_bytes = 1000, .mode = 0640});
  ASSERT_TRUE(ring.ok()) << ring.status();
  const std::string key = (*ring)->key();
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm" + key).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 3000);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  ASSERT_TRUE((*ring)->Register(*client).ok());
  auto listed = client->ListSharedMemory();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].region(), (*ring)->region());
  EXPECT_EQ((*listed)[0].key(), key);
  EXPECT_EQ((*listed)[0].byte_size(), 3000u);

  EXPECT_TRUE((*ring)->Close(client.get()).ok());
  EXPECT_FALSE(ObjectExists(key));
  listed = client->ListSharedMemory();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  EXPECT_TRUE((*ring)->Close(client.get()).ok()) << "idempotent";
  v1::Frame f = BytesOf(10, 1, 'a');
  EXPECT_EQ((*ring)->Place(f).code(), absl::StatusCode::kFailedPrecondition);

  // Without Close the destructor still removes the object.
  std::string other;
  {
    auto r = SharedMemoryRing::Create({.slots = 1, .slot_bytes = 10});
    ASSERT_TRUE(r.ok()) << r.status();
    other = (*r)->key();
    EXPECT_TRUE(ObjectExists(other));
  }
  EXPECT_FALSE(ObjectExists(other));
}

// Two slots, five frames and up to four frames in flight on the stream: only
// the ring's wait keeps a slot from being written while the daemon may
// still read it. The atoms must be those of the same frames in the message.
TEST(SharedMemoryRingTest, FramesThroughTheRingGiveTheAtomsOfTheFramesInTheMessage) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectOrDie({.address = Address(*server)});
  ASSERT_NE(client, nullptr);
  std::vector<SynthFrame> truth;
  for (int i = 0; i < 5; ++i) truth.push_back(Synth(128, 60 + i));
  v1::SessionSettings settings = SmallSettings(truth[0]);
  settings.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);

  auto run = [&](SharedMemoryRing* ring) {
    std::vector<v1::StreamResponse> answers;
    auto stream = client->OpenStream({.settings = settings, .max_in_flight = 4});
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (!stream.ok()) return answers;
    std::thread reader([&] {
      while (auto a = (*stream)->Read()) {
        if (ring != nullptr) ring->Release();
        answers.push_back(a->response);
      }
    });
    for (int i = 0; i < 5; ++i) {
      v1::Frame f = ToFrame(truth[i], 1 + i);
      if (ring != nullptr) {
        EXPECT_TRUE(ring->Place(f).ok());
      }
      EXPECT_TRUE((*stream)->Push(std::move(f)).ok());
    }
    EXPECT_TRUE((*stream)->Finish().ok());
    reader.join();
    return answers;
  };
  const std::vector<v1::StreamResponse> expected = run(nullptr);
  auto ring = SharedMemoryRing::Create({.slots = 2, .slot_bytes = 128 * 128 * sizeof(float)});
  ASSERT_TRUE(ring.ok()) << ring.status();
  ASSERT_TRUE((*ring)->Register(*client).ok());
  const std::vector<v1::StreamResponse> got = run(ring->get());
  EXPECT_TRUE((*ring)->Close(client.get()).ok());
  ASSERT_EQ(expected.size(), 5u);
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(got[i].has_result()) << got[i].DebugString();
    EXPECT_GT(Score(truth[i], got[i].result()).f1, 0.85);
    const auto& a = expected[i].result().atoms();
    const auto& b = got[i].result().atoms();
    ASSERT_EQ(a.size(), b.size());
    for (int k = 0; k < a.size(); ++k) {
      EXPECT_EQ(a[k].x(), b[k].x()) << k;
      EXPECT_EQ(a[k].y(), b[k].y()) << k;
    }
  }
}

}  // namespace
}  // namespace logstar
