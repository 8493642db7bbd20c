#include "server/session_config.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/base/status_macros.h"
#include "engine/image/normalize.h"
#include "server/convert.h"

namespace logstar::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

// Prefixes an engine error (which names the engine's field) with where in
// the request that field lives.
absl::Status Prefixed(const absl::Status& s, const std::string& prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

absl::Status CheckEvaluations(const std::string& field, int evaluations, const SettingsCaps& caps) {
  if (evaluations < 1 || evaluations > caps.max_evaluations) {
    return Invalid(field,
                   absl::StrCat("must be in [1, ", caps.max_evaluations, "], got ", evaluations));
  }
  return absl::OkStatus();
}

// Unset: the engine's default (LogStarOptions::objectives, where the reason
// for it is written), so that the daemon and the CLI cannot drift apart.
absl::StatusOr<ObjectivePair> ParseObjectives(v1::ObjectivePair pair) {
  switch (pair) {
    case v1::OBJECTIVE_PAIR_UNSPECIFIED:
      return LogStarOptions{}.objectives;
    case v1::OBJECTIVE_PAIR_PUBLISHED:
      return ObjectivePair::kPublished;
    case v1::OBJECTIVE_PAIR_LATTICE:
      return ObjectivePair::kLattice;
    default:
      return Invalid("settings.analysis.objectives", absl::StrCat("is not a known pair: ", pair));
  }
}

absl::StatusOr<FrontChoiceRule> ParseChoice(v1::FrontChoiceRule choice) {
  switch (choice) {
    case v1::FRONT_CHOICE_RULE_UNSPECIFIED:
    case v1::FRONT_CHOICE_RULE_EUCLIDEAN:
      return FrontChoiceRule::kEuclidean;
    case v1::FRONT_CHOICE_RULE_CHEBYSHEV:
      return FrontChoiceRule::kChebyshev;
    case v1::FRONT_CHOICE_RULE_WEIGHTS:
      return FrontChoiceRule::kWeights;
    default:
      return Invalid("settings.analysis.choice", absl::StrCat("is not a known rule: ", choice));
  }
}

// The weights are checked whatever the rule (the engine checks them only
// for kWeights), so a bad pair is reported when it is sent, not when the
// rule later changes.
absl::Status CheckWeights(const Objectives2& weights) {
  for (int k = 0; k < 2; ++k) {
    if (!std::isfinite(weights[k]) || weights[k] < 0.0) {
      return Invalid(k == 0 ? "settings.analysis.weight_qc" : "settings.analysis.weight_er",
                     absl::StrCat("must be >= 0 and finite, got ", weights[k]));
    }
  }
  if (weights[0] == 0.0 && weights[1] == 0.0) {
    return Invalid("settings.analysis.weight_qc", "and weight_er must not both be 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<NormalizeOptions::Method> ParseNormalize(v1::NormalizeMethod method) {
  switch (method) {
    case v1::NORMALIZE_METHOD_UNSPECIFIED:
    case v1::NORMALIZE_METHOD_MIN_MAX:
      return NormalizeOptions::Method::kMinMax;
    case v1::NORMALIZE_METHOD_PERCENTILE:
      return NormalizeOptions::Method::kPercentile;
    default:
      return Invalid("settings.analysis.normalize",
                     absl::StrCat("is not a known method: ", method));
  }
}

// refine, with refine_positions = false as its older spelling of none.
absl::StatusOr<RefineMode> ParseRefine(const v1::AnalysisSettings& a) {
  const bool off = a.has_refine_positions() && !a.refine_positions();
  switch (a.refine()) {
    case v1::REFINE_MODE_UNSPECIFIED:
      return off ? RefineMode::kNone : RefineMode::kParaboloid;
    case v1::REFINE_MODE_NONE:
      return RefineMode::kNone;
    case v1::REFINE_MODE_PARABOLOID:
    case v1::REFINE_MODE_GAUSSIAN:
      if (off) {
        return Invalid("settings.analysis.refine",
                       "contradicts refine_positions = false (which means REFINE_MODE_NONE)");
      }
      return a.refine() == v1::REFINE_MODE_GAUSSIAN ? RefineMode::kGaussian
                                                    : RefineMode::kParaboloid;
    default:
      return Invalid("settings.analysis.refine", absl::StrCat("is not a known mode: ", a.refine()));
  }
}

absl::Status ParseAmorphous(const v1::AmorphousSettings& m, const v1::AnalysisSettings& a,
                            const SettingsCaps& caps, AmorphousStageOptions& st) {
  st.enabled = m.enabled();
  if (m.has_window()) st.window = m.window();
  if (m.has_stride()) st.stride = m.stride();
  if (m.has_evaluations()) {
    LOGSTAR_RETURN_IF_ERROR(
        CheckEvaluations("settings.analysis.amorphous.evaluations", m.evaluations(), caps));
    st.options.optimizer.num_evaluations = m.evaluations();
    st.options.optimizer.num_initial = std::min(st.options.optimizer.num_initial, m.evaluations());
  }
  if (m.has_drift_tolerance()) st.drift_tolerance = m.drift_tolerance();
  if (m.has_floor_drift_ratio()) st.floor_drift_ratio = m.floor_drift_ratio();
  if (m.has_pca_components()) st.options.pca_components = m.pca_components();
  if (a.has_seed()) st.options.seed = st.options.optimizer.seed = a.seed();
  return absl::OkStatus();
}

// The analysis settings over the engine's defaults, then the engine's checks.
absl::StatusOr<AnalyzerOptions> ParseAnalysis(const v1::AnalysisSettings& a,
                                              const SettingsCaps& caps) {
  AnalyzerOptions o;
  if (a.has_window()) o.window = a.window();
  if (a.has_stride()) o.stride = a.stride();
  if (a.has_evaluations()) {
    LOGSTAR_RETURN_IF_ERROR(
        CheckEvaluations("settings.analysis.evaluations", a.evaluations(), caps));
    o.logstar.optimizer.num_evaluations = a.evaluations();
    // The initial design cannot exceed the budget.
    o.logstar.optimizer.num_initial = std::min(o.logstar.optimizer.num_initial, a.evaluations());
  }
  if (a.has_seed()) o.logstar.optimizer.seed = a.seed();
  LOGSTAR_ASSIGN_OR_RETURN(o.logstar.choice, ParseChoice(a.choice()));
  if (a.has_weight_qc()) o.logstar.choice_weights[0] = a.weight_qc();
  if (a.has_weight_er()) o.logstar.choice_weights[1] = a.weight_er();
  LOGSTAR_RETURN_IF_ERROR(CheckWeights(o.logstar.choice_weights));
  if (a.has_drift_tolerance()) o.drift_tolerance = a.drift_tolerance();
  if (a.has_num_sigma()) o.logstar.num_sigma = a.num_sigma();
  if (a.has_column_sigma_angstrom()) o.logstar.column_sigma_angstrom = a.column_sigma_angstrom();
  LOGSTAR_ASSIGN_OR_RETURN(o.logstar.refine_mode, ParseRefine(a));
  LOGSTAR_ASSIGN_OR_RETURN(o.normalize.method, ParseNormalize(a.normalize()));
  if (a.has_amorphous())
    LOGSTAR_RETURN_IF_ERROR(ParseAmorphous(a.amorphous(), a, caps, o.amorphous));
  LOGSTAR_ASSIGN_OR_RETURN(o.logstar.objectives, ParseObjectives(a.objectives()));
  o.sublattice = a.sublattice();
  if (a.prior_tolerances().has_spacing())
    o.prior_tolerances.spacing = a.prior_tolerances().spacing();
  if (a.prior_tolerances().has_density())
    o.prior_tolerances.density = a.prior_tolerances().density();
  // The engine names these "prior tolerance spacing/density".
  LOGSTAR_RETURN_IF_ERROR(
      Prefixed(o.prior_tolerances.Validate(), "settings.analysis.prior_tolerances: "));
  // The engine's messages name its fields, which are the request's
  // ("window", "stride", "drift_tolerance", "amorphous window", ...).
  LOGSTAR_RETURN_IF_ERROR(Prefixed(o.Validate(), "settings.analysis."));
  return o;
}

absl::StatusOr<SteeringOptions> ParseSteering(const v1::SteeringSettings& s,
                                              const AnalyzerOptions& analyzer,
                                              const SettingsCaps& caps) {
  SteeringOptions o = SteeringOptionsFor(analyzer, SteeringOptions().max_regions);
  if (s.has_max_regions()) {
    if (s.max_regions() > caps.max_regions) {
      return Invalid("settings.steering.max_regions",
                     absl::StrCat("must be <= ", caps.max_regions, ", got ", s.max_regions()));
    }
    o.max_regions = s.max_regions();
  }
  LOGSTAR_RETURN_IF_ERROR(Prefixed(o.Validate(), "settings.steering."));
  return o;
}

// A prior without pixel size at one where the sampling check (>= 2 px per
// nearest-neighbour distance) cannot fail, so the rest can be checked.
PhysicsPrior CheckablePrior(PhysicsPrior prior) {
  if (prior.pixel_size_angstrom == 0.0) {
    const double nn = prior.nearest_neighbor_angstrom;
    prior.pixel_size_angstrom = std::isfinite(nn) && nn > 0 ? nn / 8.0 : 0.1;
  }
  return prior;
}

// The fields of settings.prior besides pixel_size_angstrom that are set
// (what `auto` must not come with), by name.
std::vector<std::string> FieldsBesidesPixelSize(const v1::PhysicsPrior& p) {
  std::vector<std::string> fields;
  if (p.has_column_density_per_nm2()) fields.push_back("column_density_per_nm2");
  if (p.has_lattice()) fields.push_back("lattice");
  if (p.nearest_neighbor_angstrom() != 0.0) fields.push_back("nearest_neighbor_angstrom");
  if (p.sublattices_size() > 0) fields.push_back("sublattices");
  return fields;
}

// settings.analysis.sublattice against the prior, by the engine's own check
// (LogStarAnalyzer::Create), so that an unknown name fails when the settings
// are sent rather than on every frame. When the prior cannot be checked
// without the frames' pixel size even with default options, the first frame
// reports it.
absl::Status CheckSublatticeChoice(const AnalyzerOptions& analyzer, const PriorSetting& prior) {
  if (analyzer.sublattice.empty()) return absl::OkStatus();
  if (prior.derive) {
    return Invalid("settings.analysis.sublattice",
                   absl::StrCat("is \"", analyzer.sublattice,
                                "\", but settings.prior is auto, which describes no sublattices"));
  }
  const PhysicsPrior checkable = CheckablePrior(prior.prior);
  if (!LogStarAnalyzer::Create(AnalyzerOptions{}, checkable).ok()) return absl::OkStatus();
  AnalyzerOptions probe;
  probe.sublattice = analyzer.sublattice;
  return Prefixed(LogStarAnalyzer::Create(probe, checkable).status(), "settings.analysis.");
}

// Settings no frame can run with are refused when they are sent, not at
// every frame (issue 16, item 6): the sigma bounds the column width gives at
// the prior's pixel size, checked by the engine's ResolveBounds. Without a
// pixel size the frames' decide, and each frame is checked as it comes; an
// auto prior's column width is set when it is derived.
absl::Status CheckSigmaBounds(const AnalyzerOptions& analyzer, const PriorSetting& prior) {
  if (prior.derive || prior.prior.pixel_size_angstrom <= 0.0) return absl::OkStatus();
  return Prefixed(ResolveBounds(analyzer.logstar, prior.prior).status(),
                  "settings.analysis.column_sigma_angstrom does not fit "
                  "settings.prior.pixel_size_angstrom: ");
}

// How many times the windows of one stage cover the frame: (window /
// stride)², 1 for window 0 (one window, whatever the stride).
double Coverage(int window, int stride) {
  if (window == 0 || stride == 0) return 1.0;
  const double ratio = static_cast<double>(window) / stride;
  return ratio * ratio;
}

// One stage's term of FrameWork, for the message: "evaluations 500 ×
// 1.68e+07 px (one window)".
std::string WorkTerm(const char* field, int evaluations, int64_t pixels, int window, int stride) {
  const std::string windows =
      window == 0 ? "one window"
                  : absl::StrFormat("× %g: windows of %d px every %d px", Coverage(window, stride),
                                    window, stride == 0 ? window : stride);
  return absl::StrFormat("%s %d × %.3g px (%s)", field, evaluations, static_cast<double>(pixels),
                         windows);
}

// The per-frame work budget (SettingsCaps::max_frame_work).
absl::Status CheckFrameWork(const AnalyzerOptions& analyzer, const SettingsCaps& caps) {
  const double work = FrameWork(analyzer, caps.max_frame_pixels);
  if (work <= static_cast<double>(caps.max_frame_work)) return absl::OkStatus();
  std::string terms = WorkTerm("evaluations", analyzer.logstar.optimizer.num_evaluations,
                               caps.max_frame_pixels, analyzer.window, analyzer.stride);
  if (analyzer.amorphous.enabled) {
    absl::StrAppend(
        &terms, " + ",
        WorkTerm("amorphous.evaluations", analyzer.amorphous.options.optimizer.num_evaluations,
                 caps.max_frame_pixels, analyzer.amorphous.window, analyzer.amorphous.stride));
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "settings.analysis: a frame would cost an estimated %.3g evaluation-pixels (%s, at the "
      "largest frame the daemon takes), over its per-frame work budget of %.3g "
      "(max_frame_work): ask for fewer evaluations or a larger stride",
      work, terms, static_cast<double>(caps.max_frame_work)));
}

}  // namespace

double FrameWork(const AnalyzerOptions& analyzer, int64_t max_frame_pixels) {
  const double pixels = static_cast<double>(max_frame_pixels);
  double work = analyzer.logstar.optimizer.num_evaluations * pixels *
                Coverage(analyzer.window, analyzer.stride);
  if (analyzer.amorphous.enabled) {
    work += analyzer.amorphous.options.optimizer.num_evaluations * pixels *
            Coverage(analyzer.amorphous.window, analyzer.amorphous.stride);
  }
  return work;
}

absl::StatusOr<PriorSetting> ParsePrior(const v1::PhysicsPrior& p) {
  if (!std::isfinite(p.pixel_size_angstrom()) || p.pixel_size_angstrom() < 0.0) {
    return Invalid(
        "settings.prior.pixel_size_angstrom",
        absl::StrCat("must be >= 0 (0: from the frames), got ", p.pixel_size_angstrom()));
  }
  const std::vector<std::string> others = FieldsBesidesPixelSize(p);
  PriorSetting setting;
  // A pixel size alone says what `auto` says: everything else from the frame.
  if (p.auto_() || (others.empty() && p.pixel_size_angstrom() > 0.0)) {
    if (!others.empty()) {
      return Invalid("settings.prior.auto",
                     absl::StrCat("derives the prior from the frame and takes only "
                                  "pixel_size_angstrom; remove ",
                                  absl::StrJoin(others, ", "), " (or auto)"));
    }
    setting.derive = true;
    setting.prior.pixel_size_angstrom = p.pixel_size_angstrom();
    return setting;
  }
  setting.prior = PriorFromProto(p);
  LOGSTAR_RETURN_IF_ERROR(Prefixed(CheckablePrior(setting.prior).Validate(), "settings.prior."));
  return setting;
}

std::optional<double> AutoPixelSize(const PriorSetting& setting, double frame_pixel_size_angstrom,
                                    double fallback) {
  for (double px : {frame_pixel_size_angstrom, setting.prior.pixel_size_angstrom, fallback}) {
    if (px > 0.0) return px;
  }
  return std::nullopt;
}

absl::StatusOr<AnalyzerOptions> OptionsForDerived(AnalyzerOptions options,
                                                  const DerivedPrior& derived,
                                                  bool column_sigma_given) {
  if (derived.pixel_size_known) return options;
  if (column_sigma_given) {
    return Invalid("settings.analysis.column_sigma_angstrom",
                   "is in Å, but the auto prior has no pixel size (neither "
                   "settings.prior.pixel_size_angstrom nor the frames give one); give one, or "
                   "leave the column width to the measured spacing");
  }
  options.logstar.column_sigma_angstrom =
      kColumnSigmaPerSpacing * derived.prior.nearest_neighbor_angstrom;  // px: see DerivedPrior
  return options;
}

absl::StatusOr<LatticeMeasurement> MeasureFrameLattice(const cv::Mat& frame,
                                                       const AnalyzerOptions& options,
                                                       ExecutionContext* context) {
  // The frame the analyzer sees, with its options, so that the analyzer's
  // own measurement of the frame agrees (an auto prior then checks clean).
  LOGSTAR_ASSIGN_OR_RETURN(const cv::Mat normalized,
                           NormalizeFrame(frame, options.normalize, context));
  return MeasureLattice(normalized, options.logstar.lattice, context);
}

absl::StatusOr<DerivedPrior> DeriveFramePrior(const cv::Mat& frame, const AnalyzerOptions& options,
                                              std::optional<double> pixel_size_angstrom,
                                              ExecutionContext* context, const std::string& field) {
  absl::StatusOr<LatticeMeasurement> lattice = MeasureFrameLattice(frame, options, context);
  if (!lattice.ok()) {
    return absl::Status(
        lattice.status().code(),
        absl::StrCat(field, ": auto: cannot measure the lattice: ", lattice.status().message()));
  }
  if (!lattice->found) {
    return Invalid(absl::StrCat(field, ":"),
                   absl::StrCat("auto: the frame shows no lattice: ", lattice->reason,
                                "; send a frame of the crystal or give the prior"));
  }
  absl::StatusOr<DerivedPrior> derived = DerivePrior(*lattice, pixel_size_angstrom);
  if (!derived.ok()) {
    return absl::Status(derived.status().code(),
                        absl::StrCat(field, ": auto: ", derived.status().message()));
  }
  return derived;
}

absl::StatusOr<PhysicsPrior> ResolvePrior(PhysicsPrior prior, double frame_pixel_size_angstrom) {
  if (frame_pixel_size_angstrom > 0.0) prior.pixel_size_angstrom = frame_pixel_size_angstrom;
  if (prior.pixel_size_angstrom == 0.0) {
    return Invalid("settings.prior.pixel_size_angstrom",
                   "is 0 and the frame gives no pixel_size_x_angstrom");
  }
  LOGSTAR_RETURN_IF_ERROR(Prefixed(prior.Validate(), "settings.prior."));
  return prior;
}

absl::StatusOr<PhysicsPrior> SessionConfig::PriorAt(double frame_pixel_size_angstrom) const {
  if (prior.derive) {
    return absl::FailedPreconditionError("settings.prior is auto: it is derived from a frame");
  }
  return ResolvePrior(prior.prior, frame_pixel_size_angstrom);
}

absl::StatusOr<SessionConfig> ParseSessionSettings(const v1::SessionSettings& settings,
                                                   const SettingsCaps& caps) {
  SessionConfig c;
  LOGSTAR_ASSIGN_OR_RETURN(c.prior, ParsePrior(settings.prior()));
  LOGSTAR_ASSIGN_OR_RETURN(c.analyzer, ParseAnalysis(settings.analysis(), caps));
  LOGSTAR_RETURN_IF_ERROR(CheckFrameWork(c.analyzer, caps));
  LOGSTAR_RETURN_IF_ERROR(CheckSublatticeChoice(c.analyzer, c.prior));
  LOGSTAR_RETURN_IF_ERROR(CheckSigmaBounds(c.analyzer, c.prior));
  if (!v1::OverloadPolicy_IsValid(settings.overload_policy())) {
    return Invalid("settings.overload_policy",
                   absl::StrCat("is not a known policy: ", settings.overload_policy()));
  }
  if (settings.overload_policy() != v1::OVERLOAD_POLICY_UNSPECIFIED) {
    c.overload_policy = settings.overload_policy();
  }
  if (settings.queue_capacity() > caps.max_queue_capacity) {
    return Invalid("settings.queue_capacity", absl::StrCat("must be <= ", caps.max_queue_capacity,
                                                           ", got ", settings.queue_capacity()));
  }
  c.queue_capacity = settings.queue_capacity();
  LOGSTAR_ASSIGN_OR_RETURN(c.steering, ParseSteering(settings.steering(), c.analyzer, caps));
  c.settings = settings;
  return c;
}

}  // namespace logstar::server
