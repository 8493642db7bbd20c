#include "clients/cpp/client.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/shared_memory.h"
#include "proto/wire/compression.h"

namespace logstar {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status FromGrpc(const grpc::Status& status, const std::string& address,
                      absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && message.empty()) {
    message = "the server is unavailable";
  }
  // A proxy in front of the daemons (nginx, Envoy: docs/scale-out.md)
  // resets the stream (HTTP/2 RST_STREAM, which gRPC reports as INTERNAL)
  // when the replica behind it goes away: for the client that is the
  // server going away, UNAVAILABLE, which a ReconnectingStream retries.
  // HAProxy resets it with CANCEL (CANCELLED, or a stream ended without
  // grpc-status, "No status received"); a cancel of the client's own says
  // neither.
  const bool reset = (status.error_code() == grpc::StatusCode::INTERNAL ||
                      status.error_code() == grpc::StatusCode::CANCELLED) &&
                     absl::StrContains(message, "RST_STREAM");
  const bool no_status = status.error_code() == grpc::StatusCode::UNKNOWN &&
                         absl::StrContains(message, "No status received");
  if (reset || no_status) {
    code = absl::StatusCode::kUnavailable;
    message += " (the connection to the daemon behind the proxy broke)";
  }
  return absl::Status(code, absl::StrCat("logstard at ", address, ": ", what, ": ", message));
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(field, ": cannot read '", path, "'"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::chrono::system_clock::time_point After(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

absl::Status ValidateCompression(v1::PixelCodec codec, int level) {
  if (absl::Status s = wire::CheckCodec(codec, "compression"); !s.ok()) return s;
  if (level < 1 || level > 19) {
    return absl::InvalidArgumentError(absl::StrCat("compression_level must be 1..19, got ", level));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ClientOptions::Validate() const {
  if (address.empty()) return absl::InvalidArgumentError("address: empty (expected host:port)");
  if (tls_client_cert_file.empty() != tls_client_key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_client_cert_file and tls_client_key_file go together (mutual TLS)");
  }
  if (!use_tls && (!tls_root_certs_file.empty() || !tls_client_cert_file.empty())) {
    return absl::InvalidArgumentError("TLS files given without use_tls");
  }
  if (!(connect_timeout_s > 0) || !std::isfinite(connect_timeout_s)) {
    return absl::InvalidArgumentError("connect_timeout_s must be > 0");
  }
  if (!(rpc_timeout_s > 0) || !std::isfinite(rpc_timeout_s)) {
    return absl::InvalidArgumentError("rpc_timeout_s must be > 0");
  }
  if (max_message_bytes < 1024)
    return absl::InvalidArgumentError("max_message_bytes must be >= 1024");
  if (token.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("token must be one line");
  }
  return ValidateCompression(compression, compression_level);
}

absl::Status StreamOptions::Validate() const {
  if (max_in_flight < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_in_flight must be >= 1, got ", max_in_flight));
  }
  if (deadline_s < 0 || !std::isfinite(deadline_s)) {
    return absl::InvalidArgumentError("deadline_s must be >= 0");
  }
  if (session_id.empty() && !settings) {
    return absl::InvalidArgumentError("settings are required for a new session (no session_id)");
  }
  return absl::OkStatus();
}

v1::PhysicsPrior AutoPrior(double pixel_size_angstrom) {
  v1::PhysicsPrior prior;
  prior.set_auto_(true);
  prior.set_pixel_size_angstrom(pixel_size_angstrom);
  return prior;
}

const char* ServingStatusName(ServingStatus s) {
  switch (s) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

// ---------------------------------------------------------------- Client

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.use_tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_root_certs_file.empty()) {
      auto pem = ReadPem(options.tls_root_certs_file, "tls_root_certs_file");
      if (!pem.ok()) return pem.status();
      ssl.pem_root_certs = *pem;
    }
    if (!options.tls_client_cert_file.empty()) {
      auto cert = ReadPem(options.tls_client_cert_file, "tls_client_cert_file");
      if (!cert.ok()) return cert.status();
      auto key = ReadPem(options.tls_client_key_file, "tls_client_key_file");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<int64_t>(options.max_message_bytes, INT32_MAX)));
  args.SetMaxSendMessageSize(
      static_cast<int>(std::min<int64_t>(options.max_message_bytes, INT32_MAX)));
  std::unique_ptr<Client> client(new Client(options));
  client->channel_ = grpc::CreateCustomChannel(options.address, credentials, args);
  if (!client->channel_->WaitForConnected(After(options.connect_timeout_s))) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach logstard at ", options.address, " within ", options.connect_timeout_s,
        " s (is it running, and do TLS and the address match the server's?)"));
  }
  client->stub_ = v1::LogStar::NewStub(client->channel_);
  return client;
}

