#include "proto/wire/compression.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

  // ZSTD_DELTA's bands compressed, before they are joined; the same
  // bound and lifetime as scratch. Kept, as scratch is, so that a stream's
  // frames do not fault in fresh pages each time.
  std::unique_ptr<char[]> packed;
  size_t packed_size = 0;

  char* Scratch(size_t size) {
    if (size > scratch_size) {
      scratch.reset(new char[size]);
      scratch_size = size;
    }
    return scratch.get();
  }
  char* Packed(size_t size) {
    if (size > packed_size) {
      packed.reset(new char[size]);
      packed_size = size;
    }
    return packed.get();
  }
};

ZstdContexts& Contexts() {
  thread_local ZstdContexts contexts;
  return contexts;
}

// ---- PIXEL_CODEC_ZSTD_DELTA (frame.proto): 2-byte pixels as zigzag-coded
// residuals from the row above, in bands of rows that are each one zstd
// frame, byte-shuffled within the band.

// Bands of about 512 KiB: a band's residuals stay in L2 between zstd and
// the prediction, a 2048² uint16 frame makes 16 bands to share among
// threads, and a zstd frame per band costs under 1 % of the ratio.
int BandRows(int width) {
  return static_cast<int>(std::max<size_t>(1, (size_t{512} << 10) / (2 * size_t(width))));
}

// (left + 2 × above + right + 2) / 4 of row `a` at x, its ends repeated.
inline uint16_t Predict(const uint16_t* a, int x, int w) {
  const uint32_t l = a[x > 0 ? x - 1 : 0], r = a[x + 1 < w ? x + 1 : w - 1];
  return static_cast<uint16_t>((l + 2 * uint32_t{a[x]} + r + 2) >> 2);
}
inline uint16_t Zigzag(uint16_t d) {
  return static_cast<uint16_t>((d << 1) ^ static_cast<uint16_t>(-(d >> 15)));
}
inline uint16_t Unzigzag(uint16_t z) {
  return static_cast<uint16_t>((z >> 1) ^ static_cast<uint16_t>(-(z & 1)));
}

// Rows v[0 .. n) (width w) to their residuals, low bytes then high bytes
// (n × w each) at `out`. The first row is predicted as 0.
void PredictBand(const uint16_t* __restrict v, int n, int w, uint8_t* __restrict out) {
  const size_t plane = size_t(n) * w;
  for (int y = 0; y < n; ++y) {
    const uint16_t* __restrict row = v + size_t(y) * w;
    uint8_t* __restrict lo = out + size_t(y) * w;
    uint8_t* __restrict hi = lo + plane;
    if (y == 0) {
      for (int x = 0; x < w; ++x) {
        const uint16_t z = Zigzag(row[x]);
        lo[x] = static_cast<uint8_t>(z);
        hi[x] = static_cast<uint8_t>(z >> 8);
      }
      continue;
    }
    const uint16_t* __restrict a = row - w;
    auto one = [&](int x, uint16_t p) {
      const uint16_t z = Zigzag(static_cast<uint16_t>(row[x] - p));
      lo[x] = static_cast<uint8_t>(z);
      hi[x] = static_cast<uint8_t>(z >> 8);
    };
    one(0, Predict(a, 0, w));
    for (int x = 1; x < w - 1; ++x) {  // the ends' repeats out of the loop: it vectorises
      one(x, static_cast<uint16_t>((uint32_t{a[x - 1]} + 2 * uint32_t{a[x]} + a[x + 1] + 2) >> 2));
    }
    if (w > 1) one(w - 1, Predict(a, w - 1, w));
  }
}

// The inverse: residuals at `in` (as PredictBand wrote them) to rows
// v[0 .. n), each row from the one above it.
void UnpredictBand(const uint8_t* __restrict in, int n, int w, uint16_t* __restrict v) {
  const size_t plane = size_t(n) * w;
  for (int y = 0; y < n; ++y) {
    uint16_t* __restrict row = v + size_t(y) * w;
    const uint8_t* __restrict lo = in + size_t(y) * w;
    const uint8_t* __restrict hi = lo + plane;
    auto residual = [&](int x) { return Unzigzag(static_cast<uint16_t>(lo[x] | (hi[x] << 8))); };
    if (y == 0) {
      for (int x = 0; x < w; ++x) row[x] = residual(x);
      continue;
    }
    const uint16_t* __restrict a = row - w;
    row[0] = static_cast<uint16_t>(Predict(a, 0, w) + residual(0));
    for (int x = 1; x < w - 1; ++x) {
      const auto p =
          static_cast<uint16_t>((uint32_t{a[x - 1]} + 2 * uint32_t{a[x]} + a[x + 1] + 2) >> 2);
      row[x] = static_cast<uint16_t>(p + residual(x));
    }
    if (w > 1) row[w - 1] = static_cast<uint16_t>(Predict(a, w - 1, w) + residual(w - 1));
  }
}

