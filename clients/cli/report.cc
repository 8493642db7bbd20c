// `logstar report`: pictures of a run, drawn with OpenCV (no Python): a
// timeline of every analysed frame (atom count, rewards, amorphous area,
// latency, cache states) and each window's Pareto front with its chosen
// point. Reads replay's --results lines or analyze's RESULT.json.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cli/analysis_json.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "engine/image/overlay.h"

namespace logstar::cli {
namespace {

constexpr char kReportUsage[] =
    "usage: logstar report RESULTS.jsonl|RESULT.json --out DIR\n"
    "Draws a run as PNG pictures in DIR:\n"
    "  timeline.png        one point per analysed frame, in five panels: atoms found, rewards\n"
    "                      (QC red, ER green), amorphous area (%, with --gmm), latency (ms:\n"
    "                      replay's push to answer, analyze's analysis) and the windows' cache\n"
    "                      states (stacked: hit steel blue, tuned red, re-tuned gold)\n"
    "  front_window_N.png  window N's Pareto front (QC across, ER up) on the last frame that\n"
    "                      has it, the chosen point ringed in red\n"
    "RESULTS.jsonl: the lines of logstar replay --results (dropped and failed frames are\n"
    "counted, not drawn); RESULT.json: logstar analyze's, one IMAGE or --frames.\n";

// Colours (BGR), each one panel's own so that a picture can be read back.
const cv::Scalar kWhite(255, 255, 255), kBlack(0, 0, 0), kGrid(225, 225, 225);
const cv::Scalar kCount(200, 90, 30);       // blue
const cv::Scalar kQc(40, 40, 220);          // red
const cv::Scalar kEr(40, 160, 40);          // green
const cv::Scalar kAmorphous(180, 60, 180);  // purple
const cv::Scalar kLatency(30, 140, 230);    // orange
const cv::Scalar kFront(200, 90, 30);       // blue
const cv::Scalar kChosen(40, 40, 220);      // red

// Layout, picture pixels.
constexpr int kWidth = 900, kPanelHeight = 150, kLeft = 80, kRight = 20, kTitle = 22, kBottom = 26;
constexpr int kMarker = 3;  // point radius

struct FrameRow {
  int64_t frame = 0;  // replay's sequence, or 1-based index
  double num_atoms = 0, qc = 0, er = 0;
  std::optional<double> amorphous_area = std::nullopt;  // fraction
  std::optional<double> latency_ms;
  double hits = 0, misses = 0, retunes = 0;
  Json windows = Json::array();
};

struct Run {
  std::vector<FrameRow> frames;
  int skipped = 0;  // dropped or failed
  std::string latency_name;
};

double Number(const Json& j, const char* key, double fallback = 0.0) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}

// One analysed frame from a replay line or an analyze frame object.
FrameRow RowOf(const Json& j, int64_t frame, std::optional<double> latency_ms) {
  FrameRow r{.frame = frame, .latency_ms = latency_ms};
  r.num_atoms = Number(j, "num_atoms");
  if (j.contains("rewards")) {
    r.qc = Number(j["rewards"], "qc");
    r.er = Number(j["rewards"], "er");
  }
  if (j.contains("amorphous") && j["amorphous"].contains("area_fraction")) {
    r.amorphous_area = Number(j["amorphous"], "area_fraction");
  }
  if (j.contains("cache")) {
    r.hits = Number(j["cache"], "hits");
    r.misses = Number(j["cache"], "misses");
    r.retunes = Number(j["cache"], "retunes");
  }
  if (j.contains("windows") && j["windows"].is_array()) r.windows = j["windows"];
  return r;
}

absl::StatusOr<Run> ReadRun(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  Run run;
  const Json whole = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!whole.is_discarded() && whole.is_object() && !whole.contains("sequence")) {
    // analyze's RESULT.json: a sequence's frames, or one IMAGE.
    run.latency_name = "analysis (ms)";
    auto latency = [](const Json& f) -> std::optional<double> {
      if (!f.contains("timings_ms")) return std::nullopt;
      return Number(f["timings_ms"], "analyze", Number(f["timings_ms"], "total"));
    };
    if (whole.contains("frames") && whole["frames"].is_array()) {
      int64_t i = 0;
      for (const Json& f : whole["frames"]) run.frames.push_back(RowOf(f, ++i, latency(f)));
    } else {
      run.frames.push_back(RowOf(whole, 1, latency(whole)));
    }
    return run;
  }
  // replay's --results: one JSON object per line.
  run.latency_name = "latency (ms)";
  std::istringstream lines(*text);
  std::string line;
  int line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": line ", line_no, ": not JSON (expected replay --results lines or RESULT.json)"));
    }
    if (j.value("status", "") != "result") {
      ++run.skipped;
      continue;
    }
    const std::optional<double> latency =
        j.contains("latency_ms") ? std::optional<double>(Number(j, "latency_ms")) : std::nullopt;
    run.frames.push_back(RowOf(j, static_cast<int64_t>(Number(j, "sequence", line_no)), latency));
  }
  if (run.frames.empty() && run.skipped == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no frames"));
  }
  return run;
}

