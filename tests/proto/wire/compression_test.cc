// proto/wire/compression.h: the byte shuffle against hand-split bytes, the
// payload against libzstd's own one-shot decompression (an independent
// reader), round trips of every dtype back to the original pixels, and the
// refusals — unknown codec, bad shuffle, a size that is not the frame's, a
// corrupt payload, one that decompresses to more or fewer bytes — with the
// field they name.
#include "proto/wire/compression.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar::wire {
namespace {

using ::testing::HasSubstr;

// Poisson counts around a mean that varies like a lattice of columns, as
// uint16: a detector's frame.
cv::Mat Counts(int rows, int cols, double peak, uint64_t seed) {
  std::mt19937_64 rng(seed);
  cv::Mat out(rows, cols, CV_16U);
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      const double c = std::cos(x / 3.0) * std::cos(y / 3.0);
      std::poisson_distribution<int> p(2.0 + peak * c * c);
      out.at<uint16_t>(y, x) = static_cast<uint16_t>(p(rng));
    }
  }
  return out;
}

std::string Bytes(const cv::Mat& m) {
  return std::string(reinterpret_cast<const char*>(m.data), m.total() * m.elemSize());
}

TEST(ShuffleTest, GroupsByteKOfEveryElement) {
  const std::vector<uint16_t> v = {0x0102, 0x0304, 0x0506};
  std::string out(6, '\0');
  ShuffleBytes(reinterpret_cast<const char*>(v.data()), 6, 2, out.data());
  // Little-endian: the low bytes 02 04 06, then the high bytes 01 03 05.
  EXPECT_EQ(out, std::string("\x02\x04\x06\x01\x03\x05", 6));
  std::vector<uint16_t> back(3);
  UnshuffleBytes(out.data(), 6, 2, reinterpret_cast<char*>(back.data()));
  EXPECT_EQ(back, v);
}

TEST(ShuffleTest, EveryElementSizeInvertsItself) {
  std::mt19937 rng(7);
  for (int element : {1, 2, 3, 4, 8}) {
    std::string in(element * 101, '\0');
    for (char& c : in) c = static_cast<char>(rng());
    std::string shuffled(in.size(), '\0'), back(in.size(), '\0');
    ShuffleBytes(in.data(), in.size(), element, shuffled.data());
    for (size_t i = 0; i < 101; ++i) {
      for (int k = 0; k < element; ++k) {
        ASSERT_EQ(shuffled[k * 101 + i], in[i * element + k]) << element << " " << i << " " << k;
      }
    }
    UnshuffleBytes(shuffled.data(), in.size(), element, back.data());
    EXPECT_EQ(back, in) << "element " << element;
  }
}

TEST(CompressTest, CountsRoundTripAndTheHighBytesCostAlmostNothing) {
  const cv::Mat counts = Counts(256, 256, 40.0, 1);
  absl::StatusOr<v1::PixelData> px = ImageToPixels(counts);
  ASSERT_TRUE(px.ok()) << px.status();
  ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD, &*px).ok());
  ASSERT_EQ(px->source_case(), v1::PixelData::kCompressed);
  const v1::CompressedPixels& c = px->compressed();
  EXPECT_EQ(c.codec(), v1::PIXEL_CODEC_ZSTD);
  EXPECT_EQ(c.shuffle_bytes(), 2u);
  EXPECT_EQ(c.uncompressed_size(), 256u * 256u * 2u);
  // Counts below 256: the high-byte plane is all zero, so at least half the
  // bytes vanish.
  EXPECT_LT(c.data().size(), 256u * 256u);

  // An independent reader: libzstd's one-shot decompression and the
  // shuffle's definition written out.
  std::string plain(c.uncompressed_size(), '\0');
  ASSERT_EQ(ZSTD_decompress(plain.data(), plain.size(), c.data().data(), c.data().size()),
            plain.size());
  const int n = 256 * 256;
  for (int i = 0; i < n; ++i) {
    const uint16_t want = counts.at<uint16_t>(i / 256, i % 256);
    ASSERT_EQ(static_cast<uint8_t>(plain[i]), want & 0xff) << i;
    ASSERT_EQ(static_cast<uint8_t>(plain[n + i]), want >> 8) << i;
  }

  absl::StatusOr<cv::Mat> back = PixelsToImage(*px);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Bytes(*back), Bytes(counts));
}

TEST(CompressTest, EveryDtypeComesBackBitForBit) {
  std::mt19937 rng(3);
  for (int depth : {CV_8U, CV_16U, CV_16S, CV_32F, CV_64F}) {
    cv::Mat image(37, 53, CV_MAKETYPE(depth, 1));
    cv::randu(image, -100, 1000);
    absl::StatusOr<v1::PixelData> px = ImageToPixels(image);
    ASSERT_TRUE(px.ok());
    ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD, &*px, 3).ok());
    EXPECT_EQ(px->compressed().shuffle_bytes(), image.elemSize() > 1 ? image.elemSize() : 0u);
    absl::StatusOr<cv::Mat> back = PixelsToImage(*px);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->type(), image.type());
    EXPECT_EQ(Bytes(*back), Bytes(image)) << "depth " << depth;
  }
}

