#include "server/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/base/mutex.h"
#include "engine/base/status_macros.h"
#include "server/files.h"
#include "server/memfd.h"

namespace logstar::server {

struct SharedMemoryRegistry::Region {
  RegionInfo info;
  int fd = -1;
  // A sealed memory file's first info.byte_size bytes, mapped read-only
  // (null for a POSIX shared memory object, which is only pread).
  const char* mapped = nullptr;
  ~Region() {
    if (mapped != nullptr) munmap(const_cast<char*>(mapped), info.byte_size);
    if (fd >= 0) close(fd);
  }
};

struct SharedMemoryRegistry::Table {
  explicit Table(const Options& o) : options(o) {}
  const Options options;
  Mutex mu;
  // By (the registering user, region name).
  absl::flat_hash_map<std::pair<uid_t, std::string>, std::shared_ptr<const Region>> regions
      ABSL_GUARDED_BY(mu);
};

namespace {

bool ValidRegionName(absl::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// shm_open's portable form: one leading slash, no other; "." and ".." would
// name /dev/shm itself or its parent.
bool ValidKey(absl::string_view key) {
  if (key.size() < 2 || key.size() > 251 || key[0] != '/') return false;
  const absl::string_view rest = key.substr(1);
  return rest != "." && rest != ".." && rest.find('/') == absl::string_view::npos &&
         rest.find('\0') == absl::string_view::npos;
}

// Frees a view's UMatData and with it the view's share of the mapping: the
// Mat's own reference count decides when, as for any Mat it allocated.
class MappingAllocator final : public cv::MatAllocator {
 public:
  cv::UMatData* allocate(int, const int*, int, void*, size_t*, cv::AccessFlag,
                         cv::UMatUsageFlags) const override {
    return nullptr;  // never allocates: a view's Mat reallocates with the default allocator
  }
  bool allocate(cv::UMatData*, cv::AccessFlag, cv::UMatUsageFlags) const override { return false; }
  void deallocate(cv::UMatData* u) const override { delete u; }  // drops allocatorContext
};

// A header over `bytes` that holds `owner` until its last copy goes.
cv::Mat ViewOwning(int rows, int cols, int cv_type, const char* bytes,
                   std::shared_ptr<const void> owner) {
  static const MappingAllocator* const allocator = new MappingAllocator;
  cv::Mat view(rows, cols, cv_type, const_cast<char*>(bytes));
  auto* u = new cv::UMatData(allocator);
  u->data = u->origdata = reinterpret_cast<uchar*>(const_cast<char*>(bytes));
  u->size = view.total() * view.elemSize();
  u->refcount = 1;
  u->allocatorContext = std::const_pointer_cast<void>(std::move(owner));
  view.u = u;
  return view;
}

}  // namespace

absl::Status SharedMemoryRegistry::Options::Validate() const {
  if (max_regions < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_regions must be >= 1, got ", max_regions));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SharedMemoryRegistry>> SharedMemoryRegistry::Create(
    const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<SharedMemoryRegistry>(new SharedMemoryRegistry(
      std::make_shared<Table>(options), PeerCredentials::Self(), /*self=*/true));
}

SharedMemoryRegistry SharedMemoryRegistry::ForCaller(const PeerCredentials& caller) const {
  return SharedMemoryRegistry(table_, caller, /*self=*/false);
}

absl::Status SharedMemoryRegistry::Register(const std::string& region, const std::string& key,
                                            uint64_t byte_size) {
  if (!ValidRegionName(region)) {
    return absl::InvalidArgumentError(
        absl::StrCat("region must be 1-128 characters of [A-Za-z0-9._-], got \"", region, "\""));
  }
  if (byte_size == 0) return absl::InvalidArgumentError("byte_size must be > 0");
  std::shared_ptr<Region> r;
  if (absl::string_view token = key; absl::ConsumePrefix(&token, kMemfdKeyPrefix)) {
    LOGSTAR_ASSIGN_OR_RETURN(r, MapHandedOver(key, token, byte_size));
    return Hold(region, std::move(r));
  }
  if (!ValidKey(key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key must be \"/\" and then 1-250 characters without \"/\" (a shm_open name) or "
        "\"memfd:<token>\", got \"",
        key, "\""));
  }
  r = std::make_shared<Region>();
  r->info = {region, key, byte_size};
  // Non-blocking: a FIFO someone put in /dev/shm would otherwise hold this
  // reaction thread until a writer comes (server/files.h).
  r->fd = shm_open(key.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0);
  if (r->fd < 0) {
    const int e = errno;
    const std::string why =
        absl::StrCat("cannot open shared memory object ", key, " for reading: ", std::strerror(e));
    if (e == ENOENT) return absl::NotFoundError(why);
    if (e == EACCES) {
      return absl::PermissionDeniedError(
          absl::StrCat(why,
                       " (the daemon's user must be able to read it: create it with mode "
                       "0644, or 0640 and a group the daemon is in)"));
    }
    return absl::InvalidArgumentError(why);
  }
  struct stat st {};
  if (absl::Status s = RequireRegularFile(r->fd, absl::StrCat("key ", key), &st); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(s.message(), ", so not a shared memory object"));
  }
  // On the descriptor the daemon holds: what the caller could read is
  // decided on the very object that will be read.
  if (!self_) {
    if (absl::Status s = CheckCallerMayRead(caller_, st, HasAccessAcl(r->fd),
                                            absl::StrCat("shared memory object ", key));
        !s.ok()) {
      return s;
    }
  }
  if (static_cast<uint64_t>(st.st_size) < byte_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte_size ", byte_size, " is more than the ", st.st_size, " bytes of ", key));
  }
  return Hold(region, std::move(r));
}

absl::StatusOr<std::shared_ptr<SharedMemoryRegistry::Region>> SharedMemoryRegistry::MapHandedOver(
    const std::string& key, absl::string_view token, uint64_t byte_size) const {
  const std::string field = absl::StrCat("key ", key);
  LOGSTAR_ASSIGN_OR_RETURN(const int fd,
                           MemfdInbox::Global().Take(token, caller_.uid, self_, field));
  auto r = std::make_shared<Region>();
  r->info = {"", key, byte_size};
  r->fd = fd;
  LOGSTAR_RETURN_IF_ERROR(CheckSealed(fd, byte_size, field));
  // Mapped once, with its page tables filled now, so that no frame pays
  // for faults; sealed against shrinking, no page can go away under it.
  void* mapped = mmap(nullptr, byte_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (mapped == MAP_FAILED) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cannot map the memory file: ", std::strerror(errno)));
  }
  r->mapped = static_cast<const char*>(mapped);
  return r;
}

absl::Status SharedMemoryRegistry::Hold(const std::string& region, std::shared_ptr<Region> r) {
  r->info.region = region;
  Table& t = *table_;
  MutexLock lock(&t.mu);
  const std::pair<uid_t, std::string> name{caller_.uid, region};
  if (!t.regions.contains(name) && static_cast<int>(t.regions.size()) >= t.options.max_regions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the daemon holds ", t.regions.size(),
                     " shared memory regions, its limit; unregister one first"));
  }
  t.regions[name] = std::move(r);  // a replaced region closes when its last Read ends
  return absl::OkStatus();
}

