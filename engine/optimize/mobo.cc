#include "engine/optimize/mobo.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "engine/base/context.h"
#include "engine/base/random.h"
#include "engine/base/status_macros.h"
#include "engine/optimize/gaussian_process.h"
#include "engine/optimize/pareto.h"
#include "engine/optimize/sobol.h"

namespace logstar {
namespace {

using Kind = ParameterSpec::Kind;

// Rows scored per parallel task: fixed, so results never depend on the
// thread count, and small enough that a chunk's m × n cross-covariance
// stays in cache.
constexpr int kChunkRows = 128;
constexpr int kRefineRounds = 6;
constexpr int kSortedHead = 64;
constexpr double kRefineInitialStep = 0.1;
// Stream labels for DeriveSeed.
constexpr uint64_t kDesignStream = 1;
constexpr uint64_t kCandidateStream = 2;
constexpr uint64_t kGpStream = 3;

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kContinuous:
      return "continuous";
    case Kind::kInteger:
      return "integer";
    case Kind::kCategorical:
      return "categorical";
  }
  return "?";
}

bool IsIntegral(double v) { return std::isfinite(v) && v == std::floor(v); }

// The encoding of a valid SearchSpace, without status checks, for the hot
// paths (every candidate is decoded and re-encoded).
class Codec {
 public:
  explicit Codec(const SearchSpace& space) : space_(space) {
    int offset = 0;
    for (const ParameterSpec& p : space.parameters) {
      Slot slot;
      slot.offset = offset;
      if (p.kind == Kind::kCategorical) {
        slot.width = static_cast<int>(p.categories.size());
      } else {
        const double lo = p.kind == Kind::kInteger ? p.lower - 0.5 : p.lower;
        const double hi = p.kind == Kind::kInteger ? p.upper + 0.5 : p.upper;
        slot.origin = p.log_scale ? std::log(lo) : lo;
        slot.span = (p.log_scale ? std::log(hi) : hi) - slot.origin;
      }
      offset += slot.width;
      slots_.push_back(slot);
    }
    dims_ = offset;
    for (const ParameterSpec& p : space.parameters) {
      if (p.kind != Kind::kContinuous || p.log_scale) needs_projection_ = true;
    }
  }

  int dims() const { return dims_; }

  void Encode(const ParameterValues& values, double* unit) const {
    for (size_t i = 0; i < slots_.size(); ++i) {
      const ParameterSpec& p = space_.parameters[i];
      const Slot& s = slots_[i];
      if (p.kind == Kind::kCategorical) {
        for (int c = 0; c < s.width; ++c) unit[s.offset + c] = c == values[i] ? 1.0 : 0.0;
      } else {
        const double t = p.log_scale ? std::log(values[i]) : values[i];
        unit[s.offset] = std::clamp((t - s.origin) / s.span, 0.0, 1.0);
      }
    }
  }

  void Decode(const double* unit, ParameterValues* values) const {
    values->resize(slots_.size());
    for (size_t i = 0; i < slots_.size(); ++i) {
      const ParameterSpec& p = space_.parameters[i];
      const Slot& s = slots_[i];
      if (p.kind == Kind::kCategorical) {
        int best = 0;
        for (int c = 1; c < s.width; ++c) {
          if (unit[s.offset + c] > unit[s.offset + best]) best = c;
        }
        (*values)[i] = best;
        continue;
      }
      const double u = unit[s.offset];
      // The box's faces decode to the bounds exactly, whatever exp/log round to.
      if (!(u > 0.0) || !(u < 1.0)) {
        (*values)[i] = u > 0.0 ? p.upper : p.lower;
        continue;
      }
      const double t = s.origin + u * s.span;
      double v = p.log_scale ? std::exp(t) : t;
      if (p.kind == Kind::kInteger) v = std::floor(v + 0.5);
      (*values)[i] = std::clamp(v, p.lower, p.upper);
    }
  }

  // Moves a unit-box vector to the encoding of the point it decodes to.
  // Linear continuous coordinates already are that point (up to rounding),
  // so a space of only those skips the round trip.
  void Project(double* unit, ParameterValues* scratch) const {
    if (!needs_projection_) return;
    Decode(unit, scratch);
    Encode(*scratch, unit);
  }

