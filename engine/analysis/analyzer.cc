#include "engine/analysis/analyzer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/base/status_macros.h"

namespace logstar {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Window starts along one axis: every stride, the last moved in to end at
// the edge (as the reference workflow lays them out).
std::vector<int> Starts(int n, int w, int stride) {
  std::vector<int> s;
  for (int a = 0; a <= n - w; a += stride) s.push_back(a);
  if (s.back() != n - w) s.push_back(n - w);
  return s;
}

// Core boundaries: the middle of each overlap (the seam itself without one).
std::vector<int> CoreBounds(const std::vector<int>& starts, int w, int n) {
  std::vector<int> b = {0};
  for (size_t i = 0; i + 1 < starts.size(); ++i) b.push_back((starts[i + 1] + starts[i] + w) / 2);
  b.push_back(n);
  return b;
}

// Context around a window: the LoG kernels' reach for peaks at its edge and
// the pruning reach (2·√2·sigma), so that atoms at the edge are judged as in
// the whole frame.
int HaloFor(double max_sigma) {
  return static_cast<int>(std::ceil(2.0 * std::sqrt(2.0) * max_sigma)) + 2;
}

PixelRegion Grow(const PixelRegion& r, int halo, int width, int height) {
  const int c0 = std::max(r.col0 - halo, 0), r0 = std::max(r.row0 - halo, 0);
  const int c1 = std::min(r.col0 + r.cols + halo, width);
  const int r1 = std::min(r.row0 + r.rows + halo, height);
  return {c0, r0, c1 - c0, r1 - r0};
}

bool Same(const PixelRegion& a, const PixelRegion& b) {
  return a.col0 == b.col0 && a.row0 == b.row0 && a.cols == b.cols && a.rows == b.rows;
}

bool Inside(const PixelRegion& r, double x, double y) {
  return x >= r.col0 - 0.5 && x < r.col0 + r.cols - 0.5 && y >= r.row0 - 0.5 &&
         y < r.row0 + r.rows - 0.5;
}

// Moves a window's blobs and fits from its context `ctx` into frame
// coordinates.
void ToFrame(const PixelRegion& ctx, std::vector<Blob>& blobs, std::vector<ColumnFit>& fits) {
  for (Blob& b : blobs) b.x += ctx.col0, b.y += ctx.row0;
  for (ColumnFit& f : fits) f.x += ctx.col0, f.y += ctx.row0;
}

// The options a window detects with. With the Gaussian refinement the
// windows refine with the paraboloid (their rewards, and drift, are judged on
// it), and the frame's columns are fitted once, after the seams are merged
// (RefineFrame): each column once, with its neighbours across seams, from
// the last frame's fits.
LogStarOptions ForWindows(const LogStarOptions& options) {
  LogStarOptions o = options;
  if (o.refine_mode == RefineMode::kGaussian) o.refine_mode = RefineMode::kParaboloid;
  return o;
}

// Where the atoms a window's ER counted lie: blobs[indices], already in
// frame coordinates.
std::vector<PointXY> PositionsOf(const std::vector<Blob>& blobs, const std::vector<int>& indices) {
  std::vector<PointXY> out;
  out.reserve(indices.size());
  for (int i : indices) out.push_back({blobs[i].x, blobs[i].y});
  return out;
}

// Whether a cached window's detection on this frame has moved too far from
// its tuning: in (QC, ER), and with the lattice pair in (misses, spurious)
// too, the pair it was tuned on (its count may hold while noise replaces
// columns).
bool Drifted(const LogDetection& now, const CachedWindow& tuned, double tolerance) {
  auto off = [&](double a, double b) { return std::abs(a - b) > tolerance; };
  if (off(now.rewards.qc, tuned.tuned_rewards.qc) || off(now.rewards.er, tuned.tuned_rewards.er)) {
    return true;
  }
  return now.lattice_rewards && tuned.tuned_lattice_rewards &&
         (off(now.lattice_rewards->misses, tuned.tuned_lattice_rewards->misses) ||
          off(now.lattice_rewards->spurious, tuned.tuned_lattice_rewards->spurious));
}

bool Drifted(const AmorphousEvaluation& now, const CachedAmorphousWindow& tuned,
             const AmorphousStageOptions& options) {
  const double floor_ratio = now.mixture.noise_floor /
                             std::max(tuned.tuned_noise_floor, std::numeric_limits<double>::min());
  return std::abs(now.regions.area_fraction - tuned.tuned_area_fraction) >
             options.drift_tolerance ||
         !(floor_ratio <= options.floor_drift_ratio &&
           floor_ratio >= 1.0 / options.floor_drift_ratio);
}

// Context around an amorphous window: a patch and a lattice translation or
// two beyond its edge, so that atoms near the edge of its core can still be
// compared with a neighbour cell.
int AmorphousHalo(const AmorphousOptions& options, double nn_px) {
  return static_cast<int>(std::ceil(0.5 * options.max_patch_nn * nn_px + 2.0 * nn_px)) + 2;
}

// A frame at least this crystalline is counted whole: what the map misses is
// a few pixels at the frame's edge (its window there averages a partial
// cell), not vacuum.
constexpr double kWholeFrameShare = 0.98;

// The lattice pair needs to know where the crystal is: with a lattice
// found but no usable map of it (`crystal` null, or a partial crystal whose
// map `use_mask` is not used: the lattice shows nowhere clearly enough),
// a stand-in that is not found, whose reason lattice_note carries; nullopt
// when the frame's lattice can be used as it is (or there is none).
std::optional<LatticeMeasurement> LatticePairFallback(const LatticeMeasurement* lattice,
                                                      const Crystallinity* crystal, bool use_mask,
                                                      const std::string& unmapped) {
  if (lattice == nullptr || !lattice->found) return std::nullopt;
  if (crystal != nullptr && (use_mask || crystal->fraction >= kWholeFrameShare)) {
    return std::nullopt;
  }
  LatticeMeasurement stand_in;
  stand_in.found = false;
  stand_in.reason =
      absl::StrCat("the lattice was found, but not where it shows (",
                   crystal != nullptr ? "it shows nowhere clearly enough"
                                      : (unmapped.empty() ? std::string("no map") : unmapped),
                   "), and detections off it would count as spurious");
  return stand_in;
}

// The layout Analyze() uses for a frame size: window 0 is the whole frame.
absl::StatusOr<std::vector<Window>> LayoutFor(int width, int height, int window, int stride) {
  const int w = window == 0 ? std::max(width, height) : window;
  return LayoutWindows(width, height, std::max(w, 16), stride == 0 ? w : stride);
}

// Stage errors that describe the frame (too few atoms, no lattice period, a
// mixture that cannot be fitted) skip a window; others fail the frame.
bool SkipsWindow(const absl::Status& s) {
  return s.code() == absl::StatusCode::kInvalidArgument ||
         s.code() == absl::StatusCode::kFailedPrecondition;
}

// Drops the weaker of two atoms of different windows closer than `radius`
// (one column seen from both sides of a seam). Returns how many went.
int MergeSeams(std::vector<Atom>& atoms, double radius) {
  if (atoms.size() < 2) return 0;
  // Bucket grid of radius-sized cells: only neighbouring cells can hold a pair.
  double min_x = atoms[0].x, min_y = atoms[0].y, max_x = min_x, max_y = min_y;
  for (const Atom& a : atoms) {
    min_x = std::min(min_x, a.x), max_x = std::max(max_x, a.x);
    min_y = std::min(min_y, a.y), max_y = std::max(max_y, a.y);
  }
  const int gw = static_cast<int>((max_x - min_x) / radius) + 1;
  const int gh = static_cast<int>((max_y - min_y) / radius) + 1;
  std::vector<std::vector<int>> cells(static_cast<size_t>(gw) * gh);
  auto cx = [&](const Atom& a) {
    return std::min(static_cast<int>((a.x - min_x) / radius), gw - 1);
  };
  auto cy = [&](const Atom& a) {
    return std::min(static_cast<int>((a.y - min_y) / radius), gh - 1);
  };
  for (size_t i = 0; i < atoms.size(); ++i) cells[cy(atoms[i]) * gw + cx(atoms[i])].push_back(i);
  std::vector<char> dropped(atoms.size(), 0);
  const double r2 = radius * radius;
  for (size_t i = 0; i < atoms.size(); ++i) {
    const Atom& a = atoms[i];
    for (int gy = std::max(cy(a) - 1, 0); gy <= std::min(cy(a) + 1, gh - 1); ++gy) {
      for (int gx = std::max(cx(a) - 1, 0); gx <= std::min(cx(a) + 1, gw - 1); ++gx) {
        for (int j : cells[gy * gw + gx]) {
          if (j <= static_cast<int>(i) || atoms[j].window == a.window) continue;
          if (dropped[i] || dropped[j]) continue;
          const double dx = atoms[j].x - a.x, dy = atoms[j].y - a.y;
          if (dx * dx + dy * dy >= r2) continue;
          // Ties keep the earlier atom, so the result never depends on order.
          if (atoms[j].response > a.response) {
            dropped[i] = 1;
          } else {
            dropped[j] = 1;
          }
        }
      }
    }
  }
  int n = 0;
  std::vector<Atom> kept;
  kept.reserve(atoms.size());
  for (size_t i = 0; i < atoms.size(); ++i) {
    if (dropped[i]) {
      ++n;
    } else {
      kept.push_back(atoms[i]);
    }
  }
  atoms.swap(kept);
  return n;
}

bool SameParameters(const LogParameters& a, const LogParameters& b) {
  return a.min_sigma == b.min_sigma && a.max_sigma == b.max_sigma && a.num_sigma == b.num_sigma &&
         a.threshold == b.threshold && a.overlap == b.overlap;
}

// The seed windows among `fresh` (indices into `layout`, ascending): the
// window of `fresh` whose tile centre is nearest the centre of each cell of
// a g × g grid over the frame, g = ceil(√count), cells row by row, the
// lowest index on a tie; the first `count` distinct ones, ascending.
std::vector<int> SeedWindows(const std::vector<Window>& layout, const std::vector<int>& fresh,
                             int count, int width, int height) {
  const int g = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count))));
  std::vector<int> seeds;
  for (int cell = 0; cell < g * g && static_cast<int>(seeds.size()) < count; ++cell) {
    const double x = (cell % g + 0.5) * width / g, y = (cell / g + 0.5) * height / g;
    int best = -1;
    double best_d2 = std::numeric_limits<double>::infinity();
    for (int i : fresh) {
      const PixelRegion& t = layout[i].tile;
      const double dx = t.col0 + 0.5 * t.cols - x, dy = t.row0 + 0.5 * t.rows - y;
      if (dx * dx + dy * dy < best_d2) best_d2 = dx * dx + dy * dy, best = i;
    }
    if (best >= 0 && std::find(seeds.begin(), seeds.end(), best) == seeds.end()) {
      seeds.push_back(best);
    }
  }
  std::sort(seeds.begin(), seeds.end());
  return seeds;
}

