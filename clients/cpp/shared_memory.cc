#include "clients/cpp/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/wire/pixels.h"

namespace logstar {
namespace {

absl::StatusCode CodeOf(int err) {
  switch (err) {
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case EFBIG:
      return absl::StatusCode::kResourceExhausted;
    case EINVAL:
    case ENAMETOOLONG:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status SystemError(int err, const std::string& key, const char* call) {
  return absl::Status(CodeOf(err),
                      absl::StrCat("shared memory '", key, "': ", call, ": ", std::strerror(err)));
}

std::string RandomKey() {
  std::random_device random;
  const uint64_t bits = (uint64_t{random()} << 32) ^ random();
  return absl::StrFormat("/logstar-%d-%016x", getpid(), bits);
}

}  // namespace

absl::Status SharedMemoryBuffer::Options::Validate() const {
  if (!key.empty()) {
    // The daemon's rule for RegisterSharedMemory's key; shm_open itself
    // would take a key without the leading "/" on glibc, which the daemon
    // then could not name.
    if (key[0] != '/' || key.size() < 2 || key.size() > 251 ||
        key.find('/', 1) != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("key '", key, "': must be \"/\" and then 1-250 characters without \"/\""));
    }
  }
  if ((mode & ~mode_t{0777}) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mode %#o: only permission bits (0777) are allowed", mode));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SharedMemoryBuffer>> SharedMemoryBuffer::Create(
    uint64_t byte_size, const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  const std::string key = options.key.empty() ? RandomKey() : options.key;
  if (byte_size == 0 || byte_size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory '", key, "': byte_size must be > 0, got ", byte_size));
  }
  const int fd = shm_open(key.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, options.mode);
  if (fd < 0) return SystemError(errno, key, "shm_open");
  // From here on a failure removes what was made.
  auto fail = [&](int err, const char* call) {
    close(fd);
    shm_unlink(key.c_str());
    return SystemError(err, key, call);
  };
  // shm_open's mode passes through the umask; the caller asked for this one.
  if (fchmod(fd, options.mode) != 0) return fail(errno, "fchmod");
  if (ftruncate(fd, static_cast<off_t>(byte_size)) != 0) return fail(errno, "ftruncate");
  // tmpfs hands out pages when they are first written, and a full /dev/shm
  // (64 MiB in a default Docker container) answers that write with SIGBUS.
  // Reserving them now turns it into an error here.
  if (const int err = posix_fallocate(fd, 0, static_cast<off_t>(byte_size)); err != 0) {
    return fail(err, "posix_fallocate");
  }
  // MAP_POPULATE: the page tables are filled now, so the first frames
  // written do not pay a page fault per 4 KiB on the clock.
  void* data = mmap(nullptr, byte_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (data == MAP_FAILED) return fail(errno, "mmap");
  close(fd);  // the mapping keeps the object
  return std::unique_ptr<SharedMemoryBuffer>(
      new SharedMemoryBuffer(key, byte_size, static_cast<char*>(data)));
}

SharedMemoryBuffer::~SharedMemoryBuffer() {
  munmap(data_, size_);
  shm_unlink(key_.c_str());
}

absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, SharedMemoryBuffer& buffer,
                                                  const std::string& region, uint64_t offset) {
  return ImageToSharedPixels(image, buffer.data(), buffer.size(),
                             absl::StrCat("shared memory '", buffer.key(), "'"), region, offset);
}

absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, char* data, uint64_t size,
                                                  const std::string& what,
                                                  const std::string& region, uint64_t offset) {
  if (image.empty()) return absl::InvalidArgumentError("ImageToSharedPixels: the image is empty");
  const absl::StatusOr<wire::Dtype> type = wire::CheckImage(image);
  if (!type.ok()) return type.status();
  absl::StatusOr<SharedFrameSlot> slot =
      SharedSlot(data, size, what, region, offset, image.rows, image.cols, image.type());
  if (!slot.ok()) return slot.status();
  wire::CopyRows(image, data + offset);
  return std::move(slot->pixels);
}

absl::StatusOr<SharedFrameSlot> SharedSlot(char* data, uint64_t size, const std::string& what,
                                           const std::string& region, uint64_t offset, int rows,
                                           int cols, int type) {
  if (rows < 1 || cols < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a frame slot needs at least one row and column, got ", cols, " x ", rows));
  }
  const std::optional<wire::Dtype> dtype = wire::FromDepth(CV_MAT_DEPTH(type));
  if (!dtype.has_value() || CV_MAT_CN(type) != 1) {
    return absl::InvalidArgumentError(
        "a frame slot's type must be single-channel uint8, uint16, int16, float32 or float64");
  }
  const uint64_t bytes = static_cast<uint64_t>(cols) * static_cast<uint64_t>(rows) * dtype->bytes;
  if (offset > size || bytes > size - offset) {
    return absl::InvalidArgumentError(absl::StrCat("a ", cols, " x ", rows, " frame of ", bytes,
                                                   " bytes at offset ", offset, " does not fit in ",
                                                   what, " of ", size, " bytes"));
  }
  SharedFrameSlot slot;
  slot.image = cv::Mat(rows, cols, CV_MAKETYPE(dtype->cv_depth, 1), data + offset);
  slot.pixels.set_dtype(dtype->dtype);
  slot.pixels.set_width(cols);
  slot.pixels.set_height(rows);
  slot.pixels.mutable_shared_memory()->set_region(region);
  slot.pixels.mutable_shared_memory()->set_offset(offset);
  return slot;
}

absl::StatusOr<SharedFrameSlot> SharedSlot(SharedMemoryBuffer& buffer, const std::string& region,
                                           uint64_t offset, int rows, int cols, int type) {
  return SharedSlot(buffer.data(), buffer.size(),
                    absl::StrCat("shared memory '", buffer.key(), "'"), region, offset, rows, cols,
                    type);
}

}  // namespace logstar