TEST(CompressTest, NoneAndPixelsElsewhereAreLeftAsTheyAre) {
  absl::StatusOr<v1::PixelData> px = ImageToPixels(Counts(8, 8, 5.0, 2));
  ASSERT_TRUE(px.ok());
  const std::string before = px->SerializeAsString();
  ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_NONE, &*px).ok());
  EXPECT_EQ(px->SerializeAsString(), before);
  v1::PixelData shared = *px;
  shared.mutable_shared_memory()->set_region("r");
  const std::string shared_before = shared.SerializeAsString();
  ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD, &shared).ok());
  EXPECT_EQ(shared.SerializeAsString(), shared_before);
  EXPECT_THAT(CompressPixels(static_cast<v1::PixelCodec>(9), &*px).message(),
              HasSubstr("compression must be PIXEL_CODEC_NONE, PIXEL_CODEC_ZSTD or "
                        "PIXEL_CODEC_ZSTD_DELTA, got 9"));
}

// A compressed 16 x 16 uint16 frame of counts to break.
v1::PixelData Compressed() {
  absl::StatusOr<v1::PixelData> px = ImageToPixels(Counts(16, 16, 30.0, 4));
  EXPECT_TRUE(px.ok());
  EXPECT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD, &*px).ok());
  return *px;
}

void ExpectRefused(const v1::PixelData& px, const std::string& field, const std::string& what) {
  const absl::StatusOr<cv::Mat> image = PixelsToImage(px);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr(field));
  EXPECT_THAT(image.status().message(), HasSubstr(what));
}

TEST(CheckCompressedTest, TheHeaderIsCheckedBeforeAnythingIsDecompressed) {
  v1::PixelData px = Compressed();
  px.mutable_compressed()->set_codec(static_cast<v1::PixelCodec>(7));
  ExpectRefused(px, "frame.pixels.compressed.codec", "got 7");
  px.mutable_compressed()->set_codec(v1::PIXEL_CODEC_NONE);
  ExpectRefused(px, "frame.pixels.compressed.codec", "must name a codec");

  px = Compressed();
  px.mutable_compressed()->set_shuffle_bytes(4);
  ExpectRefused(px, "frame.pixels.compressed.shuffle_bytes", "element size 2");

  // Claims more than the frame holds: refused before any allocation.
  px = Compressed();
  px.mutable_compressed()->set_uncompressed_size(uint64_t{1} << 40);
  ExpectRefused(px, "frame.pixels.compressed.uncompressed_size", "16 x 16 pixels");
  px.mutable_compressed()->set_uncompressed_size(16 * 16 * 2 - 2);
  ExpectRefused(px, "frame.pixels.compressed.uncompressed_size", "are 512");
  EXPECT_EQ(CheckCodec(static_cast<v1::PixelCodec>(3), "open.compression").message(),
            "open.compression must be PIXEL_CODEC_NONE, PIXEL_CODEC_ZSTD or "
            "PIXEL_CODEC_ZSTD_DELTA, got 3");
}

TEST(DecompressTest, CorruptPayloadsAreRefusedNamingTheData) {
  v1::PixelData px = Compressed();
  std::string& data = *px.mutable_compressed()->mutable_data();
  data[0] = static_cast<char>(data[0] ^ 0x5a);  // the frame's magic number
  ExpectRefused(px, "frame.pixels.compressed.data", "decompress");

  px = Compressed();
  px.mutable_compressed()->mutable_data()->resize(px.compressed().data().size() / 2);
  ExpectRefused(px, "frame.pixels.compressed.data", "decompress");

  px = Compressed();
  px.mutable_compressed()->clear_data();
  ExpectRefused(px, "frame.pixels.compressed.data", "decompress");
}

TEST(DecompressTest, PayloadsOfAnotherSizeAreRefusedWithinTheBound) {
  // A "bomb": 64 MiB of zeros in a few kB, sent as a 16 x 16 frame. The
  // output buffer is the frame's 512 bytes and zstd stops there.
  const std::string zeros(64u << 20, '\0');
  std::string bomb(ZSTD_compressBound(zeros.size()), '\0');
  bomb.resize(ZSTD_compress(bomb.data(), bomb.size(), zeros.data(), zeros.size(), 1));
  ASSERT_LT(bomb.size(), 64u << 10);
  v1::PixelData px = Compressed();
  px.mutable_compressed()->set_data(bomb);
  ExpectRefused(px, "frame.pixels.compressed.data", "does not decompress to 512 bytes");

  // Fewer bytes than the frame holds.
  const std::string small(100, '\x01');
  std::string short_payload(ZSTD_compressBound(small.size()), '\0');
  short_payload.resize(
      ZSTD_compress(short_payload.data(), short_payload.size(), small.data(), small.size(), 1));
  px.mutable_compressed()->set_data(short_payload);
  ExpectRefused(px, "frame.pixels.compressed.data", "decompresses to 100 bytes");
}

