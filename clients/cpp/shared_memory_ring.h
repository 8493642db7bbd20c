// logstar::SharedMemoryRing: frames' pixels through shared memory, in a ring
// of slots, for a client on logstard's host (the C++ twin of the Python
// client's logstar.SharedMemoryRing, clients/python/logstar/shared_memory.py).
//
//   auto ring = SharedMemoryRing::Create({.slots = 4, .slot_bytes = 2048 * 2048 * 4});
//   (*ring)->Register(*client);          // the daemon may now read it
//   // sending thread:
//   (*ring)->Place(frame);               // waits for the slot; frame now names it
//   stream->Push(frame);
//   // reading thread, for every answer of a placed frame:
//   (*ring)->Release();
//   ...
//   (*ring)->Close(client.get());        // unregisters, removes the object
//
// Contract:
//   - One POSIX shared memory object (SharedMemoryBuffer,
//     clients/cpp/shared_memory.h) cut into `slots` slots of `slot_bytes`
//     bytes; slot i starts at byte i * slot_bytes.
//   - Frames take slots in turn: the k-th frame placed uses slot k mod slots.
//   - A slot is written again only after the frame in it was answered
//     (result, dropped or error): the daemon reads a frame's bytes when it
//     analyses it. Release() says the oldest placed frame was answered
//     (answers come in push order); Place() waits for its slot until then.
//     So `slots` also bounds the frames in flight through the ring.
//   - A frame larger than a slot is refused (INVALID_ARGUMENT naming both
//     sizes): nothing is written and it takes no slot.
//   - Close() unregisters the region and removes the object; the destructor
//     removes the object (unregister first: the daemon otherwise keeps a
//     region nobody writes).
//   - A daemon that restarted has forgotten the region: Register() again
//     before frames that use it are sent (ReconnectingStream does).
//
// Thread-safety: Place() (and PlaceImage()) belong to one sending thread;
// Release() and Wake() may be called from any thread (typically the one
// reading answers); the accessors from any thread. Register() and Close()
// from the sending thread, not while it is in Place().
#ifndef LOGSTAR_CLIENTS_CPP_SHARED_MEMORY_RING_H_
#define LOGSTAR_CLIENTS_CPP_SHARED_MEMORY_RING_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/cpp/shared_memory.h"
#include "engine/base/mutex.h"
#include "logstar/v1/frame.pb.h"

namespace logstar {

class Client;  // clients/cpp/client.h

class SharedMemoryRing {
 public:
  struct Options {
    int slots = 4;            // >= 1
    uint64_t slot_bytes = 0;  // >= 1: the largest frame's pixel bytes
    // The name the daemon knows the ring by. Empty: the object's key
    // without its "/" ("logstar-<pid>-<16 hex digits>"); else the object
    // is "/logstar-<region>".
    std::string region{};
    // Permissions of the object (SharedMemoryBuffer::Options::mode): 0600
    // serves a daemon of this user, 0644 one running as another user.
    mode_t mode = 0600;

    // INVALID_ARGUMENT naming the field.
    absl::Status Validate() const;
  };

  // Creates the object (slots * slot_bytes bytes, reserved up front). Errors
  // as SharedMemoryBuffer::Create, or INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<SharedMemoryRing>> Create(const Options& options);

  ~SharedMemoryRing();  // removes the object

  SharedMemoryRing(const SharedMemoryRing&) = delete;
  SharedMemoryRing& operator=(const SharedMemoryRing&) = delete;

  // Registers the object with the daemon `client` talks to (again after a
  // restart). Errors as Client::RegisterSharedMemory.
  absl::Status Register(Client& client);

  // Unregisters the region through `client` when it was registered (null:
  // the daemon is gone) and removes the object. Returns the unregister
  // error, if any (the object is removed all the same); idempotent.
  // Place() fails afterwards with FAILED_PRECONDITION.
  absl::Status Close(Client* client);

  // Moves the frame's pixels, in the message (pixels.data, wire form), into
  // the next slot and points the frame there (pixels.shared_memory {region,
  // offset}; the bytes leave the message). Waits while the slot's frame is
  // unanswered, unless `stop` (evaluated under the ring's lock; call Wake()
  // when what it reads changes) says to give up: CANCELLED, frame unchanged.
  // INVALID_ARGUMENT, frame unchanged and no slot taken, for pixels that
  // are not in the message, empty or larger than a slot.
  absl::Status Place(v1::Frame& frame, const std::function<bool()>& stop = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The same for an image (as ImageToSharedPixels: CV_8U, CV_16U, CV_16S,
  // CV_32F or CV_64F, one channel): its pixels go straight into the next
  // slot; returns the PixelData that points there.
  absl::StatusOr<v1::PixelData> PlaceImage(const cv::Mat& image,
                                           const std::function<bool()>& stop = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The oldest placed frame was answered: its slot may be written again.
  // Does nothing when no slot is in use.
  void Release() ABSL_LOCKS_EXCLUDED(mu_);

  // Wakes a Place() waiting for a slot, so that it evaluates `stop` again.
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& region() const { return region_; }
  const std::string& key() const { return key_; }
  int slots() const { return slots_; }
  uint64_t slot_bytes() const { return slot_bytes_; }
  int in_use() const ABSL_LOCKS_EXCLUDED(mu_);  // slots whose frame is not answered yet

 private:
  SharedMemoryRing(std::unique_ptr<SharedMemoryBuffer> buffer, std::string region, int slots,
                   uint64_t slot_bytes);

  // Waits for the next slot (the caller already checked the frame): its
  // index, or CANCELLED when `stop` gave up first.
  absl::StatusOr<int> Acquire(const std::function<bool()>& stop) ABSL_LOCKS_EXCLUDED(mu_);
  // The slot just acquired was not used: the next frame takes it.
  void GiveBack(int slot) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string region_;
  const std::string key_;
  const int slots_;
  const uint64_t slot_bytes_;
  std::unique_ptr<SharedMemoryBuffer> buffer_;  // null after Close()
  bool registered_ = false;

  mutable Mutex mu_;
  CondVar freed_;  // signalled when a slot is freed, or by Wake()
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;
  int next_ ABSL_GUARDED_BY(mu_) = 0;  // the slot the next frame takes
};

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_SHARED_MEMORY_RING_H_
