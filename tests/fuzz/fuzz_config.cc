// Fuzz target: logstard's configuration (server/options.h). The first byte
// picks what the rest is:
//   0  a text-format DaemonConfig file, through LoadConfigFile
//   1  a JSON DaemonConfig file (the path ends in .json)
//   2  a command line, one argument per line, through ConfigFromCommandLine;
//      --config=... always names the fuzzer's own file, so that the fuzzer
//      cannot make it read /dev/zero or other files of the machine
// and every config that parses goes through OptionsFromConfig (Validate).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "server/options.h"

namespace {

// LoadConfigFile reads a path: one file per process (and per extension),
// rewritten for every input.
std::string TempFile(const char* suffix) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/logstar_fuzz_config_" +
         std::to_string(getpid()) + suffix;
}

void Write(const std::string& path, absl::string_view bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();  // the fuzzer's environment, not a finding
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

void Use(const absl::StatusOr<logstar::v1::DaemonConfig>& config) {
  if (config.ok()) (void)logstar::server::OptionsFromConfig(*config);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const std::string text_path = TempFile(".textproto");
  static const std::string json_path = TempFile(".json");
  switch (mode) {
    case 0:
      Write(text_path, rest);
      Use(logstar::server::LoadConfigFile(text_path));
      break;
    case 1:
      Write(json_path, rest);
      Use(logstar::server::LoadConfigFile(json_path));
      break;
    default: {
      std::vector<std::string> args = absl::StrSplit(rest, '\n');
      // A fixed small file: --config's merge with the flags still runs.
      Write(text_path, "max_pixels: 1024\nlog_level: \"warning\"\n");
      for (std::string& arg : args) {
        if (absl::StartsWith(arg, "--config=")) arg = "--config=" + text_path;
      }
      bool help = false;
      Use(logstar::server::ConfigFromCommandLine(args, &help));
      break;
    }
  }
  // Leave nothing behind in TMPDIR when the run ends.
  std::remove(text_path.c_str());
  std::remove(json_path.c_str());
  return 0;
}
