// Where sessions are kept beyond one process (issue 20): a small interface
// over a store of serialized SessionState messages, keyed by session id and
// versioned, with two implementations: the state directory (--state_dir,
// one daemon's own) and Redis (--session_store), shared by the daemon's
// replicas. (SessionManager restores every session of a state directory at
// start; a shared store's sessions are loaded when asked for.)
//
// Versions: every save names the version it writes; a store that holds the
// same or a newer version of the session keeps it and reports the save as
// refused (Save returns false), so a replica that lost a session to another
// never overwrites the other's newer state with its own older one.
//
// Errors: UNAVAILABLE naming the store (its URL) when it cannot be reached
// or answers with an error; the next call tries to connect again, so the
// daemon recovers by itself when the store returns.
//
// Thread-safety: every method may be called from any thread. Calls block
// on the network (each for at most the store's timeout): never call them
// from a gRPC reaction.
#ifndef LOGSTAR_SERVER_SESSION_STORE_H_
#define LOGSTAR_SERVER_SESSION_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/options.h"

namespace logstar::server {

class SessionStore {
 public:
  struct Stored {
    uint64_t version = 0;
    std::string bytes;  // a serialized v1::SessionState
  };

  virtual ~SessionStore() = default;

  // The store's address for messages and logs, e.g. "redis://h:6379/0".
  virtual const std::string& name() const = 0;
  // NOT_FOUND when the store holds no such session.
  virtual absl::StatusOr<Stored> Load(const std::string& id) = 0;
  // Writes `bytes` as `version` of the session unless the store holds that
  // version or a newer one; returns whether it wrote.
  virtual absl::StatusOr<bool> Save(const std::string& id, uint64_t version,
                                    const std::string& bytes) = 0;
  // OK also when the session was not stored.
  virtual absl::Status Remove(const std::string& id) = 0;
  // The ids of the sessions stored, in no particular order, at most
  // `max_ids` of them (a bound on what one call reads; which ones are left
  // out when there are more is unspecified). Redis: SCAN over the key
  // prefix (never KEYS), which may name an id twice.
  virtual absl::StatusOr<std::vector<std::string>> List(size_t max_ids) = 0;
  // OK when the store answers now (for readiness).
  virtual absl::Status Check() = 0;
};

// A store in the directory `dir` (created when missing): a file
// ID.session.pb per session, written atomically (server/files.h). One
// daemon owns its directory, so versions are not compared: Save always
// writes.
std::unique_ptr<SessionStore> NewDirectorySessionStore(const std::string& dir);
// The file name the directory store keeps `id` under.
std::string StateFileName(const std::string& id);
// The largest saved state either store reads (a bound on what a corrupt or
// foreign file can make the daemon allocate).
inline constexpr uint64_t kMaxSessionStateBytes = uint64_t{256} << 20;

// A store on the Redis server at `address`: each session is a hash
// logstar:session:ID with fields version and state, written by a Lua script
// that compares versions, so a save is one atomic step. Connects lazily:
// construction never fails or blocks.
struct RedisStoreOptions {
  // Each call waits at most this long for the server (connecting included).
  absl::Duration timeout = absl::Seconds(1);
  // A session not saved for this long expires from the store (0: never).
  absl::Duration ttl = absl::ZeroDuration();
};
std::unique_ptr<SessionStore> NewRedisSessionStore(const RedisAddress& address,
                                                   const RedisStoreOptions& options);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SESSION_STORE_H_
