#include "engine/image/image_io.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace logstar {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicLen = 6;

bool HostIsLittleEndian() {
  const uint16_t probe = 1;
  uint8_t first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not an image file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Value of `key` in a numpy header dict such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (400, 380), }.
absl::StatusOr<std::string> NpyHeaderField(absl::string_view header, absl::string_view key,
                                           const std::string& name) {
  const std::string quoted = absl::StrCat("'", key, "'");
  size_t pos = header.find(quoted);
  if (pos == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": broken .npy header, no '", key, "' field"));
  }
  pos = header.find(':', pos + quoted.size());
  if (pos == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": broken .npy header near '", key, "'"));
  }
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(header.substr(pos + 1));
  size_t end;
  if (!rest.empty() && rest[0] == '(') {
    end = rest.find(')');
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": broken .npy header shape"));
    }
    return std::string(rest.substr(0, end + 1));
  }
  if (!rest.empty() && (rest[0] == '\'' || rest[0] == '"')) {
    end = rest.find(rest[0], 1);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": broken .npy header near '", key, "'"));
    }
    return std::string(rest.substr(1, end - 1));
  }
  end = rest.find_first_of(",}");
  return std::string(absl::StripAsciiWhitespace(rest.substr(0, end)));
}

// How a .npy dtype is read: the bytes as `file_depth` (after byte order),
// then widened to `cv_depth` when the two differ. int32 and uint32 (common in
// Digital Micrograph exports) become float64, which holds every such value
// exactly; float16 becomes float32, likewise exact. OpenCV has no uint32
// type, so it is read through a CV_32S Mat's bytes and widened by hand.
struct NpyDtype {
  int cv_depth;
  size_t item_size;
  bool little_endian;
  int file_depth = -1;  // -1: the same as cv_depth
  bool is_unsigned32 = false;
};

absl::StatusOr<NpyDtype> ParseNpyDescr(const std::string& descr, const std::string& name) {
  if (descr.size() < 3) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": unsupported dtype '", descr, "'"));
  }
  const char order = descr[0];
  const std::string kind = descr.substr(1);
  bool little = order == '<' || (order == '=' && HostIsLittleEndian()) || order == '|';
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    return absl::InvalidArgumentError(absl::StrCat(name, ": unsupported dtype '", descr, "'"));
  }
  if (kind == "f4") return NpyDtype{CV_32F, 4, little};
  if (kind == "f8") return NpyDtype{CV_64F, 8, little};
  if (kind == "u1") return NpyDtype{CV_8U, 1, true};
  if (kind == "u2") return NpyDtype{CV_16U, 2, little};
  if (kind == "i2") return NpyDtype{CV_16S, 2, little};
  if (kind == "i4") return NpyDtype{CV_64F, 4, little, CV_32S};
  if (kind == "u4") return NpyDtype{CV_64F, 4, little, CV_32S, /*is_unsigned32=*/true};
  if (kind == "f2") return NpyDtype{CV_32F, 2, little, CV_16F};
  return absl::InvalidArgumentError(absl::StrCat(
      name, ": unsupported dtype '", descr,
      "'; supported are float16, float32, float64, uint8, uint16, int16, int32 and uint32"));
}

const char* NpyDescrOf(int depth) {
  switch (depth) {
    case CV_32F:
      return "<f4";
    case CV_64F:
      return "<f8";
    case CV_8U:
      return "|u1";
    case CV_16U:
      return "<u2";
    case CV_16S:
      return "<i2";
    default:
      return nullptr;
  }
}

void ByteSwapInPlace(char* data, size_t count, size_t item_size) {
  for (size_t i = 0; i < count; ++i) std::reverse(data + i * item_size, data + (i + 1) * item_size);
}

// int32/uint32 to float64, float16 to float32 (NpyDtype); `mat` is
// continuous and in host byte order.
cv::Mat WidenNpy(const cv::Mat& mat, const NpyDtype& dtype) {
  cv::Mat out;
  if (!dtype.is_unsigned32) {
    mat.convertTo(out, dtype.cv_depth);
    return out;
  }
  out.create(mat.rows, mat.cols, CV_64F);
  for (int r = 0; r < mat.rows; ++r) {
    const uint8_t* in = mat.ptr<uint8_t>(r);
    double* dst = out.ptr<double>(r);
    for (int c = 0; c < mat.cols; ++c) {
      uint32_t v;
      std::memcpy(&v, in + 4 * static_cast<size_t>(c), 4);
      dst[c] = static_cast<double>(v);
    }
  }
  return out;
}

