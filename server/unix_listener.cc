#include "server/unix_listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <grpcpp/server_posix.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/base/status_macros.h"
#include "server/log.h"
#include "server/memfd.h"

namespace logstar::server {

namespace {

// Binds and listens on the socket `name` (a path, or '\0' and an abstract
// name); a socket file left at the path by an earlier run is replaced.
absl::StatusOr<int> Listen(const std::string& name, const std::string& address) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const bool abstract = !name.empty() && name[0] == '\0';
  if (name.empty() || name.size() + (abstract ? 0 : 1) > sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("listen_address ", address,
                                                   ": the path must be 1 to ",
                                                   sizeof(addr.sun_path) - 1, " characters"));
  }
  std::memcpy(addr.sun_path, name.data(), name.size());
  // An abstract name's length bounds it; a path ends with its NUL.
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 0 : 1));
  if (!abstract) {
    struct stat st {};
    if (lstat(name.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen on ", address, ": ", name, " exists and is not a socket"));
      }
      unlink(name.c_str());  // left by an earlier run
    }
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot make a Unix socket: ", strerror(errno)));
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int e = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", strerror(e)));
  }
  return fd;
}

// How long a descriptor socket client may take to send its descriptor.
constexpr absl::Duration kMemfdTimeout = absl::Seconds(2);

}  // namespace

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Bind(const std::string& address) {
  absl::string_view name = address;
  std::string socket_name;  // a path, or '\0' and the abstract name
  if (absl::ConsumePrefix(&name, "unix-abstract:")) {
    socket_name = absl::StrCat(std::string(1, '\0'), name);
  } else {
    absl::ConsumePrefix(&name, "unix:");
    if (absl::StartsWith(name, "//")) name.remove_prefix(2);  // unix:///abs/path
    socket_name = std::string(name);
  }
  LOGSTAR_ASSIGN_OR_RETURN(const int fd, Listen(socket_name, address));
  const bool abstract = socket_name[0] == '\0';
  std::unique_ptr<UnixListener> l(new UnixListener(fd, abstract ? "" : socket_name));
  const std::string memfd_name = MemfdSocketAddress(address);
  // Without it (e.g. a path too long for ".fd") clients fall back to POSIX
  // shared memory: a warning, not a failure.
  absl::StatusOr<int> memfd_fd = Listen(memfd_name, absl::StrCat(address, ".fd"));
  if (memfd_fd.ok()) {
    l->memfd_fd_ = *memfd_fd;
    if (!abstract) l->memfd_path_ = memfd_name;
  } else {
    Log(LogLevel::kWarning, "memfd_socket_unavailable", {{"why", memfd_fd.status().ToString()}});
  }
  if (pipe2(l->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot make a pipe: ", strerror(errno)));
  }
  return l;
}

UnixListener::~UnixListener() {
  Stop();
  close(fd_);
  if (memfd_fd_ >= 0) close(memfd_fd_);
  if (!memfd_path_.empty()) unlink(memfd_path_.c_str());
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
  if (!path_.empty()) unlink(path_.c_str());
}

void UnixListener::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] {
    Accept(fd_, [server](int conn) {
      grpc::AddInsecureChannelFromFd(server, conn);  // the server owns conn now
    });
  });
  // Its own thread: a client slow to send its descriptor delays no gRPC
  // connection.
  if (memfd_fd_ < 0) return;
  memfd_thread_ = std::thread([this] {
    Accept(memfd_fd_,
           [](int conn) { ServeMemfdConnection(conn, MemfdInbox::Global(), kMemfdTimeout); });
  });
}

void UnixListener::Stop() {
  if (!thread_.joinable()) return;
  const char c = 0;
  (void)!write(wake_[1], &c, 1);  // never read: it wakes both threads
  thread_.join();
  if (memfd_thread_.joinable()) memfd_thread_.join();
}

void UnixListener::Accept(int listen_fd, const std::function<void(int)>& serve) {
  for (;;) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) {
      Log(LogLevel::kError, "unix_accept_failed", {{"why", strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    // Non-blocking, as gRPC's endpoints expect.
    const int conn = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors or memory: the connection waits in the backlog.
      Log(LogLevel::kWarning, "unix_accept_failed", {{"why", strerror(errno)}});
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    serve(conn);
  }
}

}  // namespace logstar::server
