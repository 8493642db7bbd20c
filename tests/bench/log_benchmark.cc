// Benchmarks of the LoG detector on generated lattice frames.
//
// Frames: N x N (N = 256, 1024, 2048), HAADF-like Gaussian columns of sigma
// 3.5 px on a square lattice 20 px apart (columns at 8 px/A-like sampling),
// a checkerboard of heavy and light columns, Gaussian noise of 0.1 x the clean
// frame's range, normalised to [0, 1] in float32. Parameters: min_sigma 2,
// max_sigma 6, num_sigma 10, threshold 0.1, overlap 0.5.
//
// Benchmarks (per size):
//   BM_DetectBlobsLog     the one-shot DetectBlobsLog, what blob_log does;
//   BM_ScaleSpaceCompute  LogScaleSpace::Compute alone (the convolutions);
//   BM_ScaleSpaceDetect   LogScaleSpace::Detect alone on a computed
//                         scale-space: the re-thresholding an optimiser
//                         repeats hundreds of times per frame.
//   BM_GridCompute        LogScaleGrid::Compute on a 256² window: the
//                         sigma grid LoG* computes once per window;
//   BM_GridDetect         one detection on that grid: the cost of one LoG*
//                         evaluation before rewards.
// Times are wall-clock (the work runs on the context's worker threads).
//
// Extra flags, before the usual --benchmark_* ones:
//   --frames_dir=DIR  writes each benchmark frame as DIR/lattice_<N>.npy
//                     (float32) so tests/bench/skimage_blob_log_bench.py
//                     times scikit-image on the very same frames;
//   --rss_size=N      runs no benchmark: one full detection on the N x N
//                     frame (read from --frames_dir when it is there), then
//                     prints one JSON line with the peak resident memory the
//                     detection added (see RunRssMode).
//   --threads=T       worker threads (default: every hardware thread).

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numbers>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <opencv2/core.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "engine/base/context.h"
#include "engine/image/image_io.h"
#include "engine/log/log_detector.h"
#include "engine/log/log_scale_grid.h"
#include "engine/image/normalize.h"