 private:
  struct Slot {
    int offset = 0;
    int width = 1;
    double origin = 0.0;  // transformed lower edge
    double span = 1.0;    // transformed width
  };
  const SearchSpace& space_;
  std::vector<Slot> slots_;
  int dims_ = 0;
  bool needs_projection_ = false;
};

absl::Status ValidateParameter(const ParameterSpec& p, size_t index) {
  const std::string where = absl::StrCat("parameter ", index, " (\"", p.name, "\")");
  if (p.name.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": name is empty"));
  if (p.kind == Kind::kCategorical) {
    if (p.categories.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": categorical needs categories"));
    }
    if (p.log_scale) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": log_scale is meaningless for a categorical parameter"));
    }
    std::set<std::string> seen;
    for (const std::string& c : p.categories) {
      if (!seen.insert(c).second) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate category \"", c, "\""));
      }
    }
    return absl::OkStatus();
  }
  if (!p.categories.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": categories given for a ", KindName(p.kind), " parameter"));
  }
  if (!(std::isfinite(p.lower) && std::isfinite(p.upper) && p.lower < p.upper)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": lower and upper must be finite with lower < upper, got [", p.lower,
                     ", ", p.upper, "]"));
  }
  if (p.kind == Kind::kInteger && !(IsIntegral(p.lower) && IsIntegral(p.upper))) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": integer bounds must be integral, got [", p.lower, ", ", p.upper, "]"));
  }
  if (p.log_scale) {
    const double min_lower = p.kind == Kind::kInteger ? 1.0 : 0.0;
    if (p.kind == Kind::kInteger ? p.lower < min_lower : p.lower <= min_lower) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": log_scale needs lower ",
                                                     p.kind == Kind::kInteger ? ">= 1" : "> 0",
                                                     ", got ", p.lower));
    }
  }
  return absl::OkStatus();
}

// Transformed objective k of an evaluation, as the GP sees it.
double Transform(double f, bool log1p) { return log1p ? std::log1p(f) : f; }

// Reference point: max + 0.1 · range per objective (see mobo.h).
Objectives2 DerivedReference(absl::Span<const Objectives2> values) {
  Objectives2 reference;
  for (int k = 0; k < 2; ++k) {
    double lo = values[0][k], hi = values[0][k];
    for (const Objectives2& v : values) {
      lo = std::min(lo, v[k]);
      hi = std::max(hi, v[k]);
    }
    reference[k] = hi + (hi > lo ? 0.1 * (hi - lo) : 0.1 * std::max(1.0, std::abs(hi)));
  }
  return reference;
}

// State of one run: evaluations in both encodings and the objective calls.
class Run {
 public:
  Run(const SearchSpace& space, const Objective& objective, const MoboOptions& options)
      : codec_(space), objective_(objective), options_(options) {}

  const Codec& codec() const { return codec_; }
  int size() const { return static_cast<int>(evaluations_.size()); }
  bool Evaluated(const ParameterValues& values) const { return seen_.contains(values); }
  std::vector<Evaluation>& evaluations() { return evaluations_; }

  absl::Status CheckCancelled() const {
    if (options_.cancel != nullptr && options_.cancel->load(std::memory_order_relaxed)) {
      return absl::CancelledError(absl::StrCat("search cancelled after ", size(), " evaluations"));
    }
    return absl::OkStatus();
  }

  absl::Status Evaluate(const ParameterValues& values) {
    LOGSTAR_RETURN_IF_ERROR(CheckCancelled());
    const int index = size();
    absl::StatusOr<Objectives2> f = objective_(values);
    if (!f.ok()) return f.status();
    for (int k = 0; k < 2; ++k) {
      const double v = (*f)[k];
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("objective ", k, " of evaluation ", index, " is not finite: ", v));
      }
      if (options_.log1p_objectives && v <= -1.0) {
        return absl::InvalidArgumentError(absl::StrCat("objective ", k, " of evaluation ", index,
                                                       " is ", v,
                                                       " <= -1, which log1p_objectives forbids"));
      }
    }
    evaluations_.push_back({values, *f});
    seen_.insert(values);
    std::vector<double> unit(codec_.dims());
    codec_.Encode(values, unit.data());
    encoded_.insert(encoded_.end(), unit.begin(), unit.end());
    transformed_.push_back({Transform((*f)[0], options_.log1p_objectives),
                            Transform((*f)[1], options_.log1p_objectives)});
    return absl::OkStatus();
  }

  Eigen::MatrixXd EncodedMatrix() const {
    const int d = codec_.dims();
    Eigen::MatrixXd x(size(), d);
    for (int i = 0; i < size(); ++i) {
      for (int j = 0; j < d; ++j) x(i, j) = encoded_[static_cast<size_t>(i) * d + j];
    }
    return x;
  }
  const std::vector<Objectives2>& transformed() const { return transformed_; }
  const std::vector<double>& encoded() const { return encoded_; }

 private:
  Codec codec_;
  const Objective& objective_;
  const MoboOptions& options_;
  std::vector<Evaluation> evaluations_;
  std::set<ParameterValues> seen_;
  std::vector<double> encoded_;  // size() × dims, row-major
  std::vector<Objectives2> transformed_;
};

