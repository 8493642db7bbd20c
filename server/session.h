// Sessions: what outlives a connection. A session holds the settings, the
// analyzers (and so the per-window cache: one analyzer for full frames, one
// for partial frames so they never disturb it) and the counters of one
// acquisition. Streams attach to a session by id and may come and go; a
// session nobody used for the idle timeout is dropped. With a state
// directory every session is also kept on disk (settings, counters and
// caches as a SessionState message) and restored at start-up.
//
// An auto prior (settings.prior.auto) is derived from the session's first
// frame that shows a lattice (DeriveFramePrior, session_config.h; a frame
// without one fails, naming settings.prior, and the next frame tries again)
// at the pixel size AutoPixelSize gives, and kept: a new frame size keeps it
// (same sample, same magnification), while a new pixel size, a new prior in
// the settings or ResetCache derive it again from the next frame (and empty
// the cache, which was tuned for the old one). It is saved with the session.
//
// Thread-safety: Session and SessionManager may be used from any thread.
// Analyses of one session run one at a time (the analyzer serialises them);
// settings, choices and resets apply from the next frame analysed.
#ifndef LOGSTAR_SERVER_SESSION_H_
#define LOGSTAR_SERVER_SESSION_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/analysis/analyzer.h"
#include "engine/analysis/steering.h"
#include "engine/base/context.h"
#include "engine/base/mutex.h"
#include "logstar/v1/daemon.pb.h"
#include "logstar/v1/result.pb.h"
#include "logstar/v1/service.pb.h"
#include "logstar/v1/session.pb.h"
#include "server/convert.h"
#include "server/session_config.h"
#include "server/session_store.h"

namespace logstar::server {

class Session {
 public:
  Session(std::string id, SessionConfig config, absl::Time now);

  const std::string& id() const { return id_; }

  struct Analysis {
    FrameAnalysis frame;
    std::vector<SteeringRegion> regions;
    double pixel_size_angstrom = 0.0;  // the one the analysis used
    PriorInUse prior;                  // idem
  };
  // Runs the engine on a decoded frame with this session's settings and
  // cache. CANCELLED once *cancel is set (the cache is then unchanged).
  absl::StatusOr<Analysis> Analyze(const DecodedFrame& frame, ExecutionContext* context,
                                   const std::atomic<bool>* cancel);

  // Whether analysing this frame will tune windows (nothing cached yet for
  // its geometry); drift-triggered re-tunes cannot be foreseen.
  bool WillTune(const DecodedFrame& frame) const;

  // Replaces the settings. A new prior, window, stride, normalisation or
  // column width empties the cache; other changes keep it. Fails only when
  // a cache cannot be carried over to the new options.
  absl::Status UpdateSettings(SessionConfig config);
  // The operator's pick on a window's cached front (window -1: all),
  // recorded (the last kMaxPicks) for Info's `picks`.
  absl::Status ChooseOnFront(int window, int front_index);
  static constexpr size_t kMaxPicks = 32;
  void ResetCache();

  v1::SessionSettings settings() const;
  // The parsed settings (for the daemon's admission: a frame's estimated
  // memory depends on them).
  SessionConfig config() const;
  // Resolved: never unspecified; capacity 0 → default_capacity.
  v1::OverloadPolicy overload_policy() const;
  uint32_t queue_capacity(uint32_t default_capacity) const;

  void CountReceived();
  void CountAnalysed(const FrameAnalysis& analysis);
  void CountDropped();
  void CountFailed();
  v1::SessionCounters counters() const;
  // Moves with every count; Persist records the value it saved, so the
  // sweeper saves only sessions that changed since.
  uint64_t generation() const;
  bool SavedSince(uint64_t generation) const;
  void MarkSaved(uint64_t generation);
  // The version of this session's state in the session store: the one it
  // was loaded at (0 for a new session), then the last one saved. A shared
  // store refuses a save whose version is not above what it holds.
  uint64_t store_version() const;
  void set_store_version(uint64_t version);

  void Touch(absl::Time now);
  absl::Time last_active() const;
  void Attach();
  void Detach();
  int attached() const;

  v1::SessionInfo Info(bool include_cache, double idle_timeout_s) const;
  v1::SessionState State() const;
  // A session as saved, its settings parsed under `caps`; its caches are
  // restored with the first frame.
  static absl::StatusOr<std::unique_ptr<Session>> FromState(const v1::SessionState& state,
                                                            const SettingsCaps& caps,
                                                            absl::Time now);