// Runs body(0 .. n) on `threads` threads (this one among them), strided.
template <typename Body>
void OnThreads(int n, int threads, Body&& body) {
  threads = std::max(1, std::min(threads, n));
  std::vector<std::thread> others;
  for (int t = 1; t < threads; ++t) {
    others.emplace_back([&, t] {
      for (int b = t; b < n; b += threads) body(b);
    });
  }
  for (int b = 0; b < n; b += threads) body(b);
  for (std::thread& t : others) t.join();
}

// `raw`: height × width 2-byte pixels. The bands' zstd frames, concatenated.
absl::StatusOr<std::string> CompressDelta(const std::string& raw, int width, int height, int level,
                                          int threads) {
  const int band_rows = BandRows(width);
  const int bands = (height + band_rows - 1) / band_rows;
  auto rows_of = [&](int b) { return std::min(height, (b + 1) * band_rows) - b * band_rows; };
  // Band b's room in this thread's buffer starts at bound[b].
  std::vector<size_t> bound(bands + 1, 0);
  for (int b = 0; b < bands; ++b) {
    bound[b + 1] = bound[b] + ZSTD_compressBound(size_t(rows_of(b)) * width * 2);
  }
  char* packed = Contexts().Packed(bound[bands]);
  std::vector<size_t> results(bands, 0);
  OnThreads(bands, threads, [&](int b) {
    const size_t bytes = size_t(rows_of(b)) * width * 2;
    ZstdContexts& z = Contexts();
    auto* residuals = reinterpret_cast<uint8_t*>(z.Scratch(bytes));
    PredictBand(reinterpret_cast<const uint16_t*>(raw.data()) + size_t(b) * band_rows * width,
                rows_of(b), width, residuals);
    results[b] = ZSTD_compressCCtx(z.compress.get(), packed + bound[b], bound[b + 1] - bound[b],
                                   residuals, bytes, level);
  });
  size_t total = 0;
  for (size_t n : results) {
    if (ZSTD_isError(n)) {
      return absl::InternalError(absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
    }
    total += n;
  }
  std::string out;
  out.reserve(total);
  for (int b = 0; b < bands; ++b) out.append(packed + bound[b], results[b]);
  return out;
}

// One band of a ZSTD_DELTA payload: its zstd frame and its rows.
struct Band {
  size_t offset, size;  // in the payload
  int y0, rows;
};

// The bands of a payload, from its frames' headers: each must hold whole
// rows, and all together exactly `height` rows.
absl::StatusOr<std::vector<Band>> FindBands(const std::string& payload, int width, int height) {
  const size_t row_bytes = size_t(width) * 2;
  std::vector<Band> bands;
  size_t offset = 0;
  int y = 0;
  while (offset < payload.size()) {
    const char* frame = payload.data() + offset;
    const size_t size = ZSTD_findFrameCompressedSize(frame, payload.size() - offset);
    const unsigned long long content =
        ZSTD_isError(size) ? ZSTD_CONTENTSIZE_ERROR : ZSTD_getFrameContentSize(frame, size);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content == 0 ||
        content % row_bytes != 0 || content / row_bytes > static_cast<uint64_t>(height - y)) {
      return Invalid("frame.pixels.compressed.data",
                     absl::StrCat("is not a ZSTD_DELTA payload of ", height, " rows of ", width,
                                  " pixels: its zstd frame at byte ", offset,
                                  " is corrupt or does not hold whole rows within the frame"));
    }
    const int rows = static_cast<int>(content / row_bytes);
    bands.push_back({offset, size, y, rows});
    y += rows;
    offset += size;
  }
  if (y != height) {
    return Invalid("frame.pixels.compressed.data",
                   absl::StrCat("decompresses to ", size_t(y) * row_bytes,
                                " bytes, but uncompressed_size is ", size_t(height) * row_bytes));
  }
  return bands;
}

