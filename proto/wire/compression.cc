#include "proto/wire/compression.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace logstar::wire {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

// Element sizes known at compile time, restrict-qualified planes and
// blocks that stay in cache let the compiler vectorise the gather and
// scatter: a pass over an 8 MB frame then costs about a memcpy (uint16
// frames are the common case, with a loop of their own).
constexpr size_t kBlock = 4096;  // elements

// Shuffles (kToPlanes) or unshuffles n elements of `element` bytes; a
// kElement other than 0 fixes the size at compile time.
template <bool kToPlanes, int kElement>
void MoveBytes(const char* __restrict in, size_t n, int element, char* __restrict out) {
  const size_t e = kElement != 0 ? kElement : static_cast<size_t>(element);
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t end = std::min(n, b + kBlock);
    for (size_t k = 0; k < e; ++k) {
      for (size_t i = b; i < end; ++i) {
        if constexpr (kToPlanes) {
          out[k * n + i] = in[i * e + k];
        } else {
          out[i * e + k] = in[k * n + i];
        }
      }
    }
  }
}
template <>
void MoveBytes<true, 2>(const char* __restrict in, size_t n, int, char* __restrict out) {
  auto* __restrict lo = reinterpret_cast<uint8_t*>(out);
  auto* __restrict hi = lo + n;
  for (size_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, in + 2 * i, 2);
    lo[i] = static_cast<uint8_t>(v);
    hi[i] = static_cast<uint8_t>(v >> 8);
  }
}
template <>
void MoveBytes<false, 2>(const char* __restrict in, size_t n, int, char* __restrict out) {
  const auto* __restrict lo = reinterpret_cast<const uint8_t*>(in);
  const auto* __restrict hi = lo + n;
  for (size_t i = 0; i < n; ++i) {
    const auto v = static_cast<uint16_t>(lo[i] | (hi[i] << 8));
    std::memcpy(out + 2 * i, &v, 2);
  }
}

template <bool kToPlanes>
void MoveBytes(const char* in, size_t size, int element, char* out) {
  const size_t n = size / element;
  switch (element) {
    case 2:
      return MoveBytes<kToPlanes, 2>(in, n, element, out);
    case 4:
      return MoveBytes<kToPlanes, 4>(in, n, element, out);
    case 8:
      return MoveBytes<kToPlanes, 8>(in, n, element, out);
    default:
      return MoveBytes<kToPlanes, 0>(in, n, element, out);
  }
}

// One context per thread and direction: making a zstd context costs more
// than compressing a small frame, and contexts are not thread-safe.
struct ZstdContexts {
  struct FreeC {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  };
  struct FreeD {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
  };
  std::unique_ptr<ZSTD_CCtx, FreeC> compress{ZSTD_createCCtx()};
  std::unique_ptr<ZSTD_DCtx, FreeD> decompress{ZSTD_createDCtx()};
  // Shuffled bytes on their way in or out; grows to the largest frame the
  // thread has seen (bounded by the daemon's pixel limit), never zeroed.
  std::unique_ptr<char[]> scratch;
  size_t scratch_size = 0;

  char* Scratch(size_t size) {
    if (size > scratch_size) {
      scratch.reset(new char[size]);
      scratch_size = size;
    }
    return scratch.get();
  }
};

ZstdContexts& Contexts() {
  thread_local ZstdContexts contexts;
  return contexts;
}

}  // namespace

absl::Status CheckCodec(v1::PixelCodec codec, absl::string_view field) {
  if (codec == v1::PIXEL_CODEC_NONE || codec == v1::PIXEL_CODEC_ZSTD) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be PIXEL_CODEC_NONE or PIXEL_CODEC_ZSTD, got ",
                                     static_cast<int>(codec)));
}

absl::StatusOr<v1::PixelCodec> ParseCodec(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "none") return v1::PIXEL_CODEC_NONE;
  if (lower == "zstd") return v1::PIXEL_CODEC_ZSTD;
  return absl::InvalidArgumentError(
      absl::StrCat("compression must be none or zstd, got '", name, "'"));
}

const char* CodecName(v1::PixelCodec codec) {
  switch (codec) {
    case v1::PIXEL_CODEC_NONE:
      return "none";
    case v1::PIXEL_CODEC_ZSTD:
      return "zstd";
    default:
      return "unknown";
  }
}

void ShuffleBytes(const char* in, size_t size, int element, char* out) {
  MoveBytes<true>(in, size, element, out);
}

