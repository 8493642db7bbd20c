#include "engine/analysis/logstar.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <numbers>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status_macros.h"
#include "engine/log/log_scale_grid.h"
#include "engine/physics/crystallinity.h"

namespace logstar {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

absl::Status CheckInterval(const char* name, const Interval& v, double min_lower,
                           double max_upper) {
  if (!(std::isfinite(v.lower) && std::isfinite(v.upper) && v.lower >= min_lower &&
        v.upper <= max_upper && v.lower < v.upper)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " bounds must satisfy ", min_lower,
                                                   " <= lower < upper <= ", max_upper, ", got [",
                                                   v.lower, ", ", v.upper, "]"));
  }
  return absl::OkStatus();
}

// Index order of the search space below.
enum { kMinSigma, kMaxSigma, kThreshold, kOverlap };

SearchSpace MakeSpace(const LogStarBounds& b) {
  auto continuous = [](const char* name, const Interval& v, bool log_scale) {
    ParameterSpec p;
    p.name = name;
    p.kind = ParameterSpec::Kind::kContinuous;
    p.lower = v.lower;
    p.upper = v.upper;
    p.log_scale = log_scale;
    return p;
  };
  SearchSpace space;
  // Sigmas and threshold act multiplicatively (a 10 % change matters alike
  // at 1 px and at 5 px), so the GP sees them on a log scale.
  space.parameters = {
      continuous("min_sigma", b.min_sigma, true), continuous("max_sigma", b.max_sigma, true),
      continuous("threshold", b.threshold, true), continuous("overlap", b.overlap, false)};
  return space;
}

LogParameters FromValues(const ParameterValues& v, int num_sigma) {
  LogParameters p;
  p.min_sigma = v[kMinSigma];
  p.max_sigma = std::max(v[kMaxSigma], v[kMinSigma]);
  p.num_sigma = num_sigma;
  p.threshold = v[kThreshold];
  p.overlap = v[kOverlap];
  return p;
}

// Clamps a (cached) point into the space so it can seed a new search.
ParameterValues ToValues(const LogParameters& p, const LogStarBounds& b) {
  auto clamp = [](double v, const Interval& i) { return std::clamp(v, i.lower, i.upper); };
  return {clamp(p.min_sigma, b.min_sigma), clamp(p.max_sigma, b.max_sigma),
          clamp(p.threshold, b.threshold), clamp(p.overlap, b.overlap)};
}

std::vector<PointXY> Points(const std::vector<Blob>& blobs) {
  std::vector<PointXY> points;
  points.reserve(blobs.size());
  for (const Blob& b : blobs) points.push_back({b.x, b.y});
  return points;
}

absl::Status CheckRegion(const cv::Mat& image, const PixelRegion& r) {
  if (r.cols <= 0 || r.rows <= 0 || r.col0 < 0 || r.row0 < 0 || r.col0 + r.cols > image.cols ||
      r.row0 + r.rows > image.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "region [", r.col0, ", ", r.col0 + r.cols, ") x [", r.row0, ", ", r.row0 + r.rows,
        ") is empty or outside the ", image.cols, " x ", image.rows, " image"));
  }
  return absl::OkStatus();
}

// Maxima down to this fraction of the threshold are the "below" set of the
// lattice pair's ambiguities (engine/physics/rewards.h): a maximum weaker
// than a quarter of the threshold weighs less than 1/16 of an admitted one.
constexpr double kBelowFraction = 1.0 / 16.0;

// Both reward sets of one detection: the published (QC, ER) always, the
// lattice pair when sites are given. `below` holds the maxima found with
// the threshold lowered to kBelowFraction of it (a superset of `blobs` up
// to pruning), or nullopt when there were too many to look at: then the
// threshold sits in the noise and spurious is 1.
struct Scored {
  Rewards rewards;
  std::optional<LatticeRewards> lattice;
};

// `noise_level` (>= 0; 0 = none): the level noise peaks reach at scale σ
// is noise_level / σ (see LogStarOptions::lattice_noise_sigmas).
absl::StatusOr<Scored> Score(const std::vector<Blob>& blobs,
                             const std::optional<std::vector<Blob>>& below, double threshold,
                             const PixelRegion& region, const PhysicsPrior& prior,
                             const RewardOptions& options, const LatticeSites* sites,
                             const CrystalArea* area, double noise_level,
                             std::vector<int>* erroneous = nullptr) {
  const CrystalMask* crystal = area != nullptr ? &area->mask : nullptr;
  Scored out;
  const std::vector<PointXY> points = Points(blobs);
  LOGSTAR_ASSIGN_OR_RETURN(out.rewards,
                           ComputeRewards(points, region, prior, options, erroneous, crystal));
  if (sites != nullptr) {
    std::vector<double> ratio;
    std::vector<double> noise_ratio;
    for (const Blob& b : blobs) {
      ratio.push_back(std::max(1.0, b.response / threshold));
      if (noise_level > 0.0) noise_ratio.push_back(noise_level / (b.sigma * b.response));
    }
    std::vector<PointXY> under;
    std::vector<double> under_ratio;
    if (below) {
      for (const Blob& b : *below) {
        if (b.response < threshold) {
          under.push_back({b.x, b.y});
          under_ratio.push_back(b.response / threshold);
        }
      }
    }
    const LatticeMargins margins{ratio, under, under_ratio, noise_ratio};
    LOGSTAR_ASSIGN_OR_RETURN(
        out.lattice, ComputeLatticeRewards(points, region, *sites, &margins, nullptr, crystal));
    if (!below) out.lattice->spurious = 1.0;
  }
  return out;
}

