// MakeFrame: a camera's read-out as a v1::Frame, in one call.
//
//   std::vector<uint16_t> image = camera.Read();  // height rows of width pixels
//   absl::StatusOr<v1::Frame> frame =
//       MakeFrame(image.data(), width, height, v1::DTYPE_UINT16, 0.125);
//   frame->set_sequence(n);
//   (*stream)->Push(*std::move(frame));
//
// The pixels are copied into the message (pixels.data), so the buffer may be
// reused as soon as MakeFrame returns. For pixels that stay in shared memory
// see clients/cpp/shared_memory.h.
//
// Thread-safety: a pure function.
#ifndef LOGSTAR_CLIENTS_CPP_MAKE_FRAME_H_
#define LOGSTAR_CLIENTS_CPP_MAKE_FRAME_H_

#include "absl/status/statusor.h"
#include "logstar/v1/frame.pb.h"

namespace logstar {

// A frame of `height` rows of `width` pixels of `dtype` (uint8, uint16,
// int16, float32 or float64), row-major, row 0 first, without padding
// between rows, little-endian (the host's order): width × height × the
// dtype's size bytes read from `pixels`. x = column, y = row.
//
// `pixel_size_angstrom` > 0 is set as the frame's pixel size in x and y
// (square pixels), which overrides the session prior's; 0 leaves it unset so
// that the prior's applies. The daemon checks the value (a negative or
// non-finite one is refused there, naming frame.pixel_size_x_angstrom).
// Sequence, session and times are left unset: the caller numbers frames.
//
// INVALID_ARGUMENT naming the field as the daemon does (wire::CheckPixels,
// proto/wire/pixels.h): frame.pixels.dtype for DTYPE_UNSPECIFIED or an
// unknown value, frame.pixels for a width or height that is not positive,
// frame.pixels.data for a null `pixels`.
absl::StatusOr<v1::Frame> MakeFrame(const void* pixels, int width, int height, v1::DType dtype,
                                    double pixel_size_angstrom);

}  // namespace logstar

#endif  // LOGSTAR_CLIENTS_CPP_MAKE_FRAME_H_
