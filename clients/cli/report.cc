#include "clients/cli/commands.h"
namespace logstar::cli {
int RunReport(const std::vector<std::string>&) { return 1; }
}  // namespace logstar::cli
