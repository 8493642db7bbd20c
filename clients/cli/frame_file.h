// A frame file as the CLI reads it: its pixels and, when the file says, its
// pixel size. Adds to LoadFrame (engine/image/image_io.h, .npy, TIFF, PNG)
// the EMD files of electron microscopes (HDF5, through Debian's libhdf5) and
// the calibrations the formats carry:
//
//   TIFF  ImageJ's ImageDescription ("unit=nm" and friends) with
//         XResolution (pixels per unit); else XResolution with
//         ResolutionUnit cm or inch. A calibration outside [1e-3, 1e4]
//         angstrom per pixel (e.g. a 72 dpi default) is not taken.
//   EMD   0.2 (Berkeley; what HyperSpy and py4DSTEM write): the first group
//         under /data with a 2-D dataset "data"; rows along dim1, columns
//         along dim2, each a coordinate vector with "units" (nm, n_m, A, ...)
//         and "name" attributes; the pixel size is dim2's step.
//         Velox (Thermo Fisher): the first /Data/Image/<id>/Data (rows,
//         columns, frames; frame 0 is read) with its Metadata JSON's
//         BinaryResult.PixelSize.width in BinaryResult.PixelUnitX.
//
// Coordinates: rows are y, columns x, as everywhere. Thread-safety: the
// functions touch only the file they name (libhdf5 is not thread-safe in
// Debian's serial build: call from one thread).
#ifndef LOGSTAR_CLIENTS_CLI_FRAME_FILE_H_
#define LOGSTAR_CLIENTS_CLI_FRAME_FILE_H_

#include <optional>
#include <string>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"

namespace logstar::cli {

struct FrameFile {
  cv::Mat pixels;  // single channel, the file's element type (LoadFrame)
  // Angstrom per pixel (along x) from the file's own calibration, when it
  // has a usable one; `calibration` then says where it came from, e.g.
  // "ImageJ unit nm" or "EMD dim2 (n_m)".
  std::optional<double> pixel_size_angstrom = std::nullopt;
  std::string calibration = "";
};

// The frame and its calibration; errors name the file (as LoadFrame's).
absl::StatusOr<FrameFile> ReadFrameFile(const std::string& path);

// ReadFrameFile's pixels alone.
absl::StatusOr<cv::Mat> LoadFrameFile(const std::string& path);

// For a prior without a pixel size: the file's calibration, announced on
// stderr as "logstar: note: PATH: pixel size 0.125 A from its SOURCE (the
// prior gives none)"; nullopt, silently, when the file has none or cannot be
// read (reading it for the analysis then says why).
std::optional<double> PixelSizeFromFile(const std::string& path);

// "logstar: note: PATH: pixel size 0.125 A from its SOURCE" and `why`
// (e.g. kPriorGivesNone), on stderr.
inline constexpr char kPriorGivesNone[] = " (the prior gives none)";
void PrintCalibrationNote(const std::string& path, const FrameFile& f, const char* why);

// A unit's length in angstrom ("nm", "n_m", "[n_m]", "um", "µm", "micron",
// "A", "Å", "angstrom", "pm", "m", ...); nullopt when it is not a length.
std::optional<double> UnitInAngstrom(std::string unit);

}  // namespace logstar::cli

#endif  // LOGSTAR_CLIENTS_CLI_FRAME_FILE_H_