// A start for the hyperparameter optimiser, log-uniform within the bounds
// of `options` (as GaussianProcess::Fit draws its own restarts).
GpHyperparameters RandomHyperparameters(const GaussianProcessOptions& options, int dims,
                                        SplitMix64& rng) {
  auto draw = [&](double lo, double hi) {
    return std::exp(rng.Uniform(std::log(lo), std::log(hi)));
  };
  GpHyperparameters h;
  h.signal_variance = draw(options.signal_variance_min, options.signal_variance_max);
  h.length_scales.resize(dims);
  for (double& l : h.length_scales) l = draw(options.length_scale_min, options.length_scale_max);
  h.noise_variance = draw(options.noise_variance_min, options.noise_variance_max);
  return h;
}

// What candidates are scored with: the two objectives' GPs and the front of
// the evaluations so far, all in transformed units.
struct Acquisition {
  const GaussianProcess& gp0;
  const GaussianProcess& gp1;
  const HypervolumeFront& front;
};

// EHVI of each row of `x` (already projected) under the two GPs.
absl::Status ScoreRows(const Eigen::MatrixXd& x, const Acquisition& acquisition, double* scores) {
  Eigen::VectorXd mean0, sd0, mean1, sd1;
  LOGSTAR_RETURN_IF_ERROR(acquisition.gp0.Predict(x, &mean0, &sd0, /*with_noise=*/false));
  LOGSTAR_RETURN_IF_ERROR(acquisition.gp1.Predict(x, &mean1, &sd1, /*with_noise=*/false));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const double s = acquisition.front.ExpectedImprovement({mean0[r], mean1[r]}, {sd0[r], sd1[r]});
    scores[r] = std::isnan(s) ? -1.0 : s;
  }
  return absl::OkStatus();
}

