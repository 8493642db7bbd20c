#include "clients/cli/remote.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace logstar::cli {
namespace {

struct DTypeInfo {
  v1::DType dtype;
  int depth;
  size_t bytes;
};
constexpr DTypeInfo kDTypes[] = {{v1::DTYPE_UINT8, CV_8U, 1},
                                 {v1::DTYPE_UINT16, CV_16U, 2},
                                 {v1::DTYPE_INT16, CV_16S, 2},
                                 {v1::DTYPE_FLOAT32, CV_32F, 4},
                                 {v1::DTYPE_FLOAT64, CV_64F, 8}};

void RegionFromProto(const v1::PixelRegion& r, PixelRegion* out) {
  *out = {r.col0(), r.row0(), r.cols(), r.rows()};
}

LogParameters ParametersFromProto(const v1::LogParameters& p) {
  return {.min_sigma = p.min_sigma(),
          .max_sigma = p.max_sigma(),
          .num_sigma = p.num_sigma(),
          .threshold = p.threshold(),
          .overlap = p.overlap()};
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

}  // namespace

absl::StatusOr<v1::PixelData> ImageToPixels(const cv::Mat& image) {
  if (image.channels() != 1 || image.dims != 2) {
    return absl::InvalidArgumentError("frames must be single-channel 2-D images");
  }
  for (const DTypeInfo& t : kDTypes) {
    if (t.depth != image.depth()) continue;
    v1::PixelData px;
    px.set_dtype(t.dtype);
    px.set_width(image.cols);
    px.set_height(image.rows);
    const cv::Mat c = image.isContinuous() ? image : image.clone();
    px.set_data(std::string(reinterpret_cast<const char*>(c.data), c.total() * c.elemSize()));
    return px;
  }
  return absl::InvalidArgumentError(
      "pixel type not supported on the wire (uint8, uint16, int16, float32, float64)");
}

absl::StatusOr<cv::Mat> PixelsToImage(const v1::PixelData& px) {
  for (const DTypeInfo& t : kDTypes) {
    if (t.dtype != px.dtype()) continue;
    const uint64_t expected = uint64_t{px.width()} * px.height() * t.bytes;
    if (px.width() == 0 || px.height() == 0 || px.data().size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat("pixels: ", px.width(), " x ", px.height(),
                                                     " needs ", expected, " bytes, the frame has ",
                                                     px.data().size()));
    }
    cv::Mat image(static_cast<int>(px.height()), static_cast<int>(px.width()),
                  CV_MAKETYPE(t.depth, 1));
    std::memcpy(image.data, px.data().data(), expected);
    return image;
  }
  return absl::InvalidArgumentError(absl::StrCat("pixels: unknown dtype ", px.dtype()));
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
  return p;
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
  a->set_drift_tolerance(o.drift_tolerance);
  a->set_num_sigma(o.logstar.num_sigma);
  a->set_column_sigma_angstrom(o.logstar.column_sigma_angstrom);
  a->set_refine_positions(o.logstar.refine_positions);
  a->set_normalize(o.normalize.method == NormalizeOptions::Method::kPercentile
                       ? v1::NORMALIZE_METHOD_PERCENTILE
                       : v1::NORMALIZE_METHOD_MIN_MAX);
  // Nothing dropped: `analyze --server` wants every frame's result.
  s.set_overload_policy(v1::OVERLOAD_POLICY_BLOCK);
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
                       .window = atom.window()});
  }
  for (const v1::WindowResult& w : r.windows()) {
    WindowResult out;
    out.window.index = w.index();
    RegionFromProto(w.tile(), &out.window.tile);
    RegionFromProto(w.core(), &out.window.core);
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
    a.windows.push_back(std::move(out));
  }
  a.rewards = RewardsFromProto(r.rewards());
  a.hits = r.cache_hits();
  a.misses = r.cache_misses();
  a.retunes = r.cache_retunes();
  a.seam_duplicates = r.seam_duplicates();
  a.normalize_ms = r.latency().normalize_ms();
  a.windows_ms = r.latency().log_ms();
  a.total_ms = r.latency().total_ms();
  return a;
}

absl::StatusOr<ClientOptions> ClientOptionsFromFlags(const ClientFlags& f) {
  ClientOptions o;
  if (!f.server || f.server->empty()) {
    return absl::InvalidArgumentError("--server ADDR (logstard's host:port) is required");
  }
  o.address = *f.server;
  o.use_tls = f.tls || f.tls_ca || f.tls_cert || f.tls_key;
  o.tls_root_certs_file = f.tls_ca.value_or("");
  o.tls_client_cert_file = f.tls_cert.value_or("");
  o.tls_client_key_file = f.tls_key.value_or("");
  if (o.tls_client_cert_file.empty() != o.tls_client_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together (mutual TLS)");
  }
  if (f.token && f.token_file) {
    return absl::InvalidArgumentError("give --token or --token-file, not both");
  }
  if (f.token) o.token = *f.token;
  if (f.token_file) {
    std::ifstream in(*f.token_file);
    if (!in || !std::getline(in, o.token)) {
      return absl::NotFoundError(absl::StrCat("--token-file ", *f.token_file, ": cannot read"));
    }
    o.token = std::string(absl::StripAsciiWhitespace(o.token));
  }
  if (f.connect_timeout) {
    if (!absl::SimpleAtod(*f.connect_timeout, &o.connect_timeout_s) || !(o.connect_timeout_s > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--connect-timeout must be a number of seconds > 0, got '", *f.connect_timeout, "'"));
    }
  }
  if (absl::Status s = o.Validate(); !s.ok()) return s;
  return o;
}

}  // namespace logstar::cli
