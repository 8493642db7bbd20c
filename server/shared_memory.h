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
// Regions belong to the daemon, not to a session or a connection: a
// client registers once and streams on any number of streams. Registering a
// name again replaces its region (a client that restarted registers anew);
// at most Options::max_regions are held. A region's descriptor stays open
// until it is unregistered or the registry is destroyed, even when the
// client unlinks the object meanwhile.
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

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "engine/base/context.h"

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

  // Opens the object `key` read-only and holds it as `region`.
  // INVALID_ARGUMENT (naming region, key or byte_size) for a bad name, a key
  // that is not "/" and 1-250 characters without "/", a byte_size of 0 or
  // beyond the object's size; NOT_FOUND for a key with no object;
  // PERMISSION_DENIED for an object the daemon's user may not read;
  // RESOURCE_EXHAUSTED when max_regions other names are held.
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

 private:
  struct Region;
  explicit SharedMemoryRegistry(const Options& options) : options_(options) {}

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Region>> regions_ ABSL_GUARDED_BY(mu_);
};

// Whether a gRPC peer string (grpc::ServerContext::peer(), e.g.
// "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/run/x.sock") is on this
// host: shared memory only makes sense there, and a remote client must not
// get the daemon to read objects on a machine it is not on.
bool IsLocalPeer(absl::string_view peer);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SHARED_MEMORY_H_