// The arguments MinimizeTwoObjectives takes, checked as mobo.h states.
absl::Status CheckArguments(const SearchSpace& space, const Objective& objective,
                            const MoboOptions& options, const ExecutionContext* context,
                            absl::Span<const ParameterValues> warm_start) {
  LOGSTAR_RETURN_IF_ERROR(space.Validate());
  LOGSTAR_RETURN_IF_ERROR(options.Validate());
  if (context == nullptr) return absl::InvalidArgumentError("context must not be null");
  if (!objective) return absl::InvalidArgumentError("objective is empty");
  if (static_cast<int>(warm_start.size()) > options.num_evaluations) {
    return absl::InvalidArgumentError(absl::StrCat(warm_start.size(),
                                                   " warm-start points exceed num_evaluations (",
                                                   options.num_evaluations, ")"));
  }
  for (size_t i = 0; i < warm_start.size(); ++i) {
    if (absl::Status s = space.CheckValues(warm_start[i]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("warm-start point ", i, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

// Initial design: warm start, then Sobol points not evaluated yet (a
// discrete space can make many Sobol points decode alike; the attempts are
// bounded so a tiny space cannot loop).
absl::Status EvaluateInitialDesign(absl::Span<const ParameterValues> warm_start,
                                   const MoboOptions& options, Run& run) {
  for (const ParameterValues& values : warm_start) LOGSTAR_RETURN_IF_ERROR(run.Evaluate(values));
  LOGSTAR_ASSIGN_OR_RETURN(
      const SobolSequence design,
      SobolSequence::Create({.dimensions = run.codec().dims(),
                             .scramble = true,
                             .seed = DeriveSeed(options.seed, kDesignStream)}));
  const int max_attempts = 64 * options.num_initial;
  Eigen::MatrixXd point;
  ParameterValues values;
  for (int i = 0; run.size() < options.num_initial && i < max_attempts; ++i) {
    LOGSTAR_RETURN_IF_ERROR(design.Generate(i, 1, &point));
    run.codec().Decode(point.data(), &values);
    if (run.Evaluated(values)) continue;
    LOGSTAR_RETURN_IF_ERROR(run.Evaluate(values));
  }
  return absl::OkStatus();
}

// One per objective.
using GpPair = std::array<GaussianProcess, 2>;
using HyperparameterPair = std::array<std::optional<GpHyperparameters>, 2>;

// The two fits, in parallel. A full refit runs every start as its own task
// (the previous optimum, then gp.num_restarts log-uniform draws), so the
// restarts spread over the threads too; per objective the start with the
// highest LML wins, ties to the earlier start. `previous` holds each
// objective's last hyperparameters and is updated to the winners'.
absl::StatusOr<GpPair> FitObjectives(const Run& run, int iteration, const MoboOptions& options,
                                     ExecutionContext* context, HyperparameterPair& previous) {
  const int dims = run.codec().dims();
  const Eigen::MatrixXd x = run.EncodedMatrix();
  const int n = run.size();
  std::array<Eigen::VectorXd, 2> y = {Eigen::VectorXd(n), Eigen::VectorXd(n)};
  for (int i = 0; i < n; ++i) {
    y[0][i] = run.transformed()[i][0];
    y[1][i] = run.transformed()[i][1];
  }

  const bool full_refit = iteration % options.full_refit_every == 0;
  const int starts = full_refit ? 1 + options.gp.num_restarts : 1;
  std::vector<std::optional<GpHyperparameters>> start_points(2 * starts);
  for (int k = 0; k < 2; ++k) {
    start_points[k * starts] = previous[k];
    SplitMix64 rng(DeriveSeed(options.seed, kGpStream + 4 * (2 * iteration + k)));
    for (int r = 1; r < starts; ++r) {
      start_points[k * starts + r] = RandomHyperparameters(options.gp, dims, rng);
    }
  }
  std::vector<absl::StatusOr<GaussianProcess>> fits(2 * starts, absl::UnknownError(""));
  context->ParallelFor(2 * starts, [&](int task) {
    GaussianProcessOptions gp_options = options.gp;
    gp_options.num_restarts = 0;
    gp_options.cancel = options.cancel;
    const std::optional<GpHyperparameters>& start = start_points[task];
    fits[task] = GaussianProcess::Fit(x, y[task / starts], gp_options,
                                      start.has_value() ? &*start : nullptr);
  });
  std::array<int, 2> best = {-1, -1};
  for (int task = 0; task < 2 * starts; ++task) {
    if (!fits[task].ok()) return fits[task].status();
    int& b = best[task / starts];
    if (b < 0 || fits[task]->log_marginal_likelihood() > fits[b]->log_marginal_likelihood()) {
      b = task;
    }
  }
  for (int k = 0; k < 2; ++k) previous[k] = fits[best[k]]->hyperparameters();
  return GpPair{*std::move(fits[best[0]]), *std::move(fits[best[1]])};
}

// Candidates: a freshly shifted Sobol set (num_candidates × dims),
// projected onto decodable points, scored in fixed chunks.
absl::Status ScoreCandidates(const Codec& codec, int iteration, const MoboOptions& options,
                             const Acquisition& acquisition, ExecutionContext* context,
                             Eigen::MatrixXd* candidates, std::vector<double>* scores) {
  const int dims = codec.dims();
  LOGSTAR_ASSIGN_OR_RETURN(
      const SobolSequence sobol,
      SobolSequence::Create({.dimensions = dims,
                             .scramble = true,
                             .seed = DeriveSeed(options.seed, kCandidateStream + 4 * iteration)}));
  LOGSTAR_RETURN_IF_ERROR(sobol.Generate(0, options.num_candidates, candidates));
  const int num_candidates = options.num_candidates;
  scores->assign(num_candidates, 0.0);
  const int num_chunks = (num_candidates + kChunkRows - 1) / kChunkRows;
  std::vector<absl::Status> chunk_status(num_chunks);
  context->ParallelFor(num_chunks, [&](int c) {
    const int begin = c * kChunkRows;
    const int rows = std::min(kChunkRows, num_candidates - begin);
    Eigen::MatrixXd block = candidates->middleRows(begin, rows);
    ParameterValues values;
    Eigen::VectorXd row(dims);
    for (int r = 0; r < rows; ++r) {
      row = block.row(r).transpose();
      codec.Project(row.data(), &values);
      block.row(r) = row.transpose();
    }
    candidates->middleRows(begin, rows) = block;
    chunk_status[c] = ScoreRows(block, acquisition, &(*scores)[begin]);
  });
  for (const absl::Status& s : chunk_status) LOGSTAR_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

// Candidate indices ranked by score, ties by position (so the order is
// deterministic). Only the head of the ranking is normally needed: it is
// sorted at once, the rest only if the search gets that far.
class CandidateRanking {
 public:
  CandidateRanking(const std::vector<double>& scores, int head)
      : scores_(scores),
        order_(scores.size()),
        sorted_(std::min(static_cast<int>(scores.size()), head)) {
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + sorted_, order_.end(), Better{scores_});
  }

  int size() const { return static_cast<int>(order_.size()); }
  // The index of the candidate ranked k-th (from 0).
  int At(int k) {
    if (k >= sorted_) {
      std::sort(order_.begin() + sorted_, order_.end(), Better{scores_});
      sorted_ = size();
    }
    return order_[k];
  }

 private:
  struct Better {
    const std::vector<double>& scores;
    bool operator()(int a, int b) const {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    }
  };

  const std::vector<double>& scores_;
  std::vector<int> order_;
  int sorted_;
};

// The best candidates refined by compass search, in parallel: each round
// scores the 2·dims neighbours of the current point at once, moves to the
// best if it improves and halves the step otherwise. Rows of *refined (and
// *refined_scores) are the refined points, in ranking order of their starts.
absl::Status RefineBest(const Codec& codec, const Eigen::MatrixXd& candidates,
                        const std::vector<double>& scores, CandidateRanking& ranking,
                        int num_refine, const Acquisition& acquisition, ExecutionContext* context,
                        Eigen::MatrixXd* refined, std::vector<double>* refined_scores) {
  const int dims = codec.dims();
  refined->resize(num_refine, dims);
  refined_scores->resize(num_refine);
  for (int r = 0; r < num_refine; ++r) {
    refined->row(r) = candidates.row(ranking.At(r));
    (*refined_scores)[r] = scores[ranking.At(r)];
  }
  std::vector<absl::Status> refine_status(num_refine);
  context->ParallelFor(num_refine, [&](int r) {
    double step = kRefineInitialStep;
    Eigen::MatrixXd neighbours(2 * dims, dims);
    std::vector<double> neighbour_scores(2 * dims);
    Eigen::VectorXd row(dims);
    ParameterValues values;
    for (int round = 0; round < kRefineRounds; ++round) {
      for (int j = 0; j < dims; ++j) {
        for (int sign = 0; sign < 2; ++sign) {
          row = refined->row(r).transpose();
          row[j] = std::clamp(row[j] + (sign == 0 ? -step : step), 0.0, 1.0);
          codec.Project(row.data(), &values);
          neighbours.row(2 * j + sign) = row.transpose();
        }
      }
      refine_status[r] = ScoreRows(neighbours, acquisition, neighbour_scores.data());
      if (!refine_status[r].ok()) return;
      int best = -1;
      double best_score = (*refined_scores)[r];
      for (int i = 0; i < 2 * dims; ++i) {
        if (neighbour_scores[i] > best_score) {
          best = i;
          best_score = neighbour_scores[i];
        }
      }
      if (best < 0) {
        step *= 0.5;
      } else {
        refined->row(r) = neighbours.row(best);
        (*refined_scores)[r] = best_score;
      }
    }
  });
  for (const absl::Status& s : refine_status) LOGSTAR_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

using RowMajorMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Proposal {
  ParameterValues values;
  double score = 0.0;
};

// The best unevaluated point of the pool: refined points first, then every
// candidate, each ranked by score (a later point must score strictly
// higher). None if the whole pool has been evaluated. Rows are row-major so
// a row's coordinates are contiguous for Decode.
std::optional<Proposal> BestUnevaluated(const Run& run, const RowMajorMatrix& refined,
                                        const std::vector<double>& refined_scores,
                                        const RowMajorMatrix& candidates,
                                        const std::vector<double>& scores,
                                        CandidateRanking& ranking) {
  std::optional<Proposal> chosen;
  ParameterValues values;
  auto consider = [&](const double* unit, double score) {
    if (chosen.has_value() && score <= chosen->score) return;
    run.codec().Decode(unit, &values);
    if (run.Evaluated(values)) return;
    chosen = Proposal{values, score};
  };
  std::vector<int> refined_order(refined_scores.size());
  std::iota(refined_order.begin(), refined_order.end(), 0);
  std::stable_sort(refined_order.begin(), refined_order.end(),
                   [&](int a, int b) { return refined_scores[a] > refined_scores[b]; });
  for (int r : refined_order) consider(refined.row(r).data(), refined_scores[r]);
  for (int k = 0; k < ranking.size(); ++k) {
    const int i = ranking.At(k);
    if (chosen.has_value() && scores[i] <= chosen->score) break;
    consider(candidates.row(i).data(), scores[i]);
  }
  return chosen;
}

// When nothing is expected to improve (to double precision), space is
// filled instead: the unevaluated candidate farthest from every evaluated
// point (the first of equals). None if every candidate has been evaluated.
std::optional<ParameterValues> FarthestFromEvaluated(const Run& run,
                                                     const RowMajorMatrix& candidates) {
  const int dims = run.codec().dims();
  const std::vector<double>& encoded = run.encoded();
  std::optional<ParameterValues> chosen;
  ParameterValues values;
  double farthest = -1.0;
  for (Eigen::Index i = 0; i < candidates.rows(); ++i) {
    const double* unit = candidates.row(i).data();
    double nearest = std::numeric_limits<double>::infinity();
    for (int e = 0; e < run.size(); ++e) {
      double d2 = 0.0;
      for (int j = 0; j < dims; ++j) {
        const double diff = unit[j] - encoded[static_cast<size_t>(e) * dims + j];
        d2 += diff * diff;
      }
      nearest = std::min(nearest, d2);
    }
    if (nearest > farthest) {
      run.codec().Decode(unit, &values);
      if (run.Evaluated(values)) continue;
      farthest = nearest;
      chosen = values;
    }
  }
  return chosen;
}

// What an iteration proposes: the next point (none when no new point is
// left), or that the expected improvement fell below the stop fraction.
struct Next {
  std::optional<ParameterValues> values;
  bool converged = false;
};

// One iteration of the search: fit the GPs, score candidates, refine the
// best and propose the best unevaluated point.
absl::StatusOr<Next> ProposeNext(const Run& run, int iteration, const MoboOptions& options,
                                 ExecutionContext* context, HyperparameterPair& previous) {
  LOGSTAR_ASSIGN_OR_RETURN(const GpPair gps,
                           FitObjectives(run, iteration, options, context, previous));
  // The fits grow as n³: a search cancelled meanwhile stops here rather than
  // scoring candidates with a model cut short.
  LOGSTAR_RETURN_IF_ERROR(run.CheckCancelled());
  LOGSTAR_ASSIGN_OR_RETURN(
      const HypervolumeFront front,
      HypervolumeFront::Create(run.transformed(), DerivedReference(run.transformed())));
  const Acquisition acquisition{gps[0], gps[1], front};

  Eigen::MatrixXd candidates;
  std::vector<double> scores;
  LOGSTAR_RETURN_IF_ERROR(
      ScoreCandidates(run.codec(), iteration, options, acquisition, context, &candidates, &scores));
  CandidateRanking ranking(scores, std::max(options.num_refine, kSortedHead));
  Eigen::MatrixXd refined;
  std::vector<double> refined_scores;
  LOGSTAR_RETURN_IF_ERROR(RefineBest(run.codec(), candidates, scores, ranking,
                                     std::min(options.num_refine, options.num_candidates),
                                     acquisition, context, &refined, &refined_scores));

  const RowMajorMatrix refined_rows = refined;
  const RowMajorMatrix candidate_rows = candidates;
  std::optional<Proposal> best =
      BestUnevaluated(run, refined_rows, refined_scores, candidate_rows, scores, ranking);
  // The best of the pool, evaluated or not, is what the model still expects
  // to gain anywhere.
  double expected = best.has_value() ? best->score : 0.0;
  for (double v : refined_scores) expected = std::max(expected, v);
  if (!scores.empty()) expected = std::max(expected, scores[ranking.At(0)]);
  if (options.min_relative_improvement > 0.0 &&
      expected < options.min_relative_improvement * front.hypervolume()) {
    return Next{std::nullopt, true};
  }
  if (best.has_value() && best->score > 0.0) return Next{std::move(best->values), false};
  return Next{FarthestFromEvaluated(run, candidate_rows), false};
}

// The run's evaluations with their front and its hypervolume.
absl::StatusOr<MoboResult> Summarize(Run& run, int num_design, bool exhausted, bool converged,
                                     const MoboOptions& options) {
  MoboResult result;
  result.evaluations = std::move(run.evaluations());
  result.num_design = num_design;
  result.exhausted = exhausted;
  result.converged = converged;
  std::vector<Objectives2> values;
  values.reserve(result.evaluations.size());
  for (const Evaluation& e : result.evaluations) values.push_back(e.objectives);
  LOGSTAR_ASSIGN_OR_RETURN(result.front, ParetoFront(values));
  result.reference_point =
      options.reference_point.has_value() ? *options.reference_point : DerivedReference(values);
  LOGSTAR_ASSIGN_OR_RETURN(result.hypervolume, Hypervolume(values, result.reference_point));
  return result;
}

}  // namespace

absl::Status SearchSpace::Validate() const {
  if (parameters.empty()) return absl::InvalidArgumentError("SearchSpace.parameters is empty");
  std::set<std::string> names;
  for (size_t i = 0; i < parameters.size(); ++i) {
    LOGSTAR_RETURN_IF_ERROR(ValidateParameter(parameters[i], i));
    if (!names.insert(parameters[i].name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, ": duplicate name \"", parameters[i].name, "\""));
    }
  }
  if (encoded_dimensions() > SobolSequence::kMaxDimensions) {
    return absl::InvalidArgumentError(
        absl::StrCat("SearchSpace encodes to ", encoded_dimensions(), " dimensions, at most ",
                     SobolSequence::kMaxDimensions, " are supported"));
  }
  return absl::OkStatus();
}

int SearchSpace::encoded_dimensions() const {
  int d = 0;
  for (const ParameterSpec& p : parameters) {
    d += p.kind == Kind::kCategorical ? static_cast<int>(p.categories.size()) : 1;
  }
  return d;
}

absl::Status SearchSpace::CheckValues(const ParameterValues& values) const {
  if (values.size() != parameters.size()) {
    return absl::InvalidArgumentError(absl::StrCat("point has ", values.size(), " values for ",
                                                   parameters.size(), " parameters"));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const ParameterSpec& p = parameters[i];
    const double v = values[i];
    const std::string where = absl::StrCat("value of parameter \"", p.name, "\"");
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " is not finite: ", v));
    }
    if (p.kind == Kind::kCategorical) {
      if (!IsIntegral(v) || v < 0 || v >= static_cast<double>(p.categories.size())) {
        return absl::InvalidArgumentError(absl::StrCat(where, " must be a category index in [0, ",
                                                       p.categories.size(), "), got ", v));
      }
      continue;
    }
    if (p.kind == Kind::kInteger && !IsIntegral(v)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " must be an integer, got ", v));
    }
    if (v < p.lower || v > p.upper) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " = ", v, " is outside [", p.lower, ", ", p.upper, "]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> SearchSpace::Encode(const ParameterValues& values) const {
  LOGSTAR_RETURN_IF_ERROR(Validate());
  LOGSTAR_RETURN_IF_ERROR(CheckValues(values));
  const Codec codec(*this);
  std::vector<double> unit(codec.dims());
  codec.Encode(values, unit.data());
  return unit;
}

