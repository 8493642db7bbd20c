#include "server/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace logstar::server {
namespace {

// Closes a descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status OpenError(const std::string& path, int e) {
  const std::string why = absl::StrCat("cannot open ", path, ": ", std::strerror(e));
  if (e == ENOENT) return absl::NotFoundError(why);
  if (e == EACCES || e == EPERM) return absl::PermissionDeniedError(why);
  if (e == ELOOP) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a symbolic link; only regular files are read"));
  }
  return absl::UnavailableError(why);
}

}  // namespace

absl::Status RequireRegularFile(int fd, absl::string_view what, struct stat* st) {
  if (fstat(fd, st) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot stat ", what, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st->st_mode)) {
    const char* kind = S_ISFIFO(st->st_mode)                          ? "a FIFO"
                       : S_ISSOCK(st->st_mode)                        ? "a socket"
                       : S_ISDIR(st->st_mode)                         ? "a directory"
                       : S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? "a device"
                                                                      : "not a file";
    return absl::FailedPreconditionError(absl::StrCat(what, " is ", kind, ", not a regular file"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, uint64_t max_bytes) {
  const Fd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return OpenError(path, errno);
  struct stat st {};
  if (absl::Status s = RequireRegularFile(fd.get(), path, &st); !s.ok()) return s;
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds ", st.st_size, " bytes, more than the ", max_bytes, " allowed"));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t at = 0;
  while (at < out.size()) {
    const ssize_t n = read(fd.get(), out.data() + at, out.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;  // shrunk meanwhile: what is there
    at += static_cast<size_t>(n);
  }
  out.resize(at);
  return out;
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes) {
  const std::string tmp = path + ".tmp";
  // O_CREAT | O_EXCL makes a new regular file and never follows a link; what
  // a crash or someone else left under the name goes first.
  if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return absl::UnavailableError(
        absl::StrCat("cannot remove the old ", tmp, ": ", std::strerror(errno)));
  }
  absl::Status status;
  {
    const Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
    if (fd.get() < 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
    }
    for (size_t at = 0; at < bytes.size() && status.ok();) {
      const ssize_t n = write(fd.get(), bytes.data() + at, bytes.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status = absl::UnavailableError(
            absl::StrCat("cannot write ", tmp, ": ", std::strerror(n < 0 ? errno : EIO)));
      } else {
        at += static_cast<size_t>(n);
      }
    }
  }
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = absl::UnavailableError(
        absl::StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  }
  if (!status.ok()) unlink(tmp.c_str());
  return status;
}

absl::StatusOr<std::string> SetAside(const std::string& path, absl::string_view why) {
  const std::string aside = path + ".rejected";
  if (std::rename(path.c_str(), aside.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot move ", path, " to ", aside, ": ", std::strerror(errno)));
  }
  (void)WriteFileAtomically(aside + ".why", absl::StrCat(why, "\n"));
  return aside;
}

}  // namespace logstar::server
