#include "server/memfd.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/random_id.h"

namespace logstar::server {
namespace {

constexpr char kHello[4] = {'L', 'S', 'F', '1'};

// Writes all of `text` or gives up (the client went away: nothing to do).
void Answer(int conn, const std::string& text) {
  for (size_t at = 0; at < text.size();) {
    const ssize_t n = send(conn, text.data() + at, text.size() - at, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    at += static_cast<size_t>(n);
  }
}

// The descriptors a message carried; every one is ours to close.
std::vector<int> ReceivedFds(msghdr& msg) {
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.push_back(fd);
    }
  }
  return fds;
}

// Receives the hello and its one descriptor: the descriptor, or the reason.
absl::StatusOr<int> ReceiveFd(int conn, absl::Duration timeout) {
  pollfd p{conn, POLLIN, 0};
  const int ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
  if (poll(&p, 1, ms) <= 0) return absl::DeadlineExceededError("no descriptor came in time");
  char hello[sizeof(kHello)] = {};
  iovec io{hello, sizeof(hello)};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return absl::UnavailableError(absl::StrCat("recvmsg: ", std::strerror(errno)));
  std::vector<int> fds = ReceivedFds(msg);
  const bool one = fds.size() == 1 && (msg.msg_flags & MSG_CTRUNC) == 0;
  const bool hello_ok = n == sizeof(kHello) && std::memcmp(hello, kHello, sizeof(kHello)) == 0;
  if (!one || !hello_ok) {
    for (int fd : fds) close(fd);
    return absl::InvalidArgumentError(
        !hello_ok ? "expected the 4 bytes \"LSF1\" with the descriptor"
                  : absl::StrCat("expected exactly one descriptor, got ", fds.size()));
  }
  return fds[0];
}

}  // namespace

std::string MemfdSocketAddress(absl::string_view listen_address) {
  absl::string_view name = listen_address;
  if (absl::ConsumePrefix(&name, "unix-abstract:"))
    return absl::StrCat(std::string(1, '\0'), name, ".fd");
  if (!absl::ConsumePrefix(&name, "unix:")) return "";
  if (absl::StartsWith(name, "//")) name.remove_prefix(2);  // unix:///abs/path
  if (name.empty()) return "";
  return absl::StrCat(name, ".fd");
}

MemfdInbox& MemfdInbox::Global() {
  static MemfdInbox* const inbox = new MemfdInbox;  // never destroyed: threads may still put
  return *inbox;
}

MemfdInbox::~MemfdInbox() {
  MutexLock lock(&mu_);
  for (auto& [token, p] : pending_) close(p.fd);
}

void MemfdInbox::DropExpiredLocked(absl::Time now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now - it->second.put > absl::Seconds(kPendingSeconds)) {
      close(it->second.fd);
      pending_.erase(it++);
    } else {
      ++it;
    }
  }
}

std::string MemfdInbox::Put(int fd, uid_t uid) {
  const absl::Time now = absl::Now();
  std::string token = RandomHexId(2);
  MutexLock lock(&mu_);
  DropExpiredLocked(now);
  if (static_cast<int>(pending_.size()) >= kMaxPending) {
    auto oldest =
        std::min_element(pending_.begin(), pending_.end(),
                         [](const auto& a, const auto& b) { return a.second.put < b.second.put; });
    close(oldest->second.fd);
    pending_.erase(oldest);
  }
  pending_[token] = {fd, uid, now};
  return token;
}

absl::StatusOr<int> MemfdInbox::Take(absl::string_view token, uid_t uid, bool any_uid,
                                     absl::string_view field) {
  MutexLock lock(&mu_);
  DropExpiredLocked(absl::Now());
  auto it = pending_.find(token);
  if (it == pending_.end() || (!any_uid && it->second.uid != uid)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": no memory file was handed over under token \"", token,
                     "\" by this user (tokens are used once and expire after ", kPendingSeconds,
                     " s; hand the descriptor to the daemon's descriptor socket first)"));
  }
  const int fd = it->second.fd;
  pending_.erase(it);
  return fd;
}

void ServeMemfdConnection(int conn, MemfdInbox& inbox, absl::Duration timeout) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    Answer(conn, absl::StrCat("ERR SO_PEERCRED: ", std::strerror(errno), "\n"));
    close(conn);
    return;
  }
  absl::StatusOr<int> fd = ReceiveFd(conn, timeout);
  if (!fd.ok()) {
    Answer(conn, absl::StrCat("ERR ", fd.status().message(), "\n"));
  } else {
    Answer(conn, absl::StrCat("OK ", inbox.Put(*fd, cred.uid), "\n"));
  }
  close(conn);
}

absl::Status CheckSealed(int fd, uint64_t byte_size, absl::string_view field) {
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the handed-over descriptor cannot carry seals (", std::strerror(errno),
        "); hand over a memfd_create(..., MFD_ALLOW_SEALING) file"));
  }
  if ((seals & F_SEAL_SHRINK) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field,
        ": the memory file is not sealed against shrinking (F_SEAL_SHRINK), so the daemon "
        "cannot map it safely; seal it with fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) before "
        "handing it over"));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a regular memory file"));
  }
  if (static_cast<uint64_t>(st.st_size) < byte_size) {
    return absl::InvalidArgumentError(absl::StrCat("byte_size ", byte_size, " is more than the ",
                                                   st.st_size, " bytes of ", field));
  }
  // Mapping holes would make the daemon allocate the client's memory (a
  // sparse file of any size costs the client nothing): its pages must exist.
  if (static_cast<uint64_t>(st.st_blocks) * 512 < byte_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": only ", static_cast<uint64_t>(st.st_blocks) * 512, " of the ", byte_size,
        " bytes are allocated; reserve them (posix_fallocate) before handing the file over"));
  }
  return absl::OkStatus();
}

}  // namespace logstar::server
