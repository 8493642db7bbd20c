#include "server/convert.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "proto/wire/compression.h"
#include "server/pixel_check.h"

namespace logstar::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

v1::PixelRegion RegionToProto(const PixelRegion& r) {
  v1::PixelRegion p;
  p.set_col0(r.col0);
  p.set_row0(r.row0);
  p.set_cols(r.cols);
  p.set_rows(r.rows);
  return p;
}

void ParametersToProto(const LogParameters& p, v1::LogParameters* out) {
  out->set_min_sigma(p.min_sigma);
  out->set_max_sigma(p.max_sigma);
  out->set_num_sigma(p.num_sigma);
  out->set_threshold(p.threshold);
  out->set_overlap(p.overlap);
}

LogParameters ParametersFromProto(const v1::LogParameters& p) {
  LogParameters out;
  out.min_sigma = p.min_sigma();
  out.max_sigma = p.max_sigma();
  out.num_sigma = p.num_sigma();
  out.threshold = p.threshold();
  out.overlap = p.overlap();
  return out;
}

void RewardsToProto(const Rewards& r, v1::Rewards* out) {
  out->set_qc(r.qc);
  out->set_er(r.er);
  out->set_num_found(r.num_found);
  out->set_num_expected(r.num_expected);
  out->set_num_erroneous(r.num_erroneous);
  out->set_ds_px(r.ds_px);
}

Rewards RewardsFromProto(const v1::Rewards& r) {
  Rewards out;
  out.qc = r.qc();
  out.er = r.er();
  out.num_found = r.num_found();
  out.num_expected = r.num_expected();
  out.num_erroneous = r.num_erroneous();
  out.ds_px = r.ds_px();
  return out;
}

void FrontToProto(const std::vector<FrontPoint>& front,
                  google::protobuf::RepeatedPtrField<v1::FrontPoint>* out) {
  out->Reserve(static_cast<int>(front.size()));
  for (const FrontPoint& f : front) {
    v1::FrontPoint* p = out->Add();
    ParametersToProto(f.parameters, p->mutable_parameters());
    p->set_qc(f.qc);
    p->set_er(f.er);
    p->set_misses(f.misses);
    p->set_spurious(f.spurious);
  }
}

v1::ObjectivePair ObjectivePairToProto(ObjectivePair pair) {
  return pair == ObjectivePair::kLattice ? v1::OBJECTIVE_PAIR_LATTICE
                                         : v1::OBJECTIVE_PAIR_PUBLISHED;
}

void LatticeRewardsToProto(const LatticeRewards& r, v1::LatticeRewards* out) {
  out->set_misses(r.misses);
  out->set_spurious(r.spurious);
  out->set_num_found(r.num_found);
  out->set_num_sites(r.num_sites);
  out->set_num_missing(r.num_missing);
  out->set_num_spurious(r.num_spurious);
}

LatticeRewards LatticeRewardsFromProto(const v1::LatticeRewards& p) {
  LatticeRewards r;
  r.misses = p.misses();
  r.spurious = p.spurious();
  r.num_found = p.num_found();
  r.num_sites = p.num_sites();
  r.num_missing = p.num_missing();
  r.num_spurious = p.num_spurious();
  return r;
}

v1::AmorphousParameters AmorphousParametersToProto(const AmorphousParameters& p) {
  v1::AmorphousParameters out;
  out.set_patch_size_px(p.patch_size_px);
  out.set_threshold(p.threshold);
  out.set_covariance_type(CovarianceTypeName(p.covariance_type));
  out.set_num_components(p.num_components);
  return out;
}

absl::StatusOr<AmorphousParameters> AmorphousParametersFromProto(const v1::AmorphousParameters& p,
                                                                 const std::string& field) {
  AmorphousParameters out;
  out.patch_size_px = p.patch_size_px();
  out.threshold = p.threshold();
  out.num_components = p.num_components();
  absl::StatusOr<CovarianceType> type = ParseCovarianceType(p.covariance_type());
  if (!type.ok()) return Invalid(field + ".covariance_type", std::string(type.status().message()));
  out.covariance_type = *type;
  return out;
}

v1::AmorphousFrontPoint AmorphousPointToProto(const AmorphousParameters& p, const Objectives2& o) {
  v1::AmorphousFrontPoint out;
  *out.mutable_parameters() = AmorphousParametersToProto(p);
  out.set_compactness_objective(o[0]);
  out.set_perimeter_objective(o[1]);
  return out;
}

v1::AmorphousVerdict VerdictToProto(const AmorphousVerdict& v) {
  v1::AmorphousVerdict out;
  out.set_state(v.uncertain() ? v1::AmorphousVerdict::STATE_UNCERTAIN
                              : v1::AmorphousVerdict::STATE_CONFIDENT);
  using Code = AmorphousVerdict::Code;
  switch (v.code) {
    case Code::kTooFewAtoms:
      out.set_code(v1::AmorphousVerdict::CODE_TOO_FEW_ATOMS);
      break;
    case Code::kEvidenceDisagrees:
      out.set_code(v1::AmorphousVerdict::CODE_EVIDENCE_DISAGREES);
      break;
    case Code::kBelowResolution:
      out.set_code(v1::AmorphousVerdict::CODE_BELOW_RESOLUTION);
      break;
    case Code::kNotRun:
      out.set_code(v1::AmorphousVerdict::CODE_NOT_RUN);
      break;
    case Code::kNone:
    default:
      out.set_code(v1::AmorphousVerdict::CODE_UNSPECIFIED);
      break;
  }
  out.set_reason(v.reason);
  return out;
}

// An unset state (a server without verdicts) reads as confident, as the
// results always did; an unknown code (a newer server) as not_run.
AmorphousVerdict VerdictFromProto(const v1::AmorphousVerdict& v) {
  using Code = AmorphousVerdict::Code;
  AmorphousVerdict out;
  if (v.state() != v1::AmorphousVerdict::STATE_UNCERTAIN) return out;
  out.state = AmorphousVerdict::State::kUncertain;
  switch (v.code()) {
    case v1::AmorphousVerdict::CODE_TOO_FEW_ATOMS:
      out.code = Code::kTooFewAtoms;
      break;
    case v1::AmorphousVerdict::CODE_EVIDENCE_DISAGREES:
      out.code = Code::kEvidenceDisagrees;
      break;
    case v1::AmorphousVerdict::CODE_BELOW_RESOLUTION:
      out.code = Code::kBelowResolution;
      break;
    case v1::AmorphousVerdict::CODE_NOT_RUN:
    default:
      out.code = Code::kNotRun;
      break;
  }
  out.reason = v.reason();
  return out;
}

