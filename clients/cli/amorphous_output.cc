#include "clients/cli/amorphous_output.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cli/common.h"
#include "engine/amorphous/amorphous.h"
#include "engine/amorphous/gmm.h"
#include "engine/image/overlay.h"

namespace logstar::cli {
namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

Json ParametersToJson(const AmorphousParameters& p) {
  return {{"patch_size_px", p.patch_size_px},
          {"threshold", p.threshold},
          {"covariance_type", CovarianceTypeName(p.covariance_type)},
          {"num_components", p.num_components}};
}

Json RegionToJson(const Region& g, double angstrom_per_px) {
  Json contour = Json::array();
  for (const PointXY& p : g.contour) contour.push_back({p.x, p.y});
  return {{"area_angstrom2", g.area_px2 * angstrom_per_px * angstrom_per_px},
          {"perimeter_angstrom", g.perimeter_px * angstrom_per_px},
          {"area_px2", g.area_px2},
          {"perimeter_px", g.perimeter_px},
          {"centroid", {{"x", g.centroid.x}, {"y", g.centroid.y}}},
          {"bbox",
           {{"col0", g.bbox.col0},
            {"row0", g.bbox.row0},
            {"cols", g.bbox.cols},
            {"rows", g.bbox.rows}}},
          {"contour", std::move(contour)}};
}

Json StageToJson(const AmorphousResult& r, const AmorphousEvidence& evidence,
                 const std::optional<std::string>& mask_path) {
  const AmorphousEvaluation& c = r.chosen;
  Json front = Json::array();
  for (size_t i = 0; i < r.front.size(); ++i) {
    Json p = ParametersToJson(r.front[i].parameters);
    p["objectives"] = {r.front[i].objectives[0], r.front[i].objectives[1]};
    p["chosen"] = static_cast<int>(i) == r.chosen_index;
    front.push_back(std::move(p));
  }
  int classified = 0, amorphous = 0;
  for (const AtomClass& a : c.atoms) classified += a.classified, amorphous += a.amorphous;
  return {
      {"method",
       "lattice-difference patches, low-pass, PCA, Gaussian mixture; amorphous = the components "
       "more dispersed than the noise floor (engine/amorphous/amorphous.h)"},
      {"parameters", ParametersToJson(c.parameters)},
      {"objectives", {c.objectives[0], c.objectives[1]}},
      {"objective_names", {"(1 - isoperimetric) + lambda c", "perimeter/sqrt(WH) + lambda c"}},
      {"front", std::move(front)},
      {"chosen_index", r.chosen_index},
      {"num_evaluations", r.num_evaluations},
      {"classified_atoms", classified},
      {"amorphous_atoms", amorphous},
      {"atom_share", c.share},
      {"area_fraction", c.regions.area_fraction},
      {"num_regions", c.regions.regions.size()},
      {"verdict",
       {{"state", c.verdict.uncertain() ? "uncertain" : "confident"},
        {"code", VerdictCodeName(c.verdict.code)},
        {"reason", c.verdict.reason}}},
      {"evidence",
       {{"share", evidence.share},
        {"area_fraction", evidence.area_fraction},
        {"patch_size_px", evidence.patch_size_px},
        {"bic_gain", evidence.bic_gain},
        {"high_weight", evidence.high_weight},
        {"separation", evidence.separation}}},
      {"mask", mask_path ? Json(*mask_path) : Json()},
      {"tuning_ms", r.tuning_ms}};
}

}  // namespace

absl::StatusOr<AmorphousReport> AddAmorphous(const AmorphousRequest& request,
                                             absl::Span<const Atom> atoms, Json& result) {
  if (request.context == nullptr) return absl::InvalidArgumentError("--gmm: no execution context");
  if (!result.contains("atoms") || !result["atoms"].is_array() ||
      result["atoms"].size() != atoms.size()) {
    return absl::InternalError("--gmm: RESULT.json's atoms do not match the analysed atoms");
  }
  AmorphousReport report;
  auto t0 = Clock::now();
  absl::StatusOr<cv::Mat> image = NormalizeFrame(request.raw, request.normalize);
  if (!image.ok()) return image.status();
  std::vector<PointXY> points;
  points.reserve(atoms.size());
  for (const Atom& a : atoms) points.push_back({a.x, a.y});
  const AmorphousOptions options;
  absl::StatusOr<AmorphousResult> run =
      RunAmorphous(*image, points, request.prior, options, request.context);
  if (!run.ok())
    return absl::Status(run.status().code(), absl::StrCat("--gmm: ", run.status().message()));
  report.stage_ms = MsSince(t0);

  const AmorphousEvaluation& chosen = run->chosen;
  for (size_t i = 0; i < atoms.size(); ++i) {
    const AtomClass& a = chosen.atoms[i];
    result["atoms"][i]["amorphous"] = a.amorphous;
    // JSON has no NaN: unclassified atoms get null.
    result["atoms"][i]["posterior"] = a.classified ? Json(a.posterior) : Json();
  }
  Json regions = Json::array();
  for (const Region& g : chosen.regions.regions)
    regions.push_back(RegionToJson(g, request.prior.pixel_size_angstrom));
  result["regions"] = std::move(regions);
  result["amorphous"] = StageToJson(*run, run->evidence, request.mask_path);

  if (request.mask_path) {
    if (absl::Status s = EnsureParentDir(*request.mask_path); !s.ok()) return s;
    if (absl::Status s = WritePng(*request.mask_path, chosen.regions.mask); !s.ok()) return s;
  }
  if (request.overlay_path) {
    t0 = Clock::now();
    std::vector<Blob> blobs;
    AmorphousMarks marks;
    for (size_t i = 0; i < atoms.size(); ++i) {
      const Atom& a = atoms[i];
      blobs.push_back({.x = a.x, .y = a.y, .sigma = a.sigma, .response = a.response});
      marks.amorphous.push_back(chosen.atoms[i].amorphous);
    }
    for (const Region& g : chosen.regions.regions) marks.outlines.push_back(g.contour);
    marks.uncertain = chosen.verdict.uncertain();
    marks.uncertain_label = VerdictCodeName(chosen.verdict.code);
    absl::StatusOr<cv::Mat> picture = RenderAmorphousOverlay(*image, blobs, marks, request.overlay);
    if (!picture.ok()) return picture.status();
    if (absl::Status s = EnsureParentDir(*request.overlay_path); !s.ok()) return s;
    if (absl::Status s = WritePng(*request.overlay_path, *picture); !s.ok()) return s;
    report.overlay_ms = MsSince(t0);
  }
  report.console = absl::StrFormat(
      "; amorphous: %d regions, %.1f %% of the area, %.1f %% of the atoms (GMM %.1f ms)",
      static_cast<int>(chosen.regions.regions.size()), 100.0 * chosen.regions.area_fraction,
      100.0 * chosen.share, report.stage_ms);
  // "0 regions" alone would read as "no disorder" when the stage cannot tell.
  if (chosen.verdict.uncertain()) {
    absl::StrAppend(&report.console, "; UNCERTAIN (", VerdictCodeName(chosen.verdict.code),
                    "): ", chosen.verdict.reason);
  }
  return report;
}

}  // namespace logstar::cli
