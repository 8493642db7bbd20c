// Sealed memory files handed to the daemon (issue 21, item 2): the
// same-host frame path that the daemon may map and read in place.
//
// A client on the daemon's host creates a memory file (memfd_create with
// MFD_ALLOW_SEALING), seals it against shrinking (F_SEAL_SHRINK), and hands
// its descriptor to the daemon over the daemon's descriptor socket, a Unix
// socket beside its gRPC socket (MemfdSocketAddress). The exchange, one
// per connection:
//   client -> daemon: the 4 bytes "LSF1" with one descriptor (SCM_RIGHTS)
//   daemon -> client: "OK <token>\n", or "ERR <why>\n"
// The daemon keeps the descriptor in its inbox (MemfdInbox::Global()) under
// the token, bound to the uid the kernel reports for the connecting process
// (SO_PEERCRED), for kPendingSeconds. The client then registers it as a
// shared memory region with the key "memfd:<token>" (RegisterSharedMemory;
// server/shared_memory.h), from the same uid.
//
// Why sealed: a file that cannot shrink cannot take a mapped page away
// while the daemon reads it, so mapping it is safe from SIGBUS, where a
// POSIX shared memory object must be copied out with pread. CheckSealed is
// the check, on the descriptor the daemon holds (seals are never removed).
//
// Thread-safety: MemfdInbox's methods may be called from any thread.
#ifndef LOGSTAR_SERVER_MEMFD_H_
#define LOGSTAR_SERVER_MEMFD_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/base/mutex.h"

namespace logstar::server {

// The key prefix RegisterSharedMemory takes for a handed-over memory file.
inline constexpr absl::string_view kMemfdKeyPrefix = "memfd:";

// The descriptor socket's address beside a Unix listen address
// ("unix:PATH", "unix:///PATH" -> PATH + ".fd"; "unix-abstract:NAME" ->
// the abstract NAME + ".fd", returned with a leading '\0'). Empty for other
// addresses (TCP has no descriptor socket).
std::string MemfdSocketAddress(absl::string_view listen_address);

class MemfdInbox {
 public:
  static constexpr int kPendingSeconds = 60;  // a token unused this long is dropped
  static constexpr int kMaxPending = 64;      // in all users; the oldest goes first

  // The daemon's process-wide inbox: the Unix listener puts, the registry takes.
  static MemfdInbox& Global();

  MemfdInbox() = default;
  ~MemfdInbox();  // closes what was not taken
  MemfdInbox(const MemfdInbox&) = delete;
  MemfdInbox& operator=(const MemfdInbox&) = delete;

  // Takes ownership of `fd` from a process of `uid`; returns the token
  // (32 hex digits, random) that names it.
  std::string Put(int fd, uid_t uid);
  // The descriptor under `token`, now the caller's to close. `any_uid`: the
  // daemon's own view, which may take any user's. INVALID_ARGUMENT naming
  // `field` for a token not held (unknown, expired, taken) or put by
  // another user.
  absl::StatusOr<int> Take(absl::string_view token, uid_t uid, bool any_uid,
                           absl::string_view field);

 private:
  struct Pending {
    int fd = -1;
    uid_t uid = 0;
    absl::Time put;
  };
  void DropExpiredLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
};

// Serves one connection `conn` of the descriptor socket (blocking, at most
// about `timeout` in all): receives one descriptor, puts it in `inbox` under
// the peer's uid and answers the token, or answers why not. Closes `conn`.
void ServeMemfdConnection(int conn, MemfdInbox& inbox, absl::Duration timeout);

// OK when `fd` is a memory file sealed against shrinking, so that a
// mapping of its first `byte_size` bytes (at most its size) cannot fault.
// INVALID_ARGUMENT naming `field` otherwise: not sealable (not a memfd),
// F_SEAL_SHRINK missing (what to do is said), shorter than byte_size, or
// with fewer than byte_size bytes allocated (a sparse file's holes would be
// allocated by the daemon's reads, at its cost).
absl::Status CheckSealed(int fd, uint64_t byte_size, absl::string_view field);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_MEMFD_H_