v1::CacheState CacheStateToProto(CacheState s) {
  switch (s) {
    case CacheState::kHit:
      return v1::CACHE_STATE_HIT;
    case CacheState::kRetuned:
      return v1::CACHE_STATE_RETUNED;
    case CacheState::kMiss:
    default:
      return v1::CACHE_STATE_MISS;
  }
}

v1::RegionOfInterest::Reason ReasonToProto(SteeringRegion::Reason r) {
  switch (r) {
    case SteeringRegion::Reason::kErFlaggedAtoms:
      return v1::RegionOfInterest::REASON_ER_FLAGGED_ATOMS;
    case SteeringRegion::Reason::kRewardDrift:
      return v1::RegionOfInterest::REASON_REWARD_DRIFT;
    case SteeringRegion::Reason::kAmorphousRegion:
      return v1::RegionOfInterest::REASON_AMORPHOUS_REGION;
    case SteeringRegion::Reason::kCountDeviation:
    default:
      return v1::RegionOfInterest::REASON_COUNT_DEVIATION;
  }
}

absl::Status CheckPixelSize(const v1::Frame& f) {
  for (auto [name, v] : {std::pair{"frame.pixel_size_x_angstrom", f.pixel_size_x_angstrom()},
                         std::pair{"frame.pixel_size_y_angstrom", f.pixel_size_y_angstrom()}}) {
    if (!std::isfinite(v) || v < 0.0) return Invalid(name, absl::StrCat("must be >= 0, got ", v));
  }
  const double x = f.pixel_size_x_angstrom(), y = f.pixel_size_y_angstrom();
  if (x == 0.0 && y > 0.0) {
    return Invalid("frame.pixel_size_x_angstrom", "must be given when pixel_size_y_angstrom is");
  }
  // The engine works with square pixels; a small difference is rounding.
  if (x > 0.0 && y > 0.0 && std::abs(x - y) > 0.01 * std::max(x, y)) {
    return Invalid("frame.pixel_size_y_angstrom",
                   absl::StrCat("must be within 1 % of pixel_size_x_angstrom (square pixels), got ",
                                y, " and ", x));
  }
  return absl::OkStatus();
}

// The field pixels come from, as errors name it.
const char* PixelsField(const v1::PixelData& px) {
  switch (px.source_case()) {
    case v1::PixelData::kSharedMemory:
      return "frame.pixels.shared_memory";
    case v1::PixelData::kCompressed:
      return "frame.pixels.compressed";
    default:
      return "frame.pixels.data";
  }
}

// Compressed pixels (proto/wire/compression.h, checked by CheckPixels):
// the whole frame is decompressed into an image of its own, at most
// width × height × bytes (the payload cannot make it larger), and its
// first `rows` rows returned. Bands of ZSTD_DELTA are decompressed on the
// context's threads.
absl::StatusOr<cv::Mat> DecompressRows(const v1::PixelData& px, const wire::Dtype& type, int rows,
                                       ExecutionContext* context) {
  cv::Mat full(static_cast<int>(px.height()), static_cast<int>(px.width()),
               CV_MAKETYPE(type.cv_depth, 1));
  wire::ParallelFor parallel;
  if (context != nullptr) {
    parallel = [context](int n, const std::function<void(int)>& body) {
      context->ParallelFor(n, body);
    };
  }
  LOGSTAR_RETURN_IF_ERROR(wire::DecompressPixels(px, reinterpret_cast<char*>(full.data), parallel));
  return full.rowRange(0, rows);
}

}  // namespace

absl::Status CheckFrameLimits(const v1::Frame& frame, int64_t max_pixels) {
  // Unsigned: two uint32 always fit, where a signed product of wire values
  // near 2^32 overflowed and could come out negative, under any limit.
  const uint64_t pixels = uint64_t{frame.pixels().width()} * frame.pixels().height();
  if (max_pixels < 0 || pixels > static_cast<uint64_t>(max_pixels)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("frame.pixels: ", frame.pixels().width(), " x ", frame.pixels().height(),
                     " = ", pixels, " pixels, more than the server's limit of ", max_pixels));
  }
  return absl::OkStatus();
}

absl::StatusOr<DecodedFrame> DecodeFrame(const v1::Frame& frame, int64_t max_pixels,
                                         const SharedMemoryRegistry* shared_memory,
                                         ExecutionContext* context) {
  LOGSTAR_RETURN_IF_ERROR(CheckFrameLimits(frame, max_pixels));
  const v1::PixelData& px = frame.pixels();
  LOGSTAR_ASSIGN_OR_RETURN(const wire::Dtype type, wire::CheckPixels(px));
  const bool shared = px.source_case() == v1::PixelData::kSharedMemory;
  if (shared && shared_memory == nullptr) return wire::SharedMemoryUnavailable();
  if (frame.valid_rows() > px.height()) {
    return Invalid("frame.valid_rows",
                   absl::StrCat("must be <= height ", px.height(), ", got ", frame.valid_rows()));
  }
  LOGSTAR_RETURN_IF_ERROR(CheckPixelSize(frame));
  DecodedFrame out;
  out.partial = frame.valid_rows() != 0 && frame.valid_rows() < px.height();
  const int rows =
      out.partial ? static_cast<int>(frame.valid_rows()) : static_cast<int>(px.height());
  const int cols = static_cast<int>(px.width());
  out.pixel_size_angstrom = frame.pixel_size_x_angstrom();

  cv::Mat image;
  if (px.source_case() == v1::PixelData::kCompressed) {
    LOGSTAR_ASSIGN_OR_RETURN(image, DecompressRows(px, type, rows, context));
  } else if (shared) {
    // Only the valid rows are read: a copy of a POSIX object's, in place
    // from a sealed memory file (server/shared_memory.h).
    const v1::SharedMemoryRef& ref = px.shared_memory();
    LOGSTAR_ASSIGN_OR_RETURN(
        image, shared_memory->ReadImage(ref.region(), ref.offset(), rows, cols,
                                        CV_MAKETYPE(type.cv_depth, 1), "frame.pixels.shared_memory",
                                        context));
  } else {
    image = wire::ViewPixels(px, type, rows);
  }
  LOGSTAR_ASSIGN_OR_RETURN(out.range, CheckAndMeasurePixels(image, PixelsField(px), context));
  out.image = std::move(image);
  return out;
}