void Client::Prepare(grpc::ClientContext* context, double timeout_s,
                     const std::string& session_id) const {
  if (timeout_s > 0) context->set_deadline(After(timeout_s));
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  if (!session_id.empty()) context->AddMetadata(kSessionMetadataKey, session_id);
}

absl::Status Client::ToStatus(const grpc::Status& status, const char* what) const {
  return FromGrpc(status, options_.address, what);
}

absl::StatusOr<ServingStatus> Client::Health(const std::string& service) {
  // Debian ships no grpc.health.v1 stubs: the request and answer are one
  // field each, encoded here by hand.
  std::string request;
  if (!service.empty()) {
    if (service.size() > 127) return absl::InvalidArgumentError("health: service name too long");
    request.push_back(0x0a);  // field 1, length-delimited
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", in, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&out, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return ServingStatus::kServiceUnknown;
  if (!status.ok()) return ToStatus(status, "health check");
  std::vector<grpc::Slice> slices;
  std::string response;
  if (out.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      response.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  // HealthCheckResponse{status = 1}: 0x08 then a one-byte varint; empty = UNKNOWN.
  if (response.size() >= 2 && response[0] == 0x08 && response[1] >= 0 && response[1] <= 3) {
    return static_cast<ServingStatus>(response[1]);
  }
  return ServingStatus::kUnknown;
}

absl::StatusOr<std::unique_ptr<Stream>> Client::OpenStream(const StreamOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<Stream> stream(new Stream(options_.address, options.max_in_flight));
  Prepare(&stream->context_, options.deadline_s, options.session_id);
  stream->rpc_ = stub_->Stream(&stream->context_);
  v1::StreamRequest open;
  open.mutable_open()->set_session_id(options.session_id);
  if (options.settings) *open.mutable_open()->mutable_settings() = *options.settings;
  open.mutable_open()->set_compression(options_.compression);
  v1::StreamResponse first;
  if (!stream->rpc_->Write(open) || !stream->rpc_->Read(&first)) {
    stream->rpc_->WritesDone();
    const grpc::Status status = stream->rpc_->Finish();
    stream->finished_ = true;
    if (status.ok()) {
      return absl::UnavailableError(
          absl::StrCat("logstard at ", options_.address, ": the stream ended before it opened"));
    }
    return ToStatus(status, "open stream");
  }
  if (!first.has_opened()) {
    stream->context_.TryCancel();
    stream->rpc_->Finish();
    stream->finished_ = true;
    return absl::InternalError(absl::StrCat("logstard at ", options_.address,
                                            ": the stream's first answer is not `opened`"));
  }
  stream->opened_ = first.opened();
  // Only what was asked and accepted: an older daemon answers NONE.
  if (first.opened().compression() == options_.compression) {
    stream->compression_ = options_.compression;
    stream->compression_level_ = options_.compression_level;
  }
  stream->reader_ = std::thread(&Stream::ReadLoop, stream.get());
  return stream;
}

absl::StatusOr<v1::FrameResult> Client::AnalyzeFrame(const v1::Frame& frame,
                                                     const v1::SessionSettings* settings) {
  v1::AnalyzeFrameRequest request;
  *request.mutable_frame() = frame;
  if (settings != nullptr) *request.mutable_settings() = *settings;
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s, frame.session_id());
  v1::FrameResult result;
  if (absl::Status s = ToStatus(stub_->AnalyzeFrame(&context, request, &result), "AnalyzeFrame");
      !s.ok()) {
    return s;
  }
  return result;
}

absl::StatusOr<v1::SessionInfo> Client::UpdateSession(const v1::UpdateSessionRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s, request.session_id());
  v1::SessionInfo info;
  if (absl::Status s = ToStatus(stub_->UpdateSession(&context, request, &info), "UpdateSession");
      !s.ok()) {
    return s;
  }
  return info;
}

