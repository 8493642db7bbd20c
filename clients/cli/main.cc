// logstar: the command-line tool of the logstar service.
#include <cstdio>
#include <string>
#include <vector>

#include "clients/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: logstar <command> [options]\n"
    "\n"
    "commands:\n"
    "  synth    generate a synthetic HAADF-like frame with ground truth\n"
    "           logstar synth --out DIR [--size N] [--lattice ybco|perovskite|hex]\n"
    "                 [--noise L] [--amorphous F] [--seed S] [--drift D] [--dose C]\n"
    "                 [--pixel-size A]\n"
    "           logstar synth --frames K --out S.lsr [...]: a recorded stream (see --frames "
    "--help)\n"
    "  analyze  find the atoms in a frame (or a sequence) with LoG* per window\n"
    "           logstar analyze IMAGE|--frames DIR_OR_GLOB --prior PRIOR.json|auto --out "
    "RESULT.json\n"
    "                 [--window PX] [--stride PX] [--evals N] [--seed S]\n"
    "                 [--pixel-size A] [--sublattice NAME] [--strict]\n"
    "                 [--choose euclidean|chebyshev|weights:WQ,WE] [--overlay OUT.png]\n"
    "                 [--fixed min_sigma,max_sigma,num_sigma,threshold,overlap]\n"
    "                 [--normalize minmax|percentile] [--threads N]\n"
    "  synth --frames K --out S.lsr   a drifting, noisy generated stream with its ground truth\n"
    "  record   write image files as a recorded stream\n"
    "           logstar record --from DIR|GLOB --prior PRIOR.json|auto --out S.lsr [--fps F]\n"
    "  replay   send a recorded stream to logstard and read every answer\n"
    "           logstar replay S.lsr --server ADDR [--speed 1|N|max] [--loop K]\n"
    "                 [--results R.jsonl] [--overlays DIR] [--tls ...] [--token T]\n"
    "  status   health of logstard and its sessions: logstar status --server ADDR [--session ID]\n"
    "  prior    check a prior file (against a frame's lattice) and show it\n"
    "           logstar prior PRIOR.json|auto [--frame IMAGE] [--pixel-size A] [--strict]\n"
    "  version  print the version\n"
    "\n"
    "Run 'logstar <command> --help' for the options of a command.\n"
    "Exit codes: 0 done, 1 failed, 2 usage error, 3 done but --strict and prior warnings.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "synth") return logstar::cli::RunSynth(args);
  if (command == "analyze") return logstar::cli::RunAnalyze(args);
  if (command == "record") return logstar::cli::RunRecord(args);
  if (command == "replay") return logstar::cli::RunReplay(args);
  if (command == "status") return logstar::cli::RunStatus(args);
  if (command == "prior") return logstar::cli::RunPrior(args);
  if (command == "version" || command == "--version") {
    std::printf("logstar %s\n", LOGSTAR_VERSION);
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "logstar: error: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
