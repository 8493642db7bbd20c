#include "engine/base/context.h"

#include <tbb/info.h>

#include "absl/strings/str_cat.h"

namespace logstar {

absl::Status ExecutionContext::Options::Validate() const {
  if (num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads must be >= 0 (0 = all cores), got ", num_threads));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ExecutionContext>> ExecutionContext::Create(const Options& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  int n = options.num_threads;
  if (n == 0) n = tbb::info::default_concurrency();
  return std::unique_ptr<ExecutionContext>(new ExecutionContext(n));
}

ExecutionContext* ExecutionContext::Default() {
  static ExecutionContext* const kDefault = new ExecutionContext(tbb::info::default_concurrency());
  return kDefault;
}

ExecutionContext::ExecutionContext(int num_threads)
    : num_threads_(num_threads), arena_(num_threads) {}

}  // namespace logstar
