#include "engine/image/image_io.h"

#include <stdio.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

// Exact element-wise equality of two single-channel Mats of the same type.
void ExpectMatEq(const cv::Mat& got, const cv::Mat& want) {
  ASSERT_EQ(got.type(), want.type());
  ASSERT_EQ(got.size(), want.size());
  cv::Mat a, b;
  got.convertTo(a, CV_64F);
  want.convertTo(b, CV_64F);
  for (int y = 0; y < a.rows; ++y) {
    for (int x = 0; x < a.cols; ++x) {
      EXPECT_EQ(a.at<double>(y, x), b.at<double>(y, x)) << "at x=" << x << ", y=" << y;
    }
  }
}

// A .npy file built byte by byte: magic, version, little-endian header length (2 bytes for
// version 1, 4 for version 2), the dict padded with spaces and ended by '\n' so that the data
// starts at a multiple of 64, then the data.
std::string NpyBytes(int major, const std::string& dict, const std::string& data) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const size_t len = header.size();
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>((len >> 24) & 0xff));
  }
  return out + header + data;
}

std::string Dict(const std::string& descr, bool fortran, const std::string& shape) {
  return absl::StrCat("{'descr': '", descr, "', 'fortran_order': ", fortran ? "True" : "False",
                      ", 'shape': ", shape, ", }");
}

std::string Bytes(std::initializer_list<uint8_t> b) { return std::string(b.begin(), b.end()); }

class ImageIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        std::filesystem::path(::testing::TempDir()) /
        absl::StrCat("image_io_test_", getpid(), "_", info->test_suite_name(), "_", info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::string WriteBytes(const std::string& name, const std::string& bytes) const {
    const std::string path = Path(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::filesystem::path dir_;
};

// --- WriteNpy + LoadFrame round trips -----------------------------------------------------

TEST_F(ImageIoTest, RoundTripUint8) {
  const cv::Mat m = (cv::Mat_<uint8_t>(2, 3) << 0, 1, 127, 128, 254, 255);
  ASSERT_TRUE(WriteNpy(Path("a.npy"), m).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.npy"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, RoundTripUint16) {
  const cv::Mat m = (cv::Mat_<uint16_t>(3, 2) << 0, 1, 256, 4660, 65534, 65535);
  ASSERT_TRUE(WriteNpy(Path("a.npy"), m).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.npy"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, RoundTripInt16) {
  const cv::Mat m = (cv::Mat_<int16_t>(2, 3) << -32768, -1, 0, 1, 12345, 32767);
  ASSERT_TRUE(WriteNpy(Path("a.npy"), m).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.npy"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, RoundTripFloat32) {
  const cv::Mat m = (cv::Mat_<float>(2, 2) << -0.0f, 0.1f, 3.4e38f, -1.17549435e-38f);
  ASSERT_TRUE(WriteNpy(Path("a.npy"), m).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.npy"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, RoundTripFloat64) {
  const cv::Mat m = (cv::Mat_<double>(1, 4) << 0.1, -1e300, 4.9e-324, 123456789.125);
  ASSERT_TRUE(WriteNpy(Path("a.npy"), m).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.npy"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, RoundTripOfNonContiguousRoi) {
  cv::Mat big(5, 6, CV_16U);
  for (int i = 0; i < 30; ++i) big.at<uint16_t>(i) = static_cast<uint16_t>(i * 1000);
  const cv::Mat roi = big(cv::Rect(1, 2, 4, 2));  // rows 2-3, cols 1-4
  ASSERT_TRUE(WriteNpy(Path("a.npy"), roi).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.npy"));
  ASSERT_TRUE(got.ok()) << got.status();
  const cv::Mat want =
      (cv::Mat_<uint16_t>(2, 4) << 13000, 14000, 15000, 16000, 19000, 20000, 21000, 22000);
  ExpectMatEq(*got, want);
}

TEST_F(ImageIoTest, WriteNpyRejectsMultiChannel) {
  EXPECT_FALSE(WriteNpy(Path("a.npy"), cv::Mat(2, 2, CV_8UC3, cv::Scalar(1, 2, 3))).ok());
}

// --- files written by WriteNpy, read by numpy ---------------------------------------------

// Runs numpy on `path`; returns "dtype shape sum" or "" when python or numpy is missing.
std::string NumpySummary(const std::string& path) {
  const std::string cmd = absl::StrCat("/usr/bin/python3 -c \"import numpy; a=numpy.load('", path,
                                       "'); print(a.dtype, a.shape, a.sum())\" 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  if (pclose(p) != 0) return "";
  return std::string(absl::StripAsciiWhitespace(out));
}

bool HaveNumpy() {
  if (access("/usr/bin/python3", X_OK) != 0) return false;
  return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

TEST_F(ImageIoTest, WrittenNpyIsReadableByNumpy) {
  if (!HaveNumpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  struct Case {
    cv::Mat mat;
    std::string want;
  };
  const std::vector<Case> cases = {
      {(cv::Mat_<uint8_t>(2, 3) << 1, 2, 3, 4, 5, 250), "uint8 (2, 3) 265"},
      {(cv::Mat_<uint16_t>(3, 2) << 1000, 2000, 3000, 4000, 5000, 60000), "uint16 (3, 2) 75000"},
      {(cv::Mat_<int16_t>(1, 4) << -300, 100, 7, -2), "int16 (1, 4) -195"},
      {(cv::Mat_<float>(2, 2) << 0.5f, 1.25f, -2.0f, 8.0f), "float32 (2, 2) 7.75"},
      {(cv::Mat_<double>(4, 1) << 0.25, 0.5, 1e3, -3.0), "float64 (4, 1) 997.75"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = Path(absl::StrCat("np", i, ".npy"));
    ASSERT_TRUE(WriteNpy(path, cases[i].mat).ok());
    EXPECT_EQ(NumpySummary(path), cases[i].want) << path;
  }
}

// --- hand-built .npy bytes ----------------------------------------------------------------

TEST_F(ImageIoTest, BigEndianFloat32) {
  // 1.5f = 0x3FC00000, -2.25f = 0xC0100000, 0.1f = 0x3DCCCCCD, 1024.0f = 0x44800000.
  const std::string data = Bytes({0x3F, 0xC0, 0x00, 0x00, 0xC0, 0x10, 0x00, 0x00,  //
                                  0x3D, 0xCC, 0xCC, 0xCD, 0x44, 0x80, 0x00, 0x00});
  absl::StatusOr<cv::Mat> got = ParseNpy(NpyBytes(1, Dict(">f4", false, "(2, 2)"), data), "be");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<float>(2, 2) << 1.5f, -2.25f, 0.1f, 1024.0f));
}

TEST_F(ImageIoTest, BigEndianUint16) {
  const std::string data = Bytes({0x12, 0x34, 0x01, 0x02, 0xFF, 0xFF});
  absl::StatusOr<cv::Mat> got = ParseNpy(NpyBytes(1, Dict(">u2", false, "(1, 3)"), data), "be");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<uint16_t>(1, 3) << 0x1234, 0x0102, 0xFFFF));
}

TEST_F(ImageIoTest, LittleEndianInt16FromBytes) {
  const std::string data = Bytes({0xFE, 0xFF, 0x34, 0x12});  // -2, 0x1234
  absl::StatusOr<cv::Mat> got = ParseNpy(NpyBytes(1, Dict("<i2", false, "(2, 1)"), data), "le");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<int16_t>(2, 1) << -2, 0x1234));
}

TEST_F(ImageIoTest, FortranOrderIsTransposedBack) {
  // The 2x3 array [[1, 2, 3], [4, 5, 6]] stored column by column.
  const std::string data = Bytes({1, 4, 2, 5, 3, 6});
  absl::StatusOr<cv::Mat> got = ParseNpy(NpyBytes(1, Dict("|u1", true, "(2, 3)"), data), "f");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<uint8_t>(2, 3) << 1, 2, 3, 4, 5, 6));
}

TEST_F(ImageIoTest, FortranOrderBigEndianUint16) {
  // [[0x0102, 0x0304, 0x0506], [0x0708, 0x090A, 0x0B0C]] column by column, big-endian.
  const std::string data =
      Bytes({0x01, 0x02, 0x07, 0x08, 0x03, 0x04, 0x09, 0x0A, 0x05, 0x06, 0x0B, 0x0C});
  absl::StatusOr<cv::Mat> got = ParseNpy(NpyBytes(1, Dict(">u2", true, "(2, 3)"), data), "f");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<uint16_t>(2, 3) << 0x0102, 0x0304, 0x0506, 0x0708, 0x090A, 0x0B0C));
}

TEST_F(ImageIoTest, FormatVersion2HasFourByteHeaderLength) {
  const std::string data = Bytes({0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0});  // 1, -2
  const std::string bytes = NpyBytes(2, Dict("<f4", false, "(1, 2)"), data);
  ASSERT_EQ(bytes[6], 2);
  absl::StatusOr<cv::Mat> got = ParseNpy(bytes, "v2");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<float>(1, 2) << 1.0f, -2.0f));
}

