#include "proto/wire/pixels.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "proto/wire/compression.h"

namespace logstar::wire {
namespace {

// The wire is little-endian; frames are viewed in place, which needs a
// little-endian host (x86-64, arm64).
static_assert(std::endian::native == std::endian::little, "big-endian hosts are not supported");

constexpr std::array<Dtype, 5> kDtypes = {{
    {v1::DTYPE_UINT8, CV_8U, 1},
    {v1::DTYPE_UINT16, CV_16U, 2},
    {v1::DTYPE_INT16, CV_16S, 2},
    {v1::DTYPE_FLOAT32, CV_32F, 4},
    {v1::DTYPE_FLOAT64, CV_64F, 8},
}};

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

// Index of the first NaN or infinite value, or -1. Tests the exponent bits
// (all ones for NaN and infinities) with integer operations, which the
// compiler vectorises, one block at a time so a clean frame costs one pass.
template <typename Float, typename Bits, Bits kExponent>
int64_t FirstNonFiniteOf(const char* data, int64_t n) {
  constexpr int64_t kBlock = 4096;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    Bits bad = 0;
    for (int64_t i = b; i < e; ++i) {
      Bits v;
      std::memcpy(&v, data + i * sizeof(Bits), sizeof(Bits));
      bad |= static_cast<Bits>((v & kExponent) == kExponent);
    }
    if (bad == 0) continue;
    for (int64_t i = b; i < e; ++i) {
      Float v;
      std::memcpy(&v, data + i * sizeof(Float), sizeof(Float));
      if (!std::isfinite(v)) return i;
    }
  }
  return -1;
}

}  // namespace

std::optional<Dtype> FromWire(v1::DType dtype) {
  for (const Dtype& d : kDtypes) {
    if (d.dtype == dtype) return d;
  }
  return std::nullopt;
}

std::optional<Dtype> FromDepth(int cv_depth) {
  for (const Dtype& d : kDtypes) {
    if (d.cv_depth == cv_depth) return d;
  }
  return std::nullopt;
}

absl::StatusOr<Dtype> CheckPixels(const v1::PixelData& px) {
  const std::optional<Dtype> type = FromWire(px.dtype());
  if (!type) {
    return Invalid("frame.pixels.dtype",
                   absl::StrCat("must be uint8, uint16, int16, float32 or float64, got ",
                                static_cast<int>(px.dtype())));
  }
  if (px.width() == 0 || px.height() == 0) {
    return Invalid("frame.pixels", absl::StrCat("must have a positive width and height, got ",
                                                px.width(), " x ", px.height()));
  }
  // cv::Mat's sizes are int; no wire frame this large can hold its bytes anyway.
  constexpr uint32_t kMaxSide = std::numeric_limits<int>::max();
  if (px.width() > kMaxSide || px.height() > kMaxSide) {
    return Invalid("frame.pixels",
                   absl::StrCat("must be at most 2^31 - 1 pixels wide and high, got ", px.width(),
                                " x ", px.height()));
  }
  if (px.source_case() == v1::PixelData::kCompressed) {
    if (absl::Status s = CheckCompressed(px, *type); !s.ok()) return s;
  } else if (px.source_case() != v1::PixelData::kSharedMemory) {
    // Compared by division: pixels × bytes can exceed 64 bits when the
    // caller sets no pixel limit (PixelsToImage).
    const uint64_t pixels = uint64_t{px.width()} * px.height();
    const uint64_t bytes = static_cast<uint64_t>(type->bytes);
    const uint64_t size = px.data().size();
    if (size % bytes != 0 || size / bytes != pixels) {
      return Invalid(
          "frame.pixels.data",
          absl::StrCat("holds ", size, " bytes, but ", px.width(), " x ", px.height(),
                       " pixels of ", v1::DType_Name(px.dtype()), " need ", pixels, " x ", bytes));
    }
  }
  return *type;
}

