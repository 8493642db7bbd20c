// Recorded streams: .lsr files as proto/logstar/v1/recording.proto lays
// them out (8 magic bytes, then records of uint32 LE length, uint32 LE
// CRC-32 and a serialized message: one RecordingHeader, then RecordedFrames).
//
// The reader works on any std::istream (a file, or bytes in memory for a
// fuzzer) and keeps no global state. A truncated or corrupt record ends the
// readable part: Next() returns DATA_LOSS naming the byte offset of that
// record's length field and what was wrong; every frame before it has
// already been handed out intact. Offsets count bytes from the file's start.
//
// The writer appends one record at a time and flushes after each, so a crash
// loses at most the record being written.
//
// Thread-safety: a reader or writer is used by one thread at a time;
// distinct instances are independent.
#ifndef LOGSTAR_CLIENTS_CPP_RECORDING_H_
#define LOGSTAR_CLIENTS_CPP_RECORDING_H_

#include <cstdint>
#include <cstdio>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/message_lite.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logstar/v1/recording.pb.h"

namespace logstar {

// "LSR1" CR LF ^Z LF.
inline constexpr char kRecordingMagic[8] = {'L', 'S', 'R', '1', '\r', '\n', '\x1a', '\n'};
inline constexpr uint32_t kRecordingFormatVersion = 1;  // RecordingHeader.format_version
inline constexpr uint32_t kMaxRecordBytes = 1u << 30;   // a payload's largest length
inline constexpr int kRecordPrefixBytes = 8;            // length + CRC

// CRC-32 with the IEEE 802.3 polynomial (as zlib.crc32 and PNG compute it).
uint32_t Crc32(absl::string_view bytes);

// A record as written to the file: length, CRC, payload.
std::string EncodeRecord(absl::string_view payload);

class RecordingReader {
 public:
  // Reads the magic and the header. Errors: NOT_FOUND (no such file),
  // INVALID_ARGUMENT (not a recording: bad magic), DATA_LOSS (the header
  // record is truncated or corrupt; the message names the offset),
  // FAILED_PRECONDITION (a format_version this reader does not know).
  static absl::StatusOr<std::unique_ptr<RecordingReader>> Open(const std::string& path);
  // The same over a stream; `name` prefixes error messages (e.g. the path).
  static absl::StatusOr<std::unique_ptr<RecordingReader>> FromStream(
      std::unique_ptr<std::istream> in, std::string name);

  const v1::RecordingHeader& header() const { return header_; }

  // The next frame into *frame: true when one was read, false at the clean
  // end of the file. DATA_LOSS at a truncated or corrupt record (and on every
  // later call); error_offset() then gives the record's byte offset.
  absl::StatusOr<bool> Next(v1::RecordedFrame* frame);

  // Byte offset of the next record to read.
  int64_t offset() const { return offset_; }
  // Offset of the bad record once Next() failed; -1 before.
  int64_t error_offset() const { return error_offset_; }
  int64_t frames_read() const { return frames_read_; }

 private:
  RecordingReader(std::unique_ptr<std::istream> in, std::string name)
      : in_(std::move(in)), name_(std::move(name)) {}

  // One record's payload; false at a clean end (no byte left).
  absl::StatusOr<bool> ReadRecord(std::string* payload);
  absl::Status Fail(int64_t at, absl::string_view what);

  std::unique_ptr<std::istream> in_;
  std::string name_;
  v1::RecordingHeader header_;
  int64_t offset_ = 0;
  int64_t error_offset_ = -1;
  absl::Status error_;
  int64_t frames_read_ = 0;
};

// Everything readable from a recording held in memory: the frames before the
// first bad record and, in `tail`, why reading stopped (OK at a clean end).
// Fails only when the header cannot be read.
struct RecordingContents {
  v1::RecordingHeader header;
  std::vector<v1::RecordedFrame> frames;
  absl::Status tail;
  int64_t error_offset = -1;
};
absl::StatusOr<RecordingContents> ReadRecording(absl::string_view bytes);

class RecordingWriter {
 public:
  // Creates (truncates) `path` and writes the magic and `header` (whose
  // format_version is set to kRecordingFormatVersion when 0).
  static absl::StatusOr<std::unique_ptr<RecordingWriter>> Create(const std::string& path,
                                                                 v1::RecordingHeader header);
  ~RecordingWriter();  // closes; use Close() to see errors

  // Appends a record and flushes it to the operating system.
  absl::Status Append(const v1::RecordedFrame& frame);
  absl::Status Close();

  int64_t bytes_written() const { return bytes_; }

 private:
  RecordingWriter(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  absl::Status Write(const google::protobuf::MessageLite& message);

  std::FILE* file_;
  std::string path_;
  int64_t bytes_ = 0;
};

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_RECORDING_H_
