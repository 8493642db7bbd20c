#include "server/session_store.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/base/mutex.h"
#include "server/files.h"

namespace logstar::server {
namespace {

constexpr char kStateSuffix[] = ".session.pb";

class DirectoryStore final : public SessionStore {
 public:
  explicit DirectoryStore(std::string dir) : dir_(std::move(dir)), name_("state_dir " + dir_) {}

  const std::string& name() const override { return name_; }

  absl::StatusOr<Stored> Load(const std::string& id) override {
    Stored out;
    auto bytes = ReadRegularFile(PathFor(id), kMaxSessionStateBytes);
    if (!bytes.ok()) return bytes.status();
    out.bytes = *std::move(bytes);
    return out;
  }

  absl::StatusOr<bool> Save(const std::string& id, uint64_t /*version*/,
                            const std::string& bytes) override {
    absl::Status s = WriteFileAtomically(PathFor(id), bytes);
    if (!s.ok()) return s;
    return true;
  }

  absl::Status Remove(const std::string& id) override {
    std::error_code ec;
    std::filesystem::remove(PathFor(id), ec);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(size_t max_ids) override {
    std::vector<std::string> ids;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      if (ids.size() >= max_ids) break;
      const std::string name = entry.path().filename().string();
      if (absl::EndsWith(name, kStateSuffix)) {
        ids.push_back(name.substr(0, name.size() - (sizeof(kStateSuffix) - 1)));
      }
    }
    if (ec) return absl::UnavailableError(absl::StrCat("cannot list ", name_, ": ", ec.message()));
    return ids;
  }

  absl::Status Check() override { return absl::OkStatus(); }

 private:
  std::string PathFor(const std::string& id) const {
    return (std::filesystem::path(dir_) / StateFileName(id)).string();
  }
  const std::string dir_;
  const std::string name_;
};

// Writes ARGV[2] as version ARGV[1] unless the hash holds a version >= it,
// then lets it expire after ARGV[3] ms (0: never). Versions stay below
// 2^53, so Lua's numbers compare them exactly.
constexpr char kSaveScript[] = R"lua(
local held = redis.call('HGET', KEYS[1], 'version')
if held and tonumber(held) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
)lua";

constexpr char kKeyPrefix[] = "logstar:session:";

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisStore final : public SessionStore {
 public:
  RedisStore(const RedisAddress& address, const RedisStoreOptions& options)
      : address_(address),
        name_(address.ToString()),
        timeout_(options.timeout),
        ttl_ms_(absl::StrCat(absl::ToInt64Milliseconds(options.ttl))) {}
  ~RedisStore() override {
    if (context_ != nullptr) redisFree(context_);
  }

  const std::string& name() const override { return name_; }

  absl::StatusOr<Stored> Load(const std::string& id) override {
    const std::string key = kKeyPrefix + id;
    auto reply = Command({"HMGET", key, "version", "state"});
    if (!reply.ok()) return reply.status();
    const redisReply& r = **reply;
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 2) return Unexpected("HMGET");
    const redisReply* version = r.element[0];
    const redisReply* state = r.element[1];
    if (version->type == REDIS_REPLY_NIL || state->type == REDIS_REPLY_NIL) {
      return absl::NotFoundError(absl::StrCat("no session ", id, " in ", name_));
    }
    Stored out;
    if (version->type != REDIS_REPLY_STRING ||
        !absl::SimpleAtoi(absl::string_view(version->str, version->len), &out.version) ||
        state->type != REDIS_REPLY_STRING) {
      return Unexpected("HMGET");
    }
    out.bytes.assign(state->str, state->len);
    return out;
  }

  absl::StatusOr<bool> Save(const std::string& id, uint64_t version,
                            const std::string& bytes) override {
    auto reply =
        Command({"EVAL", kSaveScript, "1", kKeyPrefix + id, absl::StrCat(version), bytes, ttl_ms_});
    if (!reply.ok()) return reply.status();
    if ((*reply)->type != REDIS_REPLY_INTEGER) return Unexpected("EVAL");
    return (*reply)->integer == 1;
  }

