// The float scan built with -mavx2 (see engine/CMakeLists.txt). Without
// OpenCV (this object library does not link it): pixel_scan.cc declares
// ScanFloatAvx2 and picks it.
#include <cstdint>

#define LOGSTAR_SCAN_NAMESPACE avx2
#include "engine/image/pixel_scan_impl.inc"

namespace logstar::internal {
bool (*ScanFloatAvx2())(const float*, int64_t, float*, float*) { return &avx2::ScanFloat; }
}  // namespace logstar::internal