TEST(DecompressTest, NonFinitePixelsAreNamedInTheCompressedField) {
  cv::Mat image(4, 4, CV_32F, cv::Scalar(1.0f));
  image.at<float>(2, 3) = std::nanf("");
  absl::StatusOr<v1::PixelData> px = ImageToPixels(image);
  ASSERT_TRUE(px.ok());
  ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD, &*px).ok());
  ExpectRefused(*px, "frame.pixels.compressed", "pixel x=3 y=2 is NaN or infinite");
}

TEST(CodecNameTest, ParsesWhatItPrints) {
  for (v1::PixelCodec c :
       {v1::PIXEL_CODEC_NONE, v1::PIXEL_CODEC_ZSTD, v1::PIXEL_CODEC_ZSTD_DELTA}) {
    absl::StatusOr<v1::PixelCodec> parsed = ParseCodec(CodecName(c));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, c);
  }
  EXPECT_EQ(*ParseCodec("ZSTD"), v1::PIXEL_CODEC_ZSTD);
  EXPECT_THAT(ParseCodec("lz4").status().message(),
              HasSubstr("none, zstd or zstd-delta, got 'lz4'"));
}

// ---- PIXEL_CODEC_ZSTD_DELTA (frame.proto)

// A ParallelFor on threads of its own, in reverse order: the bands must not
// depend on the order they are decoded in.
ParallelFor OnThreads() {
  return [](int n, const std::function<void(int)>& body) {
    std::vector<std::thread> threads;
    for (int b = n - 1; b >= 0; --b) threads.emplace_back(body, b);
    for (std::thread& t : threads) t.join();
  };
}

uint16_t ZigzagOf(int d) {  // d modulo 2^16 as int16, zigzag-coded
  const auto s = static_cast<int16_t>(static_cast<uint16_t>(d));
  return static_cast<uint16_t>(s >= 0 ? 2 * s : -2 * s - 1);
}

// The payload against the format written out: libzstd's one-shot reader
// (concatenated frames decompress to their concatenation) gives each
// band's shuffled residuals, which are checked against the prediction
// computed here from the frame's pixels.
TEST(DeltaCodecTest, PayloadIsTheDocumentedResidualsOfEachBand) {
  const cv::Mat counts = Counts(900, 700, 200.0, 5);  // 700 px: bands of 374 rows
  absl::StatusOr<v1::PixelData> px = ImageToPixels(counts);
  ASSERT_TRUE(px.ok());
  ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD_DELTA, &*px, 1, 2).ok());
  const v1::CompressedPixels& c = px->compressed();
  EXPECT_EQ(c.codec(), v1::PIXEL_CODEC_ZSTD_DELTA);
  EXPECT_EQ(c.shuffle_bytes(), 2u);
  std::string plain(c.uncompressed_size(), '\0');
  ASSERT_EQ(ZSTD_decompress(plain.data(), plain.size(), c.data().data(), c.data().size()),
            plain.size());
  const int w = 700, band = (512 << 10) / (2 * w);
  auto v = [&](int x, int y) { return int{counts.at<uint16_t>(y, std::clamp(x, 0, w - 1))}; };
  for (int y0 = 0; y0 < counts.rows; y0 += band) {
    const int n = std::min(counts.rows, y0 + band) - y0;
    const char* lo = plain.data() + size_t(y0) * w * 2;
    const char* hi = lo + size_t(n) * w;
    for (int y = y0; y < y0 + n; ++y) {
      for (int x = 0; x < w; ++x) {
        const int predicted =
            y == y0 ? 0 : (v(x - 1, y - 1) + 2 * v(x, y - 1) + v(x + 1, y - 1) + 2) / 4;
        const uint16_t want = ZigzagOf(v(x, y) - predicted);
        const size_t i = size_t(y - y0) * w + x;
        ASSERT_EQ(static_cast<uint8_t>(lo[i]), want & 0xff) << x << " " << y;
        ASSERT_EQ(static_cast<uint8_t>(hi[i]), want >> 8) << x << " " << y;
      }
    }
  }
}