// Where a fresh window's warm search starts: every seed's chosen point
// (nearest seed first; the seeds agree on the crystal, and their spread is
// what the window may need), then points of the nearest seed's front,
// evenly spaced along it from both ends, up to `max_points` in all, each
// once. Nearest by tile centres, the lowest index on a tie.
// `seeds` by the distance of their tile centres from w's, nearest first
// (the lowest index on a tie: the order given).
std::vector<const WindowResult*> ByDistance(const Window& w,
                                            const std::vector<const WindowResult*>& seeds) {
  auto d2 = [&](const WindowResult* s) {
    const PixelRegion &a = w.tile, &b = s->window.tile;
    const double dx = (a.col0 + 0.5 * a.cols) - (b.col0 + 0.5 * b.cols);
    const double dy = (a.row0 + 0.5 * a.rows) - (b.row0 + 0.5 * b.rows);
    return dx * dx + dy * dy;
  };
  std::vector<const WindowResult*> order = seeds;
  std::stable_sort(order.begin(), order.end(),
                   [&](const WindowResult* a, const WindowResult* b) { return d2(a) < d2(b); });
  return order;
}

std::vector<LogParameters> TransferredPoints(const Window& w,
                                             const std::vector<const WindowResult*>& seeds,
                                             int max_points) {
  const std::vector<const WindowResult*> order = ByDistance(w, seeds);
  std::vector<LogParameters> out;
  auto add = [&](const LogParameters& p) {
    if (static_cast<int>(out.size()) >= max_points) return;
    for (const LogParameters& q : out) {
      if (SameParameters(p, q)) return;
    }
    out.push_back(p);
  };
  for (const WindowResult* s : order) {
    if (!s->front.empty()) add(s->front[s->chosen].parameters);
  }
  if (order.empty()) return out;
  const std::vector<FrontPoint>& front = order.front()->front;
  const int n = static_cast<int>(front.size());
  // Both ends, then the middles of the widest remaining spans.
  for (int step = n; step >= 1 && static_cast<int>(out.size()) < max_points; step /= 2) {
    for (int k = 0; k < n; k += step) add(front[k].parameters);
    add(front[n - 1].parameters);
    if (step == 1) break;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Window>> LayoutWindows(int width, int height, int window, int stride) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame size must be positive, got ", width, " x ", height));
  }
  if (window < 16)
    return absl::InvalidArgumentError(absl::StrCat("window must be >= 16 px, got ", window));
  if (stride < 1 || stride > window) {
    return absl::InvalidArgumentError(
        absl::StrCat("stride must be in [1, window = ", window, "] px, got ", stride));
  }
  const int wx = std::min(window, width), wy = std::min(window, height);
  const std::vector<int> sx = Starts(width, wx, stride), sy = Starts(height, wy, stride);
  const std::vector<int> bx = CoreBounds(sx, wx, width), by = CoreBounds(sy, wy, height);
  std::vector<Window> out;
  for (size_t j = 0; j < sy.size(); ++j) {
    for (size_t i = 0; i < sx.size(); ++i) {
      Window w;
      w.index = static_cast<int>(out.size());
      w.tile = {sx[i], sy[j], wx, wy};
      w.core = {bx[i], by[j], bx[i + 1] - bx[i], by[j + 1] - by[j]};
      out.push_back(w);
    }
  }
  return out;
}

namespace {

// The checks both stages' windows and drift tolerances share; `prefix`
// names the stage in the message ("" or "amorphous ").
absl::Status ValidateWindows(const char* prefix, int window, int stride, double drift_tolerance) {
  if (window != 0 && window < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "window must be 0 or >= 16 px, got ", window));
  }
  if (stride < 0 || (window > 0 && stride > window)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "stride must be in [0, window = ", window, "] px, got ", stride));
  }
  if (!(std::isfinite(drift_tolerance) && drift_tolerance > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "drift_tolerance must be positive, got ", drift_tolerance));
  }
  return absl::OkStatus();
}

// Labels the frame's atoms with the prior's sublattices and counts each over
// the frame's crystalline area (engine/physics/sublattice.h).
absl::Status AssignFrameSublattices(const cv::Mat& image, const PhysicsPrior& prior,
                                    const SublatticeOptions& options, ExecutionContext* context,
                                    FrameAnalysis& result) {
  std::vector<PointXY> positions;
  std::vector<double> sigmas;
  positions.reserve(result.atoms.size());
  sigmas.reserve(result.atoms.size());
  for (const Atom& a : result.atoms) {
    positions.push_back({a.x, a.y});
    sigmas.push_back(a.sigma);
  }
  const LatticeMeasurement* lattice = result.lattice ? &*result.lattice : nullptr;
  const double area_px2 = result.crystalline_fraction * image.cols * image.rows;
  LOGSTAR_ASSIGN_OR_RETURN(
      SublatticeAssignment assignment,
      AssignSublattices(image, positions, sigmas, prior, lattice, area_px2, options, context));
  for (size_t i = 0; i < result.atoms.size(); ++i) {
    result.atoms[i].sublattice = assignment.labels[i];
  }
  result.sublattices = std::move(assignment.counts);
  result.sublattice_note = std::move(assignment.note);
  return absl::OkStatus();
}

// Drops every atom not of sublattice `name` (one of prior's), with its
// amorphous class, and recounts the windows' atoms. Rewards and counts stay
// those of all atoms: they are what the detector was tuned and judged on.
void KeepSublattice(const std::string& name, const PhysicsPrior& prior, FrameAnalysis& result) {
  int wanted = -1;
  for (size_t k = 0; k < prior.sublattices.size(); ++k) {
    if (prior.sublattices[k].name == name) wanted = static_cast<int>(k);
  }
  std::vector<Atom> kept;
  std::vector<AtomClass> kept_classes;
  for (WindowResult& w : result.windows) w.num_atoms = 0;
  for (size_t i = 0; i < result.atoms.size(); ++i) {
    if (result.atoms[i].sublattice != wanted) continue;
    kept.push_back(result.atoms[i]);
    ++result.windows[result.atoms[i].window].num_atoms;
    if (result.amorphous) kept_classes.push_back(result.amorphous->atoms[i]);
  }
  result.atoms = std::move(kept);
  if (result.amorphous) result.amorphous->atoms = std::move(kept_classes);
}

// The sublattice a stream reports must be one the prior describes.
absl::Status CheckSublatticeChoice(const std::string& name, const PhysicsPrior& prior) {
  if (name.empty()) return absl::OkStatus();
  std::vector<std::string> names;
  for (const SublatticePrior& s : prior.sublattices) {
    if (s.name == name) return absl::OkStatus();
    names.push_back(s.name);
  }
  if (names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sublattice \"", name, "\" asked for, but the prior describes no sublattices"));
  }
  return absl::InvalidArgumentError(absl::StrCat("sublattice \"", name,
                                                 "\" is not one of the prior's sublattices (",
                                                 absl::StrJoin(names, ", "), ")"));
}

}  // namespace

absl::Status AmorphousStageOptions::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(ValidateWindows("amorphous ", window, stride, drift_tolerance));
  if (!(std::isfinite(floor_drift_ratio) && floor_drift_ratio > 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("amorphous floor_drift_ratio must be > 1, got ", floor_drift_ratio));
  }
  LOGSTAR_RETURN_IF_ERROR(tracking.Validate());
  return options.Validate();
}