absl::Status CheckFrameShape(const cv::Mat& m, const std::string& name) {
  if (m.empty() || m.rows == 0 || m.cols == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": empty frame (", m.rows, "x", m.cols, ")"));
  }
  if (m.channels() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": has ", m.channels(), " channels; a frame must be a single-channel image"));
  }
  if (NpyDescrOf(m.depth()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": unsupported pixel type; supported are float32, float64, uint8, uint16 and int16"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<cv::Mat> ParseNpy(const std::string& bytes, const std::string& name) {
  if (bytes.size() < kNpyMagicLen + 4 || std::memcmp(bytes.data(), kNpyMagic, kNpyMagicLen) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a .npy file (bad magic)"));
  }
  const uint8_t major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12)
      return absl::InvalidArgumentError(absl::StrCat(name, ": truncated .npy"));
    header_len = 0;
    for (int i = 3; i >= 0; --i)
      header_len = (header_len << 8) | static_cast<uint8_t>(bytes[8 + i]);
    header_start = 12;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": unsupported .npy format version ", static_cast<int>(major)));
  }
  if (header_start + header_len > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": truncated .npy header"));
  }
  const absl::string_view header(bytes.data() + header_start, header_len);

  auto descr = NpyHeaderField(header, "descr", name);
  if (!descr.ok()) return descr.status();
  auto fortran = NpyHeaderField(header, "fortran_order", name);
  if (!fortran.ok()) return fortran.status();
  auto shape_text = NpyHeaderField(header, "shape", name);
  if (!shape_text.ok()) return shape_text.status();

  auto dtype = ParseNpyDescr(*descr, name);
  if (!dtype.ok()) return dtype.status();

  std::vector<int64_t> shape;
  absl::string_view inner = *shape_text;
  absl::ConsumePrefix(&inner, "(");
  absl::ConsumeSuffix(&inner, ")");
  for (absl::string_view part : absl::StrSplit(inner, ',', absl::SkipWhitespace())) {
    int64_t v;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": bad .npy shape ", *shape_text));
    }
    shape.push_back(v);
  }
  if (shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": a frame must be 2-D, got shape ", *shape_text));
  }
  if (shape[0] == 0 || shape[1] == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": empty frame (shape ", *shape_text, ")"));
  }
  constexpr int64_t kMaxSide = 1 << 16;
  if (shape[0] > kMaxSide || shape[1] > kMaxSide) {
    return absl::ResourceExhaustedError(
        absl::StrCat(name, ": frame of shape ", *shape_text, " exceeds ", kMaxSide, " per side"));
  }
  const size_t count = static_cast<size_t>(shape[0]) * static_cast<size_t>(shape[1]);
  const size_t data_start = header_start + header_len;
  const size_t need = count * dtype->item_size;
  if (bytes.size() - data_start < need) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": truncated .npy data: expected ", need,
                                                   " bytes, found ", bytes.size() - data_start));
  }
  const bool fortran_order = *fortran == "True";
  const int file_depth = dtype->file_depth >= 0 ? dtype->file_depth : dtype->cv_depth;
  cv::Mat mat;
  if (fortran_order) {
    // Stored column-major: read as the transpose, then transpose back.
    cv::Mat t(static_cast<int>(shape[1]), static_cast<int>(shape[0]), file_depth);
    std::memcpy(t.data, bytes.data() + data_start, need);
    mat = t.t();
  } else {
    mat.create(static_cast<int>(shape[0]), static_cast<int>(shape[1]), file_depth);
    std::memcpy(mat.data, bytes.data() + data_start, need);
  }
  if (dtype->item_size > 1 && dtype->little_endian != HostIsLittleEndian()) {
    ByteSwapInPlace(reinterpret_cast<char*>(mat.data), count, dtype->item_size);
  }
  if (file_depth == dtype->cv_depth) return mat;
  return WidenNpy(mat, *dtype);
}

absl::StatusOr<cv::Mat> LoadFrame(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  const std::string ext = absl::AsciiStrToLower(std::filesystem::path(path).extension().string());
  if (ext == ".npy") return ParseNpy(*bytes, path);
  if (ext != ".tif" && ext != ".tiff" && ext != ".png") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported file type '", ext,
                                                   "'; give a .npy, .tif/.tiff or .png frame"));
  }
  cv::Mat mat;
  try {
    std::vector<uchar> buf(bytes->begin(), bytes->end());
    mat = cv::imdecode(buf, cv::IMREAD_UNCHANGED | cv::IMREAD_ANYDEPTH);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot decode image: ", e.what()));
  }
  if (mat.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot decode image (broken file?)"));
  }
  if (absl::Status s = CheckFrameShape(mat, path); !s.ok()) return s;
  return mat;
}

absl::Status WriteNpy(const std::string& path, const cv::Mat& mat) {
  if (absl::Status s = CheckFrameShape(mat, path); !s.ok()) return s;
  if (!HostIsLittleEndian()) {
    return absl::UnimplementedError("writing .npy on a big-endian host is not supported");
  }
  std::string header =
      absl::StrCat("{'descr': '", NpyDescrOf(mat.depth()), "', 'fortran_order': False, 'shape': (",
                   mat.rows, ", ", mat.cols, "), }");
  // Pad with spaces so magic + length + header + '\n' is a multiple of 64,
  // which keeps the data aligned for memory mapping, as numpy does.
  const size_t unpadded = kNpyMagicLen + 4 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  out.write(kNpyMagic, kNpyMagicLen);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const size_t row_bytes = mat.cols * mat.elemSize();
  for (int r = 0; r < mat.rows; ++r) {
    out.write(reinterpret_cast<const char*>(mat.ptr(r)), static_cast<std::streamsize>(row_bytes));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace logstar
