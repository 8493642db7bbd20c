#include "server/session.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/base/status_macros.h"
#include "server/files.h"
#include "server/log.h"
#include "server/random_id.h"

namespace logstar::server {
namespace {

constexpr uint32_t kStateVersion = 1;

using google::protobuf::util::MessageDifferencer;

// Settings whose change makes the cached parameters meaningless: what a
// window is, what its pixels look like after normalisation, and what the
// search bounds are.
bool CacheSurvives(const v1::SessionSettings& a, const v1::SessionSettings& b) {
  const v1::AnalysisSettings &x = a.analysis(), &y = b.analysis();
  return MessageDifferencer::Equals(a.prior(), b.prior()) && x.window() == y.window() &&
         x.has_window() == y.has_window() && x.stride() == y.stride() &&
         x.has_stride() == y.has_stride() && x.normalize() == y.normalize() &&
         x.column_sigma_angstrom() == y.column_sigma_angstrom() &&
         x.has_column_sigma_angstrom() == y.has_column_sigma_angstrom() &&
         x.sublattice() == y.sublattice();
}

// Whether the amorphous stage keeps its windows (and so its cache) when the
// settings change from `a` to `b`.
bool AmorphousLayoutSurvives(const v1::SessionSettings& a, const v1::SessionSettings& b) {
  const v1::AmorphousSettings &x = a.analysis().amorphous(), &y = b.analysis().amorphous();
  return x.window() == y.window() && x.has_window() == y.has_window() && x.stride() == y.stride() &&
         x.has_stride() == y.has_stride();
}

// A state file as a session. Read without blocking (a FIFO or anything but
// a regular file is refused, server/files.h); its name must be its
// session's id, the file Remove() deletes, or a deleted session would come
// back at the next start.
absl::StatusOr<std::unique_ptr<Session>> ReadStateFile(const std::string& path,
                                                       const SettingsCaps& caps) {
  LOGSTAR_ASSIGN_OR_RETURN(const std::string bytes, ReadRegularFile(path, kMaxSessionStateBytes));
  v1::SessionState state;
  if (!state.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("unreadable: not a SessionState message");
  }
  LOGSTAR_ASSIGN_OR_RETURN(std::unique_ptr<Session> session,
                           Session::FromState(state, caps, absl::Now()));
  const std::string name = std::filesystem::path(path).filename().string();
  if (name != StateFileName(session->id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "holds session ", session->id(), ", so it must be named ", StateFileName(session->id())));
  }
  return session;
}

}  // namespace

Session::Session(std::string id, SessionConfig config, absl::Time now)
    : id_(std::move(id)), created_(now), config_(std::move(config)), last_active_(now) {}

absl::Status Session::DeriveIfAuto(const DecodedFrame& frame, ExecutionContext* context) {
  AnalyzerOptions options;
  std::optional<double> pixel;
  {
    MutexLock lock(&mu_);
    if (!config_.prior.derive) return absl::OkStatus();
    // The frame's pixel size, else the settings', else the one the stream used.
    const double used =
        derived_.has_value() ? derived_->pixel_size.value_or(0.0) : pending_pixel_size_;
    pixel = AutoPixelSize(config_.prior, frame.pixel_size_angstrom, used);
    if (derived_.has_value() && derived_->pixel_size == pixel) return absl::OkStatus();
    options = config_.analyzer;
  }
  // Outside the lock: the lattice is measured on the whole frame.
  LOGSTAR_ASSIGN_OR_RETURN(DerivedPrior derived,
                           DeriveFramePrior(frame.image, options, pixel, context));
  MutexLock lock(&mu_);
  // Settings changed meanwhile (RunFor then says so), or another frame of
  // the session derived it first.
  if (!config_.prior.derive || (derived_.has_value() && derived_->pixel_size == pixel)) {
    return absl::OkStatus();
  }
  Log(LogLevel::kInfo, "prior_derived",
      {{"session", id_},
       {"pixel_size_angstrom", pixel.value_or(0.0)},
       {"nearest_neighbor", derived.prior.nearest_neighbor_angstrom},
       {"column_density", derived.prior.ColumnDensityPerNm2()}});
  derived_ = Derived{std::move(derived), pixel};
  // Whatever was tuned (or restored) was tuned for another prior.
  full_.reset();
  partial_.reset();
  prior_.reset();
  pending_.reset();
  return absl::OkStatus();
}