absl::Status SharedMemoryRegistry::Unregister(absl::string_view region) {
  MutexLock lock(&table_->mu);
  auto it = table_->regions.find(std::pair{caller_.uid, std::string(region)});
  if (it == table_->regions.end()) {
    return absl::NotFoundError(
        absl::StrCat("no shared memory region \"", region, "\" is registered"));
  }
  table_->regions.erase(it);
  return absl::OkStatus();
}

std::vector<SharedMemoryRegistry::RegionInfo> SharedMemoryRegistry::List() const {
  std::vector<RegionInfo> out;
  {
    MutexLock lock(&table_->mu);
    for (const auto& [name, r] : table_->regions) {
      if (name.first == caller_.uid) out.push_back(r->info);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const RegionInfo& a, const RegionInfo& b) { return a.region < b.region; });
  return out;
}

absl::StatusOr<std::shared_ptr<const SharedMemoryRegistry::Region>> SharedMemoryRegistry::Find(
    absl::string_view region, uint64_t offset, uint64_t size, absl::string_view field) const {
  std::shared_ptr<const Region> r;
  {
    MutexLock lock(&table_->mu);
    auto it = table_->regions.find(std::pair{caller_.uid, std::string(region)});
    if (it != table_->regions.end()) r = it->second;
  }
  if (r == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".region \"", region,
                     "\" is not registered (RegisterSharedMemory; the daemon forgets regions "
                     "when it restarts)"));
  }
  if (offset > r->info.byte_size || size > r->info.byte_size - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": bytes [", offset, ", ", offset + size, ") of the frame are beyond the ",
        r->info.byte_size, " bytes registered for region \"", region, "\""));
  }
  return r;
}

