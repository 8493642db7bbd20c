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
    "                 [--window PX] [--stride PX] [--evals N] [--seed S] [--choose RULE]\n"
    "                 [--sublattice NAME] [--strict] [--pixel-size A] [--overlay OUT.png]\n"
    "                 [--normalize minmax|percentile] [--server ADDR | --threads N]\n"
    "           logstar analyze IMAGE --prior PRIOR.json --out RESULT.json\n"
    "                 --fixed min_sigma,max_sigma,num_sigma,threshold,overlap\n"
    "                 [--overlay OUT.png] [--truth ATOMS.csv]   (no LoG* option, no --server)\n"
    "           IMAGE: .npy, .tif/.tiff, .png or .emd; a TIFF/EMD calibration gives an auto\n"
    "           prior its pixel size\n"
    "  synth --frames K --out S.lsr   a drifting, noisy generated stream with its ground truth\n"
    "  record   write image files as a recorded stream\n"
    "           logstar record --from DIR|GLOB --prior PRIOR.json|auto --out S.lsr [--fps F]\n"
    "  replay   send a recorded stream to logstard and read every answer\n"
    "           logstar replay S.lsr --server ADDR [--speed 1|N|max] [--loop K]\n"
    "                 [--results R.jsonl] [--overlays DIR] [--tls ...] [--token T]\n"
    "  status   health of logstard and its sessions: logstar status --server ADDR [--session ID]\n"
    "  report   draw a run: logstar report RESULTS.jsonl|RESULT.json --out DIR\n"
    "  console  watch a live session in a browser and pick on its Pareto fronts\n"
    "           logstar console --server ADDR [--listen 127.0.0.1:PORT] [--tls ...] [--token T]\n"
    "  prior    check a prior file (against a frame's lattice) and show it, or write one\n"
    "           logstar prior PRIOR.json|auto [--frame IMAGE] [--pixel-size A] [--strict]\n"
    "           logstar prior --projection NAME (--pixel-size A | --frame IMAGE) [--out P.json]\n"
    "           logstar prior --list   (SrTiO3, YBCO, graphene, Au/Cu/Pt projections)\n"
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
  if (command == "report") return logstar::cli::RunReport(args);
  if (command == "console") return logstar::cli::RunConsole(args);
  if (command == "version" || command == "--version") {
    std::printf("logstar %s\n", LOGSTAR_VERSION);
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "logstar: error: unknown command '%s' (see 'logstar --help')\n",
               command.c_str());
  return 2;
}
