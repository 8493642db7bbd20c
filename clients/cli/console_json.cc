#include "clients/cli/console_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <zlib.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace logstar::cli {
namespace {

// A JSON text appended to a string, with the separators kept by the
// caller's structure: Key() writes `"name":` after a comma when needed.
class JsonOut {
 public:
  explicit JsonOut(std::string* out) : out_(*out) {}

  void Open(char c) {
    Separate();
    out_.push_back(c);
    first_ = true;
  }
  void Close(char c) {
    out_.push_back(c);
    first_ = false;
  }
  // `name` is a literal key: no characters to escape.
  JsonOut& Key(std::string_view name) {
    Separate();
    out_.push_back('"');
    out_.append(name);
    out_.append("\":");
    first_ = true;  // the value follows without a comma
    return *this;
  }

  void Int(int64_t v) {
    Separate();
    char buf[24];
    out_.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }
  void Uint(uint64_t v) {
    Separate();
    char buf[24];
    out_.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }
  void Bool(bool v) {
    Separate();
    out_.append(v ? "true" : "false");
  }
  // Exactly: the shortest text that reads back to `v`.
  void Double(double v) {
    if (!Finite(v)) return;
    char buf[32];
    out_.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }
  // A length in px to 0.01 px, without trailing zeros.
  void Px(double v) {
    if (!Finite(v)) return;
    char buf[48];
    char* end = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 2).ptr;
    while (end[-1] == '0') --end;
    if (end[-1] == '.') --end;
    out_.append(buf, end);
  }
  void String(std::string_view s) {
    Separate();
    out_.push_back('"');
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        out_.push_back('\\');
        out_.push_back(c);
      } else if (static_cast<unsigned char>(c) < 0x20) {
        static constexpr char kHex[] = "0123456789abcdef";
        out_.append("\\u00");
        out_.push_back(kHex[(c >> 4) & 0xf]);
        out_.push_back(kHex[c & 0xf]);
      } else {
        out_.push_back(c);  // UTF-8 passes as it is
      }
    }
    out_.push_back('"');
  }

 private:
  // Separates, and writes null for NaN and infinities (not JSON). Returns
  // whether `v` is finite, for the caller to write.
  bool Finite(double v) {
    Separate();
    if (std::isfinite(v)) return true;
    out_.append("null");
    return false;
  }
  void Separate() {
    if (!first_) out_.push_back(',');
    first_ = false;
  }

  std::string& out_;
  bool first_ = true;
};

void Region(const v1::PixelRegion& r, JsonOut& j) {
  j.Open('{');
  j.Key("col0").Int(r.col0());
  j.Key("row0").Int(r.row0());
  j.Key("cols").Int(r.cols());
  j.Key("rows").Int(r.rows());
  j.Close('}');
}

void Parameters(const v1::LogParameters& p, JsonOut& j) {
  j.Open('{');
  j.Key("min_sigma").Double(p.min_sigma());
  j.Key("max_sigma").Double(p.max_sigma());
  j.Key("num_sigma").Int(p.num_sigma());
  j.Key("threshold").Double(p.threshold());
  j.Key("overlap").Double(p.overlap());
  j.Close('}');
}

void QcEr(double qc, double er, JsonOut& j) {
  j.Key("qc").Double(qc);
  j.Key("er").Double(er);
}

void Atoms(const v1::FrameResult& r, JsonOut& j) {
  j.Key("atoms").Open('[');
  for (const v1::Atom& a : r.atoms()) {
    j.Open('{');
    j.Key("x").Px(a.x());
    j.Key("y").Px(a.y());
    j.Key("sigma").Px(a.sigma());
    if (a.amorphous()) j.Key("amorphous").Bool(true);
    if (a.sublattice() > 0) j.Key("sublattice").Int(a.sublattice());
    j.Close('}');
  }
  j.Close(']');
}