absl::StatusOr<AnalyzerOptions> Session::OptionsLocked(const SessionConfig& config) const {
  if (!config.prior.derive || !derived_.has_value()) return config.analyzer;
  return OptionsForDerived(config.analyzer, derived_->derived,
                           config.settings.analysis().has_column_sigma_angstrom());
}

std::optional<PriorInUse> Session::UsedLocked() const {
  if (!prior_.has_value()) return std::nullopt;
  const bool derived = config_.prior.derive && derived_.has_value();
  return PriorInUse{.prior = *prior_,
                    .derived = derived,
                    .pixel_units = derived && !derived_->derived.pixel_size_known};
}

absl::StatusOr<Session::Run> Session::RunFor(bool partial, double frame_pixel_size) {
  MutexLock lock(&mu_);
  PhysicsPrior prior;
  double reported_pixel = 0.0;  // for the result's ångström figures
  if (config_.prior.derive) {
    if (!derived_.has_value()) {
      return absl::UnavailableError(
          "settings.prior: auto: the settings changed while the frame was read; send it again");
    }
    prior = derived_->derived.prior;
    reported_pixel = derived_->pixel_size.value_or(0.0);
  } else {
    // The pixel size: the frame's, else the settings', else the last one used.
    double pixel = frame_pixel_size;
    if (pixel <= 0.0) pixel = config_.prior.prior.pixel_size_angstrom;
    if (pixel <= 0.0 && prior_.has_value()) pixel = prior_->pixel_size_angstrom;
    if (pixel <= 0.0) pixel = pending_pixel_size_;
    LOGSTAR_ASSIGN_OR_RETURN(prior, config_.PriorAt(pixel));
    reported_pixel =
        frame_pixel_size > 0.0 ? frame_pixel_size : config_.prior.prior.pixel_size_angstrom;
  }
  if (prior_.has_value() && prior_->pixel_size_angstrom != prior.pixel_size_angstrom) {
    // A new magnification: nothing tuned before applies.
    Log(LogLevel::kInfo, "pixel_size_changed",
        {{"session", id_},
         {"from", prior_->pixel_size_angstrom},
         {"to", prior.pixel_size_angstrom}});
    full_.reset();
    partial_.reset();
  }
  prior_ = prior;
  std::shared_ptr<LogStarAnalyzer>& slot = partial ? partial_ : full_;
  if (slot == nullptr) {
    LOGSTAR_ASSIGN_OR_RETURN(const AnalyzerOptions options, OptionsLocked(config_));
    LOGSTAR_ASSIGN_OR_RETURN(std::unique_ptr<LogStarAnalyzer> a,
                             LogStarAnalyzer::Create(options, prior));
    // A cache saved before a restart is valid only at the pixel size it was
    // tuned at (an auto prior's: with the prior it was tuned with, which
    // DeriveIfAuto keeps only then).
    if (pending_.has_value() &&
        (config_.prior.derive || pending_pixel_size_ == prior.pixel_size_angstrom)) {
      const absl::Status s = a->RestoreCache(partial ? pending_->partial : pending_->full);
      if (!s.ok()) {
        Log(LogLevel::kWarning, "cache_not_restored", {{"session", id_}, {"why", s.ToString()}});
      }
    }
    slot = std::move(a);
  }
  return Run{.analyzer = slot,
             .steering = config_.steering,
             .pixel_size_angstrom = reported_pixel,
             .prior = *UsedLocked()};
}

absl::StatusOr<Session::Analysis> Session::Analyze(const DecodedFrame& frame,
                                                   ExecutionContext* context,
                                                   const std::atomic<bool>* cancel) {
  LOGSTAR_RETURN_IF_ERROR(DeriveIfAuto(frame, context));
  LOGSTAR_ASSIGN_OR_RETURN(const Run run, RunFor(frame.partial, frame.pixel_size_angstrom));
  // Outside the lock: settings and counters stay available meanwhile.
  LOGSTAR_ASSIGN_OR_RETURN(FrameAnalysis result,
                           frame.range.has_value()
                               ? run.analyzer->Analyze(frame.image, *frame.range, context, cancel)
                               : run.analyzer->Analyze(frame.image, context, cancel));
  Analysis out;
  out.pixel_size_angstrom = run.pixel_size_angstrom;
  out.prior = run.prior;
  out.regions = FindRegionsOfInterest(result, run.steering);
  out.frame = std::move(result);
  return out;
}