namespace {

void AmorphousToProto(const FrameAmorphous& m, const FrameAnalysis& a, double pixel_size_angstrom,
                      v1::FrameResult* out) {
  v1::AmorphousStage* st = out->mutable_amorphous();
  for (const AmorphousWindowResult& w : m.windows) {
    v1::AmorphousWindow* p = st->add_windows();
    p->set_index(w.window.index);
    *p->mutable_tile() = RegionToProto(w.window.tile);
    *p->mutable_core() = RegionToProto(w.window.core);
    p->set_cache_state(CacheStateToProto(w.state));
    p->set_skipped(w.skipped);
    *p->mutable_verdict() = VerdictToProto(w.verdict);
    if (!w.skipped.empty()) continue;
    *p->mutable_parameters() = AmorphousParametersToProto(w.parameters);
    *p->mutable_objectives() = AmorphousPointToProto(w.parameters, w.objectives);
    *p->mutable_tuned_objectives() = AmorphousPointToProto(w.parameters, w.tuned_objectives);
    p->set_evidence_share(w.evidence.share);
    p->set_evidence_area(w.evidence.area_fraction);
    for (const AmorphousFrontPoint& f : w.front) {
      *p->add_front() = AmorphousPointToProto(f.parameters, f.objectives);
    }
    p->set_chosen(w.chosen);
    p->set_evaluations(w.evaluations);
    p->set_num_classified(w.num_classified);
    p->set_num_amorphous(w.num_amorphous);
    p->set_ms(w.ms);
  }
  st->set_area_fraction(m.regions.area_fraction);
  st->set_cache_hits(m.hits);
  st->set_cache_misses(m.misses);
  st->set_cache_retunes(m.retunes);
  st->set_skipped(m.skipped);
  *st->mutable_verdict() = VerdictToProto(m.verdict);
  // Largest first: the region an operator looks at first.
  std::vector<const Region*> order;
  for (const Region& r : m.regions.regions) order.push_back(&r);
  std::stable_sort(order.begin(), order.end(),
                   [](const Region* x, const Region* y) { return x->area_px2 > y->area_px2; });
  const double frame_px2 = static_cast<double>(a.width) * a.height;
  const double px = pixel_size_angstrom;
  for (const Region* r : order) {
    v1::AmorphousRegion* p = out->add_amorphous_regions();
    p->set_id(r->id);
    p->set_centroid_x(r->centroid.x);
    p->set_centroid_y(r->centroid.y);
    p->set_area_px2(r->area_px2);
    *p->mutable_bounding_box() = RegionToProto(r->bbox);
    p->set_score(frame_px2 > 0.0 ? r->area_px2 / frame_px2 : 0.0);
    p->set_perimeter_px(r->perimeter_px);
    p->set_area_angstrom2(r->area_px2 * px * px);
    p->set_perimeter_angstrom(r->perimeter_px * px);
    p->mutable_contour_x()->Reserve(static_cast<int>(r->contour.size()));
    p->mutable_contour_y()->Reserve(static_cast<int>(r->contour.size()));
    for (const PointXY& c : r->contour) {
      p->add_contour_x(static_cast<float>(c.x));
      p->add_contour_y(static_cast<float>(c.y));
    }
  }
}

void WarningToProto(const PriorWarning& w, v1::PriorWarning* out) {
  out->set_field(w.field);
  out->set_given(w.given);
  out->set_measured(w.measured);
  out->set_message(w.message);
}

// `pixel_size_angstrom` <= 0: the ångström figures stay 0.
void LatticeToProto(const LatticeMeasurement& m, double pixel_size_angstrom,
                    v1::MeasuredLattice* out) {
  out->set_found(m.found);
  out->set_reason(m.reason);
  out->set_correlation(m.correlation);
  out->set_significance(m.significance);
  out->set_ordered_fraction(m.ordered_fraction);
  if (!m.found) return;
  out->set_a_x(m.a.x);
  out->set_a_y(m.a.y);
  out->set_b_x(m.b.x);
  out->set_b_y(m.b.y);
  out->set_a_px(std::hypot(m.a.x, m.a.y));
  out->set_b_px(std::hypot(m.b.x, m.b.y));
  out->set_gamma_deg(m.gamma_deg);
  out->set_cell_area_px2(m.cell_area_px2);
  out->set_columns_per_cell(m.columns_per_cell);
  out->set_nearest_neighbor_px(m.nearest_neighbor_px);
  out->set_column_density_per_px2(m.column_density_per_px2);
  if (pixel_size_angstrom > 0.0) {
    out->set_nearest_neighbor_angstrom(m.NearestNeighborAngstrom(pixel_size_angstrom));
    out->set_column_density_per_nm2(m.ColumnDensityPerNm2(pixel_size_angstrom));
  }
}

// What the wire carries of a measurement (not the cell's columns).
LatticeMeasurement LatticeFromProto(const v1::MeasuredLattice& p) {
  LatticeMeasurement m;
  m.found = p.found();
  m.reason = p.reason();
  m.a = {p.a_x(), p.a_y()};
  m.b = {p.b_x(), p.b_y()};
  m.cell_area_px2 = p.cell_area_px2();
  m.gamma_deg = p.gamma_deg();
  m.columns_per_cell = p.columns_per_cell();
  m.nearest_neighbor_px = p.nearest_neighbor_px();
  m.column_density_per_px2 = p.column_density_per_px2();
  m.correlation = p.correlation();
  m.significance = p.significance();
  m.ordered_fraction = p.ordered_fraction();
  for (const v1::LatticeCellColumn& c : p.columns()) {
    m.columns.push_back({{c.x(), c.y()}, c.relative_height()});
  }
  return m;
}

// A cache's lattice: what a result carries and the cell's columns.
void CachedLatticeToProto(const LatticeMeasurement& m, v1::MeasuredLattice* out) {
  LatticeToProto(m, 0.0, out);
  for (const LatticeColumn& c : m.columns) {
    v1::LatticeCellColumn* p = out->add_columns();
    p->set_x(c.position_px.x);
    p->set_y(c.position_px.y);
    p->set_relative_height(c.relative_height);
  }
}

// Run lengths of alternating 0 and 1 pixels, row-major, starting with 0.
void CrystalMapToProto(const Crystallinity& c, v1::CrystalMap* out) {
  const cv::Mat& mask = c.mask.frame_mask();
  out->set_width(mask.cols);
  out->set_height(mask.rows);
  out->set_fraction(c.fraction);
  out->set_level(c.level);
  out->set_noise(c.noise);
  out->set_threshold(c.threshold);
  uint8_t value = 0;
  uint32_t run = 0;
  for (int y = 0; y < mask.rows; ++y) {
    const uint8_t* row = mask.ptr<uint8_t>(y);
    for (int x = 0; x < mask.cols; ++x) {
      const uint8_t v = row[x] != 0 ? 1 : 0;
      if (v != value) {
        out->add_runs(run);
        value = v;
        run = 0;
      }
      ++run;
    }
  }
  out->add_runs(run);
}

absl::StatusOr<Crystallinity> CrystalMapFromProto(const v1::CrystalMap& p, int width, int height) {
  if (static_cast<int64_t>(p.width()) != width || static_cast<int64_t>(p.height()) != height) {
    return Invalid("cache.crystallinity",
                   absl::StrCat("is ", p.width(), " x ", p.height(), " for a cache of frames ",
                                width, " x ", height));
  }
  cv::Mat mask(height, width, CV_8U);
  const int64_t total = static_cast<int64_t>(width) * height;
  int64_t filled = 0;
  uint8_t value = 0;
  for (const uint32_t run : p.runs()) {
    if (run > total - filled) {
      return Invalid("cache.crystallinity.runs",
                     absl::StrCat("cover more than ", total, " pixels"));
    }
    std::fill_n(mask.ptr<uint8_t>() + filled, run, value);
    filled += run;
    value ^= 1;
  }
  if (filled != total) {
    return Invalid("cache.crystallinity.runs",
                   absl::StrCat("cover ", filled, " of ", total, " pixels"));
  }
  Crystallinity c;
  LOGSTAR_ASSIGN_OR_RETURN(c.mask, CrystalMask::FromMask(mask));
  c.fraction = p.fraction();
  c.level = p.level();
  c.noise = p.noise();
  c.threshold = p.threshold();
  return c;
}

// The prior's warnings, the measured lattice, the crystalline share and
// the sublattice counts of a frame.
void FrameChecksToProto(const FrameAnalysis& a, double pixel_size_angstrom, v1::FrameResult* out) {
  for (const PriorWarning& w : a.warnings) WarningToProto(w, out->add_warnings());
  if (a.lattice) LatticeToProto(*a.lattice, pixel_size_angstrom, out->mutable_lattice());
  out->set_crystalline_fraction(a.crystalline_fraction);
  out->set_crystal_note(a.crystal_note);
  for (const SublatticeCount& c : a.sublattices) {
    v1::SublatticeCount* p = out->add_sublattices();
    p->set_name(c.name);
    p->set_num_found(c.num_found);
    p->set_num_expected(c.num_expected);
    p->set_qc(c.qc);
    p->set_relative_brightness(c.relative_brightness);
  }
  out->set_sublattice_note(a.sublattice_note);
}

void FrameChecksFromProto(const v1::FrameResult& r, FrameAnalysis& a) {
  for (const v1::PriorWarning& w : r.warnings()) {
    a.warnings.push_back(
        {.field = w.field(), .given = w.given(), .measured = w.measured(), .message = w.message()});
  }
  if (r.has_lattice()) a.lattice = LatticeFromProto(r.lattice());
  // A server without crystalline shares analysed the whole frame as crystal.
  a.crystalline_fraction = r.has_crystalline_fraction() ? r.crystalline_fraction() : 1.0;
  a.crystal_note = r.crystal_note();
  for (const v1::SublatticeCount& c : r.sublattices()) {
    a.sublattices.push_back({.name = c.name(),
                             .num_found = c.num_found(),
                             .num_expected = c.num_expected(),
                             .qc = c.qc(),
                             .relative_brightness = c.relative_brightness()});
  }
  a.sublattice_note = r.sublattice_note();
}

v1::RefineMode RefineModeToProto(RefineMode mode) {
  switch (mode) {
    case RefineMode::kNone:
      return v1::REFINE_MODE_NONE;
    case RefineMode::kParaboloid:
      return v1::REFINE_MODE_PARABOLOID;
    case RefineMode::kGaussian:
      return v1::REFINE_MODE_GAUSSIAN;
  }
  return v1::REFINE_MODE_UNSPECIFIED;
}

// An atom's Gaussian fit on the wire (see Atom in result.proto); its x, y
// are the atom's own.
void ColumnFitToProto(const ColumnFit& f, v1::Atom* p) {
  p->set_x_err(f.x_err);
  p->set_y_err(f.y_err);
  p->set_amplitude(f.amplitude);
  p->set_intensity(f.intensity);
  p->set_sigma_x(f.sigma_x);
  p->set_sigma_y(f.sigma_y);
  p->set_rotation(f.rotation);
  p->set_fit_status(ColumnFitStatusName(f.status));
}

// Unset when the atom was not fitted (no fit_status); a status this build
// does not know reads as kNotConverged (a failed fit either way).
std::optional<ColumnFit> ColumnFitFromProto(const v1::Atom& p) {
  if (p.fit_status().empty()) return std::nullopt;
  ColumnFit f;
  f.x = p.x();
  f.y = p.y();
  f.x_err = p.x_err();
  f.y_err = p.y_err();
  f.amplitude = p.amplitude();
  f.intensity = p.intensity();
  f.sigma_x = p.sigma_x();
  f.sigma_y = p.sigma_y();
  f.rotation = p.rotation();
  f.status = ColumnFitStatus::kNotConverged;
  for (ColumnFitStatus s :
       {ColumnFitStatus::kOk, ColumnFitStatus::kTooFewPixels, ColumnFitStatus::kNoPeak,
        ColumnFitStatus::kBadShape, ColumnFitStatus::kWandered, ColumnFitStatus::kNotConverged}) {
    if (p.fit_status() == ColumnFitStatusName(s)) f.status = s;
  }
  return f;
}

}  // namespace