void AmorphousRegions(const v1::FrameResult& r, JsonOut& j) {
  j.Key("amorphous_regions").Open('[');
  for (const v1::AmorphousRegion& g : r.amorphous_regions()) {
    j.Open('{');
    j.Key("area_px2").Double(g.area_px2());
    j.Key("contour_x").Open('[');
    for (const float x : g.contour_x()) j.Px(x);
    j.Close(']');
    j.Key("contour_y").Open('[');
    for (const float y : g.contour_y()) j.Px(y);
    j.Close(']');
    j.Close('}');
  }
  j.Close(']');
}

void RegionsOfInterest(const v1::FrameResult& r, JsonOut& j) {
  j.Key("regions_of_interest").Open('[');
  const int n = std::min(r.regions_of_interest_size(), kConsoleRegionsOfInterest);
  for (int i = 0; i < n; ++i) {
    j.Open('{');
    j.Key("box");
    Region(r.regions_of_interest(i).box(), j);
    j.Close('}');
  }
  j.Close(']');
}

void PriorUsed(const v1::PriorUsed& p, JsonOut& j) {
  j.Key("prior_used").Open('{');
  j.Key("prior").Open('{');
  j.Key("pixel_size_angstrom").Double(p.prior().pixel_size_angstrom());
  j.Key("sublattices").Open('[');
  for (const v1::SublatticePrior& s : p.prior().sublattices()) {
    j.Open('{');
    j.Key("name").String(s.name());
    j.Close('}');
  }
  j.Close(']');
  j.Close('}');
  j.Key("pixel_units").Bool(p.pixel_units());
  j.Close('}');
}

void Window(const v1::WindowResult& w, JsonOut& j) {
  j.Open('{');
  j.Key("index").Int(w.index());
  j.Key("core");
  Region(w.has_core() ? w.core() : w.tile(), j);
  j.Key("cache_state").String(v1::CacheState_Name(w.cache_state()));
  j.Key("objectives").String(v1::ObjectivePair_Name(w.objectives()));
  j.Key("chosen").Int(w.chosen());
  j.Key("num_atoms").Int(w.num_atoms());
  j.Key("parameters");
  Parameters(w.parameters(), j);
  j.Key("rewards").Open('{');
  QcEr(w.rewards().qc(), w.rewards().er(), j);
  j.Close('}');
  j.Key("front").Open('[');
  for (const v1::FrontPoint& p : w.front()) {
    j.Open('{');
    j.Key("parameters");
    Parameters(p.parameters(), j);
    QcEr(p.qc(), p.er(), j);
    j.Key("misses").Double(p.misses());
    j.Key("spurious").Double(p.spurious());
    j.Close('}');
  }
  j.Close(']');
  j.Close('}');
}

void Counters(const v1::SessionCounters& c, JsonOut& j) {
  j.Key("counters").Open('{');
  j.Key("frames_received").Uint(c.frames_received());
  j.Key("frames_analysed").Uint(c.frames_analysed());
  j.Key("frames_dropped").Uint(c.frames_dropped());
  j.Key("frames_failed").Uint(c.frames_failed());
  j.Key("cache_hits").Uint(c.cache_hits());
  j.Key("cache_misses").Uint(c.cache_misses());
  j.Key("cache_retunes").Uint(c.cache_retunes());
  j.Key("amorphous_hits").Uint(c.amorphous_hits());
  j.Key("amorphous_misses").Uint(c.amorphous_misses());
  j.Key("amorphous_retunes").Uint(c.amorphous_retunes());
  j.Close('}');
}

// PNG (RFC 2083) and zlib (RFC 1950) numbers are big-endian.
void AppendBigEndian32(uint32_t v, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

// A PNG chunk: `type_and_data` (its 4-letter type, then its data) between
// the data's length and the CRC of both.
void AppendChunk(std::string_view type_and_data, std::string* out) {
  AppendBigEndian32(type_and_data.size() - 4, out);
  out->append(type_and_data);
  AppendBigEndian32(
      crc32(crc32(0, nullptr, 0), reinterpret_cast<const Bytef*>(type_and_data.data()),
            type_and_data.size()),
      out);
}

constexpr size_t kStoredBlock = 65535;  // the most a stored deflate block holds

}  // namespace

