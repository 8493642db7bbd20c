#include "clients/cpp/recording.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logstar {
namespace {

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

void PutLe32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
uint32_t GetLe32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

// Reads up to n bytes; returns how many arrived.
int64_t ReadUpTo(std::istream& in, char* out, int64_t n) {
  in.read(out, n);
  return in.gcount();
}

}  // namespace

uint32_t Crc32(absl::string_view bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string EncodeRecord(absl::string_view payload) {
  std::string out(kRecordPrefixBytes, '\0');
  PutLe32(static_cast<uint32_t>(payload.size()), out.data());
  PutLe32(Crc32(payload), out.data() + 4);
  out.append(payload.data(), payload.size());
  return out;
}

// ---------------------------------------------------------------- reader

absl::StatusOr<std::unique_ptr<RecordingReader>> RecordingReader::Open(const std::string& path) {
  auto in = std::make_unique<std::ifstream>(path, std::ios::binary);
  if (!*in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open the recording: ", std::strerror(errno)));
  }
  return FromStream(std::move(in), path);
}

absl::StatusOr<std::unique_ptr<RecordingReader>> RecordingReader::FromStream(
    std::unique_ptr<std::istream> in, std::string name) {
  std::unique_ptr<RecordingReader> r(new RecordingReader(std::move(in), std::move(name)));
  char magic[sizeof(kRecordingMagic)];
  const int64_t got = ReadUpTo(*r->in_, magic, sizeof(magic));
  if (got != sizeof(magic) || std::memcmp(magic, kRecordingMagic, sizeof(magic)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        r->name_, ": not a logstar recording (the file does not start with the .lsr magic ",
        "bytes \"LSR1\\r\\n\\x1a\\n\")"));
  }
  r->offset_ = sizeof(magic);
  const int64_t header_at = r->offset_;
  std::string payload;
  absl::StatusOr<bool> read = r->ReadRecord(&payload);
  if (!read.ok()) return read.status();
  if (!*read) return r->Fail(header_at, "no header record: the file ends after the magic bytes");
  if (!r->header_.ParseFromString(payload)) {
    return r->Fail(header_at, "corrupt header record: not a RecordingHeader message");
  }
  if (r->header_.format_version() != kRecordingFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        r->name_, ": format_version ", r->header_.format_version(),
        " is not supported (this reader knows version ", kRecordingFormatVersion, ")"));
  }
  return r;
}

absl::Status RecordingReader::Fail(int64_t at, absl::string_view what) {
  error_offset_ = at;
  error_ = absl::DataLossError(absl::StrCat(name_, ": bad record at byte offset ", at, ": ", what));
  return error_;
}

absl::StatusOr<bool> RecordingReader::ReadRecord(std::string* payload) {
  if (!error_.ok()) return error_;
  const int64_t at = offset_;
  char prefix[kRecordPrefixBytes];
  const int64_t got = ReadUpTo(*in_, prefix, kRecordPrefixBytes);
  if (got == 0) return false;
  if (got < kRecordPrefixBytes) {
    return Fail(at, absl::StrCat("truncated: ", got, " of the ", kRecordPrefixBytes,
                                 " bytes of its length and CRC-32"));
  }
  const uint32_t length = GetLe32(prefix);
  const uint32_t stored_crc = GetLe32(prefix + 4);
  if (length > kMaxRecordBytes) {
    return Fail(at, absl::StrCat("length ", length, " exceeds the 1 GiB limit (corrupt length)"));
  }
  // Grow in steps, so that a corrupt length on a short file costs no gigabyte.
  payload->clear();
  constexpr int64_t kStep = 16 << 20;
  while (static_cast<int64_t>(payload->size()) < length) {
    const int64_t want = std::min<int64_t>(kStep, length - payload->size());
    const size_t old = payload->size();
    payload->resize(old + want);
    const int64_t n = ReadUpTo(*in_, payload->data() + old, want);
    if (n < want) {
      return Fail(at, absl::StrCat("truncated: its length says ", length, " payload bytes, only ",
                                   old + n, " follow"));
    }
  }
  const uint32_t crc = Crc32(*payload);
  if (crc != stored_crc) {
    return Fail(at,
                absl::StrFormat("corrupt: CRC-32 0x%08x stored, 0x%08x computed", stored_crc, crc));
  }
  offset_ = at + kRecordPrefixBytes + length;
  return true;
}

absl::StatusOr<bool> RecordingReader::Next(v1::RecordedFrame* frame) {
  const int64_t at = offset_;
  std::string payload;
  absl::StatusOr<bool> read = ReadRecord(&payload);
  if (!read.ok() || !*read) return read;
  if (!frame->ParseFromString(payload)) {
    offset_ = at;  // the record is unusable: report it, do not skip it
    return Fail(at, "corrupt: not a RecordedFrame message");
  }
  ++frames_read_;
  return true;
}

absl::StatusOr<RecordingContents> ReadRecording(absl::string_view bytes) {
  auto reader = RecordingReader::FromStream(
      std::make_unique<std::istringstream>(std::string(bytes)), "recording");
  if (!reader.ok()) return reader.status();
  RecordingContents out;
  out.header = (*reader)->header();
  for (;;) {
    v1::RecordedFrame frame;
    absl::StatusOr<bool> next = (*reader)->Next(&frame);
    if (!next.ok()) {
      out.tail = next.status();
      out.error_offset = (*reader)->error_offset();
      break;
    }
    if (!*next) break;
    out.frames.push_back(std::move(frame));
  }
  return out;
}

// ---------------------------------------------------------------- writer

absl::StatusOr<std::unique_ptr<RecordingWriter>> RecordingWriter::Create(
    const std::string& path, v1::RecordingHeader header) {
  if (header.format_version() == 0) header.set_format_version(kRecordingFormatVersion);
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot create the recording: ", std::strerror(errno)));
  }
  std::unique_ptr<RecordingWriter> w(new RecordingWriter(file, path));
  if (std::fwrite(kRecordingMagic, 1, sizeof(kRecordingMagic), file) != sizeof(kRecordingMagic)) {
    return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  }
  w->bytes_ = sizeof(kRecordingMagic);
  if (absl::Status s = w->Write(header); !s.ok()) return s;
  return w;
}

RecordingWriter::~RecordingWriter() { (void)Close(); }

absl::Status RecordingWriter::Append(const v1::RecordedFrame& frame) { return Write(frame); }

absl::Status RecordingWriter::Write(const google::protobuf::MessageLite& message) {
  if (file_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": the recording is closed"));
  }
  std::string payload;
  if (!message.SerializeToString(&payload) || payload.size() > kMaxRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": a record must serialize to at most 1 GiB"));
  }
  const std::string record = EncodeRecord(payload);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return absl::DataLossError(absl::StrCat(path_, ": write failed: ", std::strerror(errno)));
  }
  bytes_ += static_cast<int64_t>(record.size());
  return absl::OkStatus();
}

absl::Status RecordingWriter::Close() {
  if (file_ == nullptr) return absl::OkStatus();
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0)
    return absl::DataLossError(absl::StrCat(path_, ": close failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace logstar