void PriorUsedToProto(const PriorInUse& prior, v1::PriorUsed* out) {
  *out->mutable_prior() = PriorToProto(prior.prior);
  out->set_derived(prior.derived);
  out->set_pixel_units(prior.pixel_units);
}

PriorInUse PriorUsedFromProto(const v1::PriorUsed& prior) {
  return {.prior = PriorFromProto(prior.prior()),
          .derived = prior.derived(),
          .pixel_units = prior.pixel_units()};
}

void FrameAnalysisToProto(const FrameAnalysis& a, const std::vector<SteeringRegion>& regions,
                          double pixel_size_angstrom, v1::FrameResult* out,
                          const PriorInUse* prior) {
  out->set_width(a.width);
  out->set_height(a.height);
  out->mutable_atoms()->Reserve(static_cast<int>(a.atoms.size()));
  for (size_t i = 0; i < a.atoms.size(); ++i) {
    const Atom& atom = a.atoms[i];
    v1::Atom* p = out->add_atoms();
    p->set_x(atom.x);
    p->set_y(atom.y);
    p->set_sigma(atom.sigma);
    p->set_response(atom.response);
    p->set_window(atom.window);
    p->set_sublattice(atom.sublattice + 1);  // 1-based on the wire: 0 is none
    if (atom.fit.has_value()) ColumnFitToProto(*atom.fit, p);
    if (a.amorphous.has_value() && i < a.amorphous->atoms.size()) {
      p->set_amorphous(a.amorphous->atoms[i].amorphous);
      p->set_amorphous_posterior(a.amorphous->atoms[i].posterior);
    }
  }
  if (a.amorphous.has_value()) AmorphousToProto(*a.amorphous, a, pixel_size_angstrom, out);
  out->mutable_windows()->Reserve(static_cast<int>(a.windows.size()));
  for (const WindowResult& w : a.windows) {
    v1::WindowResult* p = out->add_windows();
    p->set_index(w.window.index);
    *p->mutable_tile() = RegionToProto(w.window.tile);
    *p->mutable_core() = RegionToProto(w.window.core);
    p->set_cache_state(CacheStateToProto(w.state));
    ParametersToProto(w.parameters, p->mutable_parameters());
    RewardsToProto(w.rewards, p->mutable_rewards());
    RewardsToProto(w.tuned_rewards, p->mutable_tuned_rewards());
    FrontToProto(w.front, p->mutable_front());
    p->set_chosen(w.chosen);
    p->set_evaluations(w.evaluations);
    p->set_num_atoms(w.num_atoms);
    p->set_ms(w.ms);
    p->set_objectives(ObjectivePairToProto(w.objectives));
    p->set_lattice_note(w.lattice_note);
    if (w.lattice_rewards) LatticeRewardsToProto(*w.lattice_rewards, p->mutable_lattice_rewards());
    p->set_crystalline_fraction(w.crystalline_fraction);
    p->set_crystal_note(w.crystal_note);
    p->set_adopted(w.adopted);
  }
  RewardsToProto(a.rewards, out->mutable_rewards());
  if (a.lattice_rewards) LatticeRewardsToProto(*a.lattice_rewards, out->mutable_lattice_rewards());
  if (prior != nullptr) PriorUsedToProto(*prior, out->mutable_prior_used());
  const bool angstrom_known = prior != nullptr ? !prior->pixel_units : pixel_size_angstrom > 0.0;
  FrameChecksToProto(
      a,
      angstrom_known ? (prior != nullptr ? prior->prior.pixel_size_angstrom : pixel_size_angstrom)
                     : 0.0,
      out);
  out->set_cache_hits(a.hits);
  out->set_cache_misses(a.misses);
  out->set_cache_retunes(a.retunes);
  out->set_seam_duplicates(a.seam_duplicates);
  for (const SteeringRegion& r : regions) {
    v1::RegionOfInterest* p = out->add_regions_of_interest();
    p->set_reason(ReasonToProto(r.reason));
    p->set_x(r.x);
    p->set_y(r.y);
    *p->mutable_box() = RegionToProto(r.box);
    p->set_score(r.score);
    p->set_window(r.window);
    p->set_detail(r.detail);
  }
  out->mutable_latency()->set_normalize_ms(a.normalize_ms);
  out->mutable_latency()->set_log_ms(a.windows_ms);
  out->mutable_latency()->set_gmm_ms(a.amorphous_ms);
}

