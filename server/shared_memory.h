// SharedMemoryRegistry: the POSIX shared memory regions that clients on the
// daemon's host registered, so their frames can leave the pixels in a
// region (pixels.shared_memory) instead of sending them through gRPC.
//
// The daemon never maps a region: a client that shrinks its object while a
// mapped page is read would kill the daemon with SIGBUS. It keeps a
// read-only descriptor and copies a frame's bytes out with pread(), which
// reports a shrunken object as a short read, an error for that frame alone.
// The copy is the one a frame in the message costs too (protobuf's parse);
// gRPC's own copies and HTTP/2 framing of the bytes are what it saves.
//
// Regions belong to the user who registered them, not to a session or a
// connection: a client registers once and streams on any number of streams.
// The daemon reads an object only for a caller that could read it itself
// (issue 16, item 5): a caller's view (ForCaller, by its credentials,
// server/peer.h) registers only objects that caller may read
// (CheckCallerMayRead on the object the daemon opened), and lists, reads and
// unregisters only the regions registered under the caller's uid, so region
// names of different users never meet. Registering a name again replaces
// that user's region (a client that restarted registers anew); at most
// Options::max_regions are held in all. A region's descriptor stays open
// until it is unregistered or the registry is destroyed, even when the
// client unlinks the object meanwhile.
//
// A region may instead be a sealed memory file the client handed over
// (server/memfd.h; the key "memfd:<token>"): it cannot shrink, so the
// daemon maps it read-only once, at registration, and ReadImage gives its
// frames in place, without a copy. Its descriptor is the caller's own, so
// no read permission is checked beyond the token's uid.
//
// The registry Create() returns is the daemon's own view (its own user; no
// check beyond the kernel's), for in-process use; views share one table.
//
// Thread-safety: every method may be called from any thread. Reads run
// outside the registry's lock; a region unregistered during a Read stays
// valid until that Read returns.
#ifndef LOGSTAR_SERVER_SHARED_MEMORY_H_
#define LOGSTAR_SERVER_SHARED_MEMORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/base/context.h"
#include "server/peer.h"

namespace logstar::server {

class SharedMemoryRegistry {
 public:
  struct Options {
    int max_regions = 64;  // >= 1

    absl::Status Validate() const;
  };

  struct RegionInfo {
    std::string region;  // the name frames use
    std::string key;     // the object's shm_open name, "/..."
    uint64_t byte_size = 0;
  };

  static absl::StatusOr<std::unique_ptr<SharedMemoryRegistry>> Create(const Options& options);

  // The same regions as `caller` sees them (see the file comment). Cheap:
  // views share the table, and each may outlive the others.
  SharedMemoryRegistry ForCaller(const PeerCredentials& caller) const;

  // Opens the object `key` read-only (never blocking: a FIFO is refused,
  // server/files.h) and holds it as `region`. A key "memfd:<token>" takes
  // the memory file handed over under that token instead and maps it
  // (INVALID_ARGUMENT naming key for a token not held or a file not sealed
  // against shrinking, server/memfd.h).
  // INVALID_ARGUMENT (naming region, key or byte_size) for a bad name, a key
  // that is not "/" and 1-250 characters without "/", a byte_size of 0 or
  // beyond the object's size, or an object that is not a regular file;
  // NOT_FOUND for a key with no object; PERMISSION_DENIED for an object the
  // daemon's user or the caller may not read; RESOURCE_EXHAUSTED when
  // max_regions other regions are held.
  absl::Status Register(const std::string& region, const std::string& key, uint64_t byte_size);
  // NOT_FOUND for a name not held.
  absl::Status Unregister(absl::string_view region);
  std::vector<RegionInfo> List() const;  // by name

  // Copies bytes [offset, offset + size) of `region` to `out`, with the
  // context's threads when one is given (the bytes are the same either
  // way). INVALID_ARGUMENT naming `field` (e.g.
  // "frame.pixels.shared_memory") for a region not held, a range beyond its
  // registered byte_size, or an object shrunk below the range since it was
  // registered.
  absl::Status Read(absl::string_view region, uint64_t offset, uint64_t size, void* out,
                    absl::string_view field, ExecutionContext* context = nullptr) const;

  // A rows x cols image of OpenCV type `cv_type` at `offset` of `region`,
  // row-major without padding, with Read's errors. From a mapped memory
  // file: a read-only view in place that keeps the mapping alive while any
  // copy of the header lives (writing through it faults); the client's
  // later writes to those bytes show in it. Else: Read into a new image.
  absl::StatusOr<cv::Mat> ReadImage(absl::string_view region, uint64_t offset, int rows, int cols,
                                    int cv_type, absl::string_view field,
                                    ExecutionContext* context = nullptr) const;

 private:
  struct Region;
  struct Table;
  // The region under the caller's name that holds [offset, offset + size).
  absl::StatusOr<std::shared_ptr<const Region>> Find(absl::string_view region, uint64_t offset,
                                                     uint64_t size, absl::string_view field) const;
  // The memfd half of Register: the file handed over under `token`, mapped.
  absl::StatusOr<std::shared_ptr<Region>> MapHandedOver(const std::string& key,
                                                        absl::string_view token,
                                                        uint64_t byte_size) const;
  // Holds `r` as the caller's `region` (replacing one of that name).
  absl::Status Hold(const std::string& region, std::shared_ptr<Region> r);
  SharedMemoryRegistry(std::shared_ptr<Table> table, PeerCredentials caller, bool self)
      : table_(std::move(table)), caller_(std::move(caller)), self_(self) {}

  std::shared_ptr<Table> table_;
  PeerCredentials caller_;
  bool self_ = false;  // the daemon's own view: the kernel's check is the only one
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SHARED_MEMORY_H_
