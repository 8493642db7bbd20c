// `logstar prior`: a prior file read as `logstar analyze` and logstard read
// it (clients/cli/prior.h), checked and shown; with --frame, checked
// against the lattice that frame shows, as every result is, or (auto)
// derived from it as a session derives it. With --projection, the prior is
// written from the built-in table (clients/cli/prior_table.h) first, then
// read back and shown the same way.
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cli/analysis_json.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/frame_file.h"
#include "clients/cli/prior.h"
#include "clients/cli/prior_table.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/physics/lattice.h"
#include "server/session_config.h"

namespace logstar::cli {
namespace {

constexpr char kPriorUsage[] =
    "usage: logstar prior PRIOR.json|auto [--frame IMAGE] [--pixel-size A] [--strict]\n"
    "       logstar prior --projection NAME (--pixel-size A | --frame IMAGE) [--out PRIOR.json]\n"
    "                     [--strict]\n"
    "       logstar prior --list\n"
    "Reads the prior as logstar analyze and logstard read it, checks it (every field, the\n"
    "sublattices: unique names, densities adding up to the column density, brightest first)\n"
    "and prints it as JSON on stdout with its figures in pixels.\n"
    "  --frame IMAGE   also measure the lattice IMAGE shows (.npy, .tif/.tiff, .png) and print\n"
    "                  it with the warnings a result would carry (a given prior), or the prior\n"
    "                  an auto one derives from it\n"
    "  --pixel-size A  with an auto prior: angstrom per pixel (default: the frame file's\n"
    "                  calibration, TIFF or EMD, when it has one; else in pixels)\n"
    "  --strict        with --frame: exit 3 when there are warnings\n"
    "  --projection NAME  write the prior of a built-in projection (SrTiO3-100, SrTiO3-110,\n"
    "                  YBCO-100, graphene, Au-100, Au-110, Cu-100, Cu-110, Pt-100, Pt-110):\n"
    "                  its lattice, nearest-neighbour distance and sublattices, at the pixel\n"
    "                  size of --pixel-size or else of --frame's calibration; then check and\n"
    "                  show it as above (against --frame when given)\n"
    "  --out PRIOR.json  with --projection: where to write it (default: only shown)\n"
    "  --list          the table: each projection's cell, columns, figures and sources\n"
    "Exit codes: 0 valid, 1 invalid, unreadable or (auto) no lattice on the frame, 2 usage\n"
    "error, 3 --strict and warnings.\n";

constexpr int kExitPriorWarnings = 3;

struct PriorRequest {
  server::PriorSetting prior;
  std::optional<std::string> frame;
  bool strict = false;
  // --projection: the table's entry, where it was written, and how.
  const Projection* projection = nullptr;
  std::optional<std::string> out;
  std::string pixel_size_source;
};

// --projection NAME [--pixel-size A | --frame IMAGE] [--out F]: the table's
// prior, written to --out and read back through the one prior parser, so
// that what is shown is what the file holds.
absl::StatusOr<PriorRequest> PriorFromTable(const Flags& flags, PriorRequest r) {
  if (!flags.positional().empty()) {
    return absl::InvalidArgumentError("--projection writes a prior; give no PRIOR.json with it");
  }
  absl::StatusOr<const Projection*> projection = FindProjection(*flags.Get("projection"));
  if (!projection.ok()) return absl::InvalidArgumentError(projection.status().message());
  r.projection = *projection;
  r.out = flags.Get("out");
  double pixel = 0.0;
  if (flags.Has("pixel-size")) {
    absl::StatusOr<double> given = flags.Double("pixel-size", 0.0);
    if (!given.ok()) return given.status();
    if (!(*given > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat("--pixel-size must be > 0, got ", *given));
    }
    pixel = *given;
    r.pixel_size_source = "--pixel-size";
  } else if (r.frame) {
    absl::StatusOr<FrameFile> frame = ReadFrameFile(*r.frame);
    if (!frame.ok())
      return absl::Status(absl::StatusCode::kFailedPrecondition, frame.status().message());
    if (!frame->pixel_size_angstrom) {
      return absl::Status(absl::StatusCode::kFailedPrecondition,
                          absl::StrCat(*r.frame,
                                       ": the file carries no pixel size (TIFF "
                                       "resolution, EMD calibration); give --pixel-size A"));
    }
    pixel = *frame->pixel_size_angstrom;
    r.pixel_size_source = absl::StrCat(*r.frame, ": ", frame->calibration);
    PrintCalibrationNote(*r.frame, *frame, "");
  } else {
    return absl::InvalidArgumentError("--projection needs --pixel-size A or --frame IMAGE");
  }
  absl::StatusOr<PhysicsPrior> prior = PriorOfProjection(**projection, pixel);
  if (!prior.ok())
    return absl::Status(absl::StatusCode::kFailedPrecondition, prior.status().message());
  const std::string text = PriorToJson(*prior).dump(1) + "\n";
  absl::StatusOr<server::PriorSetting> read_back = ParsePrior(text, r.out.value_or("--projection"));
  if (r.out && read_back.ok()) {
    absl::Status written = EnsureParentDir(*r.out);
    if (written.ok()) written = WriteTextFile(*r.out, text);
    if (!written.ok())
      return absl::Status(absl::StatusCode::kFailedPrecondition, written.message());
    read_back = ReadPriorFile(*r.out);
  }
  if (!read_back.ok()) {
    return absl::Status(absl::StatusCode::kFailedPrecondition, read_back.status().message());
  }
  r.prior = *std::move(read_back);
  return r;
}

absl::StatusOr<PriorRequest> ParsePriorFlags(const Flags& flags) {
  PriorRequest r;
  r.frame = flags.Get("frame");
  r.strict = flags.Has("strict");
  if (r.strict && !r.frame) return absl::InvalidArgumentError("--strict needs --frame");
  if (flags.Has("projection")) return PriorFromTable(flags, std::move(r));
  if (flags.Has("out")) return absl::InvalidArgumentError("--out goes with --projection");
  if (flags.positional().size() != 1) {
    return absl::InvalidArgumentError(
        "give exactly one PRIOR.json (or auto), or --projection NAME");
  }
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
  absl::StatusOr<cv::Mat> raw = LoadFrameFile(*r.frame);
  if (!raw.ok()) return raw.status();
  const AnalyzerOptions options;  // what `logstar analyze` measures with
  ExecutionContext* context = ExecutionContext::Default();
  if (r.prior.derive) {
    double pixel = r.prior.prior.pixel_size_angstrom;
    if (!(pixel > 0.0)) pixel = PixelSizeFromFile(*r.frame).value_or(0.0);
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
  auto flags = Flags::Parse(args, {"frame", "pixel-size", "projection", "out"}, {"strict", "list"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kPriorUsage);
  if (flags->help()) {
    std::fputs(kPriorUsage, stdout);
    return 0;
  }
  if (flags->Has("list")) {
    if (args.size() != 1) return UsageError("--list takes no other option", kPriorUsage);
    std::fputs(ProjectionTableText().c_str(), stdout);
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
  if (r->projection != nullptr) {
    out["projection"] = {{"name", r->projection->name},
                         {"description", r->projection->description},
                         {"constants", r->projection->constants},
                         {"source", r->projection->source},
                         {"pixel_size_from", r->pixel_size_source},
                         {"written_to", r->out ? Json(*r->out) : Json()}};
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
