// logstard: the logstar gRPC daemon. Configuration: server/options.h and
// proto/logstar/v1/daemon.proto; behaviour: server/server.h.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <pthread.h>

#include "server/log.h"
#include "server/options.h"
#include "server/server.h"

int main(int argc, char** argv) {
  using namespace logstar::server;
  // SIGTERM and SIGINT are taken synchronously by sigwait below, so they
  // must be blocked before any thread starts (threads inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  bool help = false;
  const absl::StatusOr<logstar::v1::DaemonConfig> config =
      ConfigFromCommandLine(std::vector<std::string>(argv + 1, argv + argc), &help);
  if (help) {
    std::fputs(CommandLineHelp().c_str(), stdout);
    return 0;
  }
  if (!config.ok()) {
    std::fprintf(stderr, "logstard: error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  const absl::StatusOr<ServerOptions> options = OptionsFromConfig(*config);
  if (!options.ok()) {
    std::fprintf(stderr, "logstard: error: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::unique_ptr<LogStarServer>> server = LogStarServer::Start(*options);
  if (!server.ok()) {
    Log(LogLevel::kError, "start_failed", {{"why", server.status().ToString()}});
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  Log(LogLevel::kInfo, "signal", {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Shutdown();
  server->reset();
  return 0;
}