bool Session::WillTune(const DecodedFrame& frame) const {
  std::shared_ptr<LogStarAnalyzer> analyzer;
  {
    MutexLock lock(&mu_);
    analyzer = frame.partial ? partial_ : full_;
  }
  return analyzer == nullptr || !analyzer->FullyCached(frame.image.cols, frame.image.rows);
}

absl::Status Session::UpdateSettings(SessionConfig config) {
  MutexLock lock(&mu_);
  const bool keep = CacheSurvives(config_.settings, config.settings);
  if (!keep) pending_.reset();
  for (std::shared_ptr<LogStarAnalyzer>* slot : {&full_, &partial_}) {
    if (*slot == nullptr) continue;
    if (!keep) {
      slot->reset();  // made again, empty, at the next frame
      continue;
    }
    // Same windows and prior: carry the cache over to the new options (the
    // amorphous stage's only if its windows stay too).
    LOGSTAR_ASSIGN_OR_RETURN(const AnalyzerOptions options, OptionsLocked(config));
    LOGSTAR_ASSIGN_OR_RETURN(std::unique_ptr<LogStarAnalyzer> a,
                             LogStarAnalyzer::Create(options, *prior_));
    LogStarAnalyzer::CacheSnapshot cache = (*slot)->Snapshot();
    if (!AmorphousLayoutSurvives(config_.settings, config.settings)) {
      cache.amorphous.clear();
      cache.amorphous_layout.clear();
    }
    LOGSTAR_RETURN_IF_ERROR(a->RestoreCache(cache));
    *slot = std::move(a);
  }
  if (!keep) prior_.reset();
  // A derived prior lasts while the settings' prior says the same.
  if (!MessageDifferencer::Equals(config_.settings.prior(), config.settings.prior())) {
    derived_.reset();
  }
  config_ = std::move(config);
  return absl::OkStatus();
}

absl::Status Session::ChooseOnFront(int window, int front_index) {
  std::shared_ptr<LogStarAnalyzer> analyzer;
  {
    MutexLock lock(&mu_);
    analyzer = full_;
  }
  if (analyzer == nullptr) {
    return absl::FailedPreconditionError("the session has no cache yet: send a frame first");
  }
  LogStarAnalyzer::CacheSnapshot cache = analyzer->Snapshot();
  const int n = static_cast<int>(cache.windows.size());
  if (window < -1 || window >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("choices.window must be -1 or in [0, ", n, "), got ", window));
  }
  for (int w = 0; w < n; ++w) {
    if (window != -1 && w != window) continue;
    std::optional<CachedWindow>& c = cache.windows[w];
    if (!c.has_value()) {
      if (window == -1) continue;
      return absl::FailedPreconditionError(absl::StrCat("window ", w, " is not tuned yet"));
    }
    if (front_index < 0 || front_index >= static_cast<int>(c->front.size())) {
      return absl::InvalidArgumentError(absl::StrCat("choices.front_index must be in [0, ",
                                                     c->front.size(), ") for window ", w, ", got ",
                                                     front_index));
    }
    const FrontPoint& p = c->front[front_index];
    c->chosen = front_index;
    c->parameters = p.parameters;
    // Drift is measured from the chosen point's rewards from now on.
    c->tuned_rewards.qc = p.qc;
    c->tuned_rewards.er = p.er;
    // With the lattice pair drift is also measured on it: from the chosen
    // point too, or the pick would be re-tuned away at the next frame.
    if (c->tuned_lattice_rewards.has_value()) {
      c->tuned_lattice_rewards->misses = p.misses;
      c->tuned_lattice_rewards->spurious = p.spurious;
    }
  }
  LOGSTAR_RETURN_IF_ERROR(analyzer->RestoreCache(cache));
  RecordPick(window, front_index);
  return absl::OkStatus();
}

void Session::RecordPick(int window, int front_index) {
  MutexLock lock(&mu_);
  v1::OperatorPick pick;
  pick.set_window(window);
  pick.set_front_index(front_index);
  pick.set_frames_analysed(counters_.frames_analysed());
  *pick.mutable_time() = ToProtoTime(absl::Now());
  picks_.push_back(std::move(pick));
  while (picks_.size() > kMaxPicks) picks_.pop_front();
}

void Session::ResetCache() {
  MutexLock lock(&mu_);
  pending_.reset();
  // An auto prior is derived again from the next frame (which then also
  // makes the analyzers afresh).
  derived_.reset();
  if (full_ != nullptr) full_->ClearCache();
  if (partial_ != nullptr) partial_->ClearCache();
}

