#include "clients/cli/frame_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/image/image_io.h"

namespace logstar::cli {
namespace {

// A calibration is taken only in this range (angstrom per pixel): below, no
// microscope; above 1 µm, not an atomic-resolution frame (a 72 dpi TIFF
// default is 3.5e6 A).
constexpr double kMinPixelAngstrom = 1e-3, kMaxPixelAngstrom = 1e4;

bool Plausible(double pixel) {
  return std::isfinite(pixel) && pixel >= kMinPixelAngstrom && pixel <= kMaxPixelAngstrom;
}

// ---------------------------------------------------------------- TIFF tags

// The few tags of the first IFD a calibration needs, from the raw bytes
// (OpenCV decodes the pixels but exposes no tags).
struct TiffTags {
  std::optional<double> x_resolution;  // pixels per unit
  int resolution_unit = 2;             // TIFF default: inch
  std::string description;
};

class TiffReader {
 public:
  explicit TiffReader(const std::string& bytes) : b_(bytes) {}

  std::optional<TiffTags> Read() {
    if (b_.size() < 8) return std::nullopt;
    if (b_.compare(0, 2, "II") == 0) {
      little_ = true;
    } else if (b_.compare(0, 2, "MM") == 0) {
      little_ = false;
    } else {
      return std::nullopt;
    }
    if (U16(2) != 42) return std::nullopt;  // BigTIFF (43) carries no calibration we read
    const uint64_t ifd = U32(4);
    if (ifd + 2 > b_.size()) return std::nullopt;
    const int entries = U16(ifd);
    TiffTags tags;
    for (int i = 0; i < entries; ++i) {
      const uint64_t e = ifd + 2 + 12 * static_cast<uint64_t>(i);
      if (e + 12 > b_.size()) break;
      const int tag = U16(e), type = U16(e + 2);
      const uint32_t count = U32(e + 4);
      if (tag == 282 && type == 5) {  // XResolution, RATIONAL at an offset
        const uint64_t at = U32(e + 8);
        if (at + 8 <= b_.size() && U32(at + 4) != 0) {
          tags.x_resolution = static_cast<double>(U32(at)) / U32(at + 4);
        }
      } else if (tag == 296 && type == 3) {  // ResolutionUnit, SHORT in place
        tags.resolution_unit = U16(e + 8);
      } else if (tag == 270 && type == 2) {  // ImageDescription, ASCII
        const uint64_t at = count <= 4 ? e + 8 : U32(e + 8);
        if (at + count <= b_.size()) {
          tags.description = b_.substr(at, count);
          while (!tags.description.empty() && tags.description.back() == '\0') {
            tags.description.pop_back();
          }
        }
      }
    }
    return tags;
  }

 private:
  uint32_t Byte(uint64_t at) const { return static_cast<uint8_t>(b_[at]); }
  uint32_t U16(uint64_t at) const {
    if (at + 2 > b_.size()) return 0;
    return little_ ? Byte(at) | Byte(at + 1) << 8 : Byte(at) << 8 | Byte(at + 1);
  }
  uint32_t U32(uint64_t at) const {
    if (at + 4 > b_.size()) return 0;
    return little_ ? U16(at) | U16(at + 2) << 16 : U16(at) << 16 | U16(at + 2);
  }

