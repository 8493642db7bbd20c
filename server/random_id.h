// Random identifiers the daemon hands out: session ids chosen for clients
// that did not name one, and the one-use tokens of sealed memory files
// (server/memfd.h). One rule for both: hex digits of the kernel's random
// source (std::random_device is getrandom on Linux), unpredictable across
// processes and restarts, so that neither can be guessed by another client.
//
// Thread-safety: may be called from any thread.
#ifndef LOGSTAR_SERVER_RANDOM_ID_H_
#define LOGSTAR_SERVER_RANDOM_ID_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace logstar::server {

// `words` × 16 lowercase hex digits.
inline std::string RandomHexId(int words) {
  std::random_device random;
  std::string out;
  for (int i = 0; i < words; ++i) {
    const uint64_t w = (uint64_t{random()} << 32) | random();
    absl::StrAppend(&out, absl::Hex(w, absl::kZeroPad16));
  }
  return out;
}

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_RANDOM_ID_H_