absl::StatusOr<v1::SessionInfo> Client::GetSession(const std::string& session_id,
                                                   bool include_cache) {
  v1::GetSessionRequest request;
  request.set_session_id(session_id);
  request.set_include_cache(include_cache);
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s, session_id);
  v1::SessionInfo info;
  if (absl::Status s = ToStatus(stub_->GetSession(&context, request, &info), "GetSession");
      !s.ok()) {
    return s;
  }
  return info;
}

absl::StatusOr<v1::SessionInfo> Client::ResetSession(const std::string& session_id,
                                                     bool delete_session) {
  v1::ResetSessionRequest request;
  request.set_session_id(session_id);
  request.set_delete_session(delete_session);
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s, session_id);
  v1::SessionInfo info;
  if (absl::Status s = ToStatus(stub_->ResetSession(&context, request, &info), "ResetSession");
      !s.ok()) {
    return s;
  }
  return info;
}

absl::StatusOr<std::vector<v1::SessionInfo>> Client::ListSessions(bool include_settings) {
  v1::ListSessionsRequest request;
  request.set_include_settings(include_settings);
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s);
  v1::ListSessionsResponse response;
  if (absl::Status s = ToStatus(stub_->ListSessions(&context, request, &response), "ListSessions");
      !s.ok()) {
    return s;
  }
  return std::vector<v1::SessionInfo>(response.sessions().begin(), response.sessions().end());
}

absl::StatusOr<v1::SharedMemoryRegion> Client::RegisterSharedMemory(const std::string& region,
                                                                    const std::string& key,
                                                                    uint64_t byte_size) {
  v1::RegisterSharedMemoryRequest request;
  request.set_region(region);
  request.set_key(key);
  request.set_byte_size(byte_size);
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s);
  v1::SharedMemoryRegion registered;
  if (absl::Status s = ToStatus(stub_->RegisterSharedMemory(&context, request, &registered),
                                "RegisterSharedMemory");
      !s.ok()) {
    return s;
  }
  return registered;
}

absl::StatusOr<v1::SharedMemoryRegion> Client::RegisterSharedMemory(
    const std::string& region, const SharedMemoryBuffer& buffer) {
  return RegisterSharedMemory(region, buffer.key(), buffer.size());
}

absl::Status Client::UnregisterSharedMemory(const std::string& region) {
  v1::UnregisterSharedMemoryRequest request;
  request.set_region(region);
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s);
  v1::UnregisterSharedMemoryResponse response;
  return ToStatus(stub_->UnregisterSharedMemory(&context, request, &response),
                  "UnregisterSharedMemory");
}

absl::StatusOr<std::vector<v1::SharedMemoryRegion>> Client::ListSharedMemory() {
  v1::ListSharedMemoryRequest request;
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout_s);
  v1::ListSharedMemoryResponse response;
  if (absl::Status s =
          ToStatus(stub_->ListSharedMemory(&context, request, &response), "ListSharedMemory");
      !s.ok()) {
    return s;
  }
  return std::vector<v1::SharedMemoryRegion>(response.regions().begin(), response.regions().end());
}

absl::StatusOr<std::unique_ptr<Watcher>> Client::Watch(const WatchOptions& options) {
  if (options.all_sessions != options.session_id.empty()) {
    return absl::InvalidArgumentError("watch: give either session_id or all_sessions");
  }
  std::unique_ptr<Watcher> watcher(new Watcher(options_.address));
  Prepare(&watcher->context_, 0.0, options.session_id);  // no deadline: it runs until cancelled
  v1::WatchRequest request;
  request.set_session_id(options.session_id);
  request.set_all_sessions(options.all_sessions);
  request.set_include_preview(options.include_preview);
  watcher->rpc_ = stub_->Watch(&watcher->context_, request);
  watcher->rpc_->WaitForInitialMetadata();
  return watcher;
}

// ---------------------------------------------------------------- Watcher

Watcher::~Watcher() {
  if (!finished_) {
    Cancel();
    v1::WatchResponse ignored;
    while (rpc_->Read(&ignored)) {
    }
    (void)Finish();
  }
}