// Score's noise_level for the lattice pair on `image`: lattice_noise_sigmas
// × the white noise's std at scale 1 (pixel std / sqrt(2π)), the pixel std
// from the crystal area when it has one, else measured on `image`.
absl::StatusOr<double> NoiseLevel(const cv::Mat& image, const LogStarOptions& options,
                                  const CrystalArea* crystal) {
  if (options.lattice_noise_sigmas <= 0.0) return 0.0;
  double pixel_std = crystal != nullptr ? crystal->pixel_noise_std : 0.0;
  if (!(pixel_std > 0.0)) {
    LOGSTAR_ASSIGN_OR_RETURN(pixel_std, PixelNoiseStd(image));
  }
  return options.lattice_noise_sigmas * pixel_std / std::sqrt(2.0 * std::numbers::pi);
}

// The objectives the search sees: the pair searched, published ones capped.
Objectives2 Searched(const Scored& s, double cap) {
  if (s.lattice) return {s.lattice->misses, s.lattice->spurious};
  return {std::min(s.rewards.qc, cap), std::min(s.rewards.er, cap)};
}

LogDetectOptions Lowered(LogDetectOptions d, double floor) {
  d.threshold = std::max(floor, kBelowFraction * d.threshold);
  return d;
}

// Evaluates parameters with blob_log's own sigmas (no grid). One
// scale-space is kept per sigma set, so variations of threshold and overlap
// cost a peak scan and pruning only.
class ExactEvaluator {
 public:
  ExactEvaluator(const cv::Mat& image, const PixelRegion& region, const PhysicsPrior& prior,
                 const LogStarOptions& options, double response_floor, const LatticeSites* sites,
                 const CrystalArea* crystal, double noise_level, ExecutionContext* context)
      : image_(image),
        region_(region),
        prior_(prior),
        options_(options),
        response_floor_(response_floor),
        sites_(sites),
        crystal_(crystal),
        noise_level_(noise_level),
        context_(context) {}

  absl::StatusOr<Scored> operator()(const LogParameters& p) {
    LogOptions o = p.ToLogOptions();
    o.scale.response_floor = response_floor_;
    const LogScaleSpace* space = nullptr;
    for (const auto& [key, s] : spaces_) {
      if (key.min_sigma == o.scale.min_sigma && key.max_sigma == o.scale.max_sigma) space = &s;
    }
    if (space == nullptr) {
      LOGSTAR_ASSIGN_OR_RETURN(LogScaleSpace s, LogScaleSpace::Compute(image_, o.scale, context_));
      spaces_.emplace_back(o.scale, std::move(s));
      space = &spaces_.back().second;
    }
    LOGSTAR_ASSIGN_OR_RETURN(const std::vector<Blob> blobs, space->Detect(o.detect));
    std::optional<std::vector<Blob>> below;
    if (sites_ != nullptr) {
      LOGSTAR_ASSIGN_OR_RETURN(below, space->Detect(Lowered(o.detect, response_floor_)));
    }
    return Score(blobs, below, o.detect.threshold, region_, prior_, options_.rewards, sites_,
                 crystal_, noise_level_);
  }

 private:
  const cv::Mat& image_;
  const PixelRegion& region_;
  const PhysicsPrior& prior_;
  const LogStarOptions& options_;
  const double response_floor_;
  const LatticeSites* const sites_;
  const CrystalArea* const crystal_;
  const double noise_level_;
  ExecutionContext* const context_;
  std::vector<std::pair<LogScaleOptions, LogScaleSpace>> spaces_;
};

// Every evaluated point of a run, grid or exact.
struct Evaluated {
  LogParameters parameters;
  Objectives2 objectives;  // the pair searched
  int num_found = -1;      // exact evaluations only
  Objectives2 published;   // (QC, ER), capped
};

// The parameters halfway between the two neighbours on `front` (indices into
// `points`, ordered by the first objective) whose objectives, normalised by
// the front's range, lie farthest apart, among the pairs not in `tried`
// (which receives the pair); nullopt without such a pair. Halfway as the
// search sees the space: geometric means of the sigmas and the threshold,
// the mean of the overlap.
//
// Why: where the threshold parts columns and noise cleanly (generated
// frames at noise <= 0.3), coarse sigmas hold every noise maximum between
// columns under 0 and spurious falls to 0, so the search's points often lie
// at the front's two ends only; the point between them is the trade-off an
// operator chooses on. With the polish budget so spent, 21 of 24 windows
// of tests/engine/analysis/lattice_objectives_test.cc have fronts of three
// points or more at noise 0.3 (19 before), 30 of 36 of
// tests/bench/rewards_sweep.cc (seeds 11-13, all lattices); at noise 0.6
// and 0.9, 34 and 33 of 36.
std::optional<LogParameters> FrontGapMidpoint(const std::vector<Evaluated>& points,
                                              const std::vector<int>& front,
                                              std::set<std::pair<int, int>>& tried) {
  if (front.size() < 2) return std::nullopt;
  double range[2];
  for (int k = 0; k < 2; ++k) {
    double lo = points[front[0]].objectives[k], hi = lo;
    for (int i : front) {
      lo = std::min(lo, points[i].objectives[k]), hi = std::max(hi, points[i].objectives[k]);
    }
    range[k] = hi > lo ? hi - lo : 1.0;
  }
  double widest = -1.0;
  std::pair<int, int> best;
  for (size_t k = 0; k + 1 < front.size(); ++k) {
    const std::pair<int, int> pair{front[k], front[k + 1]};
    if (tried.count(pair) > 0) continue;
    const Objectives2& a = points[pair.first].objectives;
    const Objectives2& b = points[pair.second].objectives;
    const double gap = std::hypot((a[0] - b[0]) / range[0], (a[1] - b[1]) / range[1]);
    if (gap > widest) widest = gap, best = pair;
  }
  if (widest < 0.0) return std::nullopt;
  tried.insert(best);
  const LogParameters& a = points[best.first].parameters;
  const LogParameters& b = points[best.second].parameters;
  LogParameters mid = a;
  mid.min_sigma = std::sqrt(a.min_sigma * b.min_sigma);
  mid.max_sigma = std::sqrt(a.max_sigma * b.max_sigma);
  mid.threshold = std::sqrt(a.threshold * b.threshold);
  mid.overlap = 0.5 * (a.overlap + b.overlap);
  return mid;
}

