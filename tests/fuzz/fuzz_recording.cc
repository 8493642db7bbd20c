// Fuzz target: the .lsr recording reader (clients/cpp/recording.h), over the
// file's bytes in memory. Whatever the bytes, reading must not crash, every
// frame handed out must come before the first bad record, and a bad record
// must be reported as DATA_LOSS at a byte offset inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "clients/cpp/recording.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<logstar::RecordingContents> contents = logstar::ReadRecording(bytes);
  if (!contents.ok()) return 0;
  if (!contents->tail.ok()) {
    // The reader's contract (recording.h): the offset of the bad record's
    // length field, which lies inside the file.
    const int64_t at = contents->error_offset;
    if (contents->tail.code() != absl::StatusCode::kDataLoss || at < 0 ||
        at >= static_cast<int64_t>(size)) {
      std::fprintf(stderr, "bad tail: %s at offset %lld of %zu bytes\n",
                   contents->tail.ToString().c_str(), static_cast<long long>(at), size);
      std::abort();
    }
  }
  return 0;
}