absl::StatusOr<cv::Mat> SharedMemoryRegistry::ReadImage(absl::string_view region, uint64_t offset,
                                                        int rows, int cols, int cv_type,
                                                        absl::string_view field,
                                                        ExecutionContext* context) const {
  const uint64_t size = static_cast<uint64_t>(rows) * cols * CV_ELEM_SIZE(cv_type);
  LOGSTAR_ASSIGN_OR_RETURN(std::shared_ptr<const Region> r, Find(region, offset, size, field));
  if (r->mapped != nullptr) {
    const char* bytes = r->mapped + offset;
    return ViewOwning(rows, cols, cv_type, bytes, std::move(r));
  }
  cv::Mat image(rows, cols, cv_type);
  LOGSTAR_RETURN_IF_ERROR(Read(region, offset, size, image.data, field, context));
  return image;
}

absl::Status SharedMemoryRegistry::Read(absl::string_view region, uint64_t offset, uint64_t size,
                                        void* out, absl::string_view field,
                                        ExecutionContext* context) const {
  LOGSTAR_ASSIGN_OR_RETURN(const std::shared_ptr<const Region> r,
                           Find(region, offset, size, field));
  if (r->mapped != nullptr) {
    std::memcpy(out, r->mapped + offset, size);
    return absl::OkStatus();
  }
  // pread from tmpfs copies page by page at about 4 GB/s on one core, half
  // of memcpy's speed: a 16 MiB frame is read in 1 MiB chunks by the
  // context's threads. The first failing chunk (in byte order) is reported.
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  const int chunks = static_cast<int>(std::max<uint64_t>(1, (size + kChunk - 1) / kChunk));
  std::vector<uint64_t> short_at(chunks, 0);  // 0: chunk read; else where the object ended
  std::vector<int> error(chunks, 0);
  auto read_chunk = [&](int c) {
    const uint64_t begin = static_cast<uint64_t>(c) * kChunk;
    const uint64_t end = std::min(size, begin + kChunk);
    auto* dst = static_cast<char*>(out);
    for (uint64_t at = begin; at < end;) {
      const ssize_t n = pread(r->fd, dst + at, end - at, static_cast<off_t>(offset + at));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error[c] = errno;
        return;
      }
      if (n == 0) {
        short_at[c] = offset + at + 1;  // + 1: byte 0 is a valid place to end
        return;
      }
      at += static_cast<uint64_t>(n);
    }
  };
  if (context != nullptr && chunks > 1) {
    context->ParallelFor(chunks, read_chunk);
  } else {
    for (int c = 0; c < chunks; ++c) read_chunk(c);
  }
  for (int c = 0; c < chunks; ++c) {
    if (error[c] != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": cannot read region \"", region, "\": ", std::strerror(error[c])));
    }
    if (short_at[c] != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": region \"", region, "\" (", r->info.key, ") ends at byte ", short_at[c] - 1,
          ", before the frame's end at ", offset + size, ": the object was shrunk"));
    }
  }
  return absl::OkStatus();
}

}  // namespace logstar::server