// A front of one or two points has no gap worth filling: the parameters of
// one of its ends with the threshold stepped outward by kEndStep (as the
// search sees it, geometrically), among the ends not in `tried` (which
// receives the point stepped from); nullopt when no end can move. The end
// of least spurious (last) steps up — fewer noise peaks near admission,
// columns nearer loss — unless its spurious is 0 already (nothing to
// trade) or the threshold is at its upper bound; the end of least misses
// (first) steps down unless its misses is 0 or the threshold is at its
// lower bound.
//
// Why: at noise 0.3 the search's points often crowd one corner of the
// trade-off (the threshold at its lower bound, spurious already small), and
// the front it leaves has one point: nothing for an operator to choose and
// no gap to fill. With the step, tests/bench/rewards_sweep.cc (seeds 11-13)
// has fronts of three points or more in 29 of 36 windows at noise 0.3 (28
// before), 34 of 36 at 0.6 (33), 31 of 36 at 0.9 (29), F1 unchanged. It
// cannot help where spurious is 0 at the lower threshold bound (coarse
// sigmas hold every maximum between columns under 0): the trade-off lies
// below the bound there, and lowering the bound to 0.003 cost fronts (22
// of 36 at noise 0.3) and F1 (0.962 against 0.969 at 0.6), the search then
// spending its budget on thresholds that admit noise.
constexpr double kEndStep = 1.3;

std::optional<LogParameters> FrontEndStep(const std::vector<Evaluated>& points,
                                          const std::vector<int>& front, const Interval& threshold,
                                          std::set<int>& tried) {
  if (front.empty()) return std::nullopt;
  const int last = front.back(), first = front.front();
  if (tried.count(last) == 0 && points[last].objectives[1] > 0.0 &&
      points[last].parameters.threshold < threshold.upper) {
    tried.insert(last);
    LogParameters up = points[last].parameters;
    up.threshold = std::min(threshold.upper, up.threshold * kEndStep);
    return up;
  }
  if (tried.count(first) == 0 && points[first].objectives[0] > 0.0 &&
      points[first].parameters.threshold > threshold.lower) {
    tried.insert(first);
    LogParameters down = points[first].parameters;
    down.threshold = std::max(threshold.lower, down.threshold / kEndStep);
    return down;
  }
  return std::nullopt;
}

// The lattice sites of `image` for the lattice pair, or why there are none.
absl::StatusOr<std::optional<LatticeSites>> WindowLattice(const cv::Mat& image,
                                                          const LogStarOptions& options,
                                                          const LatticeMeasurement* given,
                                                          ExecutionContext* context,
                                                          std::string* note) {
  absl::StatusOr<LatticeMeasurement> m =
      given != nullptr ? *given : MeasureLattice(image, options.lattice, context);
  if (!m.ok()) {
    // Too small a window to measure is no error of the run: it falls back.
    if (m.status().code() != absl::StatusCode::kInvalidArgument) return m.status();
    *note = absl::StrCat("lattice not measured: ", m.status().message());
    return std::nullopt;
  }
  if (!m->found) {
    *note = absl::StrCat("lattice pair not used: ", m->reason);
    return std::nullopt;
  }
  absl::StatusOr<LatticeSites> sites = MakeLatticeSites(*m, options.rewards);
  if (!sites.ok()) {
    *note = absl::StrCat("lattice unusable: ", sites.status().message());
    return std::nullopt;
  }
  return *std::move(sites);
}

// Radius of the disc over which a detection off the crystal counts its
// neighbours, in nearest-neighbour spacings: about 28 columns of a
// perovskite, enough to tell dense material from scattered atoms by count.
constexpr double kDensityRadiusNn = 3.0;

// The area of the disc of `radius` about (x, y) that lies inside the image
// (pixel centres [0, size) on each axis, so the box [-0.5, size - 0.5)),
// and of that the part off `crystal` (by whole pixels, row by row).
struct DiscArea {
  double inside = 0.0;
  double off_crystal = 0.0;
};
DiscArea DiscAreaOf(double x, double y, double radius, cv::Size image, const CrystalMask& crystal) {
  DiscArea area;
  const int r0 = std::max(0, static_cast<int>(std::floor(y - radius + 0.5)));
  const int r1 = std::min(image.height - 1, static_cast<int>(std::floor(y + radius + 0.5)));
  for (int row = r0; row <= r1; ++row) {
    const double dy = std::max(std::abs(row - y) - 0.5, 0.0);
    if (dy >= radius) continue;
    const double half = std::sqrt(radius * radius - dy * dy);
    const double x0 = std::max(x - half, -0.5), x1 = std::min(x + half, image.width - 0.5);
    if (x1 <= x0) continue;
    const int c0 = static_cast<int>(std::floor(x0 + 0.5)),
              c1 = static_cast<int>(std::ceil(x1 - 0.5));
    const double on = static_cast<double>(crystal.Area({c0, row, c1 - c0 + 1, 1}));
    area.inside += x1 - x0;
    area.off_crystal += std::max(0.0, (x1 - x0) - on);
  }
  return area;
}

