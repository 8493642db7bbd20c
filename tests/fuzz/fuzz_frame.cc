// Fuzz target: the daemon's frame decoding (server/convert.h), from the bytes
// of a request to the engine's normalised image.
//
// The first byte picks what the rest is:
//   0  a serialized AnalyzeFrameRequest: settings checks, then DecodeFrame
//   1  a serialized StreamRequest: DecodeFrame of its frame
//   2  raw pixels: dtype, width, height and valid_rows as 4 bytes each
//      (little-endian), then the pixel bytes; DecodeFrame
//   3  the same through PixelsToImage (the clients' direction, no limit)
// Raw pixels reach shapes and byte counts that protobuf mutation rarely
// does (e.g. width × height overflowing, sizes off by one).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/image/normalize.h"
#include "logstar/v1/service.pb.h"
#include "server/convert.h"
#include "server/session_config.h"

namespace {

using logstar::server::DecodedFrame;

// The daemon's default limit (4096²) would let the fuzzer ask for 64 MiB
// images; a smaller one keeps iterations fast and tests the limit check.
constexpr int64_t kMaxPixels = 1 << 16;

uint32_t TakeU32(const uint8_t*& data, size_t& size) {
  uint32_t v = 0;
  for (int i = 0; i < 4 && size > 0; ++i, ++data, --size) v |= uint32_t{*data} << (8 * i);
  return v;
}

// What the session does next with a decoded frame: normalise it.
void UseImage(const cv::Mat& image) {
  if (image.empty()) return;
  logstar::NormalizeOptions options;
  (void)logstar::NormalizeFrame(image, options);
}

void Decode(const logstar::v1::Frame& frame, int64_t max_pixels) {
  (void)logstar::server::CheckFrameLimits(frame, max_pixels);
  absl::StatusOr<DecodedFrame> decoded = logstar::server::DecodeFrame(frame, max_pixels);
  if (decoded.ok()) UseImage(decoded->image);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  ++data;
  --size;
  switch (mode) {
    case 0: {
      logstar::v1::AnalyzeFrameRequest request;
      if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
      const auto config = logstar::server::ParseSessionSettings(request.settings());
      if (config.ok()) (void)config->PriorAt(request.frame().pixel_size_x_angstrom());
      Decode(request.frame(), kMaxPixels);
      break;
    }
    case 1: {
      logstar::v1::StreamRequest request;
      if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
      if (request.has_frame()) Decode(request.frame(), kMaxPixels);
      break;
    }
    default: {
      logstar::v1::Frame frame;
      logstar::v1::PixelData& px = *frame.mutable_pixels();
      px.set_dtype(static_cast<logstar::v1::DType>(TakeU32(data, size) % 8));
      px.set_width(TakeU32(data, size));
      px.set_height(TakeU32(data, size));
      frame.set_valid_rows(TakeU32(data, size));
      px.set_data(std::string(reinterpret_cast<const char*>(data), size));
      if (mode == 2) {
        Decode(frame, kMaxPixels);
      } else {
        absl::StatusOr<cv::Mat> image = logstar::server::PixelsToImage(px);
        if (image.ok()) UseImage(*image);
      }
      break;
    }
  }
  return 0;
}
