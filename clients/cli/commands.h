// The subcommands of the `logstar` command-line tool.
//
// Each takes the arguments after its name and returns a process exit code:
// 0 on success, 1 when the work failed (the message names the problem),
// 2 for a usage error. Messages go to stderr as one line each.
#ifndef LOGSTAR_CLIENTS_CLI_COMMANDS_H_
#define LOGSTAR_CLIENTS_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace logstar::cli {

int RunSynth(const std::vector<std::string>& args);  // with --frames: RunSynthStream
int RunAnalyze(const std::vector<std::string>& args);

// clients/cli/stream_commands.cc: recorded streams and the daemon.
int RunSynthStream(const std::vector<std::string>& args);
int RunRecord(const std::vector<std::string>& args);
int RunReplay(const std::vector<std::string>& args);
int RunStatus(const std::vector<std::string>& args);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_COMMANDS_H_