// The blobs (image coordinates) a detection reports: all of `detected`
// without a crystal; else those of `detected` on it, and off it those that
// look like columns (see CrystalArea) and either are significant against
// the noise and lie in dense material (among `candidates`, the same
// scale-space's maxima down to 1/16 of the threshold) or were detected in a
// hole of the crystal: where most of the density disc around them is
// crystal, the columns' negative LoG lobes hold the noise down as on the
// crystal, so the tuned threshold decides as it does there (amorphous
// inclusions keep their dim columns; a particle's outside, convex, never
// counts as a hole).
std::vector<Blob> KeptBlobs(std::vector<Blob> detected, const std::vector<Blob>& candidates,
                            const PixelRegion& region, const CrystalArea* crystal,
                            const PhysicsPrior& prior, const LogStarOptions& options,
                            cv::Size image) {
  if (crystal == nullptr) return detected;
  const ColumnLook look = crystal->columns.faint_response > 0.0
                              ? crystal->columns
                              : LookOfColumns(detected, region, crystal->mask, prior);
  auto column_like = [&](const Blob& b) {
    return b.response >= options.off_crystal_brightness * look.faint_response &&
           b.sigma >= options.off_crystal_scale * look.median_sigma;
  };
  auto significant = [&](const Blob& b) {
    const double noise = crystal->pixel_noise_std / (std::sqrt(2.0 * std::numbers::pi) * b.sigma);
    return b.response >= options.off_crystal_sigmas * noise;
  };
  std::vector<Blob> kept, strong, weak;
  for (const Blob& b : detected) {
    if (crystal->mask.Contains({b.x, b.y})) {
      kept.push_back(b);
    } else if (column_like(b) && !significant(b)) {
      weak.push_back(b);
    }
  }
  for (const Blob& b : candidates) {
    if (!crystal->mask.Contains({b.x, b.y}) && column_like(b) && significant(b)) {
      strong.push_back(b);
    }
  }
  const double radius = kDensityRadiusNn * prior.NearestNeighborPx(), r2 = radius * radius;
  auto within = [&](const Blob& p, const std::vector<Blob>& set, const Blob* self) {
    int n = 0;
    for (const Blob& q : set) {
      const double dx = q.x - p.x, dy = q.y - p.y;
      n += &q != self && dx * dx + dy * dy < r2;
    }
    return n;
  };
  const size_t on = kept.size();
  const double density = prior.ColumnDensityPerPx2();
  for (const Blob& b : strong) {
    // Neighbours among the detections on the crystal and the significant
    // ones off it.
    const int n = static_cast<int>(std::count_if(
                      kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(on),
                      [&](const Blob& q) {
                        return (q.x - b.x) * (q.x - b.x) + (q.y - b.y) * (q.y - b.y) < r2;
                      })) +
                  within(b, strong, &b);
    const DiscArea area = DiscAreaOf(b.x, b.y, radius, image, crystal->mask);
    if (n >= options.off_crystal_density * density * area.inside) kept.push_back(b);
  }
  for (const Blob& b : weak) {
    const DiscArea area = DiscAreaOf(b.x, b.y, radius, image, crystal->mask);
    if (area.off_crystal < 0.5 * area.inside) kept.push_back(b);
  }
  // Detections come strongest first; so do these.
  std::stable_sort(kept.begin(), kept.end(),
                   [](const Blob& a, const Blob& b) { return a.response > b.response; });
  return kept;
}

}  // namespace

ColumnLook LookOfColumns(absl::Span<const Blob> blobs, const PixelRegion& region,
                         const CrystalMask& crystal, const PhysicsPrior& prior) {
  const double expected = prior.ColumnDensityPerPx2() * static_cast<double>(crystal.Area(region));
  constexpr double kMinColumns = 8.0;
  if (!(expected >= kMinColumns)) return {};
  std::vector<float> responses, sigmas;
  for (const Blob& b : blobs) {
    if (b.x >= region.col0 - 0.5 && b.x < region.col0 + region.cols - 0.5 &&
        b.y >= region.row0 - 0.5 && b.y < region.row0 + region.rows - 0.5 &&
        crystal.Contains({b.x, b.y})) {
      responses.push_back(b.response);
      sigmas.push_back(static_cast<float>(b.sigma));
    }
  }
  if (responses.empty()) return {};
  const auto rank = std::min(static_cast<std::ptrdiff_t>(responses.size()) - 1,
                             static_cast<std::ptrdiff_t>(0.75 * expected));
  std::nth_element(responses.begin(), responses.begin() + rank, responses.end(),
                   std::greater<float>());
  const auto middle = static_cast<std::ptrdiff_t>(sigmas.size() / 2);
  std::nth_element(sigmas.begin(), sigmas.begin() + middle, sigmas.end());
  return {responses[rank], sigmas[middle]};
}

LogOptions LogParameters::ToLogOptions() const {
  LogOptions o;
  o.scale.min_sigma = min_sigma;
  o.scale.max_sigma = std::max(max_sigma, min_sigma);
  o.scale.num_sigma = num_sigma;
  o.detect.threshold = threshold;
  o.detect.overlap = overlap;
  return o;
}

const char* RefineModeName(RefineMode mode) {
  switch (mode) {
    case RefineMode::kNone:
      return "none";
    case RefineMode::kParaboloid:
      return "paraboloid";
    case RefineMode::kGaussian:
      return "gaussian";
  }
  return "unknown";
}

absl::StatusOr<RefineMode> RefineModeFromName(std::string_view name) {
  for (RefineMode mode : {RefineMode::kNone, RefineMode::kParaboloid, RefineMode::kGaussian}) {
    if (name == RefineModeName(mode)) return mode;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("refine must be none, paraboloid or gaussian, got \"", std::string(name), "\""));
}