TEST_F(ImageIoTest, HandBuiltFileLoadsThroughLoadFrame) {
  const std::string path =
      WriteBytes("hand.npy", NpyBytes(1, Dict("<u2", false, "(1, 2)"), Bytes({1, 0, 0, 1})));
  absl::StatusOr<cv::Mat> got = LoadFrame(path);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, (cv::Mat_<uint16_t>(1, 2) << 1, 256));
}

TEST_F(ImageIoTest, EmptyShapeIsError) {
  absl::StatusOr<cv::Mat> got = ParseNpy(NpyBytes(1, Dict("<f4", false, "(0, 5)"), ""), "e");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("empty"));
}

TEST_F(ImageIoTest, ThreeDimensionalShapeIsError) {
  absl::StatusOr<cv::Mat> got =
      ParseNpy(NpyBytes(1, Dict("|u1", false, "(2, 2, 2)"), std::string(8, '\1')), "3d");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("2-D"));
}

TEST_F(ImageIoTest, OneDimensionalShapeIsError) {
  absl::StatusOr<cv::Mat> got =
      ParseNpy(NpyBytes(1, Dict("|u1", false, "(4,)"), std::string(4, '\1')), "1d");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("2-D"));
}

TEST_F(ImageIoTest, UnsupportedDtypesAreNamed) {
  for (const std::string descr : {"<i8", "<c8"}) {
    absl::StatusOr<cv::Mat> got =
        ParseNpy(NpyBytes(1, Dict(descr, false, "(1, 1)"), std::string(8, '\0')), "dt");
    ASSERT_FALSE(got.ok()) << descr;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(descr));
  }
}

// int32 and uint32 (Digital Micrograph exports) widen to float64, float16
// to float32, each value exactly: the bytes below are hand-encoded.
TEST_F(ImageIoTest, Int32Uint32AndFloat16AreWidenedExactly) {
  // int32 little-endian -2147483648, 16777217 (not a float32), big-endian 7.
  const std::string i32("\x00\x00\x00\x80\x01\x00\x00\x01", 8);
  cv::Mat got = ParseNpy(NpyBytes(1, Dict("<i4", false, "(1, 2)"), i32), "i4").value();
  ASSERT_EQ(got.type(), CV_64FC1);
  EXPECT_EQ(got.at<double>(0, 0), -2147483648.0);
  EXPECT_EQ(got.at<double>(0, 1), 16777217.0);
  got = ParseNpy(NpyBytes(1, Dict(">i4", false, "(1, 1)"), std::string("\0\0\0\x07", 4)), "be")
            .value();
  EXPECT_EQ(got.at<double>(0, 0), 7.0);
  // uint32 4294967295 and 2147483648: above int32's range.
  const std::string u32("\xff\xff\xff\xff\x00\x00\x00\x80", 8);
  got = ParseNpy(NpyBytes(1, Dict("<u4", false, "(2, 1)"), u32), "u4").value();
  ASSERT_EQ(got.type(), CV_64FC1);
  EXPECT_EQ(got.at<double>(0, 0), 4294967295.0);
  EXPECT_EQ(got.at<double>(1, 0), 2147483648.0);
  // float16: 0x3c00 = 1, 0xc000 = -2, 0x7bff = 65504 (the largest), 0x0001 = 2^-24.
  const std::string f16("\x00\x3c\x00\xc0\xff\x7b\x01\x00", 8);
  got = ParseNpy(NpyBytes(1, Dict("<f2", false, "(2, 2)"), f16), "f2").value();
  ASSERT_EQ(got.type(), CV_32FC1);
  EXPECT_EQ(got.at<float>(0, 0), 1.0f);
  EXPECT_EQ(got.at<float>(0, 1), -2.0f);
  EXPECT_EQ(got.at<float>(1, 0), 65504.0f);
  EXPECT_EQ(got.at<float>(1, 1), std::ldexp(1.0f, -24));
}

