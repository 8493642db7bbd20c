// `logstar record`: image files as a recorded stream (.lsr,
// clients/cpp/recording.h) that `logstar replay` sends to logstard.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/common.h"
#include "clients/cli/frame_file.h"
#include "clients/cli/prior.h"
#include "clients/cli/recording_flags.h"
#include "clients/cli/remote.h"
#include "clients/cpp/recording.h"
#include "engine/image/image_io.h"

namespace logstar::cli {
namespace {

constexpr char kRecordUsage[] =
    "usage: logstar record --from DIR|GLOB --prior PRIOR.json|auto --out S.lsr [--fps F]\n"
    "                      [--window PX] [--evals N] [--description TEXT]\n"
    "Writes the frames (.npy, .tif/.tiff, .png, .emd; a directory in name order or a quoted glob)\n"
    "as a recorded stream that `logstar replay` sends to logstard.\n"
    "  --prior P       the prior the header carries, sublattices included; auto (or a\n"
    "                  PRIOR.json with {\"auto\": true} or only pixel_size_angstrom): the\n"
    "                  daemon derives it from the first frame, with each frame's pixel size\n"
    "                  from its file's calibration (TIFF, EMD) when it has one\n"
    "  --fps F         frame rate for the replay timing (default 10)\n"
    "  --window, --evals  analysis settings stored in the header (default: the daemon's)\n"
    "  --gmm              the header asks for the amorphous stage too\n";

}  // namespace

int RunRecord(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {"from", "prior", "out", "fps", "window", "evals", "description"},
                            {"gmm"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()), kRecordUsage);
  if (flags->help()) {
    std::fputs(kRecordUsage, stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("unexpected argument '", flags->positional()[0], "'"),
                      kRecordUsage);
  }
  for (const char* required : {"from", "prior", "out"}) {
    if (!flags->Has(required)) {
      return UsageError(absl::StrCat("--", required, " is required"), kRecordUsage);
    }
  }
  auto fps = flags->Double("fps", 10.0);
  if (!fps.ok()) return UsageError(std::string(fps.status().message()), kRecordUsage);
  if (*fps <= 0) return UsageError("--fps must be > 0", kRecordUsage);
  v1::RecordingHeader header;
  header.set_created_by(absl::StrCat("logstar record ", LOGSTAR_VERSION));
  header.set_description(flags->Get("description").value_or(""));
  *header.mutable_created() = ToProtoTime(absl::Now());
  if (absl::Status s = AddAnalysisFlags(*flags, header.mutable_settings()->mutable_analysis());
      !s.ok()) {
    return UsageError(std::string(s.message()), kRecordUsage);
  }
  absl::StatusOr<server::PriorSetting> prior = server::PriorSetting{.derive = true, .prior = {}};
  if (*flags->Get("prior") != "auto") prior = ReadPriorFile(*flags->Get("prior"));
  if (!prior.ok()) return Fail(prior.status());
  *header.mutable_settings()->mutable_prior() = PriorToProto(*prior);
  auto paths = ListFrames(*flags->Get("from"));
  if (!paths.ok()) return Fail(paths.status());

  const std::string out = *flags->Get("out");
  if (absl::Status s = EnsureParentDir(out); !s.ok()) return Fail(s);
  auto writer = RecordingWriter::Create(out, header);
  if (!writer.ok()) return Fail(writer.status());
  bool said_calibration = false;
  for (size_t i = 0; i < paths->size(); ++i) {
    absl::StatusOr<FrameFile> image = ReadFrameFile((*paths)[i]);
    if (!image.ok()) return Fail(image.status());
    auto pixels = ImageToPixels(image->pixels);
    if (!pixels.ok()) {
      return Fail(
          absl::InvalidArgumentError(absl::StrCat((*paths)[i], ": ", pixels.status().message())));
    }
    v1::RecordedFrame f;
    f.set_offset_ns(static_cast<int64_t>(std::llround(1e9 * static_cast<double>(i) / *fps)));
    f.mutable_frame()->set_sequence(i + 1);
    // An auto prior without pixel size: the file's calibration when it has
    // one (said once), else 0.
    double pixel = prior->prior.pixel_size_angstrom;
    if (!(pixel > 0.0) && image->pixel_size_angstrom) {
      pixel = *image->pixel_size_angstrom;
      if (!said_calibration) {
        PrintCalibrationNote((*paths)[i], *image, kPriorGivesNone);
        said_calibration = true;
      }
    }
    f.mutable_frame()->set_pixel_size_x_angstrom(pixel);
    f.mutable_frame()->set_pixel_size_y_angstrom(pixel);
    *f.mutable_frame()->mutable_pixels() = *std::move(pixels);
    if (absl::Status s = (*writer)->Append(f); !s.ok()) return Fail(s);
  }
  if (absl::Status s = (*writer)->Close(); !s.ok()) return Fail(s);
  std::printf("record: %zu frames at %.3g fps -> %s (%lld bytes)\n", paths->size(), *fps,
              out.c_str(), static_cast<long long>((*writer)->bytes_written()));
  return 0;
}

}  // namespace logstar::cli
