#include "engine/base/kernel_isa.h"

#include <cstdlib>
#include <string_view>

namespace logstar::internal {

bool CpuHasAvx2Fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool kHas = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return kHas;
#else
  return false;
#endif
}

bool CpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool kHas = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  return kHas;
#else
  return false;
#endif
}

KernelIsa ChosenKernelIsa() {
  static const KernelIsa kChosen = [] {
    const char* cap = std::getenv("LOGSTAR_KERNELS");
    const std::string_view want = cap == nullptr ? "" : cap;
    if (want == "generic") return KernelIsa::kGeneric;
    if (CpuHasAvx512() && want != "avx2") return KernelIsa::kAvx512;
    if (CpuHasAvx2Fma()) return KernelIsa::kAvx2;
    return KernelIsa::kGeneric;
  }();
  return kChosen;
}

}  // namespace logstar::internal
