// UnixListener: logstard's Unix socket ("unix:PATH", "unix:///PATH" or
// "unix-abstract:NAME" listen addresses), accepted by the daemon itself and
// not by gRPC, so that the kernel's record of each connecting process
// (SO_PEERCRED, SO_PEERGROUPS) can be read: gRPC C++ does not expose it, and
// the daemon reads shared memory only for callers that could read it
// themselves (server/peer.h). Each connection is handed to the gRPC server
// (grpc::AddInsecureChannelFromFd), where its calls see the peer "fd:N".
//
// Beside it, the descriptor socket (PATH.fd, or the abstract NAME.fd) takes
// sealed memory files from clients on the host (server/memfd.h), into
// MemfdInbox::Global(), on a thread of its own.
//
// Unix sockets carry no TLS (a socket file's mode guards who may connect):
// ServerOptions::Validate refuses TLS with a Unix listen address. As gRPC's
// own listener did, a socket file left at PATH by an earlier run is replaced,
// and the new one gets the process umask's mode.
//
// Thread-safety: Start and Stop from one thread; accepting runs on the
// listener's own thread.
#ifndef LOGSTAR_SERVER_UNIX_LISTENER_H_
#define LOGSTAR_SERVER_UNIX_LISTENER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logstar::server {

class UnixListener {
 public:
  // Binds and listens on `address` (IsUnixSocketAddress, server/options.h) and on its
  // descriptor socket. UNAVAILABLE naming the path when that fails, or when something other
  // than a socket is at the path.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Bind(const std::string& address);
  ~UnixListener();  // Stop(); closes the socket and removes its file

  // Hands every connection accepted from now on to `server` (started; must
  // outlive Stop()).
  void Start(grpc::Server* server);
  // No connection is handed over once this returns; connections handed over
  // before stay the server's.
  void Stop();

 private:
  UnixListener(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // Accepts on `listen_fd` and gives each connection to `serve` until woken.
  void Accept(int listen_fd, const std::function<void(int)>& serve);

  const int fd_;
  const std::string path_;  // empty for an abstract socket
  int memfd_fd_ = -1;       // the descriptor socket
  std::string memfd_path_;  // empty for an abstract socket
  int wake_[2] = {-1, -1};  // a pipe that ends the accept loops
  std::thread thread_;
  std::thread memfd_thread_;
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_UNIX_LISTENER_H_
