// The .lsr reader and writer against byte layouts built by hand here from
// recording.proto's description (little-endian length, zlib's CRC-32 as the
// independent checksum), not from the code under test.
#include "clients/cpp/recording.h"

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace logstar {
namespace {

using ::testing::HasSubstr;

const std::string kMagic("LSR1\r\n\x1a\n", 8);

std::string Le32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

uint32_t ZlibCrc(const std::string& bytes) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

std::string Record(const std::string& payload) {
  return Le32(static_cast<uint32_t>(payload.size())) + Le32(ZlibCrc(payload)) + payload;
}

v1::RecordingHeader Header(uint32_t version = 1) {
  v1::RecordingHeader h;
  h.set_format_version(version);
  h.set_created_by("recording_test");
  h.set_has_truth(true);
  h.mutable_settings()->mutable_prior()->set_pixel_size_angstrom(0.125);
  return h;
}

v1::RecordedFrame Frame(int i) {
  v1::RecordedFrame f;
  f.set_offset_ns(i * 100'000'000LL);
  f.mutable_frame()->set_sequence(i + 1);
  v1::PixelData* px = f.mutable_frame()->mutable_pixels();
  px->set_dtype(v1::DTYPE_UINT8);
  px->set_width(3);
  px->set_height(2);
  px->set_data(std::string("\x01\x02\x03\x04\x05", 5) + static_cast<char>(i));
  v1::TruthAtom* a = f.add_truth();
  a->set_x(1.5 + i);
  a->set_y(0.25);
  return f;
}

// A file of three frames, laid out by hand; `ends` gets each record's end.
std::string HandMadeFile(std::vector<size_t>* ends = nullptr) {
  std::string file = kMagic + Record(Header().SerializeAsString());
  if (ends) ends->push_back(file.size());
  for (int i = 0; i < 3; ++i) {
    file += Record(Frame(i).SerializeAsString());
    if (ends) ends->push_back(file.size());
  }
  return file;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(RecordingTest, Crc32IsZlibs) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);  // the standard check value
  const std::string bytes = Frame(7).SerializeAsString();
  EXPECT_EQ(Crc32(bytes), ZlibCrc(bytes));
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(RecordingTest, WriterProducesTheDocumentedLayoutAndReaderRoundTrips) {
  const std::string path = ::testing::TempDir() + "/roundtrip.lsr";
  {
    auto w = RecordingWriter::Create(path, Header());
    ASSERT_TRUE(w.ok()) << w.status();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*w)->Append(Frame(i)).ok());
    // Flushed after every record: the bytes are on disk before Close().
    EXPECT_EQ(Slurp(path), HandMadeFile());
    ASSERT_TRUE((*w)->Close().ok());
  }
  EXPECT_EQ(Slurp(path), HandMadeFile());

  auto r = RecordingReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->header().created_by(), "recording_test");
  EXPECT_TRUE((*r)->header().has_truth());
  for (int i = 0; i < 3; ++i) {
    v1::RecordedFrame f;
    auto next = (*r)->Next(&f);
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_TRUE(*next);
    EXPECT_EQ(f.SerializeAsString(), Frame(i).SerializeAsString());
  }
  v1::RecordedFrame f;
  auto end = (*r)->Next(&f);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
  EXPECT_EQ((*r)->error_offset(), -1);
}