TEST_F(ImageIoTest, TruncatedDataIsError) {
  // (2, 2) float32 needs 16 bytes; give 15.
  absl::StatusOr<cv::Mat> got =
      ParseNpy(NpyBytes(1, Dict("<f4", false, "(2, 2)"), std::string(15, '\0')), "t");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("truncated"));
}

TEST_F(ImageIoTest, TruncatedHeaderIsError) {
  const std::string bytes = NpyBytes(1, Dict("<f4", false, "(1, 1)"), std::string(4, '\0'));
  EXPECT_FALSE(ParseNpy(bytes.substr(0, 30), "t").ok());
  EXPECT_FALSE(ParseNpy(bytes.substr(0, 8), "t").ok());
}

TEST_F(ImageIoTest, BadMagicIsError) {
  std::string bytes = NpyBytes(1, Dict("<f4", false, "(1, 1)"), std::string(4, '\0'));
  bytes[1] = 'X';
  absl::StatusOr<cv::Mat> got = ParseNpy(bytes, "magic");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("magic"));
  EXPECT_FALSE(ParseNpy("", "nothing").ok());
}

// --- PNG and TIFF -------------------------------------------------------------------------

TEST_F(ImageIoTest, Png8Bit) {
  const cv::Mat m = (cv::Mat_<uint8_t>(2, 3) << 0, 17, 128, 200, 254, 255);
  ASSERT_TRUE(cv::imwrite(Path("a.png"), m));
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.png"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, Png16Bit) {
  const cv::Mat m = (cv::Mat_<uint16_t>(2, 2) << 0, 300, 40000, 65535);
  ASSERT_TRUE(cv::imwrite(Path("a.png"), m));
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.png"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, Tiff16Bit) {
  const cv::Mat m = (cv::Mat_<uint16_t>(3, 2) << 1, 2, 1000, 20000, 65000, 65535);
  ASSERT_TRUE(cv::imwrite(Path("a.tif"), m));
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.tif"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, TiffFloat32) {
  const cv::Mat m = (cv::Mat_<float>(2, 2) << -1.5f, 0.1f, 3.25e7f, 1e-20f);
  ASSERT_TRUE(cv::imwrite(Path("a.tiff"), m));
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("a.tiff"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

TEST_F(ImageIoTest, UpperCaseExtensionIsAccepted) {
  const cv::Mat m = (cv::Mat_<uint8_t>(1, 2) << 3, 4);
  ASSERT_TRUE(WriteNpy(Path("A.NPY"), m).ok());
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("A.NPY"));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatEq(*got, m);
}

// --- errors -------------------------------------------------------------------------------

TEST_F(ImageIoTest, MissingFileIsNotFoundNamingPath) {
  const std::string path = Path("nope.npy");
  absl::StatusOr<cv::Mat> got = LoadFrame(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(path));
}

TEST_F(ImageIoTest, DirectoryIsError) {
  std::filesystem::create_directories(Path("dir.npy"));
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("dir.npy"));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("director"));
}

TEST_F(ImageIoTest, UnknownExtensionIsNamed) {
  const std::string path = WriteBytes("a.jpg2", "whatever");
  absl::StatusOr<cv::Mat> got = LoadFrame(path);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(".jpg2"));
}

TEST_F(ImageIoTest, ThreeChannelPngIsError) {
  ASSERT_TRUE(cv::imwrite(Path("rgb.png"), cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3))));
  absl::StatusOr<cv::Mat> got = LoadFrame(Path("rgb.png"));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("channels"));
}

TEST_F(ImageIoTest, GarbagePngIsError) {
  const std::string path = WriteBytes("junk.png", "this is not a png at all, just text\n");
  absl::StatusOr<cv::Mat> got = LoadFrame(path);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(path));
}

TEST_F(ImageIoTest, GarbageNpyFileIsError) {
  EXPECT_FALSE(LoadFrame(WriteBytes("junk.npy", "not numpy")).ok());
}

}  // namespace
}  // namespace logstar
