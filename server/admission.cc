#include "server/admission.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace logstar::server {

MemoryBudget::Reservation& MemoryBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void MemoryBudget::Reservation::Release() {
  if (budget_ != nullptr) budget_->Return(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<MemoryBudget::Reservation> MemoryBudget::Reserve(uint64_t bytes,
                                                                absl::string_view what) {
  Reservation r;
  if (absl::Status s = Grow(r, bytes, what); !s.ok()) return s;
  return r;
}

absl::Status MemoryBudget::Grow(Reservation& r, uint64_t bytes, absl::string_view what) {
  MutexLock lock(&mu_);
  if (bytes > capacity_ - std::min(used_, capacity_)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, " needs an estimated ", Mebibytes(bytes), "; the daemon's memory budget is ",
        Mebibytes(capacity_), " with ", Mebibytes(used_), " in use by ", reservations_,
        " frame reservations (memory_budget_bytes; retry later, or send smaller frames)"));
  }
  used_ += bytes;
  if (r.budget_ == nullptr) {
    r.budget_ = this;
    ++reservations_;
  }
  r.bytes_ += bytes;
  return absl::OkStatus();
}

void MemoryBudget::Return(uint64_t bytes) {
  MutexLock lock(&mu_);
  used_ -= std::min(bytes, used_);
  --reservations_;
}

uint64_t MemoryBudget::used() const {
  MutexLock lock(&mu_);
  return used_;
}

bool ConcurrencyLimit::TryAcquire() {
  MutexLock lock(&mu_);
  if (in_use_ >= limit_) return false;
  ++in_use_;
  return true;
}

void ConcurrencyLimit::Release() {
  MutexLock lock(&mu_);
  --in_use_;
}

int ConcurrencyLimit::in_use() const {
  MutexLock lock(&mu_);
  return in_use_;
}

namespace {

// MemTotal from /proc/meminfo, in bytes; 0 when unknown.
uint64_t MemTotal() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "MemTotal:")) continue;
    v = absl::StripAsciiWhitespace(v);
    absl::ConsumeSuffix(&v, "kB");
    uint64_t kb = 0;
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &kb) ? kb * 1024 : 0;
  }
  return 0;
}

// The cgroup v2 memory limit of this process, in bytes; 0 when none.
uint64_t CgroupLimit() {
  std::ifstream cgroup("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cgroup, line)) {
    if (absl::StartsWith(line, "0::")) path = line.substr(3);
  }
  if (path.empty()) return 0;
  std::ifstream in("/sys/fs/cgroup" + path + "/memory.max");
  std::string text;
  uint64_t limit = 0;
  if (!(in >> text) || !absl::SimpleAtoi(text, &limit)) return 0;  // "max": none
  return limit;
}

}  // namespace

uint64_t DefaultMemoryBudget() {
  uint64_t memory = MemTotal();
  const uint64_t cgroup = CgroupLimit();
  if (cgroup > 0 && (memory == 0 || cgroup < memory)) memory = cgroup;
  return memory == 0 ? uint64_t{1} << 30 : memory / 2;
}

std::string Mebibytes(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

}  // namespace logstar::server
