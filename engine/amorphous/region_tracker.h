// Identities of amorphous regions across the frames of a stream, so that a
// steady field keeps its ids while its regions drift, grow or shrink.
//
// A track is a region seen before: its id, its last outline and how many
// frames in a row it has not been seen. Each frame's regions are matched to
// the tracks by overlap: the pixels inside both outlines (filled, holes
// included) over the smaller of the two areas — the "overlap share", which
// stays high under a drift of a few px per frame for regions much wider
// than the drift, and under a split or merge (a part keeps a large share of
// itself). Pairs with a share of at least min_overlap are taken greedily by
// decreasing overlap in pixels (ties: the older id, i.e. the smaller, then
// the earlier region), each track and each region at most once:
//  * a region matched to a track takes its id;
//  * split: the part overlapping the track most keeps the id, the others
//    get new ids;
//  * merge: the merged region takes the id of the track it overlaps most;
//    the other tracks go unmatched;
//  * a region matched to no track gets a new id (in the order of the
//    regions given);
//  * an unmatched track is kept for memory_frames frames (with its last
//    outline), so a region missed in one frame gets its id back; then it
//    ends. Ids are never reused: the next id only grows.
// Hysteresis against flicker (Reportable): a small region is reported only
// once it reaches an area threshold (the stage's min_share of the frame),
// and a region continuing a track stays reported while it keeps keep_ratio
// of that; so single amorphous atoms flickering in and out of the noise do
// not change the count from frame to frame, while a region that shrinks
// a little does not vanish.
// Ids start at 1 (0 means "no id", Region::id's default). Deterministic:
// the same frames in the same order give the same ids.
//
// Coordinates: x = column, y = row, pixels, origin at the centre of the
// top-left pixel. Thread-safety: a tracker is a value; not synchronised.
#ifndef LOGSTAR_ENGINE_AMORPHOUS_REGION_TRACKER_H_
#define LOGSTAR_ENGINE_AMORPHOUS_REGION_TRACKER_H_

#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "engine/amorphous/regions.h"
#include "engine/base/geometry.h"

namespace logstar {

struct RegionTrackerOptions {
  double min_overlap = 0.2;  // overlap share to keep an id, in (0, 1]
  int memory_frames = 2;     // frames an unseen track is kept, >= 0
  double keep_ratio = 0.5;   // of the appearance area, for a tracked region, in (0, 1]

  absl::Status Validate() const;
};

struct RegionTrack {
  int id = 0;                    // >= 1
  int missed = 0;                // consecutive frames unseen, 0 when seen in the last one
  double area_px2 = 0.0;         // of the last region seen, > 0
  std::vector<PointXY> contour;  // last outline, pixel centres, not empty
};

// What a tracker carries from frame to frame (saved with the analyzer's cache).
struct RegionTrackerState {
  int next_id = 1;
  std::vector<RegionTrack> tracks;  // by id
};

class RegionTracker {
 public:
  explicit RegionTracker(const RegionTrackerOptions& options = {}, RegionTrackerState state = {});

  // Sets `id` of every region of one frame (see the file comment) and
  // advances the tracks. Regions without contour get a new id and no track.
  void Update(std::vector<Region>& regions);

  // Which of `regions` to report (see the file comment): those of at least
  // `appear_area_px2`, and those of at least keep_ratio × that which overlap
  // a track as Update would match them. Does not change the tracks.
  std::vector<bool> Reportable(const std::vector<Region>& regions, double appear_area_px2) const;

  const RegionTrackerState& state() const { return state_; }

  // InvalidArgument (naming the problem) for ids < 1 or not below next_id,
  // repeated ids, empty outlines, non-finite points or non-positive areas.
  static absl::Status Check(const RegionTrackerState& state);

 private:
  // Region-track pairs whose overlap share reaches min_overlap: (overlap
  // px, track index, region index), best first (see the file comment).
  std::vector<std::tuple<double, int, int>> Pairs(const std::vector<Region>& regions) const;

  RegionTrackerOptions options_;
  RegionTrackerState state_;
};

}  // namespace logstar

#endif  // LOGSTAR_ENGINE_AMORPHOUS_REGION_TRACKER_H_