void CacheToProto(const LogStarAnalyzer::CacheSnapshot& cache, v1::CacheContents* out) {
  out->set_width(cache.width);
  out->set_height(cache.height);
  for (size_t i = 0; i < cache.windows.size(); ++i) {
    v1::CachedWindow* p = out->add_windows();
    p->set_index(static_cast<int>(i));
    if (i < cache.layout.size()) {
      *p->mutable_tile() = RegionToProto(cache.layout[i].tile);
      *p->mutable_core() = RegionToProto(cache.layout[i].core);
    }
    const std::optional<CachedWindow>& c = cache.windows[i];
    p->set_tuned(c.has_value());
    if (!c.has_value()) continue;
    ParametersToProto(c->parameters, p->mutable_parameters());
    RewardsToProto(c->tuned_rewards, p->mutable_tuned_rewards());
    FrontToProto(c->front, p->mutable_front());
    p->set_chosen(c->chosen);
    p->set_objectives(ObjectivePairToProto(c->objectives));
    p->set_lattice_note(c->lattice_note);
    if (c->tuned_lattice_rewards) {
      LatticeRewardsToProto(*c->tuned_lattice_rewards, p->mutable_tuned_lattice_rewards());
    }
  }
  if (cache.lattice) CachedLatticeToProto(*cache.lattice, out->mutable_lattice());
  if (cache.crystallinity && !cache.crystallinity->mask.empty()) {
    CrystalMapToProto(*cache.crystallinity, out->mutable_crystallinity());
  }
  for (size_t i = 0; i < cache.amorphous.size(); ++i) {
    v1::CachedAmorphousWindow* p = out->add_amorphous_windows();
    p->set_index(static_cast<int>(i));
    if (i < cache.amorphous_layout.size()) {
      *p->mutable_tile() = RegionToProto(cache.amorphous_layout[i].tile);
      *p->mutable_core() = RegionToProto(cache.amorphous_layout[i].core);
    }
    const std::optional<CachedAmorphousWindow>& c = cache.amorphous[i];
    p->set_tuned(c.has_value());
    if (!c.has_value()) continue;
    *p->mutable_parameters() = AmorphousParametersToProto(c->parameters);
    *p->mutable_tuned_objectives() = AmorphousPointToProto(c->parameters, c->tuned_objectives);
    for (const AmorphousFrontPoint& f : c->front) {
      *p->add_front() = AmorphousPointToProto(f.parameters, f.objectives);
    }
    p->set_chosen(c->chosen);
    p->set_tuned_area_fraction(c->tuned_area_fraction);
    p->set_tuned_evidence_area(c->tuned_evidence_area);
    p->set_tuned_evidence_share(c->tuned_evidence_share);
    p->set_tuned_noise_floor(c->tuned_noise_floor);
    p->set_tuned_evidence_bic_gain(c->tuned_evidence_bic_gain);
    p->set_tuned_evidence_separation(c->tuned_evidence_separation);
    p->set_tuned_evidence_high_weight(c->tuned_evidence_high_weight);
    for (const PointXY& t : c->translations_px) {
      p->add_translation_x(t.x);
      p->add_translation_y(t.y);
    }
    const PatchProjection& b = c->projection;
    p->mutable_pca_mean()->Add(b.mean.data(), b.mean.data() + b.mean.size());
    for (Eigen::Index r = 0; r < b.components.rows(); ++r) {
      for (Eigen::Index k = 0; k < b.components.cols(); ++k)
        p->add_pca_components(b.components(r, k));
    }
  }
  out->set_amorphous_next_region_id(cache.amorphous_tracks.next_id);
  for (const RegionTrack& t : cache.amorphous_tracks.tracks) {
    v1::AmorphousRegionTrack* p = out->add_amorphous_tracks();
    p->set_id(t.id);
    p->set_missed(t.missed);
    p->set_area_px2(t.area_px2);
    for (const PointXY& c : t.contour) {
      p->add_contour_x(static_cast<float>(c.x));
      p->add_contour_y(static_cast<float>(c.y));
    }
  }
}

