#include "engine/logstar.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/log_scale_grid.h"
#include "engine/status_macros.h"

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

}  // namespace

LogOptions LogParameters::ToLogOptions() const {
  LogOptions o;
  o.scale.min_sigma = min_sigma;
  o.scale.max_sigma = std::max(max_sigma, min_sigma);
  o.scale.num_sigma = num_sigma;
  o.detect.threshold = threshold;
  o.detect.overlap = overlap;
  return o;
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
  LOGSTAR_RETURN_IF_ERROR(optimizer.Validate());
  if (choice == FrontChoiceRule::kWeights &&
      !(choice_weights[0] >= 0 && choice_weights[1] >= 0 &&
        choice_weights[0] + choice_weights[1] > 0 && std::isfinite(choice_weights[0]) &&
        std::isfinite(choice_weights[1]))) {
    return absl::InvalidArgumentError("choice weights must be finite, >= 0 and not both 0");
  }
  if (refine_positions) LOGSTAR_RETURN_IF_ERROR(refine.Validate());
  return absl::OkStatus();
}

absl::StatusOr<LogStarBounds> ResolveBounds(const LogStarOptions& options,
                                            const PhysicsPrior& prior) {
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  LOGSTAR_RETURN_IF_ERROR(prior.Validate());
  const double sc = options.column_sigma_angstrom / prior.pixel_size_angstrom;
  LogStarBounds b;
  b.min_sigma = options.min_sigma_px.value_or(Interval{0.25 * sc, 1.0 * sc});
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

absl::StatusOr<LogDetection> DetectAndScore(const cv::Mat& image, const PixelRegion& region,
                                            const PhysicsPrior& prior,
                                            const LogParameters& parameters,
                                            const LogStarOptions& options,
                                            ExecutionContext* context) {
  LOGSTAR_RETURN_IF_ERROR(CheckRegion(image, region));
  LogDetection out;
  LOGSTAR_ASSIGN_OR_RETURN(std::vector<Blob> blobs,
                           DetectBlobsLog(image, parameters.ToLogOptions(), context));
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
  if (options.refine_positions) {
    LOGSTAR_RETURN_IF_ERROR(RefinePositions(image, absl::MakeSpan(out.blobs), options.refine));
  }
  LOGSTAR_ASSIGN_OR_RETURN(out.rewards,
                           ComputeRewards(Points(out.blobs), region, prior, options.rewards));
  return out;
}

absl::StatusOr<LogStarResult> RunLogStar(const cv::Mat& image, const PixelRegion& region,
                                         const PhysicsPrior& prior, const LogStarOptions& options,
                                         ExecutionContext* context,
                                         absl::Span<const LogParameters> warm_start) {
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  LOGSTAR_ASSIGN_OR_RETURN(const LogStarBounds bounds, ResolveBounds(options, prior));
  LOGSTAR_RETURN_IF_ERROR(CheckRegion(image, region));
  const auto t0 = std::chrono::steady_clock::now();

  LogGridOptions grid_options;
  grid_options.min_sigma = bounds.min_sigma.lower;
  grid_options.max_sigma = std::max(bounds.max_sigma.upper, bounds.min_sigma.upper);
  grid_options.spacing = options.grid_spacing;
  grid_options.response_floor = bounds.threshold.lower;
  LOGSTAR_ASSIGN_OR_RETURN(const LogScaleGrid grid,
                           LogScaleGrid::Compute(image, grid_options, context));

  const SearchSpace space = MakeSpace(bounds);
  const Objective objective = [&](const ParameterValues& v) -> absl::StatusOr<Objectives2> {
    const LogOptions o = FromValues(v, options.num_sigma).ToLogOptions();
    LOGSTAR_ASSIGN_OR_RETURN(const std::vector<Blob> blobs, grid.Detect(o.scale, o.detect));
    LOGSTAR_ASSIGN_OR_RETURN(const Rewards r,
                             ComputeRewards(Points(blobs), region, prior, options.rewards));
    return Objectives2{r.qc, r.er};
  };
  std::vector<ParameterValues> seeds;
  for (const LogParameters& p : warm_start) {
    if (static_cast<int>(seeds.size()) < options.optimizer.num_evaluations) {
      seeds.push_back(ToValues(p, bounds));
    }
  }
  LOGSTAR_ASSIGN_OR_RETURN(
      const MoboResult run,
      MinimizeTwoObjectives(space, objective, options.optimizer, context, seeds));

  LogStarResult result;
  result.num_evaluations = static_cast<int>(run.evaluations.size());
  std::vector<Objectives2> all;
  for (const Evaluation& e : run.evaluations) all.push_back(e.objectives);
  LOGSTAR_ASSIGN_OR_RETURN(const int chosen,
                           ChooseOnFront(all, run.front, options.choice, options.choice_weights));
  for (int i : run.front) {
    const Evaluation& e = run.evaluations[i];
    if (i == chosen) result.chosen = static_cast<int>(result.front.size());
    result.front.push_back(
        {FromValues(e.parameters, options.num_sigma), e.objectives[0], e.objectives[1]});
  }
  std::vector<Objectives2> front_values;
  for (int i : run.front) front_values.push_back(run.evaluations[i].objectives);
  LOGSTAR_ASSIGN_OR_RETURN(result.hypervolume, Hypervolume(front_values, {1.0, 1.0}));
  result.parameters = result.front[result.chosen].parameters;
  result.tuning_ms = MsSince(t0);

  const auto t1 = std::chrono::steady_clock::now();
  LOGSTAR_ASSIGN_OR_RETURN(LogDetection final, DetectAndScore(image, region, prior,
                                                              result.parameters, options, context));
  result.blobs = std::move(final.blobs);
  result.rewards = final.rewards;
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