v1::SessionSettings Session::settings() const {
  MutexLock lock(&mu_);
  return config_.settings;
}

SessionConfig Session::config() const {
  MutexLock lock(&mu_);
  return config_;
}

v1::OverloadPolicy Session::overload_policy() const {
  MutexLock lock(&mu_);
  return config_.overload_policy;
}

uint32_t Session::queue_capacity(uint32_t default_capacity) const {
  MutexLock lock(&mu_);
  return config_.queue_capacity == 0 ? default_capacity : config_.queue_capacity;
}

void Session::CountReceived() {
  MutexLock lock(&mu_);
  ++generation_;
  counters_.set_frames_received(counters_.frames_received() + 1);
}

void Session::CountAnalysed(const FrameAnalysis& a) {
  MutexLock lock(&mu_);
  ++generation_;
  counters_.set_frames_analysed(counters_.frames_analysed() + 1);
  counters_.set_cache_hits(counters_.cache_hits() + a.hits);
  counters_.set_cache_misses(counters_.cache_misses() + a.misses);
  counters_.set_cache_retunes(counters_.cache_retunes() + a.retunes);
  if (a.amorphous.has_value()) {
    counters_.set_amorphous_hits(counters_.amorphous_hits() + a.amorphous->hits);
    counters_.set_amorphous_misses(counters_.amorphous_misses() + a.amorphous->misses);
    counters_.set_amorphous_retunes(counters_.amorphous_retunes() + a.amorphous->retunes);
  }
}

void Session::CountDropped() {
  MutexLock lock(&mu_);
  ++generation_;
  counters_.set_frames_dropped(counters_.frames_dropped() + 1);
}

void Session::CountFailed() {
  MutexLock lock(&mu_);
  ++generation_;
  counters_.set_frames_failed(counters_.frames_failed() + 1);
}

v1::SessionCounters Session::counters() const {
  MutexLock lock(&mu_);
  return counters_;
}

uint64_t Session::generation() const {
  MutexLock lock(&mu_);
  return generation_;
}

bool Session::SavedSince(uint64_t generation) const {
  MutexLock lock(&mu_);
  return saved_generation_ >= generation;
}

void Session::MarkSaved(uint64_t generation) {
  MutexLock lock(&mu_);
  saved_generation_ = std::max(saved_generation_, generation);
}

uint64_t Session::store_version() const {
  MutexLock lock(&mu_);
  return store_version_;
}

void Session::set_store_version(uint64_t version) {
  MutexLock lock(&mu_);
  store_version_ = version;
}

void Session::Touch(absl::Time now) {
  MutexLock lock(&mu_);
  last_active_ = std::max(last_active_, now);
}

absl::Time Session::last_active() const {
  MutexLock lock(&mu_);
  return last_active_;
}

void Session::Attach() {
  MutexLock lock(&mu_);
  ++attached_;
}

void Session::Detach() {
  MutexLock lock(&mu_);
  --attached_;
  last_active_ = std::max(last_active_, absl::Now());
}

int Session::attached() const {
  MutexLock lock(&mu_);
  return attached_;
}

v1::SessionInfo Session::Info(bool include_cache, double idle_timeout_s) const {
  v1::SessionInfo info;
  std::shared_ptr<LogStarAnalyzer> full;
  {
    MutexLock lock(&mu_);
    info.set_session_id(id_);
    *info.mutable_settings() = config_.settings;
    *info.mutable_counters() = counters_;
    info.set_attached_streams(attached_);
    *info.mutable_created() = ToProtoTime(created_);
    *info.mutable_last_active() = ToProtoTime(last_active_);
    full = full_;
    if (std::optional<PriorInUse> used = UsedLocked()) {
      PriorUsedToProto(*used, info.mutable_prior_used());
    }
    for (const v1::OperatorPick& p : picks_) *info.add_picks() = p;
    if (include_cache && full == nullptr && pending_.has_value()) {
      CacheToProto(pending_->full, info.mutable_cache());
    }
  }
  info.set_idle_timeout_s(idle_timeout_s);
  if (include_cache && full != nullptr) CacheToProto(full->Snapshot(), info.mutable_cache());
  return info;
}