  absl::Status Remove(const std::string& id) override {
    return Command({"DEL", kKeyPrefix + id}).status();
  }

  absl::StatusOr<std::vector<std::string>> List(size_t max_ids) override {
    std::vector<std::string> ids;
    std::string cursor = "0";
    do {
      // One SCAN step per command: other clients' commands run in between.
      auto reply =
          Command({"SCAN", cursor, "MATCH", absl::StrCat(kKeyPrefix, "*"), "COUNT", "500"});
      if (!reply.ok()) return reply.status();
      const redisReply& r = **reply;
      if (r.type != REDIS_REPLY_ARRAY || r.elements != 2 ||
          r.element[0]->type != REDIS_REPLY_STRING || r.element[1]->type != REDIS_REPLY_ARRAY) {
        return Unexpected("SCAN");
      }
      cursor.assign(r.element[0]->str, r.element[0]->len);
      for (size_t i = 0; i < r.element[1]->elements; ++i) {
        const redisReply* k = r.element[1]->element[i];
        if (k->type == REDIS_REPLY_STRING && ids.size() < max_ids) {
          ids.emplace_back(k->str + (sizeof(kKeyPrefix) - 1), k->len - (sizeof(kKeyPrefix) - 1));
        }
      }
    } while (cursor != "0" && ids.size() < max_ids);
    return ids;
  }

  absl::Status Check() override { return Command({"PING"}).status(); }

 private:
  absl::Status Unexpected(absl::string_view command) {
    return absl::UnavailableError(
        absl::StrCat("session store ", name_, ": unexpected answer to ", command));
  }

  // One command on the connection (made first when there is none); an
  // error drops the connection so that the next call connects anew.
  absl::StatusOr<Reply> Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    MutexLock lock(&mu_);
    if (context_ == nullptr) {
      if (absl::Status s = ConnectLocked(); !s.ok()) return s;
    }
    Reply reply(static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lengths.data())));
    if (reply == nullptr) {
      const std::string why = context_->errstr;
      redisFree(context_);
      context_ = nullptr;
      return absl::UnavailableError(
          absl::StrCat("session store ", name_, " is unreachable: ", why));
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      return absl::UnavailableError(absl::StrCat("session store ", name_, " answered ", args[0],
                                                 " with: ", std::string(reply->str, reply->len)));
    }
    return reply;
  }

  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const timeval tv = absl::ToTimeval(timeout_);
    redisContext* c = redisConnectWithTimeout(address_.host.c_str(), address_.port, tv);
    if (c == nullptr || c->err != 0) {
      const std::string why = c != nullptr ? c->errstr : "out of memory";
      if (c != nullptr) redisFree(c);
      return absl::UnavailableError(
          absl::StrCat("session store ", name_, " is unreachable: ", why));
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    context_ = c;
    if (address_.db != 0) {
      Reply r(static_cast<redisReply*>(redisCommand(context_, "SELECT %d", address_.db)));
      if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
        redisFree(context_);
        context_ = nullptr;
        return absl::UnavailableError(
            absl::StrCat("session store ", name_, ": cannot select database ", address_.db));
      }
    }
    return absl::OkStatus();
  }

  const RedisAddress address_;
  const std::string name_;
  const absl::Duration timeout_;
  const std::string ttl_ms_;
  Mutex mu_;  // one command at a time on the one connection
  redisContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace

std::string StateFileName(const std::string& id) { return id + kStateSuffix; }

std::unique_ptr<SessionStore> NewDirectorySessionStore(const std::string& dir) {
  return std::make_unique<DirectoryStore>(dir);
}

std::unique_ptr<SessionStore> NewRedisSessionStore(const RedisAddress& address,
                                                   const RedisStoreOptions& options) {
  return std::make_unique<RedisStore>(address, options);
}

}  // namespace logstar::server
