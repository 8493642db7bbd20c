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

int RunSynth(const std::vector<std::string>& args);
int RunAnalyze(const std::vector<std::string>& args);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_COMMANDS_H_