v1::SessionState Session::State() const {
  v1::SessionState state;
  std::shared_ptr<LogStarAnalyzer> full, partial;
  {
    MutexLock lock(&mu_);
    state.set_version(kStateVersion);
    state.set_session_id(id_);
    *state.mutable_settings() = config_.settings;
    *state.mutable_counters() = counters_;
    for (const v1::OperatorPick& p : picks_) *state.add_picks() = p;
    full = full_;
    partial = partial_;
    if (config_.prior.derive && derived_.has_value()) {
      const bool pixel_units = !derived_->derived.pixel_size_known;
      PriorUsedToProto(
          {.prior = derived_->derived.prior, .derived = true, .pixel_units = pixel_units},
          state.mutable_derived_prior());
    }
    if (prior_.has_value()) {
      // An auto prior in pixels has no pixel size (its prior's is 1).
      state.set_pixel_size_angstrom(config_.prior.derive && derived_.has_value()
                                        ? derived_->pixel_size.value_or(0.0)
                                        : prior_->pixel_size_angstrom);
    } else if (pending_.has_value()) {
      // Restored but not yet used: keep what was restored.
      state.set_pixel_size_angstrom(pending_pixel_size_);
      CacheToProto(pending_->full, state.mutable_cache());
      CacheToProto(pending_->partial, state.mutable_partial_cache());
    }
  }
  if (full != nullptr) CacheToProto(full->Snapshot(), state.mutable_cache());
  if (partial != nullptr) CacheToProto(partial->Snapshot(), state.mutable_partial_cache());
  return state;
}

absl::StatusOr<std::unique_ptr<Session>> Session::FromState(const v1::SessionState& state,
                                                            const SettingsCaps& caps,
                                                            absl::Time now) {
  if (state.version() != kStateVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("state version ", state.version(), " is not ", kStateVersion));
  }
  LOGSTAR_RETURN_IF_ERROR(SessionManager::ValidateId(state.session_id()));
  LOGSTAR_ASSIGN_OR_RETURN(SessionConfig config, ParseSessionSettings(state.settings(), caps));
  LOGSTAR_ASSIGN_OR_RETURN(LogStarAnalyzer::CacheSnapshot full, CacheFromProto(state.cache()));
  LOGSTAR_ASSIGN_OR_RETURN(LogStarAnalyzer::CacheSnapshot partial,
                           CacheFromProto(state.partial_cache()));
  auto session = std::make_unique<Session>(state.session_id(), std::move(config), now);
  MutexLock lock(&session->mu_);
  session->counters_ = state.counters();
  // A state saved mid-stream (after a tuned frame) counts frames that were
  // then queued or running. No one will answer them after a restart: they
  // were dropped by it, and counting them so keeps received = analysed +
  // dropped + failed.
  v1::SessionCounters& c = session->counters_;
  const uint64_t settled = c.frames_analysed() + c.frames_dropped() + c.frames_failed();
  if (c.frames_received() > settled) {
    c.set_frames_dropped(c.frames_dropped() + c.frames_received() - settled);
  }
  // The newest kMaxPicks, as RecordPick keeps them.
  const int num_picks = state.picks_size();
  for (int i = std::max(0, num_picks - static_cast<int>(kMaxPicks)); i < num_picks; ++i) {
    session->picks_.push_back(state.picks(i));
  }
  session->pending_ = Pending{std::move(full), std::move(partial)};
  session->pending_pixel_size_ = state.pixel_size_angstrom();
  if (session->config_.prior.derive && state.has_derived_prior()) {
    // The prior the caches were tuned with; one that does not pass the
    // engine's checks is derived again (and the caches dropped) instead.
    const PriorInUse used = PriorUsedFromProto(state.derived_prior());
    if (used.prior.Validate().ok()) {
      session->derived_ = Derived{
          .derived = {.prior = used.prior, .pixel_size_known = !used.pixel_units},
          .pixel_size = used.pixel_units ? std::nullopt
                                         : std::optional<double>(used.prior.pixel_size_angstrom)};
    }
  }
  return session;
}

// ---- SessionManager ----

SessionManager::SessionManager(const Options& options, const SettingsCaps& caps)
    : options_(options), caps_(caps) {
  if (options_.session_store.has_value()) {
    // Kept twice the idle timeout after its last save: a session nobody
    // used for that long is gone on every replica.
    store_ = NewRedisSessionStore(*options_.session_store,
                                  {.ttl = absl::Seconds(2 * options_.idle_timeout_s)});
  } else if (!options_.state_dir.empty()) {
    store_ = NewDirectorySessionStore(options_.state_dir);
  }
  sweeper_ = std::thread([this] { Sweep(); });
}

