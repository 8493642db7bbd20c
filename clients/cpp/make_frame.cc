#include "clients/cpp/make_frame.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "proto/wire/pixels.h"

namespace logstar {

absl::StatusOr<v1::Frame> MakeFrame(const void* pixels, int width, int height, v1::DType dtype,
                                    double pixel_size_angstrom) {
  v1::Frame frame;
  v1::PixelData* data = frame.mutable_pixels();
  data->set_dtype(dtype);
  // A negative size becomes 0, which the wire's check refuses: its rules
  // (wire::CheckPixels) are the only ones, and the daemon's.
  data->set_width(static_cast<uint32_t>(std::max(width, 0)));
  data->set_height(static_cast<uint32_t>(std::max(height, 0)));
  const std::optional<wire::Dtype> type = wire::FromWire(dtype);
  if (!type || width <= 0 || height <= 0) return wire::CheckPixels(*data).status();
  if (pixels == nullptr) {
    return absl::InvalidArgumentError("frame.pixels.data: null pointer to the pixels");
  }
  data->set_data(pixels, static_cast<size_t>(width) * static_cast<size_t>(height) * type->bytes);
  if (pixel_size_angstrom != 0.0) {
    frame.set_pixel_size_x_angstrom(pixel_size_angstrom);
    frame.set_pixel_size_y_angstrom(pixel_size_angstrom);
  }
  return frame;
}

}  // namespace logstar
