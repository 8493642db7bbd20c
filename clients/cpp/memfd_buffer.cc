#include "clients/cpp/memfd_buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace logstar {
namespace {

absl::Status SystemError(int err, const char* call) {
  const absl::StatusCode code = (err == ENOMEM || err == ENOSPC || err == EMFILE || err == ENFILE)
                                    ? absl::StatusCode::kResourceExhausted
                                    : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat("memory file: ", call, ": ", std::strerror(err)));
}

// Closes a descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// The daemon's answer line, up to its newline or the end.
absl::StatusOr<std::string> ReadLine(int fd) {
  std::string line;
  char c;
  while (line.size() < 4096) {
    const ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("read: ", std::strerror(errno)));
    if (n == 0 || c == '\n') break;
    line.push_back(c);
  }
  return line;
}

}  // namespace

#ifdef __linux__
absl::StatusOr<std::unique_ptr<MemfdBuffer>> MemfdBuffer::Create(uint64_t byte_size) {
  if (byte_size == 0 || byte_size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory file: byte_size must be > 0, got ", byte_size));
  }
  Fd fd{memfd_create("logstar-frames", MFD_CLOEXEC | MFD_ALLOW_SEALING)};
  if (fd.fd < 0) return SystemError(errno, "memfd_create");
  if (ftruncate(fd.fd, static_cast<off_t>(byte_size)) != 0) return SystemError(errno, "ftruncate");
  // Pages reserved now: a later first write cannot fail for want of memory.
  if (const int err = posix_fallocate(fd.fd, 0, static_cast<off_t>(byte_size)); err != 0) {
    return SystemError(err, "posix_fallocate");
  }
  // The daemon maps it only when it cannot shrink; F_SEAL_SEAL keeps
  // anyone holding the descriptor from sealing writes off later.
  if (fcntl(fd.fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return SystemError(errno, "F_ADD_SEALS");
  }
  void* data =
      mmap(nullptr, byte_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.fd, 0);
  if (data == MAP_FAILED) return SystemError(errno, "mmap");
  std::unique_ptr<MemfdBuffer> b(new MemfdBuffer(fd.fd, byte_size, static_cast<char*>(data)));
  fd.fd = -1;  // the buffer's now
  return b;
}
#else
absl::StatusOr<std::unique_ptr<MemfdBuffer>> MemfdBuffer::Create(uint64_t /*byte_size*/) {
  return absl::UnimplementedError("memory files (memfd) are Linux only");
}
#endif

MemfdBuffer::~MemfdBuffer() {
  munmap(data_, size_);
  close(fd_);
}

std::string MemfdSocketFor(const std::string& address) {
  absl::string_view name = address;
  if (absl::ConsumePrefix(&name, "unix-abstract:")) {
    return absl::StrCat(std::string(1, '\0'), name, ".fd");
  }
  if (!absl::ConsumePrefix(&name, "unix:")) return "";
  if (absl::StartsWith(name, "//")) name.remove_prefix(2);
  return name.empty() ? "" : absl::StrCat(name, ".fd");
}

absl::StatusOr<std::string> HandOverMemfd(const std::string& address, const MemfdBuffer& buffer) {
  const std::string name = MemfdSocketFor(address);
  if (name.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "memory files go to a daemon on this host over its Unix socket, not ", address));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const bool abstract = name[0] == '\0';
  if (name.size() + (abstract ? 0 : 1) > sizeof(addr.sun_path)) {
    return absl::UnavailableError(absl::StrCat("the descriptor socket of ", address,
                                               " has a name too long for a Unix socket"));
  }
  std::memcpy(addr.sun_path, name.data(), name.size());
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 0 : 1));
  Fd sock{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (sock.fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  if (connect(sock.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return absl::UnavailableError(
        absl::StrCat("the daemon at ", address,
                     " takes no memory files (no descriptor socket: ", std::strerror(errno), ")"));
  }
  absl::StatusOr<std::string> key = SendMemfd(sock.fd, buffer.fd());
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("the daemon at ", address, ": ", key.status().message()));
  }
  return key;
}

