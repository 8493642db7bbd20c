// Lossless compression of the wire's pixels (v1::PixelData.compressed,
// proto/logstar/v1/frame.proto): a byte shuffle then Zstandard. Both sides
// use it — a client compresses what it sends (clients/cpp/client.h's
// ClientOptions::compression, the CLI's --compress), the daemon
// (server/convert.h's DecodeFrame) decompresses — so it lives with the other
// pixel helpers in logstar_wire, which links no engine and no server.
//
// The shuffle groups byte k of every element together (all low bytes, then
// all high bytes of uint16): detector counts rarely use their high bytes, so
// a whole plane of near-zeros compresses to almost nothing, where the
// interleaved bytes compress poorly.
//
// Decompression is bounded: the output is exactly width × height ×
// sizeof(dtype) bytes (checked by CheckCompressed before anything is
// allocated), and a payload that would write more, or less, or is corrupt
// is refused. Errors are INVALID_ARGUMENT naming the field by its path in a
// frame ("frame.pixels.compressed.data", ...), as the daemon reports them.
//
// Thread-safety: every function may be called from any number of threads
// (each keeps its own zstd context per thread).
#ifndef LOGSTAR_PROTO_WIRE_COMPRESSION_H_
#define LOGSTAR_PROTO_WIRE_COMPRESSION_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logstar/v1/frame.pb.h"
#include "proto/wire/pixels.h"

namespace logstar::wire {

// zstd's level for frames: 1 compresses an 8 MB uint16 frame of counts in a
// few ms, within a few % of the ratio of higher levels once shuffled.
inline constexpr int kDefaultCompressionLevel = 1;

// OK for a codec this build can decode and encode (NONE, ZSTD,
// ZSTD_DELTA); else INVALID_ARGUMENT "<field> must be PIXEL_CODEC_NONE,
// PIXEL_CODEC_ZSTD or PIXEL_CODEC_ZSTD_DELTA, got N" (e.g. field
// "open.compression").
absl::Status CheckCodec(v1::PixelCodec codec, absl::string_view field);

// The codec named on a command line or in Python: "none", "zstd" or
// "zstd-delta".
absl::StatusOr<v1::PixelCodec> ParseCodec(absl::string_view name);
// "none", "zstd", "zstd-delta"; "unknown" for other values.
const char* CodecName(v1::PixelCodec codec);

// Byte shuffle of `size` bytes of `element`-byte elements (size a multiple
// of element; element 1 is a copy): out[k × n + i] = in[i × element + k],
// n = size / element. `in` and `out` must not overlap. Unshuffle inverts it.
void ShuffleBytes(const char* in, size_t size, int element, char* out);
void UnshuffleBytes(const char* in, size_t size, int element, char* out);

// The checks of pixels.compressed that need no decompression, for
// CheckPixels: a known codec other than NONE, shuffle_bytes 0, 1 or
// type.bytes (ZSTD_DELTA: uint16 or int16 pixels, shuffle_bytes 2), uncompressed_size exactly width
// × height × type.bytes (the bound decompression keeps to). Width and height are already checked.
absl::Status CheckCompressed(const v1::PixelData& pixels, const Dtype& type);

// Replaces pixels->data() by pixels->compressed (the bytes shuffled by
// their element size, then compressed with `codec` at `level`, by
// `threads` threads when > 1: zstd's workers, each a part of the frame).
// ZSTD_DELTA (frame.proto) codes uint16 and int16 pixels as residuals
// from the row above in bands of rows (`threads` threads compress bands
// at once), and other dtypes as ZSTD.
// Pixels that are not in `data`, or codec NONE, are left as they are. The
// pixels must pass CheckPixels. Never fails for a valid codec:
// INVALID_ARGUMENT for an unknown one, INTERNAL if zstd fails (out of
// memory).
absl::Status CompressPixels(v1::PixelCodec codec, v1::PixelData* pixels,
                            int level = kDefaultCompressionLevel, int threads = 1);

// Runs body(0), ..., body(n - 1), in any order and possibly at once (an
// ExecutionContext's ParallelFor, say); each call returns before it does.
using ParallelFor = std::function<void(int n, const std::function<void(int)>& body)>;

// Decompresses pixels.compressed (checked by CheckPixels) into `out`, which
// holds exactly compressed().uncompressed_size() bytes (2-byte aligned):
// the frame's bytes as `data` would hold them. INVALID_ARGUMENT naming
// frame.pixels.compressed.data for a corrupt payload or one that
// decompresses to another size; nothing is written past `out`'s size.
// ZSTD_DELTA's bands are decompressed with `parallel` when it is given
// (each band from its zstd frame straight into its rows of `out`, through
// a band-sized buffer of the thread's); else in order on this thread.
absl::Status DecompressPixels(const v1::PixelData& pixels, char* out,
                              const ParallelFor& parallel = {});

}  // namespace logstar::wire

#endif  // LOGSTAR_PROTO_WIRE_COMPRESSION_H_