void AppendConsoleResultJson(const v1::FrameResult& r, std::string* out) {
  // About 60 bytes an atom and 200 a front point: one allocation mostly.
  size_t points = 0;
  for (const v1::WindowResult& w : r.windows()) points += w.front_size();
  out->reserve(out->size() + 512 + 60 * r.atoms_size() + 300 * points);
  JsonOut j(out);
  j.Open('{');
  j.Key("sequence").Uint(r.sequence());
  j.Key("width").Uint(r.width());
  j.Key("height").Uint(r.height());
  Atoms(r, j);
  AmorphousRegions(r, j);
  RegionsOfInterest(r, j);
  PriorUsed(r.prior_used(), j);
  j.Key("windows").Open('[');
  for (const v1::WindowResult& w : r.windows()) Window(w, j);
  j.Close(']');
  j.Key("rewards").Open('{');
  QcEr(r.rewards().qc(), r.rewards().er(), j);
  j.Close('}');
  j.Key("latency").Open('{');
  j.Key("total_ms").Double(r.latency().total_ms());
  j.Close('}');
  Counters(r.counters(), j);
  j.Close('}');
}

std::string ConsolePreviewPng(const v1::FramePreview& preview) {
  const v1::PixelData& px = preview.pixels();
  const size_t width = px.width(), height = px.height();
  if (width == 0 || height == 0 || px.data().size() != width * height) return "";
  // The image data: each row after its filter byte (0: none).
  std::string rows;
  rows.resize((width + 1) * height);
  for (size_t y = 0; y < height; ++y) {
    rows[y * (width + 1)] = 0;
    std::memcpy(&rows[y * (width + 1) + 1], px.data().data() + y * width, width);
  }
  // As a zlib stream of stored deflate blocks (at most 65535 bytes each).
  std::string idat = "IDAT";
  idat.reserve(4 + 2 + rows.size() + 5 * (rows.size() / kStoredBlock + 1) + 4);
  idat.append("\x78\x01", 2);  // deflate, 32K window, no dictionary, level "fastest"
  for (size_t at = 0; at < rows.size(); at += kStoredBlock) {
    const size_t n = std::min(kStoredBlock, rows.size() - at);
    idat.push_back(at + n == rows.size() ? 1 : 0);  // BFINAL on the last; BTYPE 00: stored
    idat.push_back(static_cast<char>(n & 0xff));    // LEN, then its complement, little-endian
    idat.push_back(static_cast<char>(n >> 8));
    idat.push_back(static_cast<char>(~n & 0xff));
    idat.push_back(static_cast<char>((~n >> 8) & 0xff));
    idat.append(rows, at, n);
  }
  AppendBigEndian32(
      adler32(adler32(0, nullptr, 0), reinterpret_cast<const Bytef*>(rows.data()), rows.size()),
      &idat);

  std::string header = "IHDR";
  AppendBigEndian32(width, &header);
  AppendBigEndian32(height, &header);
  header.append("\x08\x00\x00\x00\x00", 5);  // 8-bit grey; deflate; no filter method; no interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  png.reserve(8 + 12 + header.size() + 12 + idat.size() + 12);
  AppendChunk(header, &png);
  AppendChunk(idat, &png);
  AppendChunk("IEND", &png);
  return png;
}

std::string ConsoleEventBody(const v1::WatchResponse& w) {
  std::string out = "event: result\ndata: {\"preview_scale\":";
  JsonOut(&out).Double(w.preview().scale());
  absl::StrAppend(&out, ",\"png\":\"", absl::Base64Escape(ConsolePreviewPng(w.preview())),
                  "\",\"result\":");
  AppendConsoleResultJson(w.result(), &out);
  out.append(",\"skipped\":");
  return out;
}

std::string ConsoleEventEnd(uint64_t skipped) { return absl::StrCat(skipped, "}\n\n"); }

}  // namespace logstar::cli