void UnshuffleBytes(const char* in, size_t size, int element, char* out) {
  MoveBytes<false>(in, size, element, out);
}

absl::Status CheckCompressed(const v1::PixelData& px, const Dtype& type) {
  const v1::CompressedPixels& c = px.compressed();
  if (c.codec() == v1::PIXEL_CODEC_NONE) {
    return Invalid("frame.pixels.compressed.codec",
                   "must name a codec (PIXEL_CODEC_ZSTD); uncompressed pixels go in data");
  }
  if (absl::Status s = CheckCodec(c.codec(), "frame.pixels.compressed.codec"); !s.ok()) return s;
  if (c.shuffle_bytes() > 1 && c.shuffle_bytes() != static_cast<uint32_t>(type.bytes)) {
    return Invalid("frame.pixels.compressed.shuffle_bytes",
                   absl::StrCat("must be 0, 1 or the element size ", type.bytes, " of ",
                                v1::DType_Name(px.dtype()), ", got ", c.shuffle_bytes()));
  }
  // width and height are below 2^31 (CheckPixels), so their product with
  // at most 8 bytes fits in 64 bits.
  const uint64_t expected = uint64_t{px.width()} * px.height() * static_cast<uint64_t>(type.bytes);
  if (c.uncompressed_size() != expected) {
    return Invalid(
        "frame.pixels.compressed.uncompressed_size",
        absl::StrCat("is ", c.uncompressed_size(), " bytes, but ", px.width(), " x ", px.height(),
                     " pixels of ", v1::DType_Name(px.dtype()), " are ", expected));
  }
  return absl::OkStatus();
}

absl::Status CompressPixels(v1::PixelCodec codec, v1::PixelData* px, int level, int threads) {
  if (absl::Status s = CheckCodec(codec, "compression"); !s.ok()) return s;
  if (codec == v1::PIXEL_CODEC_NONE || px->source_case() != v1::PixelData::kData) {
    return absl::OkStatus();
  }
  const std::optional<Dtype> type = FromWire(px->dtype());
  const int element = type ? type->bytes : 1;
  const std::string& raw = px->data();
  ZstdContexts& z = Contexts();
  const char* input = raw.data();
  if (element > 1) {
    char* shuffled = z.Scratch(raw.size());
    ShuffleBytes(raw.data(), raw.size(), element, shuffled);
    input = shuffled;
  }
  v1::CompressedPixels c;
  c.set_codec(codec);
  c.set_shuffle_bytes(element > 1 ? element : 0);
  c.set_uncompressed_size(raw.size());
  std::string* out = c.mutable_data();
  out->resize(ZSTD_compressBound(raw.size()));
  ZSTD_CCtx* cctx = z.compress.get();
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  // Workers compress parts of a large frame at once (a libzstd built
  // without threads refuses the parameter and compresses alone; the result
  // is a valid zstd frame either way).
  if (threads > 1) ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, threads);
  const size_t n = ZSTD_compress2(cctx, out->data(), out->size(), input, raw.size());
  if (ZSTD_isError(n)) {
    return absl::InternalError(absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
  }
  out->resize(n);
  *px->mutable_compressed() = std::move(c);  // clears data (a oneof)
  return absl::OkStatus();
}

absl::Status DecompressPixels(const v1::PixelData& px, char* out) {
  const v1::CompressedPixels& c = px.compressed();
  const size_t size = c.uncompressed_size();
  const int element = c.shuffle_bytes() > 1 ? static_cast<int>(c.shuffle_bytes()) : 1;
  ZstdContexts& z = Contexts();
  char* target = element > 1 ? z.Scratch(size) : out;
  // The output buffer is the bound: zstd stops with an error rather than
  // write past `size`, whatever the payload's header claims.
  const size_t n =
      ZSTD_decompressDCtx(z.decompress.get(), target, size, c.data().data(), c.data().size());
  if (ZSTD_isError(n)) {
    return Invalid("frame.pixels.compressed.data",
                   absl::StrCat("does not decompress to ", size,
                                " bytes (uncompressed_size) with zstd: ", ZSTD_getErrorName(n)));
  }
  if (n != size) {
    return Invalid("frame.pixels.compressed.data",
                   absl::StrCat("decompresses to ", n, " bytes, but uncompressed_size is ", size));
  }
  if (element > 1) UnshuffleBytes(target, size, element, out);
  return absl::OkStatus();
}

}  // namespace logstar::wire