absl::Status WarmStartOptions::Validate() const {
  if (seed_windows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.seed_windows must be >= 1, got ", seed_windows));
  }
  if (evaluations < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.evaluations must be >= 2, got ", evaluations));
  }
  if (!(std::isfinite(min_relative_improvement) && min_relative_improvement >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.min_relative_improvement must be finite and >= 0, got ",
                     min_relative_improvement));
  }
  if (max_points < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.max_points must be >= 1, got ", max_points));
  }
  if (!(margin >= 0.0 && margin <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.margin must be in [0, 1], got ", margin));
  }
  if (!(drift_margin >= 0.0 && drift_margin <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.drift_margin must be in [0, 1], got ", drift_margin));
  }
  if (!(std::isfinite(adopt_tolerance) && adopt_tolerance >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm_start.adopt_tolerance must be finite and >= 0, got ", adopt_tolerance));
  }
  return absl::OkStatus();
}

absl::Status AnalyzerOptions::Validate() const {
  LOGSTAR_RETURN_IF_ERROR(ValidateWindows("", window, stride, drift_tolerance));
  LOGSTAR_RETURN_IF_ERROR(warm_start.Validate());
  LOGSTAR_RETURN_IF_ERROR(normalize.Validate());
  LOGSTAR_RETURN_IF_ERROR(amorphous.Validate());
  LOGSTAR_RETURN_IF_ERROR(prior_tolerances.Validate());
  LOGSTAR_RETURN_IF_ERROR(sublattices.Validate());
  LOGSTAR_RETURN_IF_ERROR(crystallinity.Validate());
  if (!(min_crystal_share > 0.0 && min_crystal_share <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_crystal_share must be in (0, 1], got ", min_crystal_share));
  }
  return logstar.Validate();
}

const char* CacheStateName(CacheState state) {
  switch (state) {
    case CacheState::kHit:
      return "hit";
    case CacheState::kRetuned:
      return "retuned";
    case CacheState::kMiss:
    default:
      return "miss";
  }
}

absl::StatusOr<std::unique_ptr<LogStarAnalyzer>> LogStarAnalyzer::Create(
    const AnalyzerOptions& options, const PhysicsPrior& prior) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(ResolveBounds(options.logstar, prior).status());
  LOGSTAR_RETURN_IF_ERROR(CheckSublatticeChoice(options.sublattice, prior));
  return std::unique_ptr<LogStarAnalyzer>(new LogStarAnalyzer(options, prior));
}

absl::Status LogStarAnalyzer::SetPrior(const PhysicsPrior& prior) {
  LOGSTAR_RETURN_IF_ERROR(ResolveBounds(options_.logstar, prior).status());
  LOGSTAR_RETURN_IF_ERROR(CheckSublatticeChoice(options_.sublattice, prior));
  MutexLock lock(&mu_);
  prior_ = prior;
  for (auto& c : cache_) c.reset();
  for (auto& c : amorphous_cache_) c.reset();
  amorphous_tracks_ = {};
  lattice_.reset();
  crystallinity_.reset();
  crystallinity_note_.clear();
  ++generation_;
  return absl::OkStatus();
}

void LogStarAnalyzer::ClearCache() {
  MutexLock lock(&mu_);
  for (auto& c : cache_) c.reset();
  for (auto& c : amorphous_cache_) c.reset();
  amorphous_tracks_ = {};
  lattice_.reset();
  crystallinity_.reset();
  crystallinity_note_.clear();
  ++generation_;
}

bool LogStarAnalyzer::FullyCached(int width, int height) const {
  MutexLock lock(&mu_);
  if (width != width_ || height != height_) return false;
  for (const auto& w : cache_) {
    if (!w.has_value()) return false;
  }
  for (const auto& w : amorphous_cache_) {
    if (!w.has_value()) return false;
  }
  return true;
}

std::vector<std::optional<CachedWindow>> LogStarAnalyzer::Cache() const {
  MutexLock lock(&mu_);
  return cache_;
}

namespace {

PixelRegion Local(const PixelRegion& tile, const PixelRegion& context_region) {
  return PixelRegion{tile.col0 - context_region.col0, tile.row0 - context_region.row0, tile.cols,
                     tile.rows};
}

// The crystal area of the frame seen from the context region `ctx`.
CrystalArea InContext(const CrystalArea& frame, const PixelRegion& ctx) {
  return {frame.mask.Offset(ctx.col0, ctx.row0), frame.pixel_noise_std, frame.columns};
}

}  // namespace

absl::StatusOr<LogDetection> LogStarAnalyzer::DetectWith(
    const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
    const LatticeMeasurement* lattice, const CrystalArea* crystal, const LogParameters& parameters,
    ObjectivePair objectives, ExecutionContext* context, PixelRegion& ctx) const {
  ctx = Grow(w.tile, HaloFor(parameters.max_sigma), image.cols, image.rows);
  // The sites of the pair the parameters were tuned with.
  std::optional<LatticeSites> sites;
  if (objectives == ObjectivePair::kLattice && lattice != nullptr && lattice->found) {
    LOGSTAR_ASSIGN_OR_RETURN(sites, MakeLatticeSites(*lattice, options_.logstar.rewards));
  }
  std::optional<CrystalArea> local_crystal;
  if (crystal != nullptr) local_crystal = InContext(*crystal, ctx);
  return DetectAndScore(image(cv::Rect(ctx.col0, ctx.row0, ctx.cols, ctx.rows)), Local(w.tile, ctx),
                        prior, parameters, ForWindows(options_.logstar), context,
                        sites ? &*sites : nullptr, local_crystal ? &*local_crystal : nullptr);
}

void LogStarAnalyzer::TakeDetection(const PixelRegion& ctx, LogDetection& d, WindowResult& out,
                                    WindowColumns& columns) {
  out.rewards = d.rewards;
  out.lattice_rewards = d.lattice_rewards;
  ToFrame(ctx, d.blobs, d.fits);
  out.er_flagged = PositionsOf(d.blobs, d.erroneous);
  columns = {std::move(d.blobs), std::move(d.fits)};
}

absl::StatusOr<bool> LogStarAnalyzer::CheckCached(
    const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
    const LatticeMeasurement* lattice, const CrystalArea* crystal, const CachedWindow& cache,
    ExecutionContext* context, WindowResult& out, WindowColumns& columns) const {
  out.window = w;
  // An entry without a front was lent by another window (see BorrowWindow):
  // nothing was tuned here yet.
  if (cache.front.empty()) return false;
  PixelRegion ctx;
  LOGSTAR_ASSIGN_OR_RETURN(LogDetection d,
                           DetectWith(image, w, prior, lattice, crystal, cache.parameters,
                                      cache.objectives, context, ctx));
  if (Drifted(d, cache, options_.drift_tolerance)) return false;
  out.state = CacheState::kHit;
  out.objectives = d.lattice_rewards ? ObjectivePair::kLattice : ObjectivePair::kPublished;
  out.lattice_note = cache.lattice_note;
  out.parameters = cache.parameters;
  out.tuned_rewards = cache.tuned_rewards;
  out.front = cache.front;
  out.chosen = cache.chosen;
  TakeDetection(ctx, d, out, columns);
  return true;
}

// The fewest points of its seed's front (or all, when fewer) a window's own
// front must keep to adopt it with the lattice pair: an operator chooses
// between a high-recall end, a high-precision end and the knee.
constexpr size_t kAdoptedFrontPoints = 3;

absl::StatusOr<bool> LogStarAnalyzer::Adopt(const cv::Mat& image, const Window& w,
                                            const PhysicsPrior& prior,
                                            const LatticeMeasurement* lattice,
                                            const CrystalArea* crystal, const WindowResult& donor,
                                            std::optional<CachedWindow>& cache,
                                            ExecutionContext* context, WindowResult& out,
                                            WindowColumns& columns) const {
  const WarmStartOptions& o = options_.warm_start;
  const bool lattice_pair = donor.objectives == ObjectivePair::kLattice;
  // With the lattice pair only a window with nothing cached adopts: a
  // drifted window's trade-off moved (see WarmStartOptions::adopt).
  if (!o.adopt || donor.front.empty() || donor.chosen < 0 ||
      donor.chosen >= static_cast<int>(donor.front.size()) ||
      (!lattice_pair && donor.front.size() != 1) || (lattice_pair && cache.has_value())) {
    return false;
  }
  // The donor's points as scored on this window, its chosen point first: a
  // chosen point that does not score as well here ends the attempt after
  // one detection.
  std::vector<int> order = {donor.chosen};
  for (int k = 0; k < static_cast<int>(donor.front.size()); ++k) {
    if (k != donor.chosen) order.push_back(k);
  }
  std::vector<LogDetection> detections;
  std::vector<PixelRegion> contexts;
  std::vector<FrontPoint> points;
  std::vector<Objectives2> scored;
  for (const int k : order) {
    const FrontPoint& p = donor.front[k];
    PixelRegion ctx;
    LOGSTAR_ASSIGN_OR_RETURN(LogDetection d,
                             DetectWith(image, w, prior, lattice, crystal, p.parameters,
                                        donor.objectives, context, ctx));
    // The window's own pair: a window whose lattice sites are missing here
    // cannot take a lattice-pair front.
    if (lattice_pair && !d.lattice_rewards) return false;
    const Objectives2 now =
        lattice_pair ? Objectives2{d.lattice_rewards->misses, d.lattice_rewards->spurious}
                     : Objectives2{d.rewards.qc, d.rewards.er};
    const Objectives2 then = lattice_pair
                                 ? Objectives2{p.misses, p.spurious}
                                 : Objectives2{donor.tuned_rewards.qc, donor.tuned_rewards.er};
    if (k == donor.chosen &&
        (now[0] > then[0] + o.adopt_tolerance || now[1] > then[1] + o.adopt_tolerance)) {
      return false;
    }
    points.push_back({p.parameters, d.rewards.qc, d.rewards.er, lattice_pair ? now[0] : 0.0,
                      lattice_pair ? now[1] : 0.0});
    scored.push_back(now);
    detections.push_back(std::move(d));
    contexts.push_back(ctx);
  }
  // The window's front among those points and its choice by the session's
  // rule, as its own search would report them.
  LOGSTAR_ASSIGN_OR_RETURN(const std::vector<int> front, ParetoFront(scored));
  // A trade-off the window does not show as well as its seed (fewer points
  // than the seed's front, up to kAdoptedFrontPoints) is searched for: its
  // columns and noise part differently from the seed's.
  if (front.size() < std::min(donor.front.size(), kAdoptedFrontPoints)) return false;
  LOGSTAR_ASSIGN_OR_RETURN(const int chosen,
                           ChooseOnWindowFront(scored, front, options_.logstar, donor.objectives));
  out.adopted = true;
  out.warm_points = static_cast<int>(points.size());
  out.objectives = donor.objectives;
  out.lattice_note = donor.lattice_note;
  out.parameters = points[chosen].parameters;
  out.tuned_rewards = detections[chosen].rewards;
  out.front.clear();
  for (const int i : front) {
    if (i == chosen) out.chosen = static_cast<int>(out.front.size());
    out.front.push_back(points[i]);
  }
  out.evaluations = static_cast<int>(points.size());
  cache = CachedWindow{out.parameters,
                       out.tuned_rewards,
                       out.front,
                       out.chosen,
                       donor.objectives,
                       donor.lattice_note,
                       detections[chosen].lattice_rewards};
  TakeDetection(contexts[chosen], detections[chosen], out, columns);
  return true;
}

absl::Status LogStarAnalyzer::AnalyzeWindow(const cv::Mat& image, const Window& w,
                                            const PhysicsPrior& prior,
                                            const LatticeMeasurement* lattice,
                                            const CrystalArea* crystal,
                                            std::optional<CachedWindow>& cache,
                                            ExecutionContext* context, WindowResult& out,
                                            WindowColumns& columns, const std::atomic<bool>* cancel,
                                            absl::Span<const LogParameters> transferred) const {
  const auto t0 = std::chrono::steady_clock::now();
  out.window = w;
  if (cache.has_value()) {
    LOGSTAR_ASSIGN_OR_RETURN(const bool hit, CheckCached(image, w, prior, lattice, crystal, *cache,
                                                         context, out, columns));
    if (hit) {
      out.ms += MsSince(t0);
      return absl::OkStatus();
    }
  }
  absl::Status s = TuneEntry(image, w, prior, lattice, crystal, cache, context, out, columns,
                             cancel, transferred, nullptr);
  out.ms += MsSince(t0);
  return s;
}

absl::Status LogStarAnalyzer::TuneEntry(
    const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
    const LatticeMeasurement* lattice, const CrystalArea* crystal,
    std::optional<CachedWindow>& cache, ExecutionContext* context, WindowResult& out,
    WindowColumns& columns, const std::atomic<bool>* cancel,
    absl::Span<const LogParameters> transferred, const WindowResult* donor) const {
  out.window = w;
  std::vector<LogParameters> warm;
  // An entry without a front was lent by another window (see BorrowWindow):
  // nothing was tuned here yet, its parameters only seed the search.
  if (cache.has_value() && cache->front.empty()) {
    warm.push_back(cache->parameters);
    out.state = CacheState::kRetuned;
  } else if (cache.has_value()) {
    for (const FrontPoint& p : cache->front) warm.push_back(p.parameters);
    out.state = CacheState::kRetuned;
  } else {
    out.state = CacheState::kMiss;
    warm.assign(transferred.begin(), transferred.end());
  }
  if (donor != nullptr) {
    LOGSTAR_ASSIGN_OR_RETURN(const bool adopted, Adopt(image, w, prior, lattice, crystal, *donor,
                                                       cache, context, out, columns));
    if (adopted) return absl::OkStatus();
  }
  LOGSTAR_ASSIGN_OR_RETURN(const LogStarBounds bounds, ResolveBounds(options_.logstar, prior));
  const PixelRegion ctx =
      Grow(w.tile, HaloFor(std::max(bounds.max_sigma.upper, bounds.min_sigma.upper)), image.cols,
           image.rows);
  std::optional<CrystalArea> local_crystal;
  if (crystal != nullptr) local_crystal = InContext(*crystal, ctx);
  LOGSTAR_ASSIGN_OR_RETURN(
      Tuned tuned,
      TuneWindow(image(cv::Rect(ctx.col0, ctx.row0, ctx.cols, ctx.rows)), Local(w.tile, ctx), prior,
                 lattice, local_crystal ? &*local_crystal : nullptr, warm,
                 out.state == CacheState::kRetuned && cache.has_value() && !cache->front.empty(),
                 context, cancel));
  LogStarResult& r = tuned.result;
  if (options_.warm_start.enabled) out.warm_points = static_cast<int>(warm.size());
  out.widened = tuned.widened;
  cache = CachedWindow{r.parameters, r.rewards,      r.front,          r.chosen,
                       r.objectives, r.lattice_note, r.lattice_rewards};
  out.objectives = r.objectives;
  out.lattice_note = r.lattice_note;
  out.lattice_rewards = r.lattice_rewards;
  out.parameters = r.parameters;
  out.rewards = r.rewards;
  out.tuned_rewards = r.rewards;
  out.front = std::move(r.front);
  out.chosen = r.chosen;
  out.evaluations = r.num_evaluations;
  ToFrame(ctx, r.blobs, r.fits);
  out.er_flagged = PositionsOf(r.blobs, r.erroneous);
  columns = {std::move(r.blobs), std::move(r.fits)};
  return absl::OkStatus();
}

absl::StatusOr<LogStarAnalyzer::Tuned> LogStarAnalyzer::TuneWindow(
    const cv::Mat& image, const PixelRegion& region, const PhysicsPrior& prior,
    const LatticeMeasurement* lattice, const CrystalArea* crystal,
    absl::Span<const LogParameters> warm, bool drifted, ExecutionContext* context,
    const std::atomic<bool>* cancel) const {
  // The frame's flag reaches the search, which checks it between
  // evaluations: a window's whole budget can take minutes.
  LogStarOptions logstar = ForWindows(options_.logstar);
  logstar.optimizer.cancel = cancel;
  const WarmStartOptions& o = options_.warm_start;
  if (!o.enabled || warm.empty()) {
    LOGSTAR_ASSIGN_OR_RETURN(LogStarResult r, RunLogStar(image, region, prior, logstar, context,
                                                         warm, lattice, crystal));
    return Tuned{std::move(r), false};
  }
  LOGSTAR_ASSIGN_OR_RETURN(const LogStarBounds whole, ResolveBounds(logstar, prior));
  LogStarBounds near = BoundsAround(whole, warm, drifted ? o.drift_margin : o.margin);
  // A window re-tuned for drift saw its response level move (dose,
  // thickness, focus): its cached threshold says little about the new one,
  // so the threshold is searched whole; scales and overlap start near.
  // (The whole space with a short budget lost columns: F1 0.92 against
  // 0.98 on tests/engine/analysis/warm_start_test.cc's dimmed frame.)
  if (drifted) near.threshold = whole.threshold;
  LogStarOptions trusted = logstar;
  const int polish = std::min(logstar.polish_evaluations, o.evaluations / 5);
  trusted.polish_evaluations = polish;
  trusted.optimizer.min_relative_improvement = o.min_relative_improvement;
  trusted.optimizer.num_candidates = std::min(trusted.optimizer.num_candidates, 256);
  std::vector<LogParameters> start(warm.begin(), warm.end());
  Tuned tuned;
  // Every round together stays within the window's budget.
  int remaining = logstar.optimizer.num_evaluations;
  // A chosen point on a side of the region that the whole space does not
  // have says the answer may lie beyond it: that parameter's side is opened
  // to the whole range and the search runs again from what it found (as a
  // trust region grows). Each round opens at least one side; four
  // parameters bound the rounds.
  for (;;) {
    SetBounds(near, trusted);
    const int points = static_cast<int>(start.size());
    trusted.optimizer.num_evaluations =
        std::min(std::max(o.evaluations, points + 2 + polish), remaining);
    // The model starts on the points given; no space-filling design.
    trusted.optimizer.num_initial = std::min(points, trusted.optimizer.num_evaluations);
    LOGSTAR_ASSIGN_OR_RETURN(LogStarResult r, RunLogStar(image, region, prior, trusted, context,
                                                         start, lattice, crystal));
    remaining -= r.num_evaluations;
    const int spent = tuned.result.num_evaluations + r.num_evaluations;
    tuned.result = std::move(r);
    tuned.result.num_evaluations = spent;
    const LogParameters& c = tuned.result.parameters;
    bool opened = false;
    auto open = [&](double v, Interval& side, const Interval& space) {
      auto at = [&](double b) { return std::abs(v - b) <= 1e-9 * std::max(1.0, std::abs(b)); };
      if (side.lower > space.lower && at(side.lower)) side.lower = space.lower, opened = true;
      if (side.upper < space.upper && at(side.upper)) side.upper = space.upper, opened = true;
    };
    open(c.min_sigma, near.min_sigma, whole.min_sigma);
    open(c.max_sigma, near.max_sigma, whole.max_sigma);
    open(c.threshold, near.threshold, whole.threshold);
    open(c.overlap, near.overlap, whole.overlap);
    if (!opened || remaining < 1) return tuned;
    tuned.widened = true;
    start.clear();
    for (const FrontPoint& p : tuned.result.front) start.push_back(p.parameters);
  }
}

LogStarAnalyzer::Roles LogStarAnalyzer::WindowRoles(const std::vector<Window>& layout,
                                                    const LatticeMeasurement* lattice,
                                                    const Crystallinity* crystal,
                                                    const std::string& unmapped,
                                                    FrameAnalysis& result) const {
  const int n = static_cast<int>(layout.size());
  Roles roles;
  std::vector<int>& donors = roles.donors;
  donors.resize(n);
  for (int i = 0; i < n; ++i) donors[i] = i;
  roles.use_mask = false;
  if (crystal == nullptr) {
    result.crystal_note = lattice != nullptr && !lattice->found
                              ? absl::StrCat("the frame shows no lattice (", lattice->reason,
                                             "): expected counts are over the whole frame")
                              : absl::StrCat("the crystalline area could not be mapped (",
                                             unmapped.empty() ? "no lattice measured" : unmapped,
                                             "): expected counts are over the whole frame");
    return roles;
  }
  result.crystalline_fraction = crystal->fraction;
  if (crystal->fraction >= kWholeFrameShare) {
    // All crystal but a few pixels at the frame's edge: counted whole, as
    // the published method does, so a crystal frame is analysed as before.
    for (int i = 0; i < n; ++i) {
      result.windows[i].crystalline_fraction = crystal->mask.Fraction(layout[i].tile);
    }
    roles.use_mask = false;
    return roles;
  }
  std::vector<int> tuned;
  int best = 0;
  for (int i = 0; i < n; ++i) {
    const double share = crystal->mask.Fraction(layout[i].tile);
    result.windows[i].crystalline_fraction = share;
    if (share >= options_.min_crystal_share) tuned.push_back(i);
    if (share > result.windows[best].crystalline_fraction) best = i;
  }
  if (tuned.empty()) {
    if (!(result.windows[best].crystalline_fraction > 0.0)) {
      // Found by the autocorrelation, yet nowhere above the map's noise: a
      // count over nothing would be no count; the whole frame it is.
      for (WindowResult& w : result.windows) w.crystalline_fraction = 1.0;
      result.crystalline_fraction = 1.0;
      result.crystal_note =
          "the frame's lattice shows nowhere clearly enough to map it: expected counts are over "
          "the whole frame";
      return roles;
    }
    tuned.push_back(best);
    result.windows[best].crystal_note = absl::StrFormat(
        "%.1f %% of the tile shows the lattice, under the %.1f %% wanted, but no window has "
        "more: tuned toward the count over that area",
        100.0 * result.windows[best].crystalline_fraction, 100.0 * options_.min_crystal_share);
  }
  // Every other window borrows from the tuned window whose tile centre is
  // nearest (the lowest index on a tie).
  for (int i = 0; i < n; ++i) {
    if (std::find(tuned.begin(), tuned.end(), i) != tuned.end()) continue;
    auto centre = [&](int k) {
      const PixelRegion& t = layout[k].tile;
      return std::pair<double, double>{t.col0 + 0.5 * t.cols, t.row0 + 0.5 * t.rows};
    };
    double best_d2 = std::numeric_limits<double>::infinity();
    for (int k : tuned) {
      const auto [x, y] = centre(k);
      const auto [cx, cy] = centre(i);
      const double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      if (d2 < best_d2) best_d2 = d2, donors[i] = k;
    }
  }
  roles.use_mask = true;
  return roles;
}

absl::Status LogStarAnalyzer::BorrowWindow(
    const cv::Mat& image, const Window& w, const PhysicsPrior& prior,
    const LatticeMeasurement* lattice, const CrystalArea* crystal, const WindowResult& donor,
    const std::vector<Blob>& donor_blobs, std::optional<CachedWindow>& cache,
    ExecutionContext* context, WindowResult& out, WindowColumns& columns) const {
  const auto t0 = std::chrono::steady_clock::now();
  out.window = w;
  PixelRegion ctx;
  // How a column looks comes from the lender: this tile has too few of them
  // to say.
  std::optional<CrystalArea> lent;
  if (crystal != nullptr) {
    lent = *crystal;
    lent->columns = LookOfColumns(donor_blobs, donor.window.tile, crystal->mask, prior);
  }
  LOGSTAR_ASSIGN_OR_RETURN(LogDetection d,
                           DetectWith(image, w, prior, lattice, lent ? &*lent : nullptr,
                                      donor.parameters, donor.objectives, context, ctx));
  // Lent parameters are a hit while the lender keeps them; when it was
  // re-tuned they follow it (no evaluations are spent here).
  if (!cache.has_value()) {
    out.state = CacheState::kMiss;
  } else if (cache->front.empty() && SameParameters(cache->parameters, donor.parameters)) {
    out.state = CacheState::kHit;
  } else {
    out.state = CacheState::kRetuned;
  }
  cache = CachedWindow{donor.parameters,   d.rewards,        {}, 0, donor.objectives,
                       donor.lattice_note, d.lattice_rewards};
  out.objectives = donor.objectives;
  out.lattice_note = donor.lattice_note;
  out.lattice_rewards = d.lattice_rewards;
  out.parameters = donor.parameters;
  out.rewards = d.rewards;
  out.tuned_rewards = d.rewards;
  out.crystal_note = absl::StrFormat(
      "%.1f %% of the tile shows the lattice, under the %.1f %% needed to tune toward a count: "
      "detected with the parameters of window %d, the nearest tuned one",
      100.0 * out.crystalline_fraction, 100.0 * options_.min_crystal_share, donor.window.index);
  ToFrame(ctx, d.blobs, d.fits);
  out.er_flagged = PositionsOf(d.blobs, d.erroneous);
  columns = {std::move(d.blobs), std::move(d.fits)};
  out.ms = MsSince(t0);
  return absl::OkStatus();
}

absl::Status LogStarAnalyzer::AmorphousWindow(const cv::Mat& image, const Window& w,
                                              const std::vector<Atom>& atoms,
                                              const PhysicsPrior& prior,
                                              std::optional<CachedAmorphousWindow>& cache,
                                              ExecutionContext* context, AmorphousWindowResult& out,
                                              std::vector<std::pair<int, AtomClass>>& classes,
                                              std::optional<RegionSet>& frame_regions,
                                              const std::atomic<bool>* cancel) const {
  const auto t0 = std::chrono::steady_clock::now();
  // The search checks the frame's flag between evaluations (as LoG*'s).
  AmorphousOptions options = options_.amorphous.options;
  options.optimizer.cancel = cancel;
  out.window = w;
  const PixelRegion ctx =
      Grow(w.tile, AmorphousHalo(options, prior.NearestNeighborPx()), image.cols, image.rows);
  std::vector<PointXY> points;
  std::vector<int> index;  // into atoms
  for (size_t i = 0; i < atoms.size(); ++i) {
    if (!Inside(ctx, atoms[i].x, atoms[i].y)) continue;
    points.push_back({atoms[i].x - ctx.col0, atoms[i].y - ctx.row0});
    index.push_back(static_cast<int>(i));
  }
  const cv::Mat tile = image(cv::Rect(ctx.col0, ctx.row0, ctx.cols, ctx.rows));
  auto skip = [&](const absl::Status& s) {
    if (!SkipsWindow(s)) return s;
    // The cache stays: a blank or unusable frame says nothing about the next.
    out.skipped = std::string(s.message());
    out.verdict = AmorphousVerdict::Uncertain(
        AmorphousVerdict::Code::kNotRun, absl::StrCat("the stage could not run: ", out.skipped));
    out.ms = MsSince(t0);
    return absl::OkStatus();
  };

  std::optional<AmorphousEvaluation> evaluation;
  std::vector<AmorphousParameters> warm;
  if (cache.has_value()) {
    SceneOptions cached;
    cached.translations_px = cache->translations_px;
    cached.projection = cache->projection;
    cached.evidence = AmorphousEvidence{};
    cached.evidence->share = cache->tuned_evidence_share;
    cached.evidence->area_fraction = cache->tuned_evidence_area;
    cached.evidence->bic_gain = cache->tuned_evidence_bic_gain;
    cached.evidence->separation = cache->tuned_evidence_separation;
    cached.evidence->high_weight = cache->tuned_evidence_high_weight;
    cached.context = context;
    absl::StatusOr<AmorphousScene> scene =
        AmorphousScene::Create(tile, points, prior, options, cached);
    if (!scene.ok()) return skip(scene.status());
    absl::StatusOr<AmorphousEvaluation> e = scene->Evaluate(cache->parameters);
    if (!e.ok() && !SkipsWindow(e.status())) return e.status();
    if (e.ok() && !Drifted(*e, *cache, options_.amorphous)) {
      out.state = CacheState::kHit;
      out.evidence = scene->evidence();
      evaluation = *std::move(e);
    } else {
      for (const AmorphousFrontPoint& p : cache->front) warm.push_back(p.parameters);
      out.state = CacheState::kRetuned;
    }
  } else {
    out.state = CacheState::kMiss;
  }
  if (!evaluation.has_value()) {
    absl::StatusOr<AmorphousResult> r = RunAmorphous(tile, points, prior, options, context, warm);
    if (!r.ok()) return skip(r.status());
    cache = CachedAmorphousWindow{.parameters = r->chosen.parameters,
                                  .tuned_objectives = r->chosen.objectives,
                                  .front = std::move(r->front),
                                  .chosen = r->chosen_index,
                                  .tuned_area_fraction = r->chosen.regions.area_fraction,
                                  .tuned_evidence_area = r->chosen.evidence,
                                  .tuned_evidence_share = r->evidence.share,
                                  .tuned_noise_floor = r->chosen.mixture.noise_floor,
                                  .tuned_evidence_bic_gain = r->evidence.bic_gain,
                                  .tuned_evidence_separation = r->evidence.separation,
                                  .tuned_evidence_high_weight = r->evidence.high_weight,
                                  .translations_px = std::move(r->translations_px),
                                  .projection = std::move(r->projection)};
    out.evaluations = r->num_evaluations;
    out.evidence = r->evidence;
    evaluation = std::move(r->chosen);
  }
  out.parameters = evaluation->parameters;
  out.objectives = evaluation->objectives;
  out.verdict = evaluation->verdict;
  out.tuned_objectives = cache->tuned_objectives;
  out.front = cache->front;
  out.chosen = cache->chosen;
  for (size_t k = 0; k < index.size(); ++k) {
    const Atom& a = atoms[index[k]];
    if (!Inside(w.core, a.x, a.y)) continue;
    const AtomClass& c = evaluation->atoms[k];
    classes.emplace_back(index[k], c);
    out.num_classified += c.classified;
    out.num_amorphous += c.amorphous;
  }
  // A window that is the whole frame has painted the frame's regions.
  const PixelRegion frame = {0, 0, image.cols, image.rows};
  if (Same(ctx, frame) && Same(w.core, frame)) frame_regions = std::move(evaluation->regions);
  out.ms = MsSince(t0);
  return absl::OkStatus();
}

absl::StatusOr<FrameAmorphous> LogStarAnalyzer::RunAmorphousStage(
    const cv::Mat& image, const std::vector<Atom>& atoms, const PhysicsPrior& prior,
    const std::vector<Window>& layout, std::vector<std::optional<CachedAmorphousWindow>>& cache,
    ExecutionContext* context, const std::atomic<bool>* cancel) const {
  const auto t0 = std::chrono::steady_clock::now();
  FrameAmorphous out;
  out.atoms.assign(atoms.size(), AtomClass{false, false, std::numeric_limits<double>::quiet_NaN()});
  const int n = static_cast<int>(layout.size());
  out.windows.resize(n);
  std::vector<std::vector<std::pair<int, AtomClass>>> classes(n);
  std::vector<std::optional<RegionSet>> painted(n);
  std::vector<absl::Status> status(n);
  context->ParallelFor(n, [&](int i) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
      status[i] = absl::CancelledError("analysis cancelled");
      return;
    }
    status[i] = AmorphousWindow(image, layout[i], atoms, prior, cache[i], context, out.windows[i],
                                classes[i], painted[i], cancel);
  });
  for (const absl::Status& s : status) LOGSTAR_RETURN_IF_ERROR(s);
  std::vector<PointXY> amorphous;
  for (int i = 0; i < n; ++i) {
    const AmorphousWindowResult& w = out.windows[i];
    if (!w.skipped.empty()) {
      ++out.skipped;
    } else {
      out.hits += w.state == CacheState::kHit;
      out.misses += w.state == CacheState::kMiss;
      out.retunes += w.state == CacheState::kRetuned;
    }
    for (const auto& [k, c] : classes[i]) {
      out.atoms[k] = c;
      if (c.amorphous) amorphous.push_back({atoms[k].x, atoms[k].y});
    }
    if (w.verdict.uncertain() && !out.verdict.uncertain()) {
      out.verdict = w.verdict;
      if (n > 1) out.verdict.reason = absl::StrCat("window ", i, ": ", w.verdict.reason);
    }
  }
  // The windows' regions are painted again over the whole frame, so that a
  // region crossing a seam is one region.
  const AmorphousOptions& o = options_.amorphous.options;
  const double nn = prior.NearestNeighborPx();
  LOGSTAR_ASSIGN_OR_RETURN(out.regions,
                           PaintRegions(image.cols, image.rows, amorphous,
                                        {.radius_px = o.mask_radius_nn * nn,
                                         .closing_radius_px = o.closing_radius_nn * nn},
                                        context));
  out.ms = MsSince(t0);
  return out;
}

