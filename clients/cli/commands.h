// The subcommands of the `logstar` command-line tool, one file each.
//
// Each takes the arguments after its name and returns a process exit code:
// 0 on success, 1 when the work failed (the message names the problem),
// 2 for a usage error, 3 (analyze and prior with --strict) when the work was
// done but a result's prior disagrees with the frame (its warnings are
// printed and, for analyze, in RESULT.json). Messages go to stderr as one
// line each.
#ifndef LOGSTAR_CLIENTS_CLI_COMMANDS_H_
#define LOGSTAR_CLIENTS_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace logstar::cli {

// synth.cc: a generated frame; with --frames, RunSynthStream.
int RunSynth(const std::vector<std::string>& args);
int RunSynthStream(const std::vector<std::string>& args);
// analyze.cc: a frame's (or a sequence's) atoms, in process or through logstard.
int RunAnalyze(const std::vector<std::string>& args);
// record.cc: image files as a recorded stream.
int RunRecord(const std::vector<std::string>& args);
// replay.cc: a recorded stream through logstard.
int RunReplay(const std::vector<std::string>& args);
// status.cc: logstard's health and sessions.
int RunStatus(const std::vector<std::string>& args);
// prior_command.cc: a prior file checked (against a frame) and shown, or
// written from the built-in table of projections.
int RunPrior(const std::vector<std::string>& args);
// console.cc: the operator console, a web page on a live session of logstard.
int RunConsole(const std::vector<std::string>& args);
// report.cc: pictures of a run (RESULTS.jsonl of replay, RESULT.json of analyze).
int RunReport(const std::vector<std::string>& args);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_COMMANDS_H_
