// The wire's pixels (v1::PixelData in proto/logstar/v1/frame.proto) as
// OpenCV images and back: the one table of element types, the checks of a
// PixelData's shape and bytes, and the copies and views between the two.
// Both sides use it: the daemon (server/convert.h, which adds its pixel
// limit, shared memory, valid_rows and pixel sizes) and the clients
// (clients/cpp, the CLI). It needs only the generated messages and OpenCV
// core, so a client program links no engine.
//
// Images are single-channel, row-major, x = column, y = row. The wire's
// bytes are little-endian, the host's order (big-endian hosts are refused at
// compile time).
//
// Errors are INVALID_ARGUMENT naming the field by its path in a frame
// (e.g. "frame.pixels.dtype", "frame.pixels.data"), as the daemon reports
// them.
//
// Thread-safety: pure functions.
#ifndef LOGSTAR_PROTO_WIRE_PIXELS_H_
#define LOGSTAR_PROTO_WIRE_PIXELS_H_

#include <cstdint>
#include <optional>

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logstar/v1/frame.pb.h"

namespace logstar::wire {

// One element type the wire carries: uint8, uint16, int16, float32, float64.
struct Dtype {
  v1::DType dtype;
  int cv_depth;  // CV_8U, CV_16U, CV_16S, CV_32F, CV_64F
  int bytes;     // per pixel
};

// The row of a wire dtype, or of an OpenCV depth; nullopt for one the wire
// does not carry (DTYPE_UNSPECIFIED, unknown values, CV_8S, CV_32S, CV_16F).
std::optional<Dtype> FromWire(v1::DType dtype);
std::optional<Dtype> FromDepth(int cv_depth);

// Everything that can be checked of `pixels` without reading them: a known
// dtype, a positive width and height of at most 2^31 - 1 (cv::Mat's sizes
// are int), and for pixels in the message exactly width × height × bytes of
// data, for compressed pixels the header's checks (CheckCompressed in
// proto/wire/compression.h; pixels in shared memory are not checked
// further). Never overflows,
// whatever the wire's values. Returns the dtype's row.
absl::StatusOr<Dtype> CheckPixels(const v1::PixelData& pixels);

// The first `rows` rows of the bytes in the message (pixels.data(), checked
// by CheckPixels, rows <= height) as an image of the dtype: a view of the
// bytes in place when they are aligned for the type (protobuf's allocations
// are), a copy otherwise. A view lives as long as `pixels` is unchanged.
cv::Mat ViewPixels(const v1::PixelData& pixels, const Dtype& type, int rows);

// Index (y × cols + x) of the first NaN or infinite pixel of a continuous
// image, or -1 (always for integer types). One vectorised pass over a clean
// image.
int64_t FirstNonFinite(const cv::Mat& image);
// INVALID_ARGUMENT "<field> pixel x=.. y=.. is NaN or infinite" for the first
// such pixel of a continuous image.
absl::Status CheckFinite(const cv::Mat& image, absl::string_view field);

// The row of a single-channel 2-D image's depth. INVALID_ARGUMENT for more
// channels or dimensions, or a depth the wire does not carry.
absl::StatusOr<Dtype> CheckImage(const cv::Mat& image);

// Copies a single-channel 2-D image's rows (a non-contiguous view is fine)
// to `out`, row-major without padding: rows × cols × elemSize() bytes.
void CopyRows(const cv::Mat& image, char* out);

// An image that passes CheckImage as PixelData with the bytes in the
// message.
absl::StatusOr<v1::PixelData> ImageToPixels(const cv::Mat& image);

// The inverse: CheckPixels, then finite pixels; a copy of the bytes (or
// the decompressed bytes of compressed pixels), so the image outlives
// `pixels`. SharedMemoryUnavailable() for pixels in shared
// memory.
absl::StatusOr<cv::Mat> PixelsToImage(const v1::PixelData& pixels);

// INVALID_ARGUMENT naming frame.pixels.shared_memory: pixels in shared
// memory where nothing can read them (only logstard does, with its registry
// of the regions clients on its host registered).
absl::Status SharedMemoryUnavailable();

}  // namespace logstar::wire

#endif  // LOGSTAR_PROTO_WIRE_PIXELS_H_