absl::Status LogStarOptions::Validate() const {
  if (!(std::isfinite(column_sigma_angstrom) && column_sigma_angstrom > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "column_sigma_angstrom must be positive and finite, got ", column_sigma_angstrom));
  }
  if (min_sigma_px) LOGSTAR_RETURN_IF_ERROR(CheckInterval("min_sigma", *min_sigma_px, 0.1, 64.0));
  if (max_sigma_px) LOGSTAR_RETURN_IF_ERROR(CheckInterval("max_sigma", *max_sigma_px, 0.1, 64.0));
  LOGSTAR_RETURN_IF_ERROR(CheckInterval("threshold", threshold, 1e-4, 10.0));
  LOGSTAR_RETURN_IF_ERROR(CheckInterval("overlap", overlap, 0.0, 1.0));
  if (num_sigma < 1 || num_sigma > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_sigma must be in [1, 64], got ", num_sigma));
  }
  if (!(grid_spacing > 0.0 && grid_spacing <= 0.2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grid_spacing must be in (0, 0.2], got ", grid_spacing));
  }
  LOGSTAR_RETURN_IF_ERROR(rewards.Validate());
  if (polish_evaluations < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("polish_evaluations must be >= 0, got ", polish_evaluations));
  }
  if (!(objective_cap >= 1.0 && std::isfinite(objective_cap))) {
    return absl::InvalidArgumentError(
        absl::StrCat("objective_cap must be finite and >= 1, got ", objective_cap));
  }
  LOGSTAR_RETURN_IF_ERROR(optimizer.Validate());
  if (choice == FrontChoiceRule::kWeights &&
      !(choice_weights[0] >= 0 && choice_weights[1] >= 0 &&
        choice_weights[0] + choice_weights[1] > 0 && std::isfinite(choice_weights[0]) &&
        std::isfinite(choice_weights[1]))) {
    return absl::InvalidArgumentError("choice weights must be finite, >= 0 and not both 0");
  }
  if (!(lattice_noise_sigmas >= 0.0 && std::isfinite(lattice_noise_sigmas))) {
    return absl::InvalidArgumentError(
        absl::StrCat("lattice_noise_sigmas must be finite and >= 0, got ", lattice_noise_sigmas));
  }
  if (!(off_crystal_sigmas >= 0.0 && std::isfinite(off_crystal_sigmas))) {
    return absl::InvalidArgumentError(
        absl::StrCat("off_crystal_sigmas must be finite and >= 0, got ", off_crystal_sigmas));
  }
  if (!(off_crystal_brightness >= 0.0 && off_crystal_brightness <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("off_crystal_brightness must be in [0, 1], got ", off_crystal_brightness));
  }
  if (!(off_crystal_scale >= 0.0 && off_crystal_scale <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("off_crystal_scale must be in [0, 1], got ", off_crystal_scale));
  }
  if (!(off_crystal_density >= 0.0 && off_crystal_density <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("off_crystal_density must be in [0, 1], got ", off_crystal_density));
  }
  switch (refine_mode) {
    case RefineMode::kNone:
      break;
    case RefineMode::kParaboloid:
      LOGSTAR_RETURN_IF_ERROR(refine.Validate());
      break;
    case RefineMode::kGaussian:
      LOGSTAR_RETURN_IF_ERROR(gaussian_refine.Validate());
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<LogStarBounds> ResolveBounds(const LogStarOptions& options,
                                            const PhysicsPrior& prior) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  const double sc = options.column_sigma_angstrom / prior.pixel_size_angstrom;
  LogStarBounds b;
  b.min_sigma = options.min_sigma_px.value_or(Interval{0.25 * sc, 1.5 * sc});
  b.max_sigma = options.max_sigma_px.value_or(Interval{0.75 * sc, 2.0 * sc});
  b.threshold = options.threshold;
  b.overlap = options.overlap;
  if (!options.min_sigma_px || !options.max_sigma_px) {
    // Prior-derived bounds inherit the limits explicit ones are held to.
    const Interval* derived[] = {&b.min_sigma, &b.max_sigma};
    for (const Interval* i : derived) {
      if (!(i->lower >= 0.1 && i->upper <= 64.0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the sigma bounds derived from column_sigma_angstrom ", options.column_sigma_angstrom,
            " and pixel_size_angstrom ", prior.pixel_size_angstrom, " are [", i->lower, ", ",
            i->upper, "] px, outside [0.1, 64]; give min_sigma/max_sigma bounds in pixels"));
      }
    }
  }
  if (b.max_sigma.upper < b.min_sigma.lower) {
    return absl::InvalidArgumentError("max_sigma bounds lie entirely below the min_sigma bounds");
  }
  return b;
}

LogStarBounds BoundsAround(const LogStarBounds& bounds, absl::Span<const LogParameters> points,
                           double margin) {
  // Each side in the search's own coordinates (MakeSpace): log for the
  // sigmas and the threshold, linear for the overlap.
  auto around = [&](const Interval& full, double LogParameters::*field, bool log_scale) {
    auto to = [&](double v) { return log_scale ? std::log(v) : v; };
    auto from = [&](double t) { return log_scale ? std::exp(t) : t; };
    const double lo = to(full.lower), hi = to(full.upper);
    double a = hi, b = lo;
    for (const LogParameters& p : points) {
      const double t = to(std::clamp(p.*field, full.lower, full.upper));
      a = std::min(a, t), b = std::max(b, t);
    }
    // At least a thousandth of the range either side, so that the search's
    // encoding of a region around one point keeps a width (log(b) - log(a)
    // can be 0 for a < b one ulp apart).
    constexpr double kMinMargin = 1e-3;
    const double grow = std::max(margin, kMinMargin) * (hi - lo);
    return Interval{a - grow <= lo ? full.lower : from(a - grow),
                    b + grow >= hi ? full.upper : from(b + grow)};
  };
  LogStarBounds b;
  b.min_sigma = around(bounds.min_sigma, &LogParameters::min_sigma, true);
  b.max_sigma = around(bounds.max_sigma, &LogParameters::max_sigma, true);
  b.threshold = around(bounds.threshold, &LogParameters::threshold, true);
  b.overlap = around(bounds.overlap, &LogParameters::overlap, false);
  // Every point has max_sigma >= min_sigma, so max_sigma's upper side never
  // falls under min_sigma's lower one (ResolveBounds' condition).
  return b;
}

void SetBounds(const LogStarBounds& bounds, LogStarOptions& options) {
  options.min_sigma_px = bounds.min_sigma;
  options.max_sigma_px = bounds.max_sigma;
  options.threshold = bounds.threshold;
  options.overlap = bounds.overlap;
}