absl::StatusOr<ParameterValues> SearchSpace::Decode(absl::Span<const double> unit) const {
  LOGSTAR_RETURN_IF_ERROR(Validate());
  const Codec codec(*this);
  if (static_cast<int>(unit.size()) != codec.dims()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unit vector has ", unit.size(), " coordinates, the space encodes to ", codec.dims()));
  }
  for (size_t j = 0; j < unit.size(); ++j) {
    if (!std::isfinite(unit[j])) {
      return absl::InvalidArgumentError(absl::StrCat("unit coordinate ", j, " is not finite"));
    }
  }
  ParameterValues values;
  codec.Decode(unit.data(), &values);
  return values;
}

absl::Status MoboOptions::Validate() const {
  auto at_least = [](const char* field, int value, int min) -> absl::Status {
    if (value >= min) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("MoboOptions.", field, " must be >= ", min, ", got ", value));
  };
  LOGSTAR_RETURN_IF_ERROR(at_least("num_evaluations", num_evaluations, 1));
  LOGSTAR_RETURN_IF_ERROR(at_least("num_initial", num_initial, 1));
  LOGSTAR_RETURN_IF_ERROR(at_least("num_candidates", num_candidates, 1));
  LOGSTAR_RETURN_IF_ERROR(at_least("num_refine", num_refine, 0));
  LOGSTAR_RETURN_IF_ERROR(at_least("full_refit_every", full_refit_every, 1));
  if (num_initial > num_evaluations) {
    return absl::InvalidArgumentError(absl::StrCat("MoboOptions.num_initial (", num_initial,
                                                   ") must be <= num_evaluations (",
                                                   num_evaluations, ")"));
  }
  if (!(min_relative_improvement >= 0.0 && std::isfinite(min_relative_improvement))) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoboOptions.min_relative_improvement must be finite and >= 0, got ",
                     min_relative_improvement));
  }
  if (num_candidates > SobolSequence::kMaxPoints / 2) {
    return absl::InvalidArgumentError("MoboOptions.num_candidates is too large");
  }
  if (reference_point.has_value() &&
      !(std::isfinite((*reference_point)[0]) && std::isfinite((*reference_point)[1]))) {
    return absl::InvalidArgumentError("MoboOptions.reference_point must be finite");
  }
  if (absl::Status s = gp.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("MoboOptions.gp: ", s.message()));
  }
  return absl::OkStatus();
}