// A panel: its box on the picture and the value range it maps.
struct Panel {
  cv::Rect box;  // the plotting area
  double lo = 0, hi = 1;
  int64_t first = 0, last = 0;  // frames along x

  // Points keep kInset px off the box's sides, clear of its border.
  static constexpr int kInset = 10;
  int X(int64_t frame) const {
    if (last == first) return box.x + box.width / 2;
    return box.x + kInset +
           static_cast<int>(
               std::lround(static_cast<double>(frame - first) / static_cast<double>(last - first) *
                           (box.width - 2 * kInset)));
  }
  int Y(double v) const {
    const double t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return box.y + box.height - static_cast<int>(std::lround(std::clamp(t, 0.0, 1.0) * box.height));
  }
};

void Text(cv::Mat& img, const std::string& s, cv::Point at, double scale = 0.42,
          const cv::Scalar& colour = kBlack) {
  cv::putText(img, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv::LINE_AA);
}

// The panel's frame, title and value range, for values in [lo, hi].
Panel DrawPanel(cv::Mat& img, int index, const std::string& title, double lo, double hi,
                const std::vector<FrameRow>& frames) {
  const int top = index * kPanelHeight;
  Panel p{.box = cv::Rect(kLeft, top + kTitle, kWidth - kLeft - kRight,
                          kPanelHeight - kTitle - kBottom),
          .lo = lo,
          .hi = hi > lo ? hi : lo + 1.0,
          .first = frames.front().frame,
          .last = frames.back().frame};
  cv::rectangle(img, p.box, kGrid, 1);
  Text(img, title, cv::Point(kLeft, top + kTitle - 6), 0.5);
  Text(img, absl::StrFormat("%.4g", p.hi), cv::Point(6, p.box.y + 10));
  Text(img, absl::StrFormat("%.4g", p.lo), cv::Point(6, p.box.y + p.box.height));
  Text(img, absl::StrCat("frame ", p.first), cv::Point(kLeft, p.box.y + p.box.height + 16));
  if (p.last != p.first) {
    Text(img, absl::StrCat(p.last),
         cv::Point(p.box.x + p.box.width - 30, p.box.y + p.box.height + 16));
  }
  return p;
}

// One series: a light line through the points, each point a filled disk of
// `colour` (no anti-aliasing, so that the colour is exact).
void DrawSeries(cv::Mat& img, const Panel& p, const std::vector<std::pair<int64_t, double>>& points,
                const cv::Scalar& colour) {
  const cv::Scalar light = (colour + kWhite * 2) / 3;
  for (size_t i = 1; i < points.size(); ++i) {
    cv::line(img, cv::Point(p.X(points[i - 1].first), p.Y(points[i - 1].second)),
             cv::Point(p.X(points[i].first), p.Y(points[i].second)), light, 1, cv::LINE_AA);
  }
  for (const auto& [frame, v] : points) {
    cv::circle(img, cv::Point(p.X(frame), p.Y(v)), kMarker, colour, cv::FILLED, cv::LINE_8);
  }
}