absl::StatusOr<LogStarAnalyzer::CacheSnapshot> CacheFromProto(const v1::CacheContents& cache) {
  LogStarAnalyzer::CacheSnapshot s;
  s.width = static_cast<int>(cache.width());
  s.height = static_cast<int>(cache.height());
  if (s.width < 0 || s.height < 0 || (s.width == 0) != (s.height == 0)) {
    return Invalid("cache",
                   absl::StrCat("has a bad frame size ", cache.width(), " x ", cache.height()));
  }
  for (int i = 0; i < cache.windows_size(); ++i) {
    const v1::CachedWindow& w = cache.windows(i);
    if (w.index() != i) {
      return Invalid("cache.windows", absl::StrCat("entry ", i, " has index ", w.index()));
    }
    if (!w.tuned()) {
      s.windows.emplace_back();
      continue;
    }
    CachedWindow c;
    c.parameters = ParametersFromProto(w.parameters());
    c.tuned_rewards = RewardsFromProto(w.tuned_rewards());
    for (const v1::FrontPoint& f : w.front()) {
      c.front.push_back(
          {ParametersFromProto(f.parameters()), f.qc(), f.er(), f.misses(), f.spurious()});
    }
    c.chosen = w.chosen();
    c.objectives = w.objectives() == v1::OBJECTIVE_PAIR_LATTICE ? ObjectivePair::kLattice
                                                                : ObjectivePair::kPublished;
    c.lattice_note = w.lattice_note();
    if (w.has_tuned_lattice_rewards()) {
      c.tuned_lattice_rewards = LatticeRewardsFromProto(w.tuned_lattice_rewards());
    }
    s.windows.push_back(std::move(c));
  }
  if (cache.has_lattice()) s.lattice = LatticeFromProto(cache.lattice());
  if (cache.has_crystallinity()) {
    LOGSTAR_ASSIGN_OR_RETURN(s.crystallinity,
                             CrystalMapFromProto(cache.crystallinity(), s.width, s.height));
  }
  for (int i = 0; i < cache.amorphous_windows_size(); ++i) {
    const v1::CachedAmorphousWindow& w = cache.amorphous_windows(i);
    const std::string f = absl::StrCat("cache.amorphous_windows[", i, "]");
    if (w.index() != i) return Invalid(f, absl::StrCat("has index ", w.index()));
    if (!w.tuned()) {
      s.amorphous.emplace_back();
      continue;
    }
    CachedAmorphousWindow c;
    LOGSTAR_ASSIGN_OR_RETURN(c.parameters,
                             AmorphousParametersFromProto(w.parameters(), f + ".parameters"));
    c.tuned_objectives = {w.tuned_objectives().compactness_objective(),
                          w.tuned_objectives().perimeter_objective()};
    for (int k = 0; k < w.front_size(); ++k) {
      const v1::AmorphousFrontPoint& point = w.front(k);
      LOGSTAR_ASSIGN_OR_RETURN(
          AmorphousParameters params,
          AmorphousParametersFromProto(point.parameters(), absl::StrCat(f, ".front[", k, "]")));
      c.front.push_back({params, {point.compactness_objective(), point.perimeter_objective()}});
    }
    c.chosen = w.chosen();
    c.tuned_area_fraction = w.tuned_area_fraction();
    c.tuned_evidence_area = w.tuned_evidence_area();
    c.tuned_evidence_share = w.tuned_evidence_share();
    c.tuned_noise_floor = w.tuned_noise_floor();
    c.tuned_evidence_bic_gain = w.tuned_evidence_bic_gain();
    c.tuned_evidence_separation = w.tuned_evidence_separation();
    c.tuned_evidence_high_weight = w.tuned_evidence_high_weight();
    if (w.translation_x_size() != w.translation_y_size()) {
      return Invalid(f + ".translation_x", "and translation_y differ in length");
    }
    for (int k = 0; k < w.translation_x_size(); ++k) {
      c.translations_px.push_back({w.translation_x(k), w.translation_y(k)});
    }
    const int d = c.parameters.patch_size_px * c.parameters.patch_size_px;
    if (d <= 0 || w.pca_mean_size() != d || w.pca_components_size() % d != 0 ||
        w.pca_components_size() == 0) {
      return Invalid(f + ".pca_mean",
                     absl::StrCat("and pca_components must hold ", d,
                                  " and a multiple of that many values for patches of ",
                                  c.parameters.patch_size_px, " px"));
    }
    c.projection.patch_size_px = c.parameters.patch_size_px;
    c.projection.mean = Eigen::Map<const Eigen::RowVectorXd>(w.pca_mean().data(), d);
    c.projection.components =
        Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
            w.pca_components().data(), w.pca_components_size() / d, d);
    s.amorphous.push_back(std::move(c));
  }
  // Caches saved before region tracking have neither: ids start at 1.
  s.amorphous_tracks.next_id = std::max(1, cache.amorphous_next_region_id());
  for (int i = 0; i < cache.amorphous_tracks_size(); ++i) {
    const v1::AmorphousRegionTrack& t = cache.amorphous_tracks(i);
    if (t.contour_x_size() != t.contour_y_size()) {
      return Invalid(absl::StrCat("cache.amorphous_tracks[", i, "].contour_x"),
                     "and contour_y differ in length");
    }
    RegionTrack track;
    track.id = t.id();
    track.missed = t.missed();
    track.area_px2 = t.area_px2();
    for (int k = 0; k < t.contour_x_size(); ++k) {
      track.contour.push_back({t.contour_x(k), t.contour_y(k)});
    }
    s.amorphous_tracks.tracks.push_back(std::move(track));
  }
  return s;
}