absl::Status LogStarAnalyzer::RunWarmPhases(
    const cv::Mat& image, const std::vector<Window>& layout, const std::vector<int>& tuned,
    const PhysicsPrior& prior, const LatticeMeasurement* lattice, const CrystalArea* crystal,
    std::vector<std::optional<CachedWindow>>& cache, ExecutionContext* context,
    const std::atomic<bool>* cancel, FrameAnalysis& result,
    std::vector<WindowColumns>& columns) const {
  const WarmStartOptions& o = options_.warm_start;
  std::vector<absl::Status> status(layout.size());
  auto run = [&](const std::vector<int>& windows, auto&& analyze) -> absl::Status {
    context->ParallelFor(static_cast<int>(windows.size()), [&](int k) {
      const int i = windows[k];
      const auto t0 = std::chrono::steady_clock::now();
      status[i] = cancel != nullptr && cancel->load(std::memory_order_relaxed)
                      ? absl::CancelledError("analysis cancelled")
                      : analyze(i);
      result.windows[i].ms += MsSince(t0);
    });
    for (const absl::Status& s : status) LOGSTAR_RETURN_IF_ERROR(s);
    return absl::OkStatus();
  };
  // More windows to tune than seed_windows + 1: seed_windows of them, spread
  // over the frame, first; else all of them.
  auto seeds_of = [&](const std::vector<int>& windows) {
    return static_cast<int>(windows.size()) > o.seed_windows + 1
               ? SeedWindows(layout, windows, o.seed_windows, image.cols, image.rows)
               : windows;
  };
  auto tune = [&](int i, absl::Span<const LogParameters> transferred, const WindowResult* donor) {
    return TuneEntry(image, layout[i], prior, lattice, crystal, cache[i], context,
                     result.windows[i], columns[i], cancel, transferred, donor);
  };
  std::vector<int> fresh, cached;
  for (int i : tuned) (cache[i].has_value() ? cached : fresh).push_back(i);
  const std::vector<int> seeds = seeds_of(fresh);
  // 1. The fresh seeds from nothing; every cached window checked for drift.
  std::vector<int> first = cached;
  first.insert(first.end(), seeds.begin(), seeds.end());
  std::vector<char> drifted(layout.size(), 0);
  LOGSTAR_RETURN_IF_ERROR(run(first, [&](int i) -> absl::Status {
    if (!cache[i].has_value()) return tune(i, {}, nullptr);
    LOGSTAR_ASSIGN_OR_RETURN(
        const bool hit, CheckCached(image, layout[i], prior, lattice, crystal, *cache[i], context,
                                    result.windows[i], columns[i]));
    drifted[i] = !hit;
    return absl::OkStatus();
  }));
  // 2. The drifted windows' seeds, each from its own front.
  std::vector<int> retune;
  for (int i : cached) {
    if (drifted[i]) retune.push_back(i);
  }
  const std::vector<int> drift_seeds = seeds_of(retune);
  LOGSTAR_RETURN_IF_ERROR(run(drift_seeds, [&](int i) { return tune(i, {}, nullptr); }));
  // 3. The rest: a fresh window from the seeds' fronts, a drifted one from
  // its own; each first tries its nearest seed's choice (Adopt).
  auto results = [&](const std::vector<int>& windows) {
    std::vector<const WindowResult*> out;
    for (int i : windows) out.push_back(&result.windows[i]);
    return out;
  };
  const std::vector<const WindowResult*> fresh_donors = results(seeds);
  const std::vector<const WindowResult*> drift_donors = results(drift_seeds);
  std::vector<int> later;
  for (int i : fresh) {
    if (!std::binary_search(seeds.begin(), seeds.end(), i)) later.push_back(i);
  }
  for (int i : retune) {
    if (!std::binary_search(drift_seeds.begin(), drift_seeds.end(), i)) later.push_back(i);
  }
  return run(later, [&](int i) {
    const bool is_fresh = !cache[i].has_value();
    const std::vector<const WindowResult*>& donors = is_fresh ? fresh_donors : drift_donors;
    const WindowResult* nearest = donors.empty() ? nullptr : ByDistance(layout[i], donors).front();
    return tune(i,
                is_fresh ? TransferredPoints(layout[i], fresh_donors, o.max_points)
                         : std::vector<LogParameters>{},
                nearest);
  });
}