std::pair<double, double> RangeOf(const std::vector<std::pair<int64_t, double>>& points) {
  double lo = 0.0, hi = 0.0;
  for (const auto& [frame, v] : points) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  return {lo, hi * 1.05};
}

cv::Mat DrawTimeline(const Run& run) {
  cv::Mat img(5 * kPanelHeight, kWidth, CV_8UC3, kWhite);
  const std::vector<FrameRow>& f = run.frames;
  std::vector<std::pair<int64_t, double>> count, qc, er, area, latency;
  for (const FrameRow& r : f) {
    count.emplace_back(r.frame, r.num_atoms);
    qc.emplace_back(r.frame, r.qc);
    er.emplace_back(r.frame, r.er);
    if (r.amorphous_area) area.emplace_back(r.frame, 100.0 * *r.amorphous_area);
    if (r.latency_ms) latency.emplace_back(r.frame, *r.latency_ms);
  }
  auto [count_lo, count_hi] = RangeOf(count);
  DrawSeries(img, DrawPanel(img, 0, "atoms found", count_lo, count_hi, f), count, kCount);
  std::vector<std::pair<int64_t, double>> both = qc;
  both.insert(both.end(), er.begin(), er.end());
  auto [reward_lo, reward_hi] = RangeOf(both);
  const Panel rewards =
      DrawPanel(img, 1, "rewards: QC (red), ER (green); 0 is best", reward_lo, reward_hi, f);
  DrawSeries(img, rewards, qc, kQc);
  DrawSeries(img, rewards, er, kEr);
  if (area.empty()) {
    const Panel p = DrawPanel(img, 2, "amorphous area (%)", 0, 100, f);
    Text(img, "no amorphous stage in this run",
         cv::Point(p.box.x + 10, p.box.y + p.box.height / 2));
  } else {
    DrawSeries(img, DrawPanel(img, 2, "amorphous area (%)", 0, 100, f), area, kAmorphous);
  }
  auto [latency_lo, latency_hi] = RangeOf(latency);
  DrawSeries(img, DrawPanel(img, 3, run.latency_name, latency_lo, latency_hi, f), latency,
             kLatency);
  // Cache states: a bar per frame, hits at the bottom, then tuned, re-tuned.
  double most = 1.0;
  for (const FrameRow& r : f) most = std::max(most, r.hits + r.misses + r.retunes);
  const Panel cache = DrawPanel(
      img, 4, "windows by cache state: hit (blue), tuned (red), re-tuned (gold)", 0, most, f);
  const int bar = std::clamp(cache.box.width / std::max<int>(1, f.size()) / 2, 1, 12);
  for (const FrameRow& r : f) {
    double base = 0.0;
    for (const auto& [n, state] :
         {std::pair{r.hits, WindowMark::kHit}, std::pair{r.misses, WindowMark::kTuned},
          std::pair{r.retunes, WindowMark::kRetuned}}) {
      if (n <= 0) continue;
      const int x = cache.X(r.frame) - bar / 2, y0 = cache.Y(base), y1 = cache.Y(base + n);
      cv::rectangle(img, cv::Rect(x, y1, std::max(1, bar), std::max(1, y0 - y1)),
                    WindowColour(state), cv::FILLED);
      base += n;
    }
  }
  return img;
}

