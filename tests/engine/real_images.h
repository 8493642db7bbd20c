// The real microscope images of ../shared/data/real (README there) for the
// engine's tests: each a NAME.npy frame beside NAME.positions.csv (x, y in
// px, then optional columns; a header line). Tests skip with a message when
// the directory is absent (LOGSTAR_SHARED_DIR, tests/CMakeLists.txt).
#ifndef LOGSTAR_TESTS_ENGINE_REAL_IMAGES_H_
#define LOGSTAR_TESTS_ENGINE_REAL_IMAGES_H_

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/base/geometry.h"
#include "engine/image/image_io.h"

namespace logstar::testing {

inline std::string RealDir() { return std::string(LOGSTAR_SHARED_DIR) + "/data/real/"; }

// The frame NAME.npy as stored, or nullopt when it is absent (the caller
// skips); an error when it is there but cannot be read.
inline absl::StatusOr<std::optional<cv::Mat>> LoadRealFrame(const std::string& name) {
  const std::string path = RealDir() + name + ".npy";
  if (!std::filesystem::exists(path)) return std::optional<cv::Mat>();
  absl::StatusOr<cv::Mat> frame = LoadFrame(path);
  if (!frame.ok()) return frame.status();
  return std::optional<cv::Mat>(*std::move(frame));
}

// The x, y of the first `rows` rows of NAME.positions.csv (all when < 0).
inline absl::StatusOr<std::vector<PointXY>> LoadRealPositions(const std::string& name,
                                                              int rows = -1) {
  std::ifstream in(RealDir() + name + ".positions.csv");
  if (!in) return absl::NotFoundError(absl::StrCat(name, ".positions.csv not found"));
  std::vector<PointXY> out;
  std::string line;
  std::getline(in, line);  // header
  while ((rows < 0 || static_cast<int>(out.size()) < rows) && std::getline(in, line)) {
    double x = 0.0, y = 0.0;
    if (std::sscanf(line.c_str(), "%lf,%lf", &x, &y) != 2) {
      return absl::InvalidArgumentError(absl::StrCat(name, ".positions.csv: bad line ", line));
    }
    out.push_back({x, y});
  }
  return out;
}

}  // namespace logstar::testing

#endif  // LOGSTAR_TESTS_ENGINE_REAL_IMAGES_H_
