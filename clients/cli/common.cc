#include "clients/cli/common.h"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/image/image_io.h"

namespace logstar::cli {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "logstar: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

int UsageError(const std::string& message, const char* usage) {
  // The command from the usage's first line, "usage: logstar analyze ...":
  // the error stays one line on the screen, the help one flag away.
  std::vector<std::string> words = absl::StrSplit(usage, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  const std::string command =
      words.size() >= 3 && words[1] == "logstar" ? absl::StrCat("logstar ", words[2]) : "logstar";
  std::fprintf(stderr, "logstar: error: %s (see '%s --help')\n", message.c_str(), command.c_str());
  return 2;
}

// ---------------------------------------------------------------- flags

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& known,
                                   const std::set<std::string>& switches) {
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

std::optional<std::string> Flags::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<double> Flags::Double(const std::string& name, double fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out) || !std::isfinite(out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be a finite number, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<int64_t> Flags::Int(const std::string& name, int64_t fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be an integer, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<int64_t> IntInRange(const Flags& flags, const std::string& name, int64_t fallback,
                                   int64_t lo, int64_t hi) {
  auto v = flags.Int(name, fallback);
  if (!v.ok()) return v.status();
  if (*v < lo || *v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be in [", lo, ", ", hi, "], got ", *v));
  }
  return *v;
}

absl::StatusOr<int> WindowFlag(const Flags& flags, int fallback) {
  auto window = flags.Int("window", fallback);
  if (!window.ok()) return window.status();
  if (*window != 0 && (*window < 16 || *window > 65536)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--window must be 0 (the whole frame) or in [16, 65536] px, got ", *window));
  }
  return static_cast<int>(*window);
}

std::set<std::string> With(std::set<std::string> a, const std::set<std::string>& b) {
  a.insert(b.begin(), b.end());
  return a;
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------- files

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::Status EnsureParentDir(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(parent.string(), ": cannot create directory: ", ec.message()));
  }
  return absl::OkStatus();
}

bool IsFrameFile(const std::filesystem::path& p) {
  const std::string ext = absl::AsciiStrToLower(p.extension().string());
  return ext == ".npy" || ext == ".tif" || ext == ".tiff" || ext == ".png" || ext == ".emd";
}

// The frames of --frames: a directory's image files by name, or what a
// glob(3) pattern matches (glob sorts its matches).
absl::StatusOr<std::vector<std::string>> ListFrames(const std::string& spec) {
  std::vector<std::string> paths;
  std::error_code ec;
  if (std::filesystem::is_directory(spec, ec)) {
    std::filesystem::directory_iterator it(spec, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code file_ec;
      if (it->is_regular_file(file_ec) && IsFrameFile(it->path())) {
        paths.push_back(it->path().string());
      }
    }
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat(spec, ": cannot list: ", ec.message()));
    }
    std::sort(paths.begin(), paths.end());
  } else {
    glob_t matches{};
    const int rc = glob(spec.c_str(), 0, nullptr, &matches);
    if (rc == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) {
        if (std::filesystem::is_regular_file(matches.gl_pathv[i], ec)) {
          paths.push_back(matches.gl_pathv[i]);
        }
      }
    }
    globfree(&matches);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      return absl::PermissionDeniedError(absl::StrCat("--frames ", spec, ": cannot read"));
    }
  }
  if (paths.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "--frames ", spec,
        ": no frames (expected a directory with .npy, .tif, .tiff, .png or .emd files, or a glob "
        "pattern matching files)"));
  }
  return paths;
}

OverlayOptions AnnotatedOverlay(int64_t frame_number, double pixel_size_angstrom,
                                absl::Span<const WindowResult> windows) {
  OverlayOptions o{.footer = true,
                   .frame_number = frame_number,
                   .pixel_size_angstrom = pixel_size_angstrom > 0.0 ? pixel_size_angstrom : 0.0};
  for (const WindowResult& w : windows) {
    const WindowMark state = w.state == CacheState::kHit       ? WindowMark::kHit
                             : w.state == CacheState::kRetuned ? WindowMark::kRetuned
                                                               : WindowMark::kTuned;
    o.windows.push_back({.tile = w.window.tile, .state = state});
  }
  return o;
}

std::vector<ColumnFit> OverlayFits(absl::Span<const Atom> atoms) {
  std::vector<ColumnFit> fits;
  for (const Atom& a : atoms) {
    if (!a.fit.has_value()) return {};
    fits.push_back(*a.fit);
  }
  return fits;
}

absl::Status WriteOverlay(const cv::Mat& normalized, absl::Span<const Blob> blobs,
                          const std::string& path, const OverlayOptions& options) {
  return WriteOverlay(normalized, blobs, AmorphousMarks{}, path, SublatticeMarks{}, options);
}

absl::Status WriteOverlay(const cv::Mat& normalized, absl::Span<const Blob> blobs,
                          const AmorphousMarks& marks, const std::string& path,
                          const SublatticeMarks& sublattices, const OverlayOptions& options) {
  auto picture = RenderOverlay(normalized, blobs, marks, sublattices, options);
  if (!picture.ok()) return picture.status();
  if (absl::Status s = EnsureParentDir(path); !s.ok()) return s;
  return WritePng(path, *picture);
}

}  // namespace logstar::cli