google::protobuf::Timestamp ToProtoTime(absl::Time t) {
  google::protobuf::Timestamp p;
  const int64_t ns = absl::ToUnixNanos(t);
  int64_t s = ns / 1000000000, n = ns % 1000000000;
  if (n < 0) n += 1000000000, --s;
  p.set_seconds(s);
  p.set_nanos(static_cast<int32_t>(n));
  return p;
}

absl::Time FromProtoTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

v1::PhysicsPrior PriorToProto(const PhysicsPrior& prior) {
  v1::PhysicsPrior p;
  p.set_pixel_size_angstrom(prior.pixel_size_angstrom);
  if (prior.column_density_per_nm2) p.set_column_density_per_nm2(*prior.column_density_per_nm2);
  if (prior.lattice) {
    p.mutable_lattice()->set_a_angstrom(prior.lattice->a_angstrom);
    p.mutable_lattice()->set_b_angstrom(prior.lattice->b_angstrom);
    p.mutable_lattice()->set_gamma_deg(prior.lattice->gamma_deg);
    p.mutable_lattice()->set_columns_per_cell(prior.lattice->columns_per_cell);
  }
  p.set_nearest_neighbor_angstrom(prior.nearest_neighbor_angstrom);
  for (const SublatticePrior& s : prior.sublattices) {
    v1::SublatticePrior* q = p.add_sublattices();
    q->set_name(s.name);
    q->set_column_density_per_nm2(s.column_density_per_nm2);
    q->set_relative_brightness(s.relative_brightness);
  }
  return p;
}

v1::PhysicsPrior PriorToProto(const PriorSetting& prior) {
  if (!prior.derive) return PriorToProto(prior.prior);
  v1::PhysicsPrior p;
  p.set_auto_(true);
  p.set_pixel_size_angstrom(prior.prior.pixel_size_angstrom);
  return p;
}

PhysicsPrior PriorFromProto(const v1::PhysicsPrior& p) {
  PhysicsPrior prior;
  prior.pixel_size_angstrom = p.pixel_size_angstrom();
  if (p.has_column_density_per_nm2()) prior.column_density_per_nm2 = p.column_density_per_nm2();
  if (p.has_lattice()) {
    ProjectedLattice l;
    l.a_angstrom = p.lattice().a_angstrom();
    l.b_angstrom = p.lattice().b_angstrom();
    l.gamma_deg = p.lattice().gamma_deg() == 0.0 ? 90.0 : p.lattice().gamma_deg();
    l.columns_per_cell = p.lattice().columns_per_cell();
    prior.lattice = l;
  }
  prior.nearest_neighbor_angstrom = p.nearest_neighbor_angstrom();
  for (const v1::SublatticePrior& s : p.sublattices()) {
    prior.sublattices.push_back({.name = s.name(),
                                 .column_density_per_nm2 = s.column_density_per_nm2(),
                                 .relative_brightness = s.relative_brightness()});
  }
  return prior;
}