absl::StatusOr<FrameAnalysis> LogStarAnalyzer::AnalyzeFrame(const cv::Mat& frame,
                                                            const PixelRange* range,
                                                            ExecutionContext* context,
                                                            const std::atomic<bool>* cancel) {
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  MutexLock serial(&analyze_mu_);
  const auto t0 = std::chrono::steady_clock::now();
  FrameAnalysis result;
  LOGSTAR_ASSIGN_OR_RETURN(const cv::Mat image,
                           range != nullptr
                               ? NormalizeFrame(frame, options_.normalize, *range, context)
                               : NormalizeFrame(frame, options_.normalize, context));
  result.width = image.cols;
  result.height = image.rows;
  result.normalize_ms = MsSince(t0);
  if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
    return absl::CancelledError("analysis cancelled");
  }

  std::vector<std::optional<CachedWindow>> cache;
  std::vector<Window> layout;
  std::vector<std::optional<CachedAmorphousWindow>> amorphous_cache;
  std::vector<Window> amorphous_layout;
  RegionTrackerState amorphous_tracks;
  PhysicsPrior prior;
  std::optional<LatticeMeasurement> lattice;
  std::optional<Crystallinity> crystal;
  std::string crystal_unmapped;  // why a found lattice was not mapped
  uint64_t generation = 0;
  std::vector<ColumnFit> previous_fits;  // RefineFrame's starting models
  {
    MutexLock lock(&mu_);
    if (image.cols != width_ || image.rows != height_) {
      lattice_.reset();
      crystallinity_.reset();
      crystallinity_note_.clear();
      LOGSTAR_ASSIGN_OR_RETURN(layout_,
                               LayoutFor(image.cols, image.rows, options_.window, options_.stride));
      amorphous_layout_.clear();
      if (options_.amorphous.enabled) {
        LOGSTAR_ASSIGN_OR_RETURN(amorphous_layout_,
                                 LayoutFor(image.cols, image.rows, options_.amorphous.window,
                                           options_.amorphous.stride));
      }
      width_ = image.cols;
      height_ = image.rows;
      cache_.assign(layout_.size(), std::nullopt);
      amorphous_cache_.assign(amorphous_layout_.size(), std::nullopt);
      amorphous_tracks_ = {};
      ++generation_;
    }
    cache = cache_;
    lattice = lattice_;
    crystal = crystallinity_;
    crystal_unmapped = crystallinity_note_;
    layout = layout_;
    amorphous_cache = amorphous_cache_;
    amorphous_layout = amorphous_layout_;
    amorphous_tracks = amorphous_tracks_;
    prior = prior_;
    generation = generation_;
    if (last_fits_generation_ == generation_) previous_fits = last_fits_;
  }

  // The lattice is measured on the first frame of a geometry whatever the
  // objectives: the prior is checked against it on every result, and the
  // lattice pair scores against it.
  const bool measure_lattice = !lattice.has_value();
  if (measure_lattice) {
    absl::StatusOr<LatticeMeasurement> m = MeasureLattice(image, options_.logstar.lattice, context);
    // A frame too small to measure has no lattice to check: the windows
    // fall back to the published pair.
    if (!m.ok() && m.status().code() != absl::StatusCode::kInvalidArgument) return m.status();
    if (m.ok()) {
      lattice = *std::move(m);
    } else {
      lattice.emplace();
      lattice->reason = std::string(m.status().message());
    }
    // Where the frame shows that lattice: with it, at the same cost point
    // (the first frame of a geometry) and for the same reason — a stream
    // keeps its sample in view.
    crystal.reset();
    crystal_unmapped.clear();
    if (lattice->found) {
      absl::StatusOr<Crystallinity> c =
          MeasureCrystallinity(image, *lattice, options_.crystallinity, context);
      if (!c.ok() && c.status().code() != absl::StatusCode::kInvalidArgument) return c.status();
      if (c.ok()) {
        crystal = *std::move(c);
      } else {
        crystal_unmapped = std::string(c.status().message());
      }
    }
  }

  if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
    return absl::CancelledError("analysis cancelled");
  }

  // Which windows are tuned toward a count (see the file comment).
  const int n = static_cast<int>(layout.size());
  result.windows.resize(n);
  const Roles roles = WindowRoles(layout, lattice ? &*lattice : nullptr,
                                  crystal ? &*crystal : nullptr, crystal_unmapped, result);
  const std::vector<int>& donors = roles.donors;
  // The crystal this frame's rewards count on, with the frame's noise (per
  // frame: a stream's dose may change; one pass over every second row).
  std::optional<CrystalArea> area;
  if (roles.use_mask) {
    LOGSTAR_ASSIGN_OR_RETURN(const double noise, PixelNoiseStd(image));
    area = CrystalArea{crystal->mask, noise, ColumnLook{}};
  }
  const CrystalArea* const area_ptr = area ? &*area : nullptr;
  const CrystalMask* const mask = area ? &area->mask : nullptr;

  const auto t1 = std::chrono::steady_clock::now();
  std::vector<WindowColumns> columns(n);
  std::vector<absl::Status> status(n);
  // Tuned windows first, then the windows that borrow their parameters.
  std::vector<int> tuned, lent;
  for (int i = 0; i < n; ++i) (donors[i] == i ? tuned : lent).push_back(i);
  auto run = [&](const std::vector<int>& windows, auto&& analyze) {
    context->ParallelFor(static_cast<int>(windows.size()), [&](int k) {
      const int i = windows[k];
      status[i] = cancel != nullptr && cancel->load(std::memory_order_relaxed)
                      ? absl::CancelledError("analysis cancelled")
                      : analyze(i);
    });
  };
  // The lattice the windows' lattice pair scores against. Where the frame's
  // lattice was found but where it shows could not be mapped (a frame too
  // small for the cell, or the lattice nowhere above the map's noise), the
  // pair would count every detection off the lattice — amorphous material,
  // a particle's surroundings — as spurious, and tune that evidence away:
  // the windows fall back to the published pair instead, and say so
  // (lattice_note), as on a frame without lattice (LatticePairFallback).
  const std::optional<LatticeMeasurement> unmapped =
      LatticePairFallback(lattice ? &*lattice : nullptr, crystal ? &*crystal : nullptr,
                          roles.use_mask, crystal_unmapped);
  const LatticeMeasurement* const frame_lattice = unmapped  ? &*unmapped
                                                  : lattice ? &*lattice
                                                            : nullptr;
  const WarmStartOptions& warm = options_.warm_start;
  if (!warm.enabled) {
    run(tuned, [&](int i) {
      return AnalyzeWindow(image, layout[i], prior, frame_lattice, area_ptr, cache[i], context,
                           result.windows[i], columns[i], cancel, {});
    });
    for (const absl::Status& s : status) LOGSTAR_RETURN_IF_ERROR(s);
  } else {
    LOGSTAR_RETURN_IF_ERROR(RunWarmPhases(image, layout, tuned, prior, frame_lattice, area_ptr,
                                          cache, context, cancel, result, columns));
  }
  run(lent, [&](int i) {
    return BorrowWindow(image, layout[i], prior, frame_lattice, area_ptr, result.windows[donors[i]],
                        columns[donors[i]].blobs, cache[i], context, result.windows[i], columns[i]);
  });
  for (const absl::Status& s : status) LOGSTAR_RETURN_IF_ERROR(s);
  result.windows_ms = MsSince(t1);
  if (lattice->found) {
    LOGSTAR_ASSIGN_OR_RETURN(result.warnings,
                             CheckPrior(prior, *lattice, options_.prior_tolerances));
  }
  result.lattice = lattice;

  for (int i = 0; i < n; ++i) {
    WindowResult& w = result.windows[i];
    result.hits += w.state == CacheState::kHit;
    result.misses += w.state == CacheState::kMiss;
    result.retunes += w.state == CacheState::kRetuned;
    const WindowColumns& c = columns[i];
    for (size_t k = 0; k < c.blobs.size(); ++k) {
      const Blob& b = c.blobs[k];
      if (!Inside(w.window.core, b.x, b.y)) continue;
      Atom& atom = result.atoms.emplace_back();
      atom.x = b.x, atom.y = b.y, atom.sigma = b.sigma, atom.response = b.response, atom.window = i;
      if (!c.fits.empty()) atom.fit = c.fits[k];
    }
  }
  if (n > 1) result.seam_duplicates = MergeSeams(result.atoms, 0.5 * prior.NearestNeighborPx());
  std::vector<ColumnFit> fits;
  if (options_.logstar.refine_mode == RefineMode::kGaussian) {
    LOGSTAR_ASSIGN_OR_RETURN(fits, RefineFrame(image, previous_fits, context, result.atoms));
  }
  std::vector<PointXY> points;
  points.reserve(result.atoms.size());
  for (const Atom& a : result.atoms) {
    points.push_back({a.x, a.y});
    ++result.windows[a.window].num_atoms;
  }
  const PixelRegion whole = {0, 0, image.cols, image.rows};
  LOGSTAR_ASSIGN_OR_RETURN(result.rewards, ComputeRewards(points, whole, prior,
                                                          options_.logstar.rewards, nullptr, mask));
  if (options_.logstar.objectives == ObjectivePair::kLattice && frame_lattice &&
      frame_lattice->found) {
    LOGSTAR_ASSIGN_OR_RETURN(const LatticeSites sites,
                             MakeLatticeSites(*frame_lattice, options_.logstar.rewards));
    LOGSTAR_ASSIGN_OR_RETURN(result.lattice_rewards,
                             ComputeLatticeRewards(points, whole, sites, nullptr, nullptr, mask));
  }
  if (prior.sublattices.size() >= 2) {
    LOGSTAR_RETURN_IF_ERROR(
        AssignFrameSublattices(image, prior, options_.sublattices, context, result));
  }
  if (options_.amorphous.enabled) {
    LOGSTAR_ASSIGN_OR_RETURN(result.amorphous,
                             RunAmorphousStage(image, result.atoms, prior, amorphous_layout,
                                               amorphous_cache, context, cancel));
    // Regions below min_share appear only by growing from a tracked one
    // (hysteresis, region_tracker.h), then get their ids.
    RegionTracker tracker(options_.amorphous.tracking, std::move(amorphous_tracks));
    RegionSet& regions = result.amorphous->regions;
    const double appear_px2 = options_.amorphous.options.min_share * image.cols * image.rows;
    LOGSTAR_ASSIGN_OR_RETURN(regions,
                             DropRegions(regions, tracker.Reportable(regions.regions, appear_px2)));
    tracker.Update(regions.regions);
    amorphous_tracks = tracker.state();
    result.amorphous_ms = result.amorphous->ms;
  }
  {
    MutexLock lock(&mu_);
    // A SetPrior() or a new geometry while this frame ran has emptied the
    // cache on purpose; results tuned under the old state are not kept.
    if (generation_ == generation) {
      cache_ = std::move(cache);
      amorphous_cache_ = std::move(amorphous_cache);
      amorphous_tracks_ = std::move(amorphous_tracks);
      last_fits_ = std::move(fits);
      last_fits_generation_ = generation;
      if (measure_lattice) {
        lattice_ = std::move(lattice);
        crystallinity_ = std::move(crystal);
        crystallinity_note_ = std::move(crystal_unmapped);
      }
    }
  }
  // Last, so that the amorphous stage and the cache saw every atom.
  if (!options_.sublattice.empty()) KeepSublattice(options_.sublattice, prior, result);
  result.total_ms = MsSince(t0);
  return result;
}