std::optional<v1::WatchResponse> Watcher::Read() {
  v1::WatchResponse response;
  if (finished_ || !rpc_->Read(&response)) return std::nullopt;
  return response;
}

absl::Status Watcher::Finish() {
  if (finished_) return final_status_;
  final_status_ = FromGrpc(rpc_->Finish(), address_, "watch");
  finished_ = true;
  return final_status_;
}

// ---------------------------------------------------------------- Stream

Stream::~Stream() {
  if (!finished_) {
    Cancel();
    (void)Finish();
  }
}

void Stream::ReadLoop() {
  v1::StreamResponse response;
  while (rpc_->Read(&response)) {
    const auto now = Clock::now();
    MutexLock lock(&mu_);
    StreamAnswer answer;
    const bool per_frame = response.has_result() || response.has_dropped() || response.has_error();
    if (auto it = pushed_.find(response.sequence()); it != pushed_.end()) {
      answer.latency_ms = std::chrono::duration<double, std::milli>(now - it->second).count();
      pushed_.erase(it);
    }
    if (per_frame && in_flight_ > 0) --in_flight_;
    answer.response = std::move(response);
    answers_.push_back(std::move(answer));
    response = v1::StreamResponse();
    cv_.SignalAll();
  }
  MutexLock lock(&mu_);
  read_done_ = true;
  cv_.SignalAll();
}

int Stream::in_flight() const {
  MutexLock lock(&mu_);
  return in_flight_;
}

absl::Status Stream::Push(v1::Frame frame) {
  if (finished_) {
    return final_status_.ok() ? absl::FailedPreconditionError("Push after the stream finished")
                              : final_status_;
  }
  if (send_closed_) return absl::FailedPreconditionError("Push after CloseSend");
  // A pixel-less end_of_stream marker gets no answer, so it takes no slot.
  const bool answered = !(frame.end_of_stream() && !frame.has_pixels());
  bool ended;
  {
    MutexLock lock(&mu_);
    while (!(read_done_ || !answered || in_flight_ < max_in_flight_)) cv_.Wait(&mu_);
    ended = read_done_;
    if (!ended && answered) {
      ++in_flight_;
      pushed_[frame.sequence()] = Clock::now();
    }
  }
  // After the push time is taken: the answer's latency includes it.
  if (absl::Status s = ended ? absl::OkStatus() : Compress(frame); !s.ok()) {
    MutexLock lock(&mu_);
    if (answered) {
      --in_flight_;
      pushed_.erase(frame.sequence());
      cv_.SignalAll();
    }
    return s;
  }
  v1::StreamRequest request;
  *request.mutable_frame() = std::move(frame);
  if (ended || !rpc_->Write(request)) {
    absl::Status s = Finish();
    if (s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("logstard at ", address_, ": the server ended the stream"));
    }
    return s;
  }
  return absl::OkStatus();
}

absl::Status Stream::Compress(v1::Frame& frame) const {
  if (compression_ == v1::PIXEL_CODEC_NONE || !frame.has_pixels()) return absl::OkStatus();
  // A large frame in two parts at once: compressing is on the frame's way
  // to the daemon, so it is latency.
  constexpr size_t kParallelBytes = 2u << 20;
  const int threads = frame.pixels().data().size() >= kParallelBytes ? 2 : 1;
  return wire::CompressPixels(compression_, frame.mutable_pixels(), compression_level_, threads);
}

std::optional<StreamAnswer> Stream::Read() {
  MutexLock lock(&mu_);
  while (answers_.empty() && !read_done_) cv_.Wait(&mu_);
  if (answers_.empty()) return std::nullopt;
  StreamAnswer answer = std::move(answers_.front());
  answers_.pop_front();
  return answer;
}

void Stream::CloseSend() {
  if (send_closed_ || finished_) return;
  send_closed_ = true;
  rpc_->WritesDone();
}

absl::Status Stream::Finish() {
  if (finished_) return final_status_;
  CloseSend();
  if (reader_.joinable()) reader_.join();
  final_status_ = FromGrpc(rpc_->Finish(), address_, "stream");
  finished_ = true;
  return final_status_;
}

}  // namespace logstar
