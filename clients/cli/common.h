// Helpers the subcommands share: flag parsing, error exits, text files,
// the prior's JSON, frame lists and overlays.
#ifndef LOGSTAR_CLIENTS_CLI_COMMON_H_
#define LOGSTAR_CLIENTS_CLI_COMMON_H_

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/log/log_detector.h"
#include "engine/image/overlay.h"
#include "engine/physics/physics_prior.h"

namespace logstar::cli {

// Prints "logstar: error: MESSAGE" and returns 1.
int Fail(const absl::Status& status);
// Prints the message and the usage, returns 2.
int UsageError(const std::string& message, const char* usage);

// --name value and --name=value options, --name switches (`switches`: no
// value, so that a switch cannot swallow the next argument) and positional
// arguments. Unknown options are usage errors.
class Flags {
 public:
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& known,
                                     const std::set<std::string>& switches = {}) {
    Flags flags;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") {
        flags.help_ = true;
        continue;
      }
      if (a.rfind("--", 0) != 0) {
        flags.positional_.push_back(a);
        continue;
      }
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      if (switches.count(name.substr(0, eq))) {
        if (eq != std::string::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("option --", name.substr(0, eq), " takes no value"));
        }
      } else if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat("option --", name, " needs a value"));
        }
        value = args[++i];
      }
      if (!known.count(name) && !switches.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
      }
      if (flags.values_.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("option --", name, " given twice"));
      }
      flags.values_[name] = value;
    }
    return flags;
  }

  bool help() const { return help_; }
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }
  std::optional<std::string> Get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  absl::StatusOr<double> Double(const std::string& name, double fallback) const {
    auto v = Get(name);
    if (!v) return fallback;
    double out;
    if (!absl::SimpleAtod(*v, &out) || !std::isfinite(out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be a finite number, got '", *v, "'"));
    }
    return out;
  }
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback) const {
    auto v = Get(name);
    if (!v) return fallback;
    int64_t out;
    if (!absl::SimpleAtoi(*v, &out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be an integer, got '", *v, "'"));
    }
    return out;
  }

 private:
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
};

// Milliseconds since t0, for the timings the commands report.
double MsSince(std::chrono::steady_clock::time_point t0);

absl::Status WriteTextFile(const std::string& path, const std::string& text);
absl::Status EnsureParentDir(const std::string& path);
absl::StatusOr<std::string> ReadTextFile(const std::string& path);
// A PhysicsPrior from its JSON (snake_case fields); errors name `where`.
absl::StatusOr<PhysicsPrior> ParsePrior(const std::string& text, const std::string& where);
bool IsFrameFile(const std::filesystem::path& p);
// A directory's .npy/.tif/.tiff/.png files by name, or a glob's matches.
absl::StatusOr<std::vector<std::string>> ListFrames(const std::string& spec);
// Draws the blobs on a normalised frame and writes a PNG (creating its directory).
absl::Status WriteOverlay(const cv::Mat& normalized, absl::Span<const Blob> blobs,
                          const std::string& path);
// The same with amorphous atoms coloured and region outlines drawn (an
// empty `marks` draws as above).
absl::Status WriteOverlay(const cv::Mat& normalized, absl::Span<const Blob> blobs,
                          const AmorphousMarks& marks, const std::string& path);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_COMMON_H_
