// logstar::MemfdBuffer: the cheapest frame path to a logstard on the same
// host (issue 21, item 2). A sealed memory file (memfd) that this process
// creates and maps; its descriptor is handed to the daemon over the
// daemon's descriptor socket (beside its Unix socket: "unix:PATH" ->
// PATH.fd), and the daemon maps it once and reads frames in place, where a
// POSIX shared memory object (clients/cpp/shared_memory.h) is copied out
// per frame.
//
//   auto buffer = MemfdBuffer::Create(4 * frame_bytes);
//   client->... RegisterMemfd(*client, "frames", **buffer);     // once
//   auto pixels = ImageToSharedPixels(image, **buffer, "frames", slot * frame_bytes);
//   ... as with SharedMemoryBuffer; or, without even the client's copy,
//   auto place = SharedSlot(**buffer, "frames", slot * frame_bytes, rows, cols, CV_16UC1);
//   acquire into place->image, then send place->pixels; UnregisterSharedMemory("frames") at the
//   end.
//
// Or, to take the memfd path when the daemon offers it and POSIX shared
// memory otherwise (TCP, a daemon without the descriptor socket, not
// Linux): RegisterLocalFrameBuffer.
//
// The same contract as SharedMemoryBuffer: a frame's bytes stay unchanged
// from Push() until its answer (the daemon reads them in place while it
// analyses). The file is sealed against growing and shrinking (and against
// new seals), so the daemon's mapping can never fault; this process may
// write it at will. The daemon keeps its own descriptor: destroying the
// buffer (or this process ending) does not disturb it, and it frees the
// memory when the region is unregistered.
//
// Thread-safety: as SharedMemoryBuffer.
#ifndef LOGSTAR_CLIENTS_CPP_MEMFD_BUFFER_H_
#define LOGSTAR_CLIENTS_CPP_MEMFD_BUFFER_H_

#include <cstdint>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/cpp/client.h"
#include "clients/cpp/shared_memory.h"
#include "logstar/v1/frame.pb.h"
#include "logstar/v1/service.pb.h"

namespace logstar {

class MemfdBuffer {
 public:
  // A memory file of byte_size bytes (> 0), reserved up front, sealed
  // (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) and mapped read-write.
  // UNIMPLEMENTED off Linux; RESOURCE_EXHAUSTED when memory cannot hold it;
  // INVALID_ARGUMENT for a size of 0.
  static absl::StatusOr<std::unique_ptr<MemfdBuffer>> Create(uint64_t byte_size);
  ~MemfdBuffer();  // unmaps and closes (the daemon's descriptor stays)

  MemfdBuffer(const MemfdBuffer&) = delete;
  MemfdBuffer& operator=(const MemfdBuffer&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  char* data() { return data_; }
  const char* data() const { return data_; }

 private:
  MemfdBuffer(int fd, uint64_t size, char* data) : fd_(fd), size_(size), data_(data) {}
  const int fd_;
  const uint64_t size_;
  char* const data_;
};

// The daemon's descriptor socket for a client address: "unix:PATH" and
// "unix:///PATH" -> PATH.fd, "unix-abstract:NAME" -> '\0' NAME.fd; empty
// for anything else (TCP).
std::string MemfdSocketFor(const std::string& address);

// Hands `buffer`'s descriptor to the daemon at `address` (a Unix socket
// address) and returns the key to register it under ("memfd:<token>",
// valid for a minute, once). FAILED_PRECONDITION for an address that is not
// a Unix socket; UNAVAILABLE when the daemon has no descriptor socket (an
// older one) or went away; what the daemon answered otherwise.
absl::StatusOr<std::string> HandOverMemfd(const std::string& address, const MemfdBuffer& buffer);

// The exchange itself on a connected stream socket `sock`: sends `fd` with
// the hello and returns the key the daemon answered (the daemon's side is
// server/memfd.h). UNAVAILABLE for a failed send, a refusal, or no answer.
absl::StatusOr<std::string> SendMemfd(int sock, int fd);

// HandOverMemfd to the client's daemon, then RegisterSharedMemory under
// `region` with all of the buffer's bytes.
absl::StatusOr<v1::SharedMemoryRegion> RegisterMemfd(Client& client, const std::string& region,
                                                     const MemfdBuffer& buffer);

// As ImageToSharedPixels (clients/cpp/shared_memory.h) into a MemfdBuffer.
absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, MemfdBuffer& buffer,
                                                  const std::string& region, uint64_t offset);
// A frame's slot in a MemfdBuffer to write in place (SharedSlot,
// clients/cpp/shared_memory.h): write the pixels into slot->image, send
// slot->pixels; the daemon then reads the frame where it was written, and
// the client copies nothing.
absl::StatusOr<SharedFrameSlot> SharedSlot(MemfdBuffer& buffer, const std::string& region,
                                           uint64_t offset, int rows, int cols, int type);

// Frame memory on the daemon's host, registered as a region: a sealed
// memory file where the daemon takes one, else a POSIX shared memory
// object (`shm` its options).
class LocalFrameBuffer {
 public:
  char* data() { return memfd_ ? memfd_->data() : shm_->data(); }
  uint64_t size() const { return memfd_ ? memfd_->size() : shm_->size(); }
  bool is_memfd() const { return memfd_ != nullptr; }
  const std::string& region() const { return region_; }

 private:
  friend absl::StatusOr<std::unique_ptr<LocalFrameBuffer>> RegisterLocalFrameBuffer(
      Client&, const std::string&, uint64_t, const SharedMemoryBuffer::Options&);
  std::string region_;
  std::unique_ptr<MemfdBuffer> memfd_;
  std::unique_ptr<SharedMemoryBuffer> shm_;
};

// Creates and registers byte_size bytes as `region`: memfd first, POSIX
// shared memory when the memfd path is not available (not Linux, not a Unix
// socket, no descriptor socket). Errors of the POSIX path, or of a memfd
// registration the daemon refused for another reason, are returned.
absl::StatusOr<std::unique_ptr<LocalFrameBuffer>> RegisterLocalFrameBuffer(
    Client& client, const std::string& region, uint64_t byte_size,
    const SharedMemoryBuffer::Options& shm = {});

// As ImageToSharedPixels into a LocalFrameBuffer, under its region.
absl::StatusOr<v1::PixelData> ImageToSharedPixels(const cv::Mat& image, LocalFrameBuffer& buffer,
                                                  uint64_t offset);
// A frame's slot in a LocalFrameBuffer, under its region (SharedSlot).
absl::StatusOr<SharedFrameSlot> SharedSlot(LocalFrameBuffer& buffer, uint64_t offset, int rows,
                                           int cols, int type);

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_MEMFD_BUFFER_H_
