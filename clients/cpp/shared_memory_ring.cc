#include "clients/cpp/shared_memory_ring.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/cpp/client.h"

namespace logstar {

absl::Status SharedMemoryRing::Options::Validate() const {
  if (slots < 1) return absl::InvalidArgumentError(absl::StrCat("slots must be >= 1, got ", slots));
  if (slot_bytes < 1) return absl::InvalidArgumentError("slot_bytes must be >= 1, got 0");
  if (slot_bytes > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(slots)) {
    return absl::InvalidArgumentError(
        absl::StrCat(slots, " slots of ", slot_bytes, " bytes overflow the object's size"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SharedMemoryRing>> SharedMemoryRing::Create(const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  SharedMemoryBuffer::Options buffer_options{.mode = options.mode};
  if (!options.region.empty()) buffer_options.key = absl::StrCat("/logstar-", options.region);
  auto buffer = SharedMemoryBuffer::Create(options.slots * options.slot_bytes, buffer_options);
  if (!buffer.ok()) return buffer.status();
  // The default key is "/logstar-<pid>-<hex>": without its "/" a name the
  // daemon accepts.
  std::string region = options.region.empty() ? (*buffer)->key().substr(1) : options.region;
  return std::unique_ptr<SharedMemoryRing>(new SharedMemoryRing(
      *std::move(buffer), std::move(region), options.slots, options.slot_bytes));
}

SharedMemoryRing::SharedMemoryRing(std::unique_ptr<SharedMemoryBuffer> buffer, std::string region,
                                   int slots, uint64_t slot_bytes)
    : region_(std::move(region)),
      key_(buffer->key()),
      slots_(slots),
      slot_bytes_(slot_bytes),
      buffer_(std::move(buffer)) {}

SharedMemoryRing::~SharedMemoryRing() = default;  // the buffer unlinks the object

absl::Status SharedMemoryRing::Register(Client& client) {
  if (buffer_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("shared memory ring ", region_, ": closed"));
  }
  auto registered = client.RegisterSharedMemory(region_, *buffer_);
  if (!registered.ok()) return registered.status();
  registered_ = true;
  return absl::OkStatus();
}

absl::Status SharedMemoryRing::Close(Client* client) {
  absl::Status unregistered;
  if (registered_ && client != nullptr) unregistered = client->UnregisterSharedMemory(region_);
  registered_ = false;
  buffer_.reset();
  return unregistered;
}

absl::StatusOr<int> SharedMemoryRing::Acquire(const std::function<bool()>& stop) {
  MutexLock lock(&mu_);
  // `stop` is evaluated here, under mu_, by the waiting thread (the contract).
  while (!(in_use_ < slots_ || (stop && stop()))) freed_.Wait(&mu_);
  if (in_use_ >= slots_) {
    return absl::CancelledError(
        absl::StrCat("shared memory ring ", region_, ": gave up waiting for a free slot"));
  }
  const int slot = next_;
  next_ = (next_ + 1) % slots_;
  ++in_use_;
  return slot;
}

void SharedMemoryRing::GiveBack(int slot) {
  MutexLock lock(&mu_);
  next_ = slot;
  --in_use_;
  freed_.SignalAll();
}

void SharedMemoryRing::Release() {
  MutexLock lock(&mu_);
  if (in_use_ > 0) --in_use_;
  freed_.SignalAll();
}

void SharedMemoryRing::Wake() {
  MutexLock lock(&mu_);
  freed_.SignalAll();
}

int SharedMemoryRing::in_use() const {
  MutexLock lock(&mu_);
  return in_use_;
}

absl::Status SharedMemoryRing::Place(v1::Frame& frame, const std::function<bool()>& stop) {
  if (buffer_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("shared memory ring ", region_, ": closed"));
  }
  const v1::PixelData& pixels = frame.pixels();
  if (pixels.source_case() != v1::PixelData::kData || pixels.data().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame ", frame.sequence(), ": no pixels in the message to place"));
  }
  const uint64_t bytes = pixels.data().size();
  if (bytes > slot_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame ", frame.sequence(), ": its ", bytes,
                     " bytes of pixels do not fit in the shared memory ring's slots of ",
                     slot_bytes_, " bytes"));
  }
  absl::StatusOr<int> slot = Acquire(stop);
  if (!slot.ok()) return slot.status();
  const uint64_t offset = static_cast<uint64_t>(*slot) * slot_bytes_;
  std::memcpy(buffer_->data() + offset, pixels.data().data(), bytes);
  v1::SharedMemoryRef* ref = frame.mutable_pixels()->mutable_shared_memory();  // drops the data
  ref->set_region(region_);
  ref->set_offset(offset);
  return absl::OkStatus();
}

absl::StatusOr<v1::PixelData> SharedMemoryRing::PlaceImage(const cv::Mat& image,
                                                           const std::function<bool()>& stop) {
  if (buffer_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("shared memory ring ", region_, ": closed"));
  }
  const uint64_t bytes = static_cast<uint64_t>(image.total()) * image.elemSize();
  if (bytes > slot_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", image.cols, " x ", image.rows, " image of ", bytes,
        " bytes does not fit in the shared memory ring's slots of ", slot_bytes_, " bytes"));
  }
  absl::StatusOr<int> slot = Acquire(stop);
  if (!slot.ok()) return slot.status();
  // ImageToSharedPixels checks the type and writes nothing when it refuses.
  absl::StatusOr<v1::PixelData> placed =
      ImageToSharedPixels(image, *buffer_, region_, static_cast<uint64_t>(*slot) * slot_bytes_);
  if (!placed.ok()) GiveBack(*slot);
  return placed;
}

}  // namespace logstar