absl::StatusOr<int> ChooseOnWindowFront(absl::Span<const Objectives2> objectives,
                                        absl::Span<const int> front, const LogStarOptions& options,
                                        ObjectivePair searched) {
  // With the noise term of spurious the lattice pair's fronts run from
  // every candidate to the surest few; normalised over such a front, the
  // knee lay wherever it ended and dropped true columns (F1 of the chosen
  // point 0.970 against 0.993 on the trust benchmark's frames at noise 0.3),
  // so the rule then sees misses and spurious, both about shares of
  // columns, as they are.
  const bool raw = searched == ObjectivePair::kLattice && options.lattice_noise_sigmas > 0.0;
  return ChooseOnFront(objectives, front, options.choice, options.choice_weights, !raw);
}

absl::StatusOr<LogDetection> DetectAndScore(const cv::Mat& image, const PixelRegion& region,
                                            const PhysicsPrior& prior,
                                            const LogParameters& parameters,
                                            const LogStarOptions& options,
                                            ExecutionContext* context, const LatticeSites* sites,
                                            const CrystalArea* crystal) {
  LOGSTAR_RETURN_IF_ERROR(CheckRegion(image, region));
  LogDetection out;
  std::vector<Blob> blobs;
  std::optional<std::vector<Blob>> below;
  // An image all but a hundredth crystal has nothing off it worth looking
  // at (a crystal's map can miss a few pixels at the frame's edge): its
  // detections are reported as they are, which keeps a cached crystal frame
  // as cheap as before (one plain detection per window).
  const bool crystal_everywhere =
      crystal != nullptr && crystal->mask.Area({0, 0, image.cols, image.rows}) >=
                                static_cast<int64_t>(0.99 * static_cast<double>(image.total()));
  if (sites == nullptr && (crystal == nullptr || crystal_everywhere)) {
    LOGSTAR_ASSIGN_OR_RETURN(blobs, DetectBlobsLog(image, parameters.ToLogOptions(), context));
  } else {
    // One scale-space for both thresholds; its floor is the lower one, which
    // does not change what the higher threshold finds. The lower one gives
    // the lattice pair its maxima under the threshold, and the detections
    // off the crystal their candidates.
    LogOptions o = parameters.ToLogOptions();
    LOGSTAR_RETURN_IF_ERROR(o.Validate());
    LogDetectOptions lowered = Lowered(o.detect, 0.0);
    if (sites == nullptr) {
      // Only the candidates off the crystal need the lower set, and none
      // under the noise test at the coarsest scale is ever kept (the tuned
      // threshold keeps its own): fewer maxima to store and prune.
      const double noise = options.off_crystal_sigmas * crystal->pixel_noise_std /
                           (std::sqrt(2.0 * std::numbers::pi) * o.scale.max_sigma);
      lowered.threshold = std::max(lowered.threshold, std::min(o.detect.threshold, noise));
    }
    o.scale.response_floor = lowered.threshold;
    LOGSTAR_ASSIGN_OR_RETURN(const LogScaleSpace space,
                             LogScaleSpace::Compute(image, o.scale, context));
    LOGSTAR_ASSIGN_OR_RETURN(blobs, space.Detect(o.detect));
    LOGSTAR_ASSIGN_OR_RETURN(below, space.Detect(lowered));
    if (!crystal_everywhere) {
      blobs = KeptBlobs(std::move(blobs), *below, region, crystal, prior, options, image.size());
    }
    if (sites == nullptr) below.reset();
  }
  // Blobs of the context around the region are never reported; refining
  // them would be wasted work. A margin keeps those that refinement may
  // move into the region.
  constexpr double kMargin = 2.5;
  for (const Blob& b : blobs) {
    if (b.x >= region.col0 - kMargin && b.x < region.col0 + region.cols - 1 + kMargin &&
        b.y >= region.row0 - kMargin && b.y < region.row0 + region.rows - 1 + kMargin) {
      out.blobs.push_back(b);
    }
  }
  switch (options.refine_mode) {
    case RefineMode::kNone:
      break;
    case RefineMode::kParaboloid:
      LOGSTAR_RETURN_IF_ERROR(RefinePositions(image, absl::MakeSpan(out.blobs), options.refine));
      break;
    case RefineMode::kGaussian:
      LOGSTAR_RETURN_IF_ERROR(RefineGaussian(image, absl::MakeSpan(out.blobs), &out.fits,
                                             options.gaussian_refine, context));
      break;
  }
  double noise_level = 0.0;
  if (sites != nullptr) {
    LOGSTAR_ASSIGN_OR_RETURN(noise_level, NoiseLevel(image, options, crystal));
  }
  LOGSTAR_ASSIGN_OR_RETURN(
      Scored scored, Score(out.blobs, below, parameters.threshold, region, prior, options.rewards,
                           sites, crystal, noise_level, &out.erroneous));
  out.rewards = scored.rewards;
  out.lattice_rewards = scored.lattice;
  return out;
}