absl::StatusOr<std::vector<ColumnFit>> LogStarAnalyzer::RefineFrame(
    const cv::Mat& image, absl::Span<const ColumnFit> previous, ExecutionContext* context,
    std::vector<Atom>& atoms) const {
  std::vector<Blob> blobs;
  blobs.reserve(atoms.size());
  for (const Atom& a : atoms) blobs.push_back(Blob{a.x, a.y, a.sigma, a.response});
  std::vector<ColumnFit> fits;
  LOGSTAR_RETURN_IF_ERROR(RefineGaussian(image, absl::MakeSpan(blobs), &fits,
                                         options_.logstar.gaussian_refine, context, previous));
  for (size_t k = 0; k < atoms.size(); ++k) {
    atoms[k].x = blobs[k].x;
    atoms[k].y = blobs[k].y;
    atoms[k].fit = fits[k];
  }
  return fits;
}

std::string FrameAnalysis::Summary() const {
  std::string s = absl::StrFormat(
      "%d x %d frame: %d atoms in %d windows (%d hits, %d misses, %d re-tuned), QC %.4f, ER "
      "%.4f",
      width, height, static_cast<int>(atoms.size()), static_cast<int>(windows.size()), hits, misses,
      retunes, rewards.qc, rewards.er);
  if (amorphous.has_value()) {
    absl::StrAppendFormat(&s,
                          "; amorphous: %d regions covering %.3f of the frame (%d hits, %d "
                          "misses, %d re-tuned, %d skipped)",
                          static_cast<int>(amorphous->regions.regions.size()),
                          amorphous->regions.area_fraction, amorphous->hits, amorphous->misses,
                          amorphous->retunes, amorphous->skipped);
    if (amorphous->verdict.uncertain()) {
      absl::StrAppend(&s, "; UNCERTAIN (", VerdictCodeName(amorphous->verdict.code),
                      "): ", amorphous->verdict.reason);
    }
  }
  absl::StrAppendFormat(&s, ", %.1f ms", total_ms);
  return s;
}

