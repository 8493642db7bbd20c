// Who is calling: the credentials of a gRPC peer on the daemon's host, and
// whether they may read a file. The daemon reads shared memory for a client
// only when the client could read the object itself (issue 16, item 5):
// run as root, it must not become a way around the objects' modes.
//
// How a peer is known:
//   - On logstard's Unix socket ("unix:PATH" listen addresses), which the
//     daemon accepts itself (server/unix_listener.h) because gRPC C++ does
//     not expose SO_PEERCRED: each connection reaches gRPC as the peer
//     "fd:N", and the socket N gives the kernel's record of the process that
//     connected (SO_PEERCRED: uid and gid; SO_PEERGROUPS: its supplementary
//     groups). A connection's descriptor lives as long as a call on it, so N
//     is that connection while the call runs.
//   - Over TCP loopback ("ipv4:127.x.y.z:PORT", "ipv6:[::1]:PORT", mapped
//     IPv4): the client's socket is in the daemon's network namespace, and
//     the kernel lists its owner (/proc/net/tcp and tcp6, the uid column: the
//     identd method; an IPv4 peer may connect from a dual-stack IPv6 socket,
//     listed under the mapped address). Its groups are not known; a peer
//     whose (address, port) the tables show with two different owners is
//     not identified.
//   - Anything else (remote addresses, gRPC's own Unix listeners) is not.
//
// Thread-safety: pure functions of the kernel's state.
#ifndef LOGSTAR_SERVER_PEER_H_
#define LOGSTAR_SERVER_PEER_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logstar::server {

struct PeerCredentials {
  uid_t uid = 0;
  gid_t gid = 0;              // primary group; meaningful only with groups_known
  std::vector<gid_t> groups;  // supplementary
  bool groups_known = false;  // false over TCP: only the owner's uid is known
  std::string how;            // "unix socket" or "tcp loopback", for messages

  // The daemon's own process.
  static PeerCredentials Self();
};

// The credentials of the gRPC peer `peer` (grpc::ServerContext::peer()).
// PERMISSION_DENIED, saying why, when they cannot be known (see above).
absl::StatusOr<PeerCredentials> LocalPeerCredentials(absl::string_view peer);

// OK when a process with `caller`'s credentials could open the file with
// `st` for reading, by the mode bits as the kernel applies them (root reads
// anything). Conservative where the credentials or the file say less than
// the kernel knows: without the caller's groups, a non-owner is allowed only
// when group and others may both read; a file with a POSIX access ACL
// (`has_acl`) is shared only with its owner. Else PERMISSION_DENIED naming
// `what`, the caller and the file's owner, group and mode.
absl::Status CheckCallerMayRead(const PeerCredentials& caller, const struct stat& st, bool has_acl,
                                absl::string_view what);

// Whether the open file `fd` carries a POSIX access ACL.
bool HasAccessAcl(int fd);

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_PEER_H_