SessionManager::~SessionManager() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    stop_.SignalAll();
  }
  sweeper_.join();
}

void SessionManager::Sweep() {
  // Often enough that a session lives at most a little past its timeout,
  // and is saved at most a little past its save interval.
  const absl::Duration save_interval = absl::Seconds(options_.save_interval_s);
  const absl::Duration period =
      std::min({absl::Seconds(1), absl::Seconds(options_.idle_timeout_s / 4), save_interval / 2});
  absl::Time last_save = absl::Now();
  for (;;) {
    {
      MutexLock lock(&mu_);
      if (!stopping_) stop_.WaitWithTimeout(&mu_, absl::ToChronoNanoseconds(period));
      if (stopping_) return;
    }
    const absl::Time now = absl::Now();
    CheckStore();
    ExpireIdle(now);
    if (now - last_save >= save_interval) {
      PersistChanged();
      last_save = now;
    }
  }
}

absl::Status SessionManager::ValidateId(const std::string& id) {
  if (id.empty() || id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_id must be 1 to 128 characters, got ", id.size()));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          "session_id may only hold letters, digits, '.', '_' and '-'");
    }
  }
  return absl::OkStatus();
}

void SessionManager::CheckStore() {
  if (!shared()) return;
  const absl::Status s = store_->Check();
  bool changed = false;
  {
    MutexLock lock(&mu_);
    changed = store_ok_ != s.ok();
    store_ok_ = s.ok();
  }
  if (!changed) return;
  Log(s.ok() ? LogLevel::kInfo : LogLevel::kError, s.ok() ? "store_ready" : "store_unavailable",
      {{"session_store", store_->name()}, {"why", s.ToString()}});
  if (options_.on_store_health) options_.on_store_health(s.ok());
}

absl::Status SessionManager::RefreshFromStore(const std::string& id) {
  if (!shared()) return absl::OkStatus();
  absl::StatusOr<SessionStore::Stored> stored = store_->Load(id);
  std::shared_ptr<Session> held;
  {
    MutexLock lock(&mu_);
    if (auto it = sessions_.find(id); it != sessions_.end()) held = it->second;
  }
  if (absl::IsNotFound(stored.status())) return absl::OkStatus();  // new, or held only here
  if (!stored.ok()) {
    // Held here: this replica's copy serves (affinity keeps a session on one
    // replica); saves catch up when the store returns.
    if (held != nullptr) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("session ", id, ": ", stored.status().message()));
  }
  if (held != nullptr && held->store_version() >= stored->version) return absl::OkStatus();
  if (held != nullptr && held->attached() > 0) {
    // Another stream of this replica is using it: never swapped under it.
    Log(LogLevel::kWarning, "store_newer_while_attached",
        {{"session", id}, {"held", held->store_version()}, {"stored", stored->version}});
    return absl::OkStatus();
  }
  v1::SessionState state;
  if (!state.ParseFromString(stored->bytes)) {
    return absl::DataLossError(
        absl::StrCat("session ", id, " in ", store_->name(), " is not a SessionState message"));
  }
  LOGSTAR_ASSIGN_OR_RETURN(std::unique_ptr<Session> loaded,
                           Session::FromState(state, caps_, absl::Now()));
  if (loaded->id() != id) {
    return absl::DataLossError(
        absl::StrCat("session ", id, " in ", store_->name(), " holds session ", loaded->id()));
  }
  loaded->set_store_version(stored->version);
  MutexLock lock(&mu_);
  if (held == nullptr && static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the daemon holds ", sessions_.size(), " sessions, its max_sessions"));
  }
  sessions_[id] = std::move(loaded);
  Log(LogLevel::kInfo, "session_loaded",
      {{"session", id}, {"version", stored->version}, {"session_store", store_->name()}});
  return absl::OkStatus();
}