absl::Status DecompressDelta(const v1::PixelData& px, char* out, const ParallelFor& parallel) {
  const int width = static_cast<int>(px.width()), height = static_cast<int>(px.height());
  const std::string& payload = px.compressed().data();
  absl::StatusOr<std::vector<Band>> bands = FindBands(payload, width, height);
  if (!bands.ok()) return bands.status();
  std::vector<absl::Status> status(bands->size());
  auto body = [&](int b) {
    const Band& band = (*bands)[b];
    const size_t bytes = size_t(band.rows) * width * 2;
    ZstdContexts& z = Contexts();
    char* residuals = z.Scratch(bytes);
    const size_t n = ZSTD_decompressDCtx(z.decompress.get(), residuals, bytes,
                                         payload.data() + band.offset, band.size);
    if (ZSTD_isError(n) || n != bytes) {
      status[b] =
          Invalid("frame.pixels.compressed.data",
                  absl::StrCat("does not decompress with zstd (its frame at byte ", band.offset,
                               "): ", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short"));
      return;
    }
    UnpredictBand(reinterpret_cast<const uint8_t*>(residuals), band.rows, width,
                  reinterpret_cast<uint16_t*>(out) + size_t(band.y0) * width);
  };
  const int n = static_cast<int>(bands->size());
  if (parallel && n > 1) {
    parallel(n, body);
  } else {
    for (int b = 0; b < n; ++b) body(b);
  }
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

bool IsTwoByteInteger(v1::DType dtype) {
  return dtype == v1::DTYPE_UINT16 || dtype == v1::DTYPE_INT16;
}

}  // namespace

absl::Status CheckCodec(v1::PixelCodec codec, absl::string_view field) {
  if (codec == v1::PIXEL_CODEC_NONE || codec == v1::PIXEL_CODEC_ZSTD ||
      codec == v1::PIXEL_CODEC_ZSTD_DELTA) {
    return absl::OkStatus();
  }
  return Invalid(
      field,
      absl::StrCat("must be PIXEL_CODEC_NONE, PIXEL_CODEC_ZSTD or PIXEL_CODEC_ZSTD_DELTA, got ",
                   static_cast<int>(codec)));
}

absl::StatusOr<v1::PixelCodec> ParseCodec(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "none") return v1::PIXEL_CODEC_NONE;
  if (lower == "zstd") return v1::PIXEL_CODEC_ZSTD;
  if (lower == "zstd-delta") return v1::PIXEL_CODEC_ZSTD_DELTA;
  return absl::InvalidArgumentError(
      absl::StrCat("compression must be none, zstd or zstd-delta, got '", name, "'"));
}

const char* CodecName(v1::PixelCodec codec) {
  switch (codec) {
    case v1::PIXEL_CODEC_NONE:
      return "none";
    case v1::PIXEL_CODEC_ZSTD:
      return "zstd";
    case v1::PIXEL_CODEC_ZSTD_DELTA:
      return "zstd-delta";
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
  if (c.codec() == v1::PIXEL_CODEC_ZSTD_DELTA &&
      (!IsTwoByteInteger(px.dtype()) || c.shuffle_bytes() != 2)) {
    return Invalid(
        "frame.pixels.compressed.codec",
        absl::StrCat("PIXEL_CODEC_ZSTD_DELTA is for uint16 and int16 pixels with "
                     "shuffle_bytes 2, got ",
                     v1::DType_Name(px.dtype()), " with shuffle_bytes ", c.shuffle_bytes()));
  }
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
  if (codec == v1::PIXEL_CODEC_ZSTD_DELTA && IsTwoByteInteger(px->dtype())) {
    absl::StatusOr<std::string> payload = CompressDelta(
        raw, static_cast<int>(px->width()), static_cast<int>(px->height()), level, threads);
    if (!payload.ok()) return payload.status();
    v1::CompressedPixels c;
    c.set_codec(codec);
    c.set_shuffle_bytes(2);
    c.set_uncompressed_size(raw.size());
    c.set_data(*std::move(payload));
    *px->mutable_compressed() = std::move(c);  // clears data (a oneof)
    return absl::OkStatus();
  }
  // Other dtypes under ZSTD_DELTA: plain ZSTD (frame.proto).
  codec = v1::PIXEL_CODEC_ZSTD;
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

absl::Status DecompressPixels(const v1::PixelData& px, char* out, const ParallelFor& parallel) {
  const v1::CompressedPixels& c = px.compressed();
  if (c.codec() == v1::PIXEL_CODEC_ZSTD_DELTA) return DecompressDelta(px, out, parallel);
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
