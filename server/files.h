// Files the daemon opens on someone else's say — a client's shared memory
// key, the entries of its state directory — opened so that nothing can make
// it wait: without blocking (O_NONBLOCK: a FIFO with no writer, or a device,
// would otherwise hold the opening thread, and with it a gRPC reaction or
// start-up, forever), without following a final symbolic link (O_NOFOLLOW),
// and only when the descriptor is a regular file (fstat; a FIFO, socket,
// device or directory is refused before a byte is read). For regular files
// O_NONBLOCK changes nothing, so the descriptors read as usual.
//
// Thread-safety: pure functions of the file system.
#ifndef LOGSTAR_SERVER_FILES_H_
#define LOGSTAR_SERVER_FILES_H_

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logstar::server {

// FAILED_PRECONDITION naming `what` unless `fd` is a regular file; fills *st.
absl::Status RequireRegularFile(int fd, absl::string_view what, struct stat* st);

// The whole of `path`: NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION (not
// a regular file, a symbolic link, or more than max_bytes) or UNAVAILABLE
// (a read error), each naming the path.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, uint64_t max_bytes);

// Writes `bytes` to a new regular file path + ".tmp" (whatever was there,
// a link or a FIFO included, is unlinked first, never written through) and
// renames it over `path`: a process that dies meanwhile leaves the old
// contents or the new. UNAVAILABLE naming the path on any failure (the
// temporary file is then removed).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

// Moves `path` aside to path + ".rejected" and writes `why` (one line) to
// path + ".rejected.why", so that a file the daemon cannot use is reported
// once, not at every start, and an operator finds both. Returns the new
// path; UNAVAILABLE when the rename fails (the why file is best effort).
absl::StatusOr<std::string> SetAside(const std::string& path, absl::string_view why);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_FILES_H_
