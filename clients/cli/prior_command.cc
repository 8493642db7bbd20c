// `logstar prior`: a prior file read as `logstar analyze` and logstard read
// it (clients/cli/prior.h), checked and shown; with --frame, checked
// against the lattice that frame shows, as every result is, or (auto)
// derived from it as a session derives it.
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cli/analysis_json.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/prior.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/physics/lattice.h"
#include "server/session_config.h"

namespace logstar::cli {
namespace {

constexpr char kPriorUsage[] =
    "usage: logstar prior PRIOR.json|auto [--frame IMAGE] [--pixel-size A] [--strict]\n"
    "Reads the prior as logstar analyze and logstard read it, checks it (every field, the\n"
    "sublattices: unique names, densities adding up to the column density, brightest first)\n"
    "and prints it as JSON on stdout with its figures in pixels.\n"
    "  --frame IMAGE   also measure the lattice IMAGE shows (.npy, .tif/.tiff, .png) and print\n"
    "                  it with the warnings a result would carry (a given prior), or the prior\n"
    "                  an auto one derives from it\n"
    "  --pixel-size A  with an auto prior: angstrom per pixel (default: in pixels)\n"
    "  --strict        with --frame: exit 3 when there are warnings\n"
    "Exit codes: 0 valid, 1 invalid, unreadable or (auto) no lattice on the frame, 2 usage\n"
    "error, 3 --strict and warnings.\n";

constexpr int kExitPriorWarnings = 3;

struct PriorRequest {
  server::PriorSetting prior;
  std::optional<std::string> frame;
  bool strict = false;
};

absl::StatusOr<PriorRequest> ParsePriorFlags(const Flags& flags) {
  if (flags.positional().size() != 1) {
    return absl::InvalidArgumentError("give exactly one PRIOR.json (or auto)");
  }
  PriorRequest r;
  r.frame = flags.Get("frame");
  r.strict = flags.Has("strict");
  if (r.strict && !r.frame) return absl::InvalidArgumentError("--strict needs --frame");
  const std::string& path = flags.positional()[0];
  if (path == "auto") {
    r.prior.derive = true;
  } else {
    absl::StatusOr<server::PriorSetting> prior = ReadPriorFile(path);
    // A bad file is the work failing (exit 1), not a usage error.
    if (!prior.ok())
      return absl::Status(absl::StatusCode::kFailedPrecondition, prior.status().message());
    r.prior = *std::move(prior);
  }
  if (flags.Has("pixel-size")) {
    absl::StatusOr<double> pixel = flags.Double("pixel-size", 0.0);
    if (!pixel.ok()) return pixel.status();
    if (!r.prior.derive) {
      return absl::InvalidArgumentError("--pixel-size goes with an auto prior");
    }
    if (!(*pixel > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat("--pixel-size must be > 0, got ", *pixel));
    }
    r.prior.prior.pixel_size_angstrom = *pixel;
  }
  return r;
}

// The frame's lattice, and the prior checked against it or derived from it.
absl::StatusOr<Json> CheckAgainstFrame(const PriorRequest& r, Json out) {
  absl::StatusOr<cv::Mat> raw = LoadFrame(*r.frame);
  if (!raw.ok()) return raw.status();
  const AnalyzerOptions options;  // what `logstar analyze` measures with
  ExecutionContext* context = ExecutionContext::Default();
  if (r.prior.derive) {
    const double pixel = r.prior.prior.pixel_size_angstrom;
    absl::StatusOr<DerivedPrior> derived = server::DeriveFramePrior(
        *raw, options, pixel > 0.0 ? std::optional<double>(pixel) : std::nullopt, context,
        absl::StrCat(*r.frame, ": --prior"));
    if (!derived.ok()) return derived.status();
    out["prior"] = PriorUsedToJson(
        {.prior = derived->prior, .derived = true, .pixel_units = !derived->pixel_size_known});
    out["warnings"] = Json::array();
    return out;
  }
  absl::StatusOr<LatticeMeasurement> lattice = server::MeasureFrameLattice(*raw, options, context);
  if (!lattice.ok()) return lattice.status();
  out["lattice"] = LatticeToJson(*lattice, r.prior.prior.pixel_size_angstrom);
  Json warnings = Json::array();
  if (lattice->found) {
    absl::StatusOr<std::vector<PriorWarning>> found =
        CheckPrior(r.prior.prior, *lattice, options.prior_tolerances);
    if (!found.ok()) return found.status();
    for (const PriorWarning& w : *found) {
      warnings.push_back(WarningToJson(w));
      std::fprintf(stderr, "logstar: warning: %s: prior %s: %s\n", r.frame->c_str(),
                   w.field.c_str(), w.message.c_str());
    }
  }
  out["warnings"] = std::move(warnings);
  return out;
}

}  // namespace

int RunPrior(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {"frame", "pixel-size"}, {"strict"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kPriorUsage);
  if (flags->help()) {
    std::fputs(kPriorUsage, stdout);
    return 0;
  }
  absl::StatusOr<PriorRequest> r = ParsePriorFlags(*flags);
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kFailedPrecondition) return Fail(r.status());
    return UsageError(std::string(r.status().message()), kPriorUsage);
  }
  Json out;
  if (r->prior.derive) {
    const double pixel = r->prior.prior.pixel_size_angstrom;
    out["prior"] = {{"auto", true}, {"pixel_size_angstrom", pixel > 0.0 ? Json(pixel) : Json()}};
  } else {
    out["prior"] = PriorUsedToJson({.prior = r->prior.prior});
  }
  if (r->frame) {
    absl::StatusOr<Json> checked = CheckAgainstFrame(*r, std::move(out));
    if (!checked.ok()) return Fail(checked.status());
    out = *std::move(checked);
  }
  std::printf("%s\n", out.dump(1).c_str());
  const bool warned = out.contains("warnings") && !out["warnings"].empty();
  return r->strict && warned ? kExitPriorWarnings : 0;
}

}  // namespace logstar::cli