// A window's front: QC across, ER up, each point a blue disk, the chosen one
// a red disk in a red ring.
absl::StatusOr<cv::Mat> DrawFront(const Json& window, int64_t frame) {
  constexpr int kSize = 420, kMargin = 60;
  cv::Mat img(kSize, kSize, CV_8UC3, kWhite);
  const Json& front = window["front"];
  const int chosen = window.contains("chosen") ? window["chosen"].get<int>() : -1;
  double qc_hi = 0.0, er_hi = 0.0;
  for (const Json& p : front) {
    qc_hi = std::max(qc_hi, Number(p, "qc"));
    er_hi = std::max(er_hi, Number(p, "er"));
  }
  qc_hi = qc_hi > 0 ? qc_hi * 1.1 : 1.0;
  er_hi = er_hi > 0 ? er_hi * 1.1 : 1.0;
  const cv::Rect box(kMargin, 30, kSize - kMargin - 20, kSize - 30 - kMargin);
  cv::rectangle(img, box, kGrid, 1);
  auto at = [&](const Json& p) {
    return cv::Point(
        box.x + static_cast<int>(std::lround(Number(p, "qc") / qc_hi * box.width)),
        box.y + box.height - static_cast<int>(std::lround(Number(p, "er") / er_hi * box.height)));
  };
  Text(img,
       absl::StrFormat("window %d (frame %d, %s): %d points", window.value("index", -1), frame,
                       window.value("cache", std::string("?")), static_cast<int>(front.size())),
       cv::Point(10, 20), 0.45);
  Text(img, "QC", cv::Point(box.x + box.width / 2, kSize - 20));
  Text(img, "ER", cv::Point(10, box.y + box.height / 2));
  Text(img, "0", cv::Point(box.x - 12, box.y + box.height + 14));
  Text(img, absl::StrFormat("%.3g", qc_hi),
       cv::Point(box.x + box.width - 30, box.y + box.height + 14));
  Text(img, absl::StrFormat("%.3g", er_hi), cv::Point(6, box.y + 10));
  for (size_t i = 0; i < front.size(); ++i) {
    if (static_cast<int>(i) != chosen) {
      cv::circle(img, at(front[i]), 4, kFront, cv::FILLED, cv::LINE_8);
    }
  }
  if (chosen >= 0 && chosen < static_cast<int>(front.size())) {
    cv::circle(img, at(front[chosen]), 9, kChosen, 2, cv::LINE_8);
    cv::circle(img, at(front[chosen]), 4, kChosen, cv::FILLED, cv::LINE_8);
    const cv::Point c = at(front[chosen]);
    const bool right = c.x > box.x + box.width * 2 / 3;  // the label then goes left
    Text(img, "chosen", c + cv::Point(right ? -70 : 12, -12), 0.42, kChosen);
  }
  return img;
}

}  // namespace

int RunReport(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {"out"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kReportUsage);
  if (flags->help()) {
    std::fputs(kReportUsage, stdout);
    return 0;
  }
  if (flags->positional().size() != 1) {
    return UsageError("give exactly one RESULTS.jsonl or RESULT.json", kReportUsage);
  }
  if (!flags->Has("out")) return UsageError("--out DIR is required", kReportUsage);
  const std::string input = flags->positional()[0], dir = *flags->Get("out");
  absl::StatusOr<Run> run = ReadRun(input);
  if (!run.ok()) return Fail(run.status());
  if (run->frames.empty()) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat(input, ": no analysed frame (", run->skipped, " dropped or failed)")));
  }
  const std::filesystem::path out(dir);
  if (absl::Status s = EnsureParentDir((out / "timeline.png").string()); !s.ok()) return Fail(s);
  if (absl::Status s = WritePng((out / "timeline.png").string(), DrawTimeline(*run)); !s.ok()) {
    return Fail(s);
  }
  // Each window's latest front: the last frame that carries the window.
  std::map<int, std::pair<int64_t, const Json*>> latest;
  for (const FrameRow& r : run->frames) {
    for (const Json& w : r.windows) {
      if (w.contains("index") && w.contains("front")) latest[w["index"].get<int>()] = {r.frame, &w};
    }
  }
  for (const auto& [index, frame_window] : latest) {
    absl::StatusOr<cv::Mat> picture = DrawFront(*frame_window.second, frame_window.first);
    if (!picture.ok()) return Fail(picture.status());
    const std::string path = (out / absl::StrCat("front_window_", index, ".png")).string();
    if (absl::Status s = WritePng(path, *picture); !s.ok()) return Fail(s);
  }
  std::printf("report: %zu frames drawn (%d dropped or failed), %zu window fronts -> %s\n",
              run->frames.size(), run->skipped, latest.size(), dir.c_str());
  return 0;
}

}  // namespace logstar::cli
