#include "clients/cli/recording_flags.h"

namespace logstar::cli {

absl::Status AddAnalysisFlags(const Flags& flags, v1::AnalysisSettings* a) {
  if (flags.Has("window")) {
    absl::StatusOr<int> window = WindowFlag(flags, 0);
    if (!window.ok()) return window.status();
    a->set_window(*window);
  }
  if (flags.Has("evals")) {
    absl::StatusOr<int64_t> evals = IntInRange(flags, "evals", 0, 1, 10000);
    if (!evals.ok()) return evals.status();
    a->set_evaluations(static_cast<int>(*evals));
  }
  if (flags.Has("gmm")) a->mutable_amorphous()->set_enabled(true);
  return absl::OkStatus();
}

}  // namespace logstar::cli