namespace logstar {
namespace {

constexpr int kSizes[] = {256, 1024, 2048};

// Lattice of the benchmark frames.
constexpr double kSpacingPx = 20.0;
constexpr double kRotationDeg = 7.0;
constexpr double kColumnSigmaPx = 3.5;
constexpr double kHeavy = 1.0;
constexpr double kLight = 0.45;
constexpr double kBackground = 0.05;
constexpr double kNoise = 0.1;  // std as a fraction of the clean frame's range
constexpr uint64_t kSeed = 20240611;

// Detection parameters, shared with skimage_blob_log_bench.py.
LogOptions BenchOptions() {
  LogOptions o;
  o.scale.min_sigma = 2.0;
  o.scale.max_sigma = 6.0;
  o.scale.num_sigma = 10;
  o.detect.threshold = 0.1;
  o.detect.overlap = 0.5;
  return o;
}
// The lowest threshold an optimiser would try: the scale-space for the
// re-thresholding benchmark keeps every peak above it.
constexpr double kOptimizerResponseFloor = 0.05;

int g_threads = 0;  // --threads; 0 = every hardware thread

ExecutionContext* Context() {
  static ExecutionContext* context = [] {
    if (g_threads == 0) return ExecutionContext::Default();
    absl::StatusOr<std::unique_ptr<ExecutionContext>> c =
        ExecutionContext::Create({.num_threads = g_threads});
    if (!c.ok()) {
      std::fprintf(stderr, "ExecutionContext: %s\n", c.status().ToString().c_str());
      std::exit(2);
    }
    return c->release();  // lives for the whole program
  }();
  return context;
}

// Renders the lattice frame in place in one CV_32F buffer (no full-size
// temporaries, so the frame's own memory is all the memory it takes),
// normalised min-max to [0, 1].
cv::Mat MakeLatticeFrame(int size) {
  cv::Mat frame(size, size, CV_32F, cv::Scalar(kBackground));
  const double theta = kRotationDeg * std::numbers::pi / 180.0;
  const double c = std::cos(theta);
  const double s = std::sin(theta);
  const int reach = static_cast<int>(std::ceil(size * std::sqrt(2.0) / kSpacingPx)) + 2;
  const int radius = static_cast<int>(std::ceil(5 * kColumnSigmaPx));
  const double inv_two_var = 1.0 / (2 * kColumnSigmaPx * kColumnSigmaPx);
  // The origin sits off the pixel grid so no two columns are symmetric.
  const double x0 = 0.37 * kSpacingPx;
  const double y0 = 0.61 * kSpacingPx;
  for (int i = -reach; i <= reach; ++i) {
    for (int j = -reach; j <= reach; ++j) {
      const double cx = x0 + i * kSpacingPx * c - j * kSpacingPx * s;
      const double cy = y0 + i * kSpacingPx * s + j * kSpacingPx * c;
      if (cx < -radius || cy < -radius || cx > size + radius || cy > size + radius) continue;
      const double height = (i + j) % 2 == 0 ? kHeavy : kLight;
      const int r0 = std::max(0, static_cast<int>(cy) - radius);
      const int r1 = std::min(size - 1, static_cast<int>(cy) + radius);
      const int q0 = std::max(0, static_cast<int>(cx) - radius);
      const int q1 = std::min(size - 1, static_cast<int>(cx) + radius);
      for (int r = r0; r <= r1; ++r) {
        float* row = frame.ptr<float>(r);
        for (int q = q0; q <= q1; ++q) {
          const double d2 = (r - cy) * (r - cy) + (q - cx) * (q - cx);
          row[q] += static_cast<float>(height * std::exp(-d2 * inv_two_var));
        }
      }
    }
  }
  double lo = 0.0;
  double hi = 0.0;
  cv::minMaxLoc(frame, &lo, &hi);
  cv::RNG rng(kSeed);
  const double noise_std = kNoise * (hi - lo);
  for (int r = 0; r < size; ++r) {
    float* row = frame.ptr<float>(r);
    for (int q = 0; q < size; ++q) row[q] += static_cast<float>(rng.gaussian(noise_std));
  }
  // As every frame the service analyses: NormalizeFrame (min-max to [0, 1],
  // in the memory layout the detector uses without a copy). scikit-image
  // gets these same normalised values.
  absl::StatusOr<cv::Mat> normalized = NormalizeFrame(frame, NormalizeOptions{});
  if (!normalized.ok()) {
    std::fprintf(stderr, "NormalizeFrame: %s\n", normalized.status().ToString().c_str());
    std::exit(2);
  }
  return *std::move(normalized);
}

std::string FramePath(const std::string& dir, int size) {
  return absl::StrCat(dir, "/lattice_", size, ".npy");
}

// Frames are made once per size and shared by all benchmarks.
const cv::Mat& Frame(int size) {
  static std::mutex mu;
  static std::map<int, cv::Mat> frames;
  std::lock_guard<std::mutex> lock(mu);
  auto it = frames.find(size);
  if (it == frames.end()) it = frames.emplace(size, MakeLatticeFrame(size)).first;
  return it->second;
}

// Times `detect` (returning StatusOr<vector<Blob>>) in the benchmark loop;
// returns the blob count of the last call, or -1 after reporting an error.
template <typename Detect>
long TimeDetections(benchmark::State& state, Detect detect) {
  long blobs = 0;
  for (auto _ : state) {
    absl::StatusOr<std::vector<Blob>> result = detect();
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      return -1;
    }
    blobs = static_cast<long>(result->size());
    benchmark::DoNotOptimize(result);
  }
  return blobs;
}

void BM_DetectBlobsLog(benchmark::State& state) {
  const cv::Mat& frame = Frame(static_cast<int>(state.range(0)));
  const LogOptions options = BenchOptions();
  const long blobs =
      TimeDetections(state, [&] { return DetectBlobsLog(frame, options, Context()); });
  if (blobs < 0) return;
  state.counters["blobs"] = static_cast<double>(blobs);
  state.counters["threads"] = Context()->num_threads();
  state.SetItemsProcessed(state.iterations() * frame.total());  // pixels
}

void BM_ScaleSpaceCompute(benchmark::State& state) {
  const cv::Mat& frame = Frame(static_cast<int>(state.range(0)));
  LogScaleOptions options = BenchOptions().scale;
  options.response_floor = BenchOptions().detect.threshold;  // as DetectBlobsLog
  size_t candidates = 0;
  for (auto _ : state) {
    absl::StatusOr<LogScaleSpace> space = LogScaleSpace::Compute(frame, options, Context());
    if (!space.ok()) {
      state.SkipWithError(space.status().ToString().c_str());
      return;
    }
    candidates = space->num_candidates();
    benchmark::DoNotOptimize(space);
  }
  state.counters["candidates"] = static_cast<double>(candidates);
  state.counters["threads"] = Context()->num_threads();
  state.SetItemsProcessed(state.iterations() * frame.total());
}

void BM_ScaleSpaceDetect(benchmark::State& state) {
  const cv::Mat& frame = Frame(static_cast<int>(state.range(0)));
  LogScaleOptions scale = BenchOptions().scale;
  scale.response_floor = kOptimizerResponseFloor;
  absl::StatusOr<LogScaleSpace> space = LogScaleSpace::Compute(frame, scale, Context());
  if (!space.ok()) {
    state.SkipWithError(space.status().ToString().c_str());
    return;
  }
  const LogDetectOptions detect = BenchOptions().detect;
  const long blobs = TimeDetections(state, [&] { return space->Detect(detect); });
  if (blobs < 0) return;
  state.counters["blobs"] = static_cast<double>(blobs);
  state.counters["candidates"] = static_cast<double>(space->num_candidates());
}

// The sigma grid LoG* computes once per window: the union of the sigma
// ranges it searches (0.25–2 × the column sigma) at the default spacing.
LogGridOptions GridOptions() {
  LogGridOptions o;
  o.min_sigma = 0.25 * kColumnSigmaPx;
  o.max_sigma = 2.0 * kColumnSigmaPx;
  o.response_floor = 0.01;
  return o;
}

void BM_GridCompute(benchmark::State& state) {
  const cv::Mat& frame = Frame(static_cast<int>(state.range(0)));
  size_t sigmas = 0;
  for (auto _ : state) {
    absl::StatusOr<LogScaleGrid> grid = LogScaleGrid::Compute(frame, GridOptions(), Context());
    if (!grid.ok()) {
      state.SkipWithError(grid.status().ToString().c_str());
      return;
    }
    sigmas = grid->sigmas().size();
    benchmark::DoNotOptimize(grid);
  }
  state.counters["sigmas"] = static_cast<double>(sigmas);
  state.counters["threads"] = Context()->num_threads();
}

// One LoG* evaluation's detection: the bench parameters on the grid.
void BM_GridDetect(benchmark::State& state) {
  const cv::Mat& frame = Frame(static_cast<int>(state.range(0)));
  absl::StatusOr<LogScaleGrid> grid = LogScaleGrid::Compute(frame, GridOptions(), Context());
  if (!grid.ok()) {
    state.SkipWithError(grid.status().ToString().c_str());
    return;
  }
  const LogOptions options = BenchOptions();
  const long blobs =
      TimeDetections(state, [&] { return grid->Detect(options.scale, options.detect); });
  if (blobs < 0) return;
  state.counters["blobs"] = static_cast<double>(blobs);
}

void WindowArgs(benchmark::internal::Benchmark* b) {
  b->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
}

void SizeArgs(benchmark::internal::Benchmark* b) {
  for (int size : kSizes) b->Arg(size);
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_DetectBlobsLog)->Apply(SizeArgs);
BENCHMARK(BM_ScaleSpaceCompute)->Apply(SizeArgs);
BENCHMARK(BM_ScaleSpaceDetect)->Apply(SizeArgs);
BENCHMARK(BM_GridCompute)->Apply(WindowArgs);
BENCHMARK(BM_GridDetect)->Apply(WindowArgs);

// Resident-set size of this process now, in kB (VmRSS), or -1.
long CurrentRssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      long kb = -1;
      std::string digits;
      for (char ch : line) {
        if (ch >= '0' && ch <= '9') digits += ch;
      }
      return absl::SimpleAtoi(digits, &kb) ? kb : -1;
    }
  }
  return -1;
}