absl::Status SessionManager::LoadState() {
  if (shared()) {
    // Sessions load when asked for; a store down at start is reported (the
    // daemon starts not ready) and retried by the sweeper.
    CheckStore();
    return absl::OkStatus();
  }
  if (options_.state_dir.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(options_.state_dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create state_dir ", options_.state_dir, ": ", ec.message()));
  }
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(options_.state_dir, ec)) {
    const std::string path = entry.path().string();
    if (!absl::EndsWith(path, StateFileName(""))) continue;
    absl::StatusOr<std::unique_ptr<Session>> s = ReadStateFile(path, caps_);
    if (!s.ok()) {
      // Set aside with the reason, so it is reported once, not at every start.
      const absl::StatusOr<std::string> aside = SetAside(path, s.status().ToString());
      Log(LogLevel::kWarning, "state_rejected",
          {{"path", path},
           {"why", s.status().ToString()},
           {"moved_to", aside.ok() ? *aside : aside.status().ToString()}});
      continue;
    }
    MutexLock lock(&mu_);
    sessions_[(*s)->id()] = std::move(*s);
    ++loaded;
  }
  if (ec) return absl::UnavailableError(absl::StrCat("cannot list state_dir: ", ec.message()));
  Log(LogLevel::kInfo, "state_loaded", {{"state_dir", options_.state_dir}, {"sessions", loaded}});
  return absl::OkStatus();
}

absl::StatusOr<SessionConfig> SessionManager::ParseSettings(
    const v1::SessionSettings& settings) const {
  return ParseSessionSettings(settings, caps_);
}

absl::StatusOr<std::pair<std::shared_ptr<Session>, bool>> SessionManager::Open(
    const std::string& requested, const v1::SessionSettings* settings) {
  std::optional<SessionConfig> config;
  if (settings != nullptr) {
    LOGSTAR_ASSIGN_OR_RETURN(config, ParseSettings(*settings));
  }
  std::string id = requested;
  if (!id.empty()) {
    LOGSTAR_RETURN_IF_ERROR(ValidateId(id));
    LOGSTAR_RETURN_IF_ERROR(RefreshFromStore(id));
    std::shared_ptr<Session> existing;
    {
      MutexLock lock(&mu_);
      auto it = sessions_.find(id);
      if (it != sessions_.end()) {
        existing = it->second;
        // Under the map's lock, so the idle sweep cannot take it now.
        existing->Touch(absl::Now());
      }
    }
    if (existing != nullptr) {
      if (config.has_value()) LOGSTAR_RETURN_IF_ERROR(existing->UpdateSettings(*std::move(config)));
      return std::pair{existing, true};
    }
  }
  if (!config.has_value()) {
    return absl::InvalidArgumentError("settings are required to open a new session");
  }
  if (id.empty()) {
    id = RandomHexId(1);
  }
  auto session = std::make_shared<Session>(id, *std::move(config), absl::Now());
  MutexLock lock(&mu_);
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions && !sessions_.contains(id)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the daemon holds ", sessions_.size(),
        " sessions, its max_sessions: resume one, delete one (ResetSession with delete_session) "
        "or wait for idle ones to expire"));
  }
  // Two streams may open the same new id at once: the first one wins.
  auto [it, inserted] = sessions_.emplace(id, session);
  return std::pair{it->second, !inserted};
}

absl::StatusOr<std::shared_ptr<Session>> SessionManager::Find(const std::string& id) {
  LOGSTAR_RETURN_IF_ERROR(ValidateId(id));
  LOGSTAR_RETURN_IF_ERROR(RefreshFromStore(id));
  MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
  return it->second;
}

absl::Status SessionManager::Remove(const std::string& id) {
  {
    MutexLock lock(&mu_);
    if (sessions_.erase(id) == 0) return absl::NotFoundError(absl::StrCat("no session ", id));
  }
  if (store_ != nullptr) {
    MutexLock lock(&persist_mu_);
    return store_->Remove(id);
  }
  return absl::OkStatus();
}

int SessionManager::size() const {
  MutexLock lock(&mu_);
  return static_cast<int>(sessions_.size());
}

std::vector<v1::SessionInfo> SessionManager::List(bool include_settings) const {
  std::vector<std::shared_ptr<Session>> all;
  {
    MutexLock lock(&mu_);
    all.reserve(sessions_.size());
    for (const auto& [id, s] : sessions_) all.push_back(s);  // std::map: in id order
  }
  std::vector<v1::SessionInfo> out;
  out.reserve(all.size());
  for (const auto& s : all) {
    out.push_back(s->Info(/*include_cache=*/false, options_.idle_timeout_s));
    if (!include_settings) out.back().clear_settings();
  }
  return out;
}

