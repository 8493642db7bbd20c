#include "clients/cli/analysis_json.h"

#include <cmath>

namespace logstar::cli {

namespace {

const char* DepthName(int depth) {
  switch (depth) {
    case CV_8U:
      return "uint8";
    case CV_16U:
      return "uint16";
    case CV_16S:
      return "int16";
    case CV_32F:
      return "float32";
    case CV_64F:
      return "float64";
    default:
      return "unknown";
  }
}

Json RegionToJson(const PixelRegion& r) {
  return {{"col0", r.col0}, {"row0", r.row0}, {"cols", r.cols}, {"rows", r.rows}};
}

Json SublatticeCountToJson(const SublatticeCount& c) {
  return {{"name", c.name},
          {"num_found", c.num_found},
          {"num_expected", c.num_expected},
          {"qc", c.qc},
          {"relative_brightness", c.relative_brightness}};
}

// --refine gaussian: the column's fit, with its status only when it failed
// (the position and uncertainty are then the detection's).
void AddColumnFit(const ColumnFit& f, Json& j) {
  j["x_err"] = f.x_err;
  j["y_err"] = f.y_err;
  j["amplitude"] = f.amplitude;
  j["intensity"] = f.intensity;
  j["sigma_x"] = f.sigma_x;
  j["sigma_y"] = f.sigma_y;
  j["rotation"] = f.rotation;
  if (f.status != ColumnFitStatus::kOk) j["fit_status"] = ColumnFitStatusName(f.status);
}

}  // namespace

Json WindowToJson(const WindowResult& w) {
  Json front = Json::array();
  for (const FrontPoint& p : w.front) {
    Json point = LogParametersToJson(p.parameters);
    point["qc"] = p.qc;
    point["er"] = p.er;
    if (w.objectives == ObjectivePair::kLattice) {
      point["misses"] = p.misses;
      point["spurious"] = p.spurious;
    }
    front.push_back(std::move(point));
  }
  Json j = {{"index", w.window.index},
            {"tile", RegionToJson(w.window.tile)},
            {"core", RegionToJson(w.window.core)},
            {"cache", CacheStateName(w.state)},
            {"evaluations", w.evaluations},
            {"parameters", LogParametersToJson(w.parameters)},
            {"rewards", RewardsToJson(w.rewards)},
            {"tuned_rewards", {{"qc", w.tuned_rewards.qc}, {"er", w.tuned_rewards.er}}},
            {"front", std::move(front)},
            {"chosen", w.chosen},
            {"num_atoms", w.num_atoms},
            {"ms", w.ms},
            {"objectives", w.objectives == ObjectivePair::kLattice ? "lattice" : "published"}};
  if (!w.lattice_note.empty()) j["lattice_note"] = w.lattice_note;
  if (w.lattice_rewards) {
    j["lattice_rewards"] = {{"misses", w.lattice_rewards->misses},
                            {"spurious", w.lattice_rewards->spurious}};
  }
  j["crystalline_fraction"] = w.crystalline_fraction;
  if (!w.crystal_note.empty()) j["crystal_note"] = w.crystal_note;
  if (w.adopted) j["adopted"] = true;
  return j;
}

Json LatticeToJson(const LatticeMeasurement& m, double pixel_size_angstrom) {
  Json j = {{"found", m.found}};
  if (!m.found) {
    j["reason"] = m.reason;
    return j;
  }
  j["a_px"] = std::hypot(m.a.x, m.a.y);
  j["b_px"] = std::hypot(m.b.x, m.b.y);
  j["a"] = {m.a.x, m.a.y};
  j["b"] = {m.b.x, m.b.y};
  j["gamma_deg"] = m.gamma_deg;
  j["columns_per_cell"] = m.columns_per_cell;
  j["nearest_neighbor_px"] = m.nearest_neighbor_px;
  j["column_density_per_px2"] = m.column_density_per_px2;
  if (pixel_size_angstrom > 0.0) {
    j["nearest_neighbor_angstrom"] = m.NearestNeighborAngstrom(pixel_size_angstrom);
    j["column_density_per_nm2"] = m.ColumnDensityPerNm2(pixel_size_angstrom);
  }
  j["significance"] = m.significance;
  return j;
}

Json WarningToJson(const PriorWarning& w) {
  return {{"field", w.field}, {"given", w.given}, {"measured", w.measured}, {"message", w.message}};
}

Json RewardsToJson(const Rewards& r) {
  return {{"qc", r.qc},
          {"er", r.er},
          {"num_found", r.num_found},
          {"num_expected", r.num_expected},
          {"num_erroneous", r.num_erroneous},
          {"ds_px", r.ds_px}};
}

Json LogParametersToJson(const LogParameters& p, Json j) {
  j["min_sigma"] = p.min_sigma;
  j["max_sigma"] = p.max_sigma;
  j["num_sigma"] = p.num_sigma;
  j["threshold"] = p.threshold;
  j["overlap"] = p.overlap;
  return j;
}

Json AtomToJson(double x, double y, double sigma, float response) {
  return {{"x", x},
          {"y", y},
          {"sigma", sigma},
          {"radius", sigma * std::sqrt(2.0)},
          {"response", response}};
}

void AddFrameAnalysis(const FrameAnalysis& a, const PhysicsPrior& prior, bool pixel_units,
                      Json& out) {
  const int num_sublattices = static_cast<int>(prior.sublattices.size());
  Json atoms = Json::array();
  for (const Atom& atom : a.atoms) {
    Json j = AtomToJson(atom.x, atom.y, atom.sigma, atom.response);
    j["window"] = atom.window;
    if (num_sublattices > 0) {
      j["sublattice"] = atom.sublattice >= 0 && atom.sublattice < num_sublattices
                            ? Json(prior.sublattices[atom.sublattice].name)
                            : Json();
    }
    if (atom.fit.has_value()) AddColumnFit(*atom.fit, j);
    atoms.push_back(std::move(j));
  }
  out["num_atoms"] = a.atoms.size();
  out["atoms"] = std::move(atoms);
  out["rewards"] = RewardsToJson(a.rewards);
  Json windows = Json::array();
  for (const WindowResult& w : a.windows) windows.push_back(WindowToJson(w));
  out["windows"] = std::move(windows);
  out["cache"] = {{"hits", a.hits}, {"misses", a.misses}, {"retunes", a.retunes}};
  out["seam_duplicates"] = a.seam_duplicates;
  Json warnings = Json::array();
  for (const PriorWarning& w : a.warnings) warnings.push_back(WarningToJson(w));
  out["warnings"] = std::move(warnings);
  out["crystalline_fraction"] = a.crystalline_fraction;
  if (!a.crystal_note.empty()) out["crystal_note"] = a.crystal_note;
  if (a.lattice) {
    out["lattice"] = LatticeToJson(*a.lattice, pixel_units ? 0.0 : prior.pixel_size_angstrom);
  }
  if (num_sublattices > 0 || !a.sublattices.empty()) {
    Json counts = Json::array();
    for (const SublatticeCount& c : a.sublattices) counts.push_back(SublatticeCountToJson(c));
    out["sublattices"] = std::move(counts);
    out["sublattice_note"] = a.sublattice_note;
  }
}

Json AnalysisTimings(double load_ms, const FrameAnalysis& a, double overlay_ms, double total_ms) {
  return {{"load", load_ms},       {"normalize", a.normalize_ms}, {"windows", a.windows_ms},
          {"analyze", a.total_ms}, {"overlay", overlay_ms},       {"total", total_ms}};
}

Json ImageToJson(const std::string& path, const cv::Mat& raw) {
  return {
      {"path", path}, {"width", raw.cols}, {"height", raw.rows}, {"dtype", DepthName(raw.depth())}};
}

}  // namespace logstar::cli
