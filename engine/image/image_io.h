// Reading and writing single-channel frames.
//
// Frames are cv::Mat with one channel. Supported element types are those a
// microscope produces: CV_8U, CV_16U, CV_16S, CV_32F, CV_64F. Rows are image
// rows (y), columns image columns (x).
#ifndef LOGSTAR_ENGINE_IMAGE_IMAGE_IO_H_
#define LOGSTAR_ENGINE_IMAGE_IMAGE_IO_H_

#include <string>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"

namespace logstar {

// Loads a 2-D frame from .npy (numpy format 1.x/2.x, C or Fortran order,
// float32, float64, uint8, uint16 or int16, either endianness), TIFF (first
// page) or PNG, chosen by extension. The returned Mat keeps the file's
// element type, except three .npy dtypes OpenCV cannot hold as such, which
// are widened exactly: int32 and uint32 to float64, float16 to float32. Errors name the file and
// the problem (missing, truncated, unsupported dtype, not 2-D, empty, more than one channel).
absl::StatusOr<cv::Mat> LoadFrame(const std::string& path);

// Writes a 2-D single-channel Mat as a little-endian, C-order .npy file
// (numpy format 1.0). Element types as above.
absl::Status WriteNpy(const std::string& path, const cv::Mat& mat);

// Parses a .npy file already read into memory; `name` is used in errors.
absl::StatusOr<cv::Mat> ParseNpy(const std::string& bytes, const std::string& name);

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_IMAGE_IMAGE_IO_H_