v1::SessionSettings SettingsFromOptions(const AnalyzerOptions& o, const PhysicsPrior& prior) {
  v1::SessionSettings s;
  *s.mutable_prior() = PriorToProto(prior);
  v1::AnalysisSettings* a = s.mutable_analysis();
  a->set_window(o.window);
  a->set_stride(o.stride);
  a->set_evaluations(o.logstar.optimizer.num_evaluations);
  a->set_seed(o.logstar.optimizer.seed);
  switch (o.logstar.choice) {
    case FrontChoiceRule::kEuclidean:
      a->set_choice(v1::FRONT_CHOICE_RULE_EUCLIDEAN);
      break;
    case FrontChoiceRule::kChebyshev:
      a->set_choice(v1::FRONT_CHOICE_RULE_CHEBYSHEV);
      break;
    case FrontChoiceRule::kWeights:
      a->set_choice(v1::FRONT_CHOICE_RULE_WEIGHTS);
      break;
  }
  a->set_weight_qc(o.logstar.choice_weights[0]);
  a->set_weight_er(o.logstar.choice_weights[1]);
  a->set_objectives(o.logstar.objectives == ObjectivePair::kLattice ? v1::OBJECTIVE_PAIR_LATTICE
                                                                    : v1::OBJECTIVE_PAIR_PUBLISHED);
  a->set_drift_tolerance(o.drift_tolerance);
  a->set_sublattice(o.sublattice);
  a->mutable_prior_tolerances()->set_spacing(o.prior_tolerances.spacing);
  a->mutable_prior_tolerances()->set_density(o.prior_tolerances.density);
  a->set_num_sigma(o.logstar.num_sigma);
  a->set_column_sigma_angstrom(o.logstar.column_sigma_angstrom);
  a->set_refine_positions(o.logstar.refine_mode != RefineMode::kNone);
  a->set_refine(RefineModeToProto(o.logstar.refine_mode));
  a->set_normalize(o.normalize.method == NormalizeOptions::Method::kPercentile
                       ? v1::NORMALIZE_METHOD_PERCENTILE
                       : v1::NORMALIZE_METHOD_MIN_MAX);
  if (o.amorphous.enabled) {
    v1::AmorphousSettings* m = a->mutable_amorphous();
    m->set_enabled(true);
    m->set_window(o.amorphous.window);
    m->set_stride(o.amorphous.stride);
    m->set_evaluations(o.amorphous.options.optimizer.num_evaluations);
    m->set_drift_tolerance(o.amorphous.drift_tolerance);
    m->set_floor_drift_ratio(o.amorphous.floor_drift_ratio);
    m->set_pca_components(o.amorphous.options.pca_components);
  }
  return s;
}

v1::SessionSettings SettingsFromOptions(const AnalyzerOptions& options, const PriorSetting& prior) {
  v1::SessionSettings s = SettingsFromOptions(options, prior.prior);
  *s.mutable_prior() = PriorToProto(prior);
  return s;
}

FrameAnalysis AnalysisFromResult(const v1::FrameResult& r) {
  FrameAnalysis a;
  a.width = static_cast<int>(r.width());
  a.height = static_cast<int>(r.height());
  for (const v1::Atom& atom : r.atoms()) {
    a.atoms.push_back({.x = atom.x(),
                       .y = atom.y(),
                       .sigma = atom.sigma(),
                       .response = atom.response(),
                       .window = atom.window(),
                       .sublattice = atom.sublattice() - 1,
                       .fit = ColumnFitFromProto(atom)});
  }
  for (const v1::WindowResult& w : r.windows()) {
    WindowResult out;
    out.window.index = w.index();
    out.window.tile = {w.tile().col0(), w.tile().row0(), w.tile().cols(), w.tile().rows()};
    out.window.core = {w.core().col0(), w.core().row0(), w.core().cols(), w.core().rows()};
    out.state = w.cache_state() == v1::CACHE_STATE_HIT       ? CacheState::kHit
                : w.cache_state() == v1::CACHE_STATE_RETUNED ? CacheState::kRetuned
                                                             : CacheState::kMiss;
    out.parameters = ParametersFromProto(w.parameters());
    out.rewards = RewardsFromProto(w.rewards());
    out.tuned_rewards = RewardsFromProto(w.tuned_rewards());
    for (const v1::FrontPoint& p : w.front()) {
      out.front.push_back(
          {.parameters = ParametersFromProto(p.parameters()), .qc = p.qc(), .er = p.er()});
    }
    out.chosen = w.chosen();
    out.evaluations = w.evaluations();
    out.num_atoms = w.num_atoms();
    out.ms = w.ms();
    out.crystalline_fraction = w.has_crystalline_fraction() ? w.crystalline_fraction() : 1.0;
    out.crystal_note = w.crystal_note();
    out.adopted = w.adopted();
    a.windows.push_back(std::move(out));
  }
  a.rewards = RewardsFromProto(r.rewards());
  a.hits = r.cache_hits();
  a.misses = r.cache_misses();
  a.retunes = r.cache_retunes();
  a.seam_duplicates = r.seam_duplicates();
  FrameChecksFromProto(r, a);
  if (r.has_amorphous()) {
    // What the overlays and summaries need: the atoms' classes and the
    // regions (no mask: the wire carries outlines).
    FrameAmorphous m;
    for (const v1::Atom& atom : r.atoms()) {
      const bool classified = !std::isnan(atom.amorphous_posterior());
      m.atoms.push_back({classified, atom.amorphous(), atom.amorphous_posterior()});
    }
    for (const v1::AmorphousRegion& g : r.amorphous_regions()) {
      Region out;
      out.id = g.id();
      out.area_px2 = g.area_px2();
      out.perimeter_px = g.perimeter_px();
      out.centroid = {g.centroid_x(), g.centroid_y()};
      out.bbox = {g.bounding_box().col0(), g.bounding_box().row0(), g.bounding_box().cols(),
                  g.bounding_box().rows()};
      for (int k = 0; k < std::min(g.contour_x_size(), g.contour_y_size()); ++k) {
        out.contour.push_back({g.contour_x(k), g.contour_y(k)});
      }
      m.regions.regions.push_back(std::move(out));
    }
    m.regions.area_fraction = r.amorphous().area_fraction();
    m.hits = r.amorphous().cache_hits();
    m.misses = r.amorphous().cache_misses();
    m.retunes = r.amorphous().cache_retunes();
    m.skipped = r.amorphous().skipped();
    m.verdict = VerdictFromProto(r.amorphous().verdict());
    m.ms = r.latency().gmm_ms();
    a.amorphous = std::move(m);
  }
  a.normalize_ms = r.latency().normalize_ms();
  a.windows_ms = r.latency().log_ms();
  a.amorphous_ms = r.latency().gmm_ms();
  a.total_ms = r.latency().total_ms();
  return a;
}

}  // namespace logstar::server