  const std::string& b_;
  bool little_ = true;
};

// The value of `key=` on a line of an ImageJ description, or "".
std::string ImageJField(const std::string& description, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(description, '\n')) {
    if (absl::ConsumePrefix(&line, key) && absl::ConsumePrefix(&line, "=")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

void TiffCalibration(const std::string& path, FrameFile& f) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::optional<TiffTags> tags = TiffReader(bytes).Read();
  if (!tags || !tags->x_resolution || !(*tags->x_resolution > 0)) return;
  const double per_pixel = 1.0 / *tags->x_resolution;  // units per pixel
  double pixel = 0.0;
  std::string source;
  if (absl::StartsWith(tags->description, "ImageJ=")) {
    // ImageJ's unit, with "\u00B5m" for micrometres as ImageJ escapes it.
    std::string unit = ImageJField(tags->description, "unit");
    if (unit == "\\u00B5m" || unit == "\\u00b5m") unit = "um";
    if (unit == "\\u00C5" || unit == "\\u00c5") unit = "A";
    const std::optional<double> a = UnitInAngstrom(unit);
    if (!a) return;
    pixel = per_pixel * *a;
    source = absl::StrCat("TIFF ImageJ calibration (unit ", unit, ")");
  } else if (tags->resolution_unit == 3) {
    pixel = per_pixel * 1e8;
    source = "TIFF XResolution (per cm)";
  } else if (tags->resolution_unit == 2) {
    pixel = per_pixel * 2.54e8;
    source = "TIFF XResolution (per inch)";
  } else {
    return;
  }
  if (!Plausible(pixel)) return;
  f.pixel_size_angstrom = pixel;
  f.calibration = std::move(source);
}

// ---------------------------------------------------------------- HDF5

// Owns one HDF5 identifier and closes it with `close`.
class H5Handle {
 public:
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Handle() {
    if (id_ >= 0) close_(id_);
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

bool LinkExists(hid_t where, const std::string& name) {
  return H5Lexists(where, name.c_str(), H5P_DEFAULT) > 0;
}

// The names of a group's members, in name order.
std::vector<std::string> Members(hid_t group) {
  std::vector<std::string> names;
  H5G_info_t info;
  if (H5Gget_info(group, &info) < 0) return names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n =
        H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) continue;
    std::string name(static_cast<size_t>(n) + 1, '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(static_cast<size_t>(n));
    names.push_back(std::move(name));
  }
  return names;
}

// A string attribute (fixed or variable length), or "".
std::string StringAttribute(hid_t object, const char* name) {
  if (H5Aexists(object, name) <= 0) return "";
  H5Handle attr(H5Aopen(object, name, H5P_DEFAULT), H5Aclose);
  H5Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) return "";
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    char* value = nullptr;
    if (H5Aread(attr.get(), mem.get(), &value) < 0 || value == nullptr) return "";
    std::string out(value);
    H5free_memory(value);
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  std::string out(size, '\0');
  if (H5Aread(attr.get(), type.get(), out.data()) < 0) return "";
  return std::string(out.c_str());
}

// The element type the pixels are read as: the file's when the engine takes
// it as such, else float64 (HDF5 converts).
std::pair<int, hid_t> FrameDepth(hid_t file_type) {
  const size_t size = H5Tget_size(file_type);
  if (H5Tget_class(file_type) == H5T_FLOAT && size == 4) return {CV_32F, H5T_NATIVE_FLOAT};
  if (H5Tget_class(file_type) == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(file_type) == H5T_SGN_2;
    if (size == 1 && !is_signed) return {CV_8U, H5T_NATIVE_UINT8};
    if (size == 2)
      return is_signed ? std::pair{CV_16S, H5T_NATIVE_INT16} : std::pair{CV_16U, H5T_NATIVE_UINT16};
  }
  return {CV_64F, H5T_NATIVE_DOUBLE};
}

// A 2-D dataset, or the first 2-D plane (the last axis = 0) of a 3-D one
// (Velox stores rows, columns, frames).
absl::StatusOr<cv::Mat> ReadPlane(hid_t file, const std::string& dataset,
                                  const std::string& where) {
  H5Handle d(H5Dopen2(file, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": cannot open ", dataset));
  H5Handle space(H5Dget_space(d.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  hsize_t dims[3] = {0, 0, 0};
  if (rank != 2 && rank != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", dataset, " has ", rank, " dimensions; a frame must be 2-D"));
  }
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  constexpr hsize_t kMaxSide = 1 << 16;
  if (dims[0] == 0 || dims[1] == 0 || (rank == 3 && dims[2] == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", dataset, " is empty"));
  }
  if (dims[0] > kMaxSide || dims[1] > kMaxSide) {
    return absl::ResourceExhaustedError(absl::StrCat(where, ": frame of ", dims[0], "x", dims[1],
                                                     " exceeds ", kMaxSide, " per side"));
  }
  H5Handle type(H5Dget_type(d.get()), H5Tclose);
  const auto [depth, memory_type] = FrameDepth(type.get());
  cv::Mat mat(static_cast<int>(dims[0]), static_cast<int>(dims[1]), depth);
  const hsize_t count[3] = {dims[0], dims[1], 1}, start[3] = {0, 0, 0};
  H5Handle memory(H5Screate_simple(2, count, nullptr), H5Sclose);
  if (rank == 3) {
    H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
  }
  if (H5Dread(d.get(), memory_type, memory.get(), space.get(), H5P_DEFAULT, mat.data) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": cannot read ", dataset));
  }
  return mat;
}

// The step of a 1-D coordinate dataset (dim1, dim2 of EMD 0.2), or nullopt.
std::optional<double> AxisStep(hid_t file, const std::string& dataset) {
  H5Handle d(H5Dopen2(file, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) return std::nullopt;
  H5Handle space(H5Dget_space(d.get()), H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) < 2) return std::nullopt;
  std::vector<double> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
  if (H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0) {
    return std::nullopt;
  }
  return std::abs(values[1] - values[0]);
}

// EMD 0.2: /data/<name>/data with dim1 (rows) and dim2 (columns).
absl::StatusOr<FrameFile> ReadBerkeleyEmd(hid_t file, const std::string& path) {
  H5Handle data(H5Gopen2(file, "/data", H5P_DEFAULT), H5Gclose);
  for (const std::string& name : Members(data.get())) {
    const std::string group = absl::StrCat("/data/", name);
    if (!LinkExists(file, group + "/data")) continue;
    absl::StatusOr<cv::Mat> pixels = ReadPlane(file, group + "/data", path);
    if (!pixels.ok()) return pixels.status();
    FrameFile f{.pixels = *std::move(pixels)};
    if (LinkExists(file, group + "/dim2")) {
      H5Handle dim(H5Dopen2(file, (group + "/dim2").c_str(), H5P_DEFAULT), H5Dclose);
      const std::string units = StringAttribute(dim.get(), "units");
      const std::optional<double> unit = UnitInAngstrom(units);
      const std::optional<double> step = AxisStep(file, group + "/dim2");
      if (unit && step && Plausible(*step * *unit)) {
        f.pixel_size_angstrom = *step * *unit;
        f.calibration = absl::StrCat("EMD ", group, "/dim2, units ", units);
      }
    }
    return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": an EMD file without an image (no /data/<name>/data dataset)"));
}

// Velox: /Data/Image/<id>/Data and its Metadata (JSON as bytes).
absl::StatusOr<FrameFile> ReadVeloxEmd(hid_t file, const std::string& path) {
  H5Handle images(H5Gopen2(file, "/Data/Image", H5P_DEFAULT), H5Gclose);
  for (const std::string& id : Members(images.get())) {
    const std::string group = absl::StrCat("/Data/Image/", id);
    if (!LinkExists(file, group + "/Data")) continue;
    absl::StatusOr<cv::Mat> pixels = ReadPlane(file, group + "/Data", path);
    if (!pixels.ok()) return pixels.status();
    FrameFile f{.pixels = *std::move(pixels)};
    if (!LinkExists(file, group + "/Metadata")) return f;
    absl::StatusOr<cv::Mat> meta = ReadPlane(file, group + "/Metadata", path);
    if (!meta.ok()) return f;
    // One column of bytes per frame, zero padded: frame 0's JSON.
    std::string text;
    for (int r = 0; r < meta->rows; ++r) {
      const double v = meta->depth() == CV_8U ? meta->at<uint8_t>(r, 0) : meta->at<double>(r, 0);
      if (v == 0) break;
      text.push_back(static_cast<char>(v));
    }
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    const nlohmann::json* binary =
        j.is_object() && j.contains("BinaryResult") ? &j["BinaryResult"] : nullptr;
    if (binary == nullptr || !binary->contains("PixelSize")) return f;
    const nlohmann::json& size = (*binary)["PixelSize"];
    double width = 0.0;
    const std::string unit =
        binary->contains("PixelUnitX") ? (*binary)["PixelUnitX"].get<std::string>() : "m";
    const std::optional<double> a = UnitInAngstrom(unit);
    if (size.contains("width") && size["width"].is_string() &&
        absl::SimpleAtod(size["width"].get<std::string>(), &width) && a && Plausible(width * *a)) {
      f.pixel_size_angstrom = width * *a;
      f.calibration = absl::StrCat("Velox EMD metadata, PixelSize in ", unit);
    }
    return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": a Velox EMD file without an image (no /Data/Image/<id>/Data)"));
}

absl::StatusOr<FrameFile> ReadEmd(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  // libhdf5 prints its error stack by default; the message here says it.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an EMD file (not HDF5)"));
  }
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open"));
  if (LinkExists(file.get(), "/data")) return ReadBerkeleyEmd(file.get(), path);
  if (LinkExists(file.get(), "/Data") && LinkExists(file.get(), "/Data/Image")) {
    return ReadVeloxEmd(file.get(), path);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path,
      ": an HDF5 file in no EMD layout this reads (EMD 0.2 /data/<name>/data, or Velox "
      "/Data/Image/<id>/Data)"));
}

}  // namespace