std::string MoboResult::Summary() const {
  std::string out = absl::StrFormat(
      "%d evaluations (%d design)%s%s; front of %d; hypervolume %.6g w.r.t. (%.6g, %.6g)\n",
      evaluations.size(), num_design, exhausted ? ", search space exhausted" : "",
      converged ? ", converged" : "", front.size(), hypervolume, reference_point[0],
      reference_point[1]);
  for (int i : front) {
    const Evaluation& e = evaluations[i];
    absl::StrAppendFormat(&out, "  #%d f = (%.6g, %.6g) at (", i, e.objectives[0], e.objectives[1]);
    for (size_t j = 0; j < e.parameters.size(); ++j) {
      absl::StrAppendFormat(&out, "%s%.6g", j == 0 ? "" : ", ", e.parameters[j]);
    }
    out += ")\n";
  }
  return out;
}

absl::StatusOr<MoboResult> MinimizeTwoObjectives(const SearchSpace& space,
                                                 const Objective& objective,
                                                 const MoboOptions& options,
                                                 ExecutionContext* context,
                                                 absl::Span<const ParameterValues> warm_start) {
  LOGSTAR_RETURN_IF_ERROR(CheckArguments(space, objective, options, context, warm_start));
  Run run(space, objective, options);
  LOGSTAR_RETURN_IF_ERROR(EvaluateInitialDesign(warm_start, options, run));
  const int num_design = run.size();

  bool exhausted = false, converged = false;
  HyperparameterPair previous;
  for (int iteration = 0; run.size() < options.num_evaluations; ++iteration) {
    LOGSTAR_ASSIGN_OR_RETURN(Next next, ProposeNext(run, iteration, options, context, previous));
    if (next.converged) {
      converged = true;
      break;
    }
    if (!next.values.has_value()) {
      exhausted = true;
      break;
    }
    LOGSTAR_RETURN_IF_ERROR(run.Evaluate(*next.values));
  }
  return Summarize(run, num_design, exhausted, converged, options);
}

}  // namespace logstar