// Every 2-byte pixel, from 0 to 65535 next to each other (the residuals
// wrap modulo 2^16), at widths with and without a middle, with and without
// threads, comes back bit for bit.
TEST(DeltaCodecTest, TwoBytePixelsComeBackBitForBit) {
  std::mt19937 rng(11);
  for (int depth : {CV_16U, CV_16S}) {
    for (cv::Size size : {cv::Size(1, 5), cv::Size(2, 3), cv::Size(3, 1), cv::Size(531, 1203)}) {
      cv::Mat image(size, CV_MAKETYPE(depth, 1));
      for (int y = 0; y < image.rows; ++y) {
        for (int x = 0; x < image.cols; ++x) {
          image.at<uint16_t>(y, x) =
              static_cast<uint16_t>(rng() % 3 == 0 ? 65535 * (rng() % 2) : rng());
        }
      }
      absl::StatusOr<v1::PixelData> px = ImageToPixels(image);
      ASSERT_TRUE(px.ok());
      ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD_DELTA, &*px, 1, 3).ok());
      for (const ParallelFor& parallel : {ParallelFor(), OnThreads()}) {
        cv::Mat back(image.size(), image.type());
        ASSERT_TRUE(DecompressPixels(*px, reinterpret_cast<char*>(back.data), parallel).ok());
        EXPECT_EQ(Bytes(back), Bytes(image)) << depth << " " << size;
      }
    }
  }
}

// Counts of a slowly varying mean (the link bench's frames: columns many
// pixels wide) lose more bytes to the residuals than to the shuffle alone.
TEST(DeltaCodecTest, SmoothCountsCompressBetterThanZstd) {
  std::mt19937_64 rng(9);
  cv::Mat counts(512, 512, CV_16U);
  for (int y = 0; y < counts.rows; ++y) {
    for (int x = 0; x < counts.cols; ++x) {
      const double c = std::cos(x / 12.0) * std::cos(y / 12.0);
      std::poisson_distribution<int> p(10.0 + 190.0 * c * c);
      counts.at<uint16_t>(y, x) = static_cast<uint16_t>(p(rng));
    }
  }
  size_t bytes[2];
  int i = 0;
  for (v1::PixelCodec codec : {v1::PIXEL_CODEC_ZSTD, v1::PIXEL_CODEC_ZSTD_DELTA}) {
    absl::StatusOr<v1::PixelData> px = ImageToPixels(counts);
    ASSERT_TRUE(px.ok());
    ASSERT_TRUE(CompressPixels(codec, &*px).ok());
    bytes[i++] = px->compressed().data().size();
  }
  EXPECT_LT(bytes[1], 0.95 * bytes[0]);
}

// Other dtypes under ZSTD_DELTA go as ZSTD; a ZSTD_DELTA header on them is
// refused, as are payloads whose frames do not hold whole rows or the
// frame's rows, or are corrupt.
TEST(DeltaCodecTest, OtherDtypesAndBrokenPayloadsAreRefused) {
  cv::Mat floats(6, 5, CV_32F, cv::Scalar(2.5f));
  absl::StatusOr<v1::PixelData> f = ImageToPixels(floats);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD_DELTA, &*f).ok());
  EXPECT_EQ(f->compressed().codec(), v1::PIXEL_CODEC_ZSTD);
  ASSERT_TRUE(PixelsToImage(*f).ok());
  f->mutable_compressed()->set_codec(v1::PIXEL_CODEC_ZSTD_DELTA);
  ExpectRefused(*f, "frame.pixels.compressed.codec", "uint16 and int16");

  auto delta = [] {
    absl::StatusOr<v1::PixelData> px = ImageToPixels(Counts(16, 16, 30.0, 4));
    EXPECT_TRUE(px.ok());
    EXPECT_TRUE(CompressPixels(v1::PIXEL_CODEC_ZSTD_DELTA, &*px).ok());
    return *px;
  };
  v1::PixelData px = delta();
  px.mutable_compressed()->set_shuffle_bytes(0);
  ExpectRefused(px, "frame.pixels.compressed.codec", "shuffle_bytes 0");

  // A frame of 15 rows' bytes and one of 17 bytes: not the frame's rows.
  for (size_t bytes : {size_t{15 * 32}, size_t{17}}) {
    const std::string zeros(bytes, '\0');
    std::string payload(ZSTD_compressBound(zeros.size()), '\0');
    payload.resize(ZSTD_compress(payload.data(), payload.size(), zeros.data(), zeros.size(), 1));
    px = delta();
    px.mutable_compressed()->set_data(payload);
    ExpectRefused(px, "frame.pixels.compressed.data",
                  bytes == 17 ? "whole rows" : "decompresses to 480");
  }
  px = delta();
  std::string& data = *px.mutable_compressed()->mutable_data();
  data[data.size() - 1] = static_cast<char>(data[data.size() - 1] ^ 0x5a);
  ExpectRefused(px, "frame.pixels.compressed.data", "decompress");
  px.mutable_compressed()->clear_data();
  ExpectRefused(px, "frame.pixels.compressed.data", "decompresses to 0 bytes");
}

}  // namespace
}  // namespace logstar::wire