absl::StatusOr<FrameAnalysis> LogStarAnalyzer::Analyze(const cv::Mat& frame,
                                                       ExecutionContext* context) {
  return AnalyzeFrame(frame, nullptr, context, nullptr);
}

absl::StatusOr<FrameAnalysis> LogStarAnalyzer::Analyze(const cv::Mat& frame,
                                                       ExecutionContext* context,
                                                       const std::atomic<bool>* cancel) {
  return AnalyzeFrame(frame, nullptr, context, cancel);
}

absl::StatusOr<FrameAnalysis> LogStarAnalyzer::Analyze(const cv::Mat& frame,
                                                       const PixelRange& range,
                                                       ExecutionContext* context,
                                                       const std::atomic<bool>* cancel) {
  return AnalyzeFrame(frame, &range, context, cancel);
}

LogStarAnalyzer::CacheSnapshot LogStarAnalyzer::Snapshot() const {
  MutexLock lock(&mu_);
  return {width_,           height_,           layout_,  cache_,        amorphous_layout_,
          amorphous_cache_, amorphous_tracks_, lattice_, crystallinity_};
}

absl::Status LogStarAnalyzer::RestoreCache(const CacheSnapshot& snapshot) {
  if (snapshot.width <= 0 || snapshot.height <= 0) {
    if (!snapshot.windows.empty()) {
      return absl::InvalidArgumentError("a cache without a frame size must be empty");
    }
    ClearCache();
    return absl::OkStatus();
  }
  // The same layouts Analyze() makes for this frame size.
  LOGSTAR_ASSIGN_OR_RETURN(std::vector<Window> layout, LayoutFor(snapshot.width, snapshot.height,
                                                                 options_.window, options_.stride));
  std::vector<Window> amorphous_layout;
  std::vector<std::optional<CachedAmorphousWindow>> amorphous(0);
  if (options_.amorphous.enabled) {
    LOGSTAR_ASSIGN_OR_RETURN(amorphous_layout,
                             LayoutFor(snapshot.width, snapshot.height, options_.amorphous.window,
                                       options_.amorphous.stride));
    amorphous.assign(amorphous_layout.size(), std::nullopt);
    // An empty list: nothing cached for the stage (e.g. a cache saved with
    // the stage off).
    if (!snapshot.amorphous.empty()) {
      if (snapshot.amorphous.size() != amorphous_layout.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the cache has ", snapshot.amorphous.size(), " amorphous windows, the layout for ",
            snapshot.width, " x ", snapshot.height, " has ", amorphous_layout.size()));
      }
      for (size_t i = 0; i < snapshot.amorphous.size(); ++i) {
        const std::optional<CachedAmorphousWindow>& c = snapshot.amorphous[i];
        if (!c.has_value()) continue;
        const AmorphousParameters& p = c->parameters;
        std::string bad;
        if (p.patch_size_px < 3 || p.patch_size_px % 2 == 0) {
          bad = absl::StrCat("patch size ", p.patch_size_px, " px is not odd and >= 3");
        } else if (!(p.threshold > 0.0 && p.threshold < 1.0)) {
          bad = absl::StrCat("threshold ", p.threshold, " is not in (0, 1)");
        } else if (p.num_components < 1) {
          bad = absl::StrCat("num_components ", p.num_components, " is not >= 1");
        } else if (c->front.empty()
                       ? c->chosen != 0
                       : c->chosen < 0 || c->chosen >= static_cast<int>(c->front.size())) {
          bad = absl::StrCat("chosen ", c->chosen, " is not an index into a front of ",
                             c->front.size(), " points");
        } else if (c->translations_px.empty()) {
          bad = "no lattice translations";
        } else if (c->projection.patch_size_px != p.patch_size_px ||
                   c->projection.mean.size() != p.patch_size_px * p.patch_size_px ||
                   c->projection.components.cols() != c->projection.mean.size() ||
                   c->projection.components.rows() < 1) {
          bad = "the PCA basis does not fit the patch size";
        } else if (!(c->tuned_noise_floor > 0.0 && std::isfinite(c->tuned_noise_floor))) {
          bad = "the noise floor at tuning is not positive";
        }
        for (const PointXY& t : c->translations_px) {
          if (bad.empty() && !(std::isfinite(t.x) && std::isfinite(t.y))) {
            bad = "a lattice translation is not finite";
          }
        }
        if (!bad.empty()) {
          return absl::InvalidArgumentError(absl::StrCat("cached amorphous window ", i, ": ", bad));
        }
      }
      amorphous = snapshot.amorphous;
    }
    LOGSTAR_RETURN_IF_ERROR(RegionTracker::Check(snapshot.amorphous_tracks));
  }
  if (snapshot.crystallinity &&
      (snapshot.crystallinity->mask.frame_mask().cols != snapshot.width ||
       snapshot.crystallinity->mask.frame_mask().rows != snapshot.height)) {
    return absl::InvalidArgumentError("the cache's crystalline map is not of its frame size");
  }
  if (snapshot.windows.size() != layout.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the cache has ", snapshot.windows.size(),
                                                   " windows, the layout for ", snapshot.width,
                                                   " x ", snapshot.height, " has ", layout.size()));
  }
  if (!snapshot.layout.empty()) {
    if (snapshot.layout.size() != layout.size()) {
      return absl::InvalidArgumentError("the cache's layout differs from the options' layout");
    }
    for (size_t i = 0; i < layout.size(); ++i) {
      const PixelRegion &a = snapshot.layout[i].tile, &b = layout[i].tile;
      if (a.col0 != b.col0 || a.row0 != b.row0 || a.cols != b.cols || a.rows != b.rows) {
        return absl::InvalidArgumentError(
            absl::StrCat("window ", i, " of the cache has another tile than the options give"));
      }
    }
  }
  for (size_t i = 0; i < snapshot.windows.size(); ++i) {
    const std::optional<CachedWindow>& c = snapshot.windows[i];
    if (!c.has_value()) continue;
    absl::Status s = c->parameters.ToLogOptions().Validate();
    if (s.ok() &&
        (c->front.empty() ? c->chosen != 0
                          : c->chosen < 0 || c->chosen >= static_cast<int>(c->front.size()))) {
      s = absl::InvalidArgumentError(absl::StrCat(
          "chosen ", c->chosen, " is not an index into a front of ", c->front.size(), " points"));
    }
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cached window ", i, ": ", s.message()));
    }
  }
  MutexLock lock(&mu_);
  width_ = snapshot.width;
  height_ = snapshot.height;
  layout_ = std::move(layout);
  cache_ = snapshot.windows;
  amorphous_layout_ = std::move(amorphous_layout);
  amorphous_cache_ = std::move(amorphous);
  amorphous_tracks_ = options_.amorphous.enabled ? snapshot.amorphous_tracks : RegionTrackerState{};
  // The saved stream's lattice and crystal, else measured afresh on the next
  // frame: what was measured before belongs to whatever ran before.
  lattice_ = snapshot.lattice;
  crystallinity_ = snapshot.lattice ? snapshot.crystallinity : std::nullopt;
  crystallinity_note_.clear();
  ++generation_;
  return absl::OkStatus();
}

}  // namespace logstar