TEST(RecordingTest, TruncationAtEveryByteOfTheLastRecordKeepsTheFramesBefore) {
  std::vector<size_t> ends;
  const std::string file = HandMadeFile(&ends);
  const size_t last_start = ends[2];  // header, frame 0, frame 1 end here
  for (size_t cut = last_start + 1; cut < file.size(); ++cut) {
    SCOPED_TRACE(cut);
    auto contents = ReadRecording(file.substr(0, cut));
    ASSERT_TRUE(contents.ok()) << contents.status();
    ASSERT_EQ(contents->frames.size(), 2u);
    EXPECT_EQ(contents->frames[1].SerializeAsString(), Frame(1).SerializeAsString());
    EXPECT_EQ(contents->tail.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(contents->error_offset, static_cast<int64_t>(last_start));
    EXPECT_THAT(contents->tail.message(), HasSubstr(absl::StrCat("offset ", last_start)));
    EXPECT_THAT(contents->tail.message(), HasSubstr("truncated"));
  }
  // Cut exactly between records: a shorter, valid file.
  auto clean = ReadRecording(file.substr(0, last_start));
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(clean->frames.size(), 2u);
  EXPECT_TRUE(clean->tail.ok());
}

TEST(RecordingTest, FlippedByteIsACrcError) {
  std::vector<size_t> ends;
  std::string file = HandMadeFile(&ends);
  file[ends[1] + 8 + 3] ^= 0x40;  // inside frame 1's payload
  auto contents = ReadRecording(file);
  ASSERT_TRUE(contents.ok());
  ASSERT_EQ(contents->frames.size(), 1u);
  EXPECT_EQ(contents->error_offset, static_cast<int64_t>(ends[1]));
  EXPECT_EQ(contents->tail.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(contents->tail.message(), HasSubstr("CRC-32"));

  // The stream reader repeats the error rather than skipping past it.
  auto r = RecordingReader::FromStream(std::make_unique<std::istringstream>(file), "x.lsr");
  ASSERT_TRUE(r.ok());
  v1::RecordedFrame f;
  ASSERT_TRUE(*(*r)->Next(&f));
  EXPECT_FALSE((*r)->Next(&f).ok());
  EXPECT_THAT((*r)->Next(&f).status().message(), HasSubstr("x.lsr: bad record at byte offset"));
}

TEST(RecordingTest, BadMagicIsNotARecording) {
  std::string file = HandMadeFile();
  file[3] = '2';
  auto contents = ReadRecording(file);
  EXPECT_EQ(contents.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(contents.status().message(), HasSubstr("not a logstar recording"));
  EXPECT_EQ(ReadRecording("").status().code(), absl::StatusCode::kInvalidArgument);
  // Text-mode mangling (CR LF turned into LF) is caught by the magic too.
  EXPECT_FALSE(ReadRecording("LSR1\n\x1a\n" + file.substr(8)).ok());
}

TEST(RecordingTest, UnknownFormatVersionIsRefused) {
  const std::string file = kMagic + Record(Header(2).SerializeAsString());
  auto contents = ReadRecording(file);
  EXPECT_EQ(contents.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(contents.status().message(), HasSubstr("format_version 2"));
  EXPECT_FALSE(ReadRecording(kMagic + Record(Header(0).SerializeAsString())).ok());
}

TEST(RecordingTest, AbsurdLengthIsReportedWithoutReadingOn) {
  std::vector<size_t> ends;
  const std::string good = HandMadeFile(&ends);
  // A length of 2 GiB after frame 0, with a few bytes after it.
  const std::string file = good.substr(0, ends[1]) + Le32(0x80000000u) + Le32(0) + "abc";
  auto contents = ReadRecording(file);
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(contents->frames.size(), 1u);
  EXPECT_EQ(contents->error_offset, static_cast<int64_t>(ends[1]));
  EXPECT_THAT(contents->tail.message(), HasSubstr("exceeds the 1 GiB limit"));
  // Under the limit but past the end: truncated, and no gigabyte allocated.
  const std::string big = good.substr(0, ends[1]) + Le32(1u << 30) + Le32(0) + "abc";
  contents = ReadRecording(big);
  ASSERT_TRUE(contents.ok());
  EXPECT_THAT(contents->tail.message(), HasSubstr("truncated"));
}

TEST(RecordingTest, HeaderProblemsFailOpen) {
  // The magic alone; a truncated header.
  EXPECT_EQ(ReadRecording(kMagic).status().code(), absl::StatusCode::kDataLoss);
  const std::string header = Record(Header().SerializeAsString());
  auto cut = ReadRecording(kMagic + header.substr(0, header.size() - 1));
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(cut.status().message(), HasSubstr("offset 8"));
  EXPECT_EQ(RecordingReader::Open(::testing::TempDir() + "/no/such.lsr").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace logstar