cv::Mat ViewPixels(const v1::PixelData& px, const Dtype& type, int rows) {
  const char* data = px.data().data();
  const cv::Mat view(rows, static_cast<int>(px.width()), CV_MAKETYPE(type.cv_depth, 1),
                     const_cast<char*>(data));
  return reinterpret_cast<uintptr_t>(data) % type.bytes == 0 ? view : view.clone();
}

int64_t FirstNonFinite(const cv::Mat& image) {
  const auto* data = reinterpret_cast<const char*>(image.data);
  const auto n = static_cast<int64_t>(image.total());
  if (image.depth() == CV_32F) return FirstNonFiniteOf<float, uint32_t, 0x7f800000u>(data, n);
  if (image.depth() == CV_64F) {
    return FirstNonFiniteOf<double, uint64_t, 0x7ff0000000000000ull>(data, n);
  }
  return -1;
}

absl::Status CheckFinite(const cv::Mat& image, absl::string_view field) {
  const int64_t bad = FirstNonFinite(image);
  if (bad < 0) return absl::OkStatus();
  return Invalid(field, absl::StrCat("pixel x=", bad % image.cols, " y=", bad / image.cols,
                                     " is NaN or infinite"));
}

absl::StatusOr<Dtype> CheckImage(const cv::Mat& image) {
  if (image.channels() != 1 || image.dims != 2) {
    return absl::InvalidArgumentError("frames must be single-channel 2-D images");
  }
  const std::optional<Dtype> type = FromDepth(image.depth());
  if (!type) {
    return absl::InvalidArgumentError(
        "pixel type not supported on the wire (uint8, uint16, int16, float32, float64)");
  }
  return *type;
}

void CopyRows(const cv::Mat& image, char* out) {
  const size_t row_bytes = static_cast<size_t>(image.cols) * image.elemSize();
  if (image.isContinuous()) {
    std::memcpy(out, image.data, row_bytes * image.rows);
    return;
  }
  for (int y = 0; y < image.rows; ++y) std::memcpy(out + y * row_bytes, image.ptr(y), row_bytes);
}

absl::StatusOr<v1::PixelData> ImageToPixels(const cv::Mat& image) {
  const absl::StatusOr<Dtype> type = CheckImage(image);
  if (!type.ok()) return type.status();
  v1::PixelData px;
  px.set_dtype(type->dtype);
  px.set_width(image.cols);
  px.set_height(image.rows);
  std::string* data = px.mutable_data();
  data->resize(image.total() * image.elemSize());
  CopyRows(image, data->data());
  return px;
}

absl::StatusOr<cv::Mat> PixelsToImage(const v1::PixelData& px) {
  const absl::StatusOr<Dtype> type = CheckPixels(px);
  if (!type.ok()) return type.status();
  if (px.source_case() == v1::PixelData::kSharedMemory) return SharedMemoryUnavailable();
  if (px.source_case() == v1::PixelData::kCompressed) {
    cv::Mat image(static_cast<int>(px.height()), static_cast<int>(px.width()),
                  CV_MAKETYPE(type->cv_depth, 1));
    if (absl::Status s = DecompressPixels(px, reinterpret_cast<char*>(image.data)); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckFinite(image, "frame.pixels.compressed"); !s.ok()) return s;
    return image;
  }
  cv::Mat image = ViewPixels(px, *type, static_cast<int>(px.height()));
  if (absl::Status s = CheckFinite(image, "frame.pixels.data"); !s.ok()) return s;
  // A view of the message's bytes is copied, so the image outlives them.
  if (image.data == reinterpret_cast<const uchar*>(px.data().data())) image = image.clone();
  return image;
}

absl::Status SharedMemoryUnavailable() {
  return Invalid("frame.pixels.shared_memory",
                 "is not available here (only logstard reads shared memory, and only for "
                 "clients on its host)");
}

}  // namespace logstar::wire
