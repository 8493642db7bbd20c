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
#include "server/log.h"

namespace logstar::server {

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Bind(const std::string& address) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path;
  socklen_t len = 0;
  absl::string_view name = address;
  if (absl::ConsumePrefix(&name, "unix-abstract:")) {
    // A leading NUL names the abstract namespace; the length bounds the name.
    if (name.size() + 1 > sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("listen_address ", address, " is too long"));
    }
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else {
    absl::ConsumePrefix(&name, "unix:");
    if (absl::StartsWith(name, "//")) name.remove_prefix(2);  // unix:///abs/path
    path = std::string(name);
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("listen_address ", address,
                                                     ": the path must be 1 to ",
                                                     sizeof(addr.sun_path) - 1, " characters"));
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen on ", address, ": ", path, " exists and is not a socket"));
      }
      unlink(path.c_str());  // left by an earlier run
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
  std::unique_ptr<UnixListener> l(new UnixListener(fd, path));
  if (pipe2(l->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot make a pipe: ", strerror(errno)));
  }
  return l;
}

UnixListener::~UnixListener() {
  Stop();
  close(fd_);
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
  if (!path_.empty()) unlink(path_.c_str());
}

void UnixListener::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] { Accept(server); });
}

void UnixListener::Stop() {
  if (!thread_.joinable()) return;
  const char c = 0;
  (void)!write(wake_[1], &c, 1);
  thread_.join();
}

void UnixListener::Accept(grpc::Server* server) {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) {
      Log(LogLevel::kError, "unix_accept_failed", {{"why", strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    // Non-blocking, as gRPC's endpoints expect.
    const int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors or memory: the connection waits in the backlog.
      Log(LogLevel::kWarning, "unix_accept_failed", {{"why", strerror(errno)}});
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    grpc::AddInsecureChannelFromFd(server, conn);  // the server owns conn now
  }
}

}  // namespace logstar::server