absl::StatusOr<std::vector<v1::SessionInfo>> SessionManager::ListWithStore(
    bool include_settings) const {
  std::vector<v1::SessionInfo> out = List(include_settings);
  if (!shared()) return out;
  LOGSTAR_ASSIGN_OR_RETURN(std::vector<std::string> stored, store_->List(kMaxListedFromStore));
  if (stored.size() >= kMaxListedFromStore) {
    Log(LogLevel::kWarning, "session_list_truncated",
        {{"listed_from_store", stored.size()}, {"session_store", store_->name()}});
  }
  // SCAN may name an id twice; the ones held here are listed with their Info.
  std::sort(stored.begin(), stored.end());
  stored.erase(std::unique(stored.begin(), stored.end()), stored.end());
  const size_t held = out.size();  // sorted by id (List)
  for (std::string& id : stored) {
    const auto at = std::lower_bound(out.begin(), out.begin() + held, id,
                                     [](const v1::SessionInfo& info, const std::string& key) {
                                       return info.session_id() < key;
                                     });
    if (at != out.begin() + held && at->session_id() == id) continue;
    v1::SessionInfo& info = out.emplace_back();
    info.set_session_id(std::move(id));
    info.set_only_in_store(true);
  }
  std::inplace_merge(out.begin(), out.begin() + held, out.end(),
                     [](const v1::SessionInfo& a, const v1::SessionInfo& b) {
                       return a.session_id() < b.session_id();
                     });
  return out;
}

absl::Status SessionManager::Persist(Session& session) {
  if (store_ == nullptr) return absl::OkStatus();
  MutexLock lock(&persist_mu_);
  {
    // A session removed meanwhile must not come back as a file.
    MutexLock map_lock(&mu_);
    if (sessions_.find(session.id()) == sessions_.end()) return absl::OkStatus();
  }
  // The snapshot is taken under persist_mu_, so files are written in the
  // order their contents were taken. The generation is read first: counts
  // landing in between are saved now and once more later, never lost.
  const uint64_t generation = session.generation();
  const v1::SessionState state = session.State();
  const std::string bytes = state.SerializeAsString();
  uint64_t version = session.store_version() + 1;
  LOGSTAR_ASSIGN_OR_RETURN(bool written, store_->Save(session.id(), version, bytes));
  if (!written && session.attached() > 0) {
    // A stream here uses it, so this copy is the current one: the newer
    // version is another replica's last save as it let the session go (a
    // drain's final save). Saved above it.
    LOGSTAR_ASSIGN_OR_RETURN(const SessionStore::Stored held, store_->Load(session.id()));
    version = held.version + 1;
    LOGSTAR_ASSIGN_OR_RETURN(written, store_->Save(session.id(), version, bytes));
  }
  session.MarkSaved(generation);
  if (written) {
    session.set_store_version(version);
    return absl::OkStatus();
  }
  // Another replica saved a newer state and no stream uses this copy: it is
  // stale. Forgotten, so that the next call here loads the newer one.
  Log(LogLevel::kWarning, "state_superseded",
      {{"session", session.id()}, {"version", version}, {"session_store", store_->name()}});
  MutexLock map_lock(&mu_);
  auto it = sessions_.find(session.id());
  if (it != sessions_.end() && it->second.get() == &session && session.attached() == 0) {
    sessions_.erase(it);
  }
  return absl::OkStatus();
}

void SessionManager::PersistAll() { PersistWhere(/*changed_only=*/false); }

void SessionManager::PersistChanged() { PersistWhere(/*changed_only=*/true); }

void SessionManager::PersistWhere(bool changed_only) {
  if (store_ == nullptr) return;
  std::vector<std::shared_ptr<Session>> all;
  {
    MutexLock lock(&mu_);
    for (const auto& [id, s] : sessions_) all.push_back(s);
  }
  for (const auto& s : all) {
    if (changed_only && s->SavedSince(s->generation())) continue;
    const absl::Status st = Persist(*s);
    if (!st.ok())
      Log(LogLevel::kError, "persist_failed", {{"session", s->id()}, {"why", st.ToString()}});
  }
}

void SessionManager::ExpireIdle(absl::Time now) {
  std::vector<std::string> expired;
  {
    MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      const Session& s = *it->second;
      if (s.attached() == 0 && now - s.last_active() > absl::Seconds(options_.idle_timeout_s)) {
        expired.push_back(it->first);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const std::string& id : expired) {
    // A shared store keeps it (another replica may serve it now; the store
    // lets it expire by itself).
    if (store_ != nullptr && !shared()) {
      MutexLock lock(&persist_mu_);
      (void)store_->Remove(id);
    }
    Log(LogLevel::kInfo, "session_expired", {{"session", id}});
  }
}

}  // namespace logstar::server
