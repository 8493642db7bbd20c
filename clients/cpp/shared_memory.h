// logstar::SharedMemoryBuffer: a POSIX shared memory object that this
// process creates and maps, so that frames for a logstard on the same host
// can leave their pixels there instead of sending them in the message
// (v1::PixelData.shared_memory; LogStar.RegisterSharedMemory in
// proto/logstar/v1/service.proto).
//
//   auto buffer = SharedMemoryBuffer::Create(4 * frame_bytes, {});
//   client->RegisterSharedMemory("frames", **buffer);       // once
//   auto pixels = ImageToSharedPixels(image, **buffer, "frames", slot * frame_bytes);
//   *frame.mutable_pixels() = *std::move(pixels);
//   stream->Push(frame);   // the slot's bytes stay untouched until its answer is Read()
//   ...
//   client->UnregisterSharedMemory("frames");               // before the buffer goes
//
// The contract with the daemon: a frame's bytes in the region must stay
// unchanged from Push() until the frame is answered (result, dropped or
// error), because the daemon reads them only when it analyses the frame.
// A client that reuses a buffer therefore keeps a ring of at least
// max_in_flight slots and writes a slot again only after its frame's answer.
//
// Thread-safety: key(), size() and data() may be called from any thread.
// Writing the bytes is the caller's business: threads writing disjoint byte
// ranges need no lock; the daemon reads concurrently with the writer.
#ifndef LOGSTAR_CLIENTS_CPP_SHARED_MEMORY_H_
#define LOGSTAR_CLIENTS_CPP_SHARED_MEMORY_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "logstar/v1/frame.pb.h"

namespace logstar {

class SharedMemoryBuffer {
 public:
  struct Options {
    // The object's name for shm_open: "/" and then 1–250 characters without
    // "/" (it appears as /dev/shm/<name>), as RegisterSharedMemory accepts.
    // Empty: "/logstar-<pid>-<16 random hex digits>". Create() refuses a
    // name that exists (ALREADY_EXISTS) rather than share another's object.
    std::string key{};
    // Permissions of the object, exactly (the umask does not apply). The
    // daemon opens it read-only under its own user: 0600 serves a daemon
    // running as this user. A daemon running as another user (e.g. the
    // systemd unit's DynamicUser) needs 0644, or 0640 with a group both
    // share; anyone the mode admits can then read the frames.
    mode_t mode = 0600;

    // INVALID_ARGUMENT naming the field.
    absl::Status Validate() const;
  };

  // Creates the object (O_EXCL: never an existing one), gives it byte_size
  // bytes (> 0) reserved up front, and maps it read-write. Errors name the
  // key and the system's reason: ALREADY_EXISTS, PERMISSION_DENIED,
  // RESOURCE_EXHAUSTED when /dev/shm cannot hold byte_size bytes,
  // INVALID_ARGUMENT for bad options or size.
  static absl::StatusOr<std::unique_ptr<SharedMemoryBuffer>> Create(uint64_t byte_size,
                                                                    const Options& options);

  // Unmaps and unlinks the object (this process created it). The daemon may
  // still hold it open: unregister the region first, so it lets go and no
  // frame refers to bytes nobody writes any more.
  ~SharedMemoryBuffer();

  SharedMemoryBuffer(const SharedMemoryBuffer&) = delete;
  SharedMemoryBuffer& operator=(const SharedMemoryBuffer&) = delete;

  const std::string& key() const { return key_; }
  uint64_t size() const { return size_; }  // bytes
  // The mapping, size() bytes; valid as long as this object lives.
  char* data() { return data_; }
  const char* data() const { return data_; }

 private:
  SharedMemoryBuffer(std::string key, uint64_t size, char* data)
      : key_(std::move(key)), size_(size), data_(data) {}

  const std::string key_;
  const uint64_t size_;
  char* const data_;
};

// Copies a single-channel image (CV_8U, CV_16U, CV_16S, CV_32F or CV_64F;
// a non-contiguous view is fine) row by row into `buffer` at byte `offset`,
// row-major with no padding as the wire wants, and returns the PixelData
// that points there: dtype, width, height and shared_memory {region,
// offset}. `region` is the name the buffer is registered under. Writes
// nothing on error: INVALID_ARGUMENT for an empty image, an unsupported
// type or channel count, or offset + the image's bytes beyond
// buffer.size() (the sizes are named).
absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, SharedMemoryBuffer& buffer,
                                                  const std::string& region, uint64_t offset);

// The same into any mapping of `size` bytes at `data` (e.g. a MemfdBuffer,
// clients/cpp/memfd_buffer.h); `what` names it in errors.
absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, char* data, uint64_t size,
                                                  const std::string& what,
                                                  const std::string& region, uint64_t offset);

// A frame's place in a buffer, to be written in place: `image` is a
// rows × cols single-channel view of `type` (CV_8U, CV_16U, CV_16S, CV_32F
// or CV_64F) over the buffer's bytes at `offset` (continuous, row-major
// without padding, as the wire wants; no copy), and `pixels` the PixelData
// that points there. A client whose camera, generator or reader writes
// its frames into `image` sends `pixels` and saves the copy that
// ImageToSharedPixels makes (issue 21, item 2: 3.6 ms of 16 MiB at 2048²).
// The view is valid as long as the buffer's mapping; the contract of the
// file comment holds for its bytes.
struct SharedFrameSlot {
  cv::Mat image;
  v1::PixelData pixels;
};

// The slot at `offset` of the mapping of `size` bytes at `data`; `what`
// names the mapping in errors. INVALID_ARGUMENT for rows or cols < 1, a
// type the wire does not carry, or a frame that does not fit (the sizes
// are named).
absl::StatusOr<SharedFrameSlot> SharedSlot(char* data, uint64_t size, const std::string& what,
                                           const std::string& region, uint64_t offset, int rows,
                                           int cols, int type);
// The same in `buffer`.
absl::StatusOr<SharedFrameSlot> SharedSlot(SharedMemoryBuffer& buffer, const std::string& region,
                                           uint64_t offset, int rows, int cols, int type);

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_SHARED_MEMORY_H_
