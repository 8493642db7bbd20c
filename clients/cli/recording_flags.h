// What record, synth --frames and replay share: the analysis settings a
// recording's header carries (--window, --evals, --gmm), which replay may
// override. Defined in recording_flags.cc.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_CLIENTS_CLI_RECORDING_FLAGS_H_
#define LOGSTAR_CLIENTS_CLI_RECORDING_FLAGS_H_

#include "absl/status/status.h"
#include "clients/cli/common.h"
#include "logstar/v1/session.pb.h"

namespace logstar::cli {

// Sets the fields of `a` the flags give: --window (0 or [16, 65536] px),
// --evals ([1, 10000]) and --gmm (the amorphous stage on). Errors name the
// flag; `a` is unchanged where no flag is given.
absl::Status AddAnalysisFlags(const Flags& flags, v1::AnalysisSettings* a);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_RECORDING_FLAGS_H_