absl::StatusOr<std::string> SendMemfd(int sock, int fd) {
  char hello[4] = {'L', 'S', 'F', '1'};
  iovec io{hello, sizeof(hello)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t sent;
  do {
    sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(sizeof(hello))) {
    return absl::UnavailableError(
        absl::StrCat("sending the memory file: ", sent < 0 ? std::strerror(errno) : "short write"));
  }
  absl::StatusOr<std::string> line = ReadLine(sock);
  if (!line.ok()) return line.status();
  absl::string_view answer = *line;
  if (absl::ConsumePrefix(&answer, "OK ") && !answer.empty()) return absl::StrCat("memfd:", answer);
  absl::ConsumePrefix(&answer, "ERR ");
  return absl::UnavailableError(absl::StrCat("refused the memory file: ", answer));
}

absl::StatusOr<v1::SharedMemoryRegion> RegisterMemfd(Client& client, const std::string& region,
                                                     const MemfdBuffer& buffer) {
  absl::StatusOr<std::string> key = HandOverMemfd(client.options().address, buffer);
  if (!key.ok()) return key.status();
  return client.RegisterSharedMemory(region, *key, buffer.size());
}

absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, MemfdBuffer& buffer,
                                                  const std::string& region, uint64_t offset) {
  return ImageToSharedPixels(image, buffer.data(), buffer.size(), "the memory file", region,
                             offset);
}

absl::StatusOr<SharedFrameSlot> SharedSlot(MemfdBuffer& buffer, const std::string& region,
                                           uint64_t offset, int rows, int cols, int type) {
  return SharedSlot(buffer.data(), buffer.size(), "the memory file", region, offset, rows, cols,
                    type);
}

absl::StatusOr<std::unique_ptr<LocalFrameBuffer>> RegisterLocalFrameBuffer(
    Client& client, const std::string& region, uint64_t byte_size,
    const SharedMemoryBuffer::Options& shm) {
  auto out = std::unique_ptr<LocalFrameBuffer>(new LocalFrameBuffer);
  out->region_ = region;
  absl::StatusOr<std::unique_ptr<MemfdBuffer>> memfd = MemfdBuffer::Create(byte_size);
  if (memfd.ok()) {
    absl::StatusOr<std::string> key = HandOverMemfd(client.options().address, **memfd);
    if (key.ok()) {
      absl::StatusOr<v1::SharedMemoryRegion> r =
          client.RegisterSharedMemory(region, *key, (*memfd)->size());
      if (!r.ok()) return r.status();
      out->memfd_ = *std::move(memfd);
      return out;
    }
    // Not a Unix socket, or a daemon without the descriptor socket: POSIX.
    if (!absl::IsFailedPrecondition(key.status()) && !absl::IsUnavailable(key.status())) {
      return key.status();
    }
  } else if (!absl::IsUnimplemented(memfd.status())) {
    return memfd.status();
  }
  absl::StatusOr<std::unique_ptr<SharedMemoryBuffer>> posix =
      SharedMemoryBuffer::Create(byte_size, shm);
  if (!posix.ok()) return posix.status();
  absl::StatusOr<v1::SharedMemoryRegion> r = client.RegisterSharedMemory(region, **posix);
  if (!r.ok()) return r.status();
  out->shm_ = *std::move(posix);
  return out;
}

absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, LocalFrameBuffer& buffer,
                                                  uint64_t offset) {
  return ImageToSharedPixels(image, buffer.data(), buffer.size(),
                             absl::StrCat("region '", buffer.region(), "'"), buffer.region(),
                             offset);
}

absl::StatusOr<SharedFrameSlot> SharedSlot(LocalFrameBuffer& buffer, uint64_t offset, int rows,
                                           int cols, int type) {
  return SharedSlot(buffer.data(), buffer.size(), absl::StrCat("region '", buffer.region(), "'"),
                    buffer.region(), offset, rows, cols, type);
}

}  // namespace logstar
