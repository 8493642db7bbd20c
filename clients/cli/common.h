// Helpers the subcommands share: flag parsing, error exits, text files,
// frame lists and overlays. Defined in common.cc.
//
// Thread-safety: Flags is a value; the functions touch only their arguments
// and the files they name.
#ifndef LOGSTAR_CLIENTS_CLI_COMMON_H_
#define LOGSTAR_CLIENTS_CLI_COMMON_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "clients/cpp/prior_loader.h"
#include "engine/analysis/analyzer.h"
#include "engine/image/overlay.h"
#include "engine/log/log_detector.h"

namespace logstar::cli {

// Prints "logstar: error: MESSAGE" and returns 1.
int Fail(const absl::Status& status);
// Prints "logstar: error: MESSAGE (see 'logstar COMMAND --help')", one
// line, the command taken from `usage`'s first line; returns 2.
int UsageError(const std::string& message, const char* usage);

// --name value and --name=value options, --name switches (`switches`: no
// value, so that a switch cannot swallow the next argument) and positional
// arguments. Unknown options are usage errors.
class Flags {
 public:
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& known,
                                     const std::set<std::string>& switches = {});

  bool help() const { return help_; }
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }
  std::optional<std::string> Get(const std::string& name) const;
  // A finite number (`fallback` when the flag is absent); errors name the flag.
  absl::StatusOr<double> Double(const std::string& name, double fallback) const;
  // An integer (`fallback` when the flag is absent); errors name the flag.
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback) const;

 private:
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
};

// An integer flag in [lo, hi] (`fallback` when absent); errors name the
// flag and the range.
absl::StatusOr<int64_t> IntInRange(const Flags& flags, const std::string& name, int64_t fallback,
                                   int64_t lo, int64_t hi);
// --window: 0 (the whole frame is one window) or [16, 65536] px.
absl::StatusOr<int> WindowFlag(const Flags& flags, int fallback);

// The union of two sets of flag names.
std::set<std::string> With(std::set<std::string> a, const std::set<std::string>& b);

// Milliseconds since t0, for the timings the commands report.
double MsSince(std::chrono::steady_clock::time_point t0);

absl::Status WriteTextFile(const std::string& path, const std::string& text);
absl::Status EnsureParentDir(const std::string& path);
// ReadTextFile is the client library's (clients/cpp/prior_loader.h).
bool IsFrameFile(const std::filesystem::path& p);
// A directory's .npy/.tif/.tiff/.png/.emd files by name, or a glob's matches.
absl::StatusOr<std::vector<std::string>> ListFrames(const std::string& spec);
// What the CLI's overlays say below the frame (OverlayOptions::footer): the
// frame number (< 0: none), a scale bar from the pixel size (0 or a prior in
// pixel units: none) and the analysis windows coloured by cache state.
OverlayOptions AnnotatedOverlay(int64_t frame_number, double pixel_size_angstrom,
                                absl::Span<const WindowResult> windows);
// The atoms' Gaussian fits for OverlayOptions::fits (same order), when every
// atom has one (refine gaussian); else none.
std::vector<ColumnFit> OverlayFits(absl::Span<const Atom> atoms);
// Draws the blobs on a normalised frame and writes a PNG (creating its
// directory), with `options`' annotations.
absl::Status WriteOverlay(const cv::Mat& normalized, absl::Span<const Blob> blobs,
                          const std::string& path, const OverlayOptions& options);
// The same with amorphous atoms coloured and region outlines drawn, and each
// sublattice in its colour (empty marks draw as above).
absl::Status WriteOverlay(const cv::Mat& normalized, absl::Span<const Blob> blobs,
                          const AmorphousMarks& marks, const std::string& path,
                          const SublatticeMarks& sublattices, const OverlayOptions& options);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_COMMON_H_