// Resets the kernel's peak-RSS mark (ru_maxrss) to the current RSS, so the
// peak read after the detection is the detection's own and not that of frame
// loading before it. Linux >= 4.0; returns false where unsupported. Free heap
// memory is first given back to the system: left resident, the detection
// could reuse it without its RSS growing.
bool ResetPeakRss() {
  malloc_trim(0);
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

long PeakRssKb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;  // kB on Linux
}

// One full detection on the size x size frame; prints one JSON line:
// baseline_mb (RSS with the frame loaded), peak_mb (peak RSS during the
// detection) and delta_mb = peak - baseline, the memory the detection took.
// skimage_blob_log_bench.py measures scikit-image the same way.
int RunRssMode(int size, const std::string& frames_dir) {
  cv::Mat frame;
  if (!frames_dir.empty() && std::filesystem::exists(FramePath(frames_dir, size))) {
    absl::StatusOr<cv::Mat> loaded = LoadFrame(FramePath(frames_dir, size));
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    absl::StatusOr<cv::Mat> normalized = NormalizeFrame(*loaded, NormalizeOptions{});
    if (!normalized.ok()) {
      std::fprintf(stderr, "%s\n", normalized.status().ToString().c_str());
      return 1;
    }
    frame = *std::move(normalized);
  } else {
    frame = MakeLatticeFrame(size);
  }
  const LogOptions options = BenchOptions();
  // Warm-up on a small crop: starts the worker threads and any lazy state,
  // as importing scikit-image does on the Python side before its baseline.
  {
    cv::Mat crop = frame(cv::Rect(0, 0, std::min(size, 64), std::min(size, 64))).clone();
    absl::StatusOr<std::vector<Blob>> warm = DetectBlobsLog(crop, options, Context());
    if (!warm.ok()) {
      std::fprintf(stderr, "DetectBlobsLog: %s\n", warm.status().ToString().c_str());
      return 1;
    }
  }
  const bool reset = ResetPeakRss();
  const long baseline_kb = reset ? CurrentRssKb() : PeakRssKb();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Blob>> blobs = DetectBlobsLog(frame, options, Context());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long peak_kb = PeakRssKb();
  if (!blobs.ok()) {
    std::fprintf(stderr, "DetectBlobsLog: %s\n", blobs.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "{\"size\": %d, \"threads\": %d, \"blobs\": %zu, \"seconds\": %.6f, "
      "\"baseline_mb\": %.3f, \"peak_mb\": %.3f, \"delta_mb\": %.3f, \"peak_reset\": %s}\n",
      size, Context()->num_threads(), blobs->size(), seconds, baseline_kb / 1024.0,
      peak_kb / 1024.0, (peak_kb - baseline_kb) / 1024.0, reset ? "true" : "false");
  return 0;
}

int WriteFrames(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(), error.message().c_str());
    return 1;
  }
  for (int size : kSizes) {
    absl::Status status = WriteNpy(FramePath(dir, size), Frame(size));
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace logstar

int main(int argc, char** argv) {
  std::string frames_dir;
  int rss_size = 0;
  // Take our flags out; the rest goes to Google Benchmark.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--frames_dir=")) {
      frames_dir = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--rss_size=")) {
      if (!absl::SimpleAtoi(arg, &rss_size) || rss_size < 64) {
        std::fprintf(stderr, "--rss_size wants a size >= 64, not '%s'\n", argv[i]);
        return 1;
      }
    } else if (absl::ConsumePrefix(&arg, "--threads=")) {
      if (!absl::SimpleAtoi(arg, &logstar::g_threads) || logstar::g_threads < 0) {
        std::fprintf(stderr, "--threads wants a count >= 0, not '%s'\n", argv[i]);
        return 1;
      }
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (rss_size > 0) return logstar::RunRssMode(rss_size, frames_dir);
  if (!frames_dir.empty() && logstar::WriteFrames(frames_dir) != 0) return 1;

  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