std::optional<double> UnitInAngstrom(std::string unit) {
  unit = std::string(absl::StripAsciiWhitespace(unit));
  if (unit.size() >= 2 && unit.front() == '[' && unit.back() == ']') {
    unit = unit.substr(1, unit.size() - 2);
  }
  unit.erase(std::remove(unit.begin(), unit.end(), '_'), unit.end());  // EMD's "n_m"
  static const std::map<std::string, double> kUnits = {
      {"m", 1e10},      {"cm", 1e8},     {"mm", 1e7},       {"um", 1e4},       {"\u00B5m", 1e4},
      {"\u03BCm", 1e4}, {"micron", 1e4}, {"microns", 1e4},  {"nm", 10.0},      {"A", 1.0},
      {"\u00C5", 1.0},  {"\u212B", 1.0}, {"angstrom", 1.0}, {"Angstrom", 1.0}, {"pm", 0.01}};
  const auto it = kUnits.find(unit);
  if (it == kUnits.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<FrameFile> ReadFrameFile(const std::string& path) {
  const std::string ext = absl::AsciiStrToLower(std::filesystem::path(path).extension().string());
  if (ext == ".emd") {
    absl::StatusOr<FrameFile> f = ReadEmd(path);
    if (!f.ok()) return f.status();
    // The engine's checks (channels, types) hold for EMD frames too.
    if (f->pixels.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty frame"));
    return f;
  }
  absl::StatusOr<cv::Mat> pixels = LoadFrame(path);
  if (!pixels.ok()) return pixels.status();
  FrameFile f{.pixels = *std::move(pixels)};
  if (ext == ".tif" || ext == ".tiff") TiffCalibration(path, f);
  return f;
}

}  // namespace logstar::cli

namespace logstar::cli {

absl::StatusOr<cv::Mat> LoadFrameFile(const std::string& path) {
  absl::StatusOr<FrameFile> f = ReadFrameFile(path);
  if (!f.ok()) return f.status();
  return std::move(f->pixels);
}

void PrintCalibrationNote(const std::string& path, const FrameFile& f, const char* why) {
  std::fprintf(stderr, "logstar: note: %s: pixel size %.6g A from its %s%s\n", path.c_str(),
               f.pixel_size_angstrom.value_or(0.0), f.calibration.c_str(), why);
}

std::optional<double> PixelSizeFromFile(const std::string& path) {
  absl::StatusOr<FrameFile> f = ReadFrameFile(path);
  if (!f.ok() || !f->pixel_size_angstrom) return std::nullopt;
  PrintCalibrationNote(path, *f, kPriorGivesNone);
  return f->pixel_size_angstrom;
}

}  // namespace logstar::cli