absl::StatusOr<LogStarResult> RunLogStar(const cv::Mat& image, const PixelRegion& region,
                                         const PhysicsPrior& prior, const LogStarOptions& options,
                                         ExecutionContext* context,
                                         absl::Span<const LogParameters> warm_start,
                                         const LatticeMeasurement* lattice,
                                         const CrystalArea* crystal) {
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  LOGSTAR_ASSIGN_OR_RETURN(const LogStarBounds bounds, ResolveBounds(options, prior));
  LOGSTAR_RETURN_IF_ERROR(CheckRegion(image, region));
  const auto t0 = std::chrono::steady_clock::now();

  std::optional<LatticeSites> sites;
  std::string lattice_note;
  if (options.objectives == ObjectivePair::kLattice) {
    LOGSTAR_ASSIGN_OR_RETURN(sites, WindowLattice(image, options, lattice, context, &lattice_note));
  }
  const LatticeSites* const sites_ptr = sites ? &*sites : nullptr;
  double noise_level = 0.0;
  if (sites) {
    LOGSTAR_ASSIGN_OR_RETURN(noise_level, NoiseLevel(image, options, crystal));
  }
  // The lattice pair also looks at maxima under the threshold (down to
  // kBelowFraction of it), so the grid keeps them.
  const double response_floor =
      sites ? kBelowFraction * bounds.threshold.lower : bounds.threshold.lower;

  LogGridOptions grid_options;
  grid_options.min_sigma = bounds.min_sigma.lower;
  grid_options.max_sigma = std::max(bounds.max_sigma.upper, bounds.min_sigma.upper);
  grid_options.spacing = options.grid_spacing;
  grid_options.response_floor = response_floor;
  LOGSTAR_ASSIGN_OR_RETURN(const LogScaleGrid grid,
                           LogScaleGrid::Compute(image, grid_options, context));

  const SearchSpace space = MakeSpace(bounds);
  const double cap = options.objective_cap;
  // The count the polish steps toward: over the crystalline area. The flood
  // guard counts every detection of the region, so it allows for the whole
  // region's.
  const double region_area = static_cast<double>(region.cols) * region.rows;
  const double expected =
      prior.ColumnDensityPerPx2() * (crystal != nullptr ? crystal->mask.Area(region) : region_area);
  const auto max_blobs =
      static_cast<size_t>(std::floor((1.0 + cap) * prior.ColumnDensityPerPx2() * region_area));

  // A flooded candidate is as bad as can be in either pair.
  const Objectives2 flooded = sites ? Objectives2{1.0, 1.0} : Objectives2{cap, cap};
  // (QC, ER) of every grid evaluation, for the front's report when the
  // lattice pair is searched (the optimiser calls the objective from this
  // thread only).
  std::map<ParameterValues, Objectives2> published_of;
  const Objective objective = [&](const ParameterValues& v) -> absl::StatusOr<Objectives2> {
    const LogOptions o = FromValues(v, options.num_sigma).ToLogOptions();
    LOGSTAR_ASSIGN_OR_RETURN(const std::optional<std::vector<Blob>> blobs,
                             grid.DetectAtMost(o.scale, o.detect, region, max_blobs));
    if (!blobs) {
      published_of[v] = {cap, cap};
      return flooded;
    }
    std::optional<std::vector<Blob>> below;
    if (sites_ptr != nullptr) {
      LOGSTAR_ASSIGN_OR_RETURN(
          below, grid.DetectAtMost(o.scale, Lowered(o.detect, response_floor), region, max_blobs));
    }
    LOGSTAR_ASSIGN_OR_RETURN(const Scored scored,
                             Score(*blobs, below, o.detect.threshold, region, prior,
                                   options.rewards, sites_ptr, crystal, noise_level));
    published_of[v] = {std::min(scored.rewards.qc, cap), std::min(scored.rewards.er, cap)};
    return Searched(scored, cap);
  };
  // The last evaluations of the budget polish the front with exact ones.
  const int polish = std::min(options.polish_evaluations, options.optimizer.num_evaluations / 5);
  MoboOptions search = options.optimizer;
  search.num_evaluations -= polish;
  search.num_initial = std::min(search.num_initial, search.num_evaluations);
  std::vector<ParameterValues> seeds;
  for (const LogParameters& p : warm_start) {
    if (static_cast<int>(seeds.size()) < search.num_evaluations) {
      seeds.push_back(ToValues(p, bounds));
    }
  }
  LOGSTAR_ASSIGN_OR_RETURN(const MoboResult run,
                           MinimizeTwoObjectives(space, objective, search, context, seeds));

  std::vector<Evaluated> points;
  for (const Evaluation& e : run.evaluations) {
    const auto it = published_of.find(e.parameters);
    points.push_back({FromValues(e.parameters, options.num_sigma), e.objectives, -1,
                      it != published_of.end() ? it->second : e.objectives});
  }
  auto objectives_of = [&] {
    std::vector<Objectives2> all;
    for (const Evaluated& p : points) all.push_back(p.objectives);
    return all;
  };
  auto front_and_choice = [&]() -> absl::StatusOr<std::pair<std::vector<int>, int>> {
    const std::vector<Objectives2> all = objectives_of();
    LOGSTAR_ASSIGN_OR_RETURN(std::vector<int> front, ParetoFront(all));
    LOGSTAR_ASSIGN_OR_RETURN(
        const int chosen,
        ChooseOnWindowFront(all, front, options,
                            sites ? ObjectivePair::kLattice : ObjectivePair::kPublished));
    return std::make_pair(std::move(front), chosen);
  };

  // Polish. Grid sigmas are within spacing/2 of blob_log's, which can move
  // a column or two in or out: the front is re-evaluated exactly (chosen
  // point first), so the front reported is exact; what budget is left moves
  // the chosen point's threshold toward the expected count (the count falls
  // as the threshold rises), each step an exact evaluation.
  ExactEvaluator exact(image, region, prior, options, response_floor, sites_ptr, crystal,
                       noise_level, context);
  auto record = [&](Evaluated& e, const Scored& r) {
    e.objectives = Searched(r, cap);
    e.published = {std::min(r.rewards.qc, cap), std::min(r.rewards.er, cap)};
    e.num_found = r.rewards.num_found;
  };
  int num_polished = 0;
  std::set<std::pair<int, int>> filled;  // front gaps already tried
  std::set<int> stepped;                 // front ends already stepped from
  for (; num_polished < polish; ++num_polished) {
    // Each step is an exact detection: as costly as a few evaluations.
    if (search.cancel != nullptr && search.cancel->load(std::memory_order_relaxed)) {
      return absl::CancelledError(absl::StrCat(
          "search cancelled after ", run.evaluations.size() + num_polished, " evaluations"));
    }
    LOGSTAR_ASSIGN_OR_RETURN(const auto fc, front_and_choice());
    const auto& [front, chosen] = fc;
    int target = points[chosen].num_found < 0 ? chosen : -1;
    for (int i : front) {
      if (target < 0 && points[i].num_found < 0) target = i;
    }
    if (target >= 0) {
      LOGSTAR_ASSIGN_OR_RETURN(const Scored r, exact(points[target].parameters));
      record(points[target], r);
      continue;
    }
    if (sites) {
      // The lattice pair is count-free: its chosen point is not moved toward
      // the prior's count. What budget is left fills the front's widest gap
      // instead (see FrontGapMidpoint).
      std::optional<LogParameters> mid = FrontGapMidpoint(points, front, filled);
      if (!mid && front.size() < 3) mid = FrontEndStep(points, front, bounds.threshold, stepped);
      if (!mid) break;
      Evaluated step{*mid, {}, 0, {}};
      LOGSTAR_ASSIGN_OR_RETURN(const Scored r, exact(step.parameters));
      record(step, r);
      points.push_back(step);
      continue;
    }
    const LogParameters& base = points[chosen].parameters;
    const int wanted = static_cast<int>(std::lround(expected));
    if (points[chosen].num_found == wanted) break;
    const bool too_many = points[chosen].num_found > wanted;
    // Two knobs move the count: it falls as the threshold rises and rises
    // with the overlap allowed before pruning. The threshold is tried first;
    // the overlap when the threshold sits at the bound it would cross.
    struct Knob {
      double LogParameters::*field;
      Interval range;
      bool count_falls;  // as the value rises
    };
    const Knob knobs[] = {{&LogParameters::threshold, bounds.threshold, true},
                          {&LogParameters::overlap, bounds.overlap, false}};
    std::optional<LogParameters> next;
    for (const Knob& k : knobs) {
      const bool raise = too_many == k.count_falls;
      const double now = base.*k.field;
      if (raise ? now >= k.range.upper : now <= k.range.lower) continue;
      // Bracket the expected count among the exact points that differ from
      // the chosen one in this knob only.
      double lo = k.range.lower, hi = k.range.upper;  // values with the count off each way
      bool have_lo = false, have_hi = false;
      for (const Evaluated& p : points) {
        LogParameters q = p.parameters;
        const double v = q.*k.field;
        q.*k.field = now;
        if (p.num_found < 0 || q.min_sigma != base.min_sigma || q.max_sigma != base.max_sigma ||
            q.threshold != base.threshold || q.overlap != base.overlap || p.num_found == wanted) {
          continue;
        }
        // On the side of `now` (count off the same way) or across it.
        const bool same_side = (p.num_found > wanted) == too_many;
        const bool below_now = raise ? same_side : !same_side;
        if (below_now && v >= lo) lo = v, have_lo = true;
        if (!below_now && v <= hi) hi = v, have_hi = true;
      }
      // Bisection once bracketed, steps until then: 15 % for the threshold
      // (geometric, as the search sees it), a fifth of the range for the
      // overlap (linear).
      const bool geometric = k.field == &LogParameters::threshold;
      double value;
      if (have_lo && have_hi) {
        value = geometric ? std::sqrt(lo * hi) : 0.5 * (lo + hi);
      } else if (geometric) {
        value = raise ? now * 1.15 : now / 1.15;
      } else {
        const double step = 0.2 * (k.range.upper - k.range.lower);
        value = raise ? now + step : now - step;
      }
      value = std::clamp(value, k.range.lower, k.range.upper);
      if (value == now) continue;
      next = base;
      (*next).*k.field = value;
      break;
    }
    if (!next) break;
    Evaluated step{*next, {}, 0, {}};
    LOGSTAR_ASSIGN_OR_RETURN(const Scored r, exact(step.parameters));
    record(step, r);
    points.push_back(step);
  }

  LogStarResult result;
  result.num_evaluations = static_cast<int>(run.evaluations.size()) + num_polished;
  LOGSTAR_ASSIGN_OR_RETURN(const auto fc, front_and_choice());
  const auto& [front, chosen] = fc;
  std::vector<Objectives2> front_values;
  for (int i : front) {
    if (i == chosen) result.chosen = static_cast<int>(result.front.size());
    const Evaluated& e = points[i];
    FrontPoint f{e.parameters, e.published[0], e.published[1], 0.0, 0.0};
    if (sites) f.misses = e.objectives[0], f.spurious = e.objectives[1];
    result.front.push_back(f);
    front_values.push_back(e.objectives);
  }
  LOGSTAR_ASSIGN_OR_RETURN(result.hypervolume, Hypervolume(front_values, {1.0, 1.0}));
  result.parameters = result.front[result.chosen].parameters;
  result.tuning_ms = MsSince(t0);

  const auto t1 = std::chrono::steady_clock::now();
  LOGSTAR_ASSIGN_OR_RETURN(LogDetection final,
                           DetectAndScore(image, region, prior, result.parameters, options, context,
                                          sites_ptr, crystal));
  result.objectives = sites ? ObjectivePair::kLattice : ObjectivePair::kPublished;
  result.lattice_note = std::move(lattice_note);
  result.lattice_rewards = final.lattice_rewards;
  result.blobs = std::move(final.blobs);
  result.fits = std::move(final.fits);
  result.rewards = final.rewards;
  result.erroneous = std::move(final.erroneous);
  result.detect_ms = MsSince(t1);
  return result;
}

std::string LogStarResult::Summary() const {
  std::string s = absl::StrFormat(
      "LoG*: %d evaluations, %d points on the front (hypervolume %.4f), tuning %.1f ms\n"
      "chosen: min_sigma %.3f px, max_sigma %.3f px, num_sigma %d, threshold %.4f, overlap "
      "%.3f\n"
      "rewards: QC %.4f, ER %.4f, %d atoms found, %.1f expected\n",
      num_evaluations, static_cast<int>(front.size()), hypervolume, tuning_ms, parameters.min_sigma,
      parameters.max_sigma, parameters.num_sigma, parameters.threshold, parameters.overlap,
      rewards.qc, rewards.er, rewards.num_found, rewards.num_expected);
  return s;
}

}  // namespace logstar