 private:
  struct Pending {  // a saved cache waiting for its analyzer
    LogStarAnalyzer::CacheSnapshot full, partial;
  };
  // What a frame runs with, taken together under the lock.
  struct Run {
    std::shared_ptr<LogStarAnalyzer> analyzer;
    SteeringOptions steering;
    double pixel_size_angstrom = 0.0;  // reported with the result
    PriorInUse prior;
  };
  // An auto prior as derived, with the pixel size it was derived at
  // (nullopt: none, the prior is in pixels).
  struct Derived {
    DerivedPrior derived;
    std::optional<double> pixel_size;
  };
  absl::StatusOr<Run> RunFor(bool partial, double frame_pixel_size);
  void RecordPick(int window, int front_index);
  // With an auto prior: derives it from `frame` unless one is held for the
  // frame's pixel size (see the file comment).
  absl::Status DeriveIfAuto(const DecodedFrame& frame, ExecutionContext* context);
  // `config`'s analyzer options for the prior in use (OptionsForDerived).
  absl::StatusOr<AnalyzerOptions> OptionsLocked(const SessionConfig& config) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The prior of the last frame, as results report it; unset before one.
  std::optional<PriorInUse> UsedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string id_;
  const absl::Time created_;
  mutable Mutex mu_;
  SessionConfig config_ ABSL_GUARDED_BY(mu_);
  // The prior the analyzers run with (its pixel size may come from frames);
  // unset until the first frame.
  std::optional<PhysicsPrior> prior_ ABSL_GUARDED_BY(mu_);
  // With settings.prior.auto: the prior derived from a frame (see the file comment).
  std::optional<Derived> derived_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<LogStarAnalyzer> full_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<LogStarAnalyzer> partial_ ABSL_GUARDED_BY(mu_);
  std::optional<Pending> pending_ ABSL_GUARDED_BY(mu_);
  double pending_pixel_size_ ABSL_GUARDED_BY(mu_) = 0.0;
  v1::SessionCounters counters_ ABSL_GUARDED_BY(mu_);
  absl::Time last_active_ ABSL_GUARDED_BY(mu_);
  int attached_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t saved_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t store_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::OperatorPick> picks_ ABSL_GUARDED_BY(mu_);  // oldest first
};

class SessionManager {
 public:
  struct Options {
    double idle_timeout_s = 600.0;
    std::string state_dir;  // empty: memory only
    // How often the sweeper saves sessions whose counters moved (with a
    // state_dir): a SIGKILL loses at most this long of counts.
    double save_interval_s = 5.0;
    // Sessions held at most; opening a new one beyond is RESOURCE_EXHAUSTED
    // (sessions restored from the state directory all load).
    int max_sessions = 1000;
    // Issue 20: sessions shared with other replicas in Redis (not together
    // with state_dir). A session asked for (Open, Find) is then first
    // looked up in the store: loaded when this manager does not hold it, or
    // holds an older version of it (and no stream is attached to it).
    // Idle expiry only forgets a session here; the store keeps it for
    // idle_timeout_s after its last save.
    std::optional<RedisAddress> session_store{};
    // Called from the sweeper when the shared store becomes reachable
    // (true) or not (false), and once at LoadState; for readiness.
    std::function<void(bool)> on_store_health{};
  };
  // `caps`: what a session's settings may ask for.
  explicit SessionManager(const Options& options, const SettingsCaps& caps = {});
  ~SessionManager();  // stops the sweeper; does not save (PersistAll does)

  // With a shared store: whether Open and Find may block on it (then they
  // must run off gRPC's reactions, server/service.h).
  bool shared() const { return options_.session_store.has_value(); }
  // Whether sessions are saved anywhere (Persist is a no-op otherwise).
  bool persists() const { return store_ != nullptr; }

  // Reads every session in the state directory (none without one), never
  // blocking on an entry (server/files.h). A file it cannot use (unreadable,
  // not a regular file, refused by FromState, or not named after its
  // session's id) is logged and set aside as NAME.rejected with the reason
  // in NAME.rejected.why, so it is reported once.
  absl::Status LoadState();

  // Parses settings under this manager's caps (ParseSessionSettings).
  absl::StatusOr<SessionConfig> ParseSettings(const v1::SessionSettings& settings) const;

  // An existing id resumes that session (settings, when given, replace
  // its own); an unknown or empty id makes a new session (settings
  // required; RESOURCE_EXHAUSTED when max_sessions are held). Returns the
  // session and whether it was resumed.
  absl::StatusOr<std::pair<std::shared_ptr<Session>, bool>> Open(
      const std::string& id, const v1::SessionSettings* settings);
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& id);
  absl::Status Remove(const std::string& id);
  int size() const;
  // Every session's Info (never its cache) by id; settings only when asked.
  // The table is copied under its lock and each session read under its
  // own, so a frame being analysed delays this by no more than a counter
  // read.
  std::vector<v1::SessionInfo> List(bool include_settings) const;
  // List, and with a shared store also the sessions stored there that this
  // manager does not hold, each with only its id and only_in_store set (at
  // most kMaxListedFromStore of them); by id. Blocks on the store: call it
  // off gRPC's reactions (a store thread). UNAVAILABLE naming the store
  // when it cannot be reached. Without a shared store: List.
  absl::StatusOr<std::vector<v1::SessionInfo>> ListWithStore(bool include_settings) const;
  static constexpr size_t kMaxListedFromStore = 10000;

  // Saves a session to the state directory or the shared store (no-op
  // without either). A shared store that holds a newer version of it (the
  // session moved to another replica meanwhile) keeps it and this manager
  // forgets its copy, unless a stream here is attached to it: this copy is
  // then the current one and is saved above the stored version.
  // UNAVAILABLE naming the store when it cannot be reached.
  absl::Status Persist(Session& session);
  void PersistAll();
  // Saves the sessions whose counters moved since their last save (the
  // sweeper calls it every save_interval_s).
  void PersistChanged();
  // Drops sessions without streams idle for longer than the timeout.
  void ExpireIdle(absl::Time now);

  static absl::Status ValidateId(const std::string& id);

 private:
  // With a shared store: loads `id` from it unless this manager holds that
  // version or a newer one (see Options::session_store). UNAVAILABLE naming
  // the store when it cannot be reached and the session is not held here.
  absl::Status RefreshFromStore(const std::string& id);
  // With a shared store: checks it and reports changes (on_store_health).
  void CheckStore();
  void PersistWhere(bool changed_only);
  void Sweep();

  const Options options_;
  const SettingsCaps caps_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CondVar stop_;                                       // signalled when stopping_ is set
  Mutex persist_mu_;                                   // one writer of state files at a time
  std::unique_ptr<SessionStore> store_;                // null: sessions live in memory only
  std::optional<bool> store_ok_ ABSL_GUARDED_BY(mu_);  // the last check (shared store)
  std::thread sweeper_;
};

}  // namespace logstar::server

#endif  // LOGSTAR_SERVER_SESSION_H_
