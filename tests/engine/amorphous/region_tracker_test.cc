// Region identities across frames (engine/amorphous/region_tracker.h), on
// masks drawn by hand whose identities are known by construction.
#include "engine/amorphous/region_tracker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

namespace logstar {
namespace {

struct Disk {
  double x, y, r;
};

// The regions of a 200 × 200 mask holding `disks`.
std::vector<Region> RegionsOf(const std::vector<Disk>& disks) {
  cv::Mat mask = cv::Mat::zeros(200, 200, CV_8U);
  for (const Disk& d : disks) {
    cv::circle(mask, cv::Point(static_cast<int>(d.x), static_cast<int>(d.y)), static_cast<int>(d.r),
               cv::Scalar(255), cv::FILLED);
  }
  return DescribeRegions(mask).value().regions;
}

// The id of the region containing (x, y) (by its bounding box), 0 if none.
int IdAt(const std::vector<Region>& regions, double x, double y) {
  for (const Region& r : regions) {
    if (x >= r.bbox.col0 && x < r.bbox.col0 + r.bbox.cols && y >= r.bbox.row0 &&
        y < r.bbox.row0 + r.bbox.rows) {
      return r.id;
    }
  }
  return 0;
}

TEST(RegionTrackerTest, DriftingRegionKeepsItsIdAndNewOnesGetNewIds) {
  RegionTracker tracker;
  for (int f = 0; f < 12; ++f) {
    // 3 px per frame, radius 20: consecutive disks overlap by most of their area.
    std::vector<Disk> disks = {{40.0 + 3 * f, 50.0 + 2 * f, 20}};
    if (f >= 5) disks.push_back({150, 150, 15});
    std::vector<Region> r = RegionsOf(disks);
    tracker.Update(r);
    EXPECT_EQ(IdAt(r, 40.0 + 3 * f, 50.0 + 2 * f), 1) << "frame " << f;
    if (f >= 5) {
      EXPECT_EQ(IdAt(r, 150, 150), 2) << "frame " << f;
    }
  }
  EXPECT_EQ(tracker.state().next_id, 3);
}

// A split: the part overlapping the old region most keeps its id; a merge:
// the region takes the id of the one it overlaps most.
TEST(RegionTrackerTest, SplitsAndMergesAreDeterministic) {
  RegionTracker tracker;
  std::vector<Region> r = RegionsOf({{60, 100, 30}, {130, 100, 20}});
  tracker.Update(r);
  const int big = IdAt(r, 60, 100), small = IdAt(r, 130, 100);
  EXPECT_EQ(big, 1);
  EXPECT_EQ(small, 2);
  // Merge: a bridge joins them; the merged region is the big one's.
  cv::Mat mask = cv::Mat::zeros(200, 200, CV_8U);
  cv::circle(mask, {60, 100}, 30, cv::Scalar(255), cv::FILLED);
  cv::circle(mask, {130, 100}, 20, cv::Scalar(255), cv::FILLED);
  cv::rectangle(mask, cv::Rect(85, 95, 30, 10), cv::Scalar(255), cv::FILLED);
  r = DescribeRegions(mask).value().regions;
  ASSERT_EQ(r.size(), 1u);
  tracker.Update(r);
  EXPECT_EQ(r[0].id, big);
  // Split again: the big part keeps the merged region's id (it overlaps it
  // most); the merged track gives its id once, and the small part gets id 2
  // back from track 2, unseen for one frame but remembered (memory_frames 2).
  r = RegionsOf({{60, 100, 30}, {130, 100, 20}});
  tracker.Update(r);
  EXPECT_EQ(IdAt(r, 60, 100), big);
  EXPECT_EQ(IdAt(r, 130, 100), small);
}

TEST(RegionTrackerTest, SplitWithoutMemoryGivesTheSmallerPartANewId) {
  RegionTracker tracker({.min_overlap = 0.2, .memory_frames = 0});
  cv::Mat mask = cv::Mat::zeros(200, 200, CV_8U);
  cv::rectangle(mask, cv::Rect(20, 80, 160, 40), cv::Scalar(255), cv::FILLED);
  std::vector<Region> r = DescribeRegions(mask).value().regions;
  tracker.Update(r);
  ASSERT_EQ(r[0].id, 1);
  // Cut into 100 px and 50 px long parts.
  cv::rectangle(mask, cv::Rect(120, 70, 10, 60), cv::Scalar(0), cv::FILLED);
  r = DescribeRegions(mask).value().regions;
  ASSERT_EQ(r.size(), 2u);
  tracker.Update(r);
  EXPECT_EQ(IdAt(r, 50, 100), 1);
  EXPECT_EQ(IdAt(r, 150, 100), 2);
}

TEST(RegionTrackerTest, ARegionMissedBrieflyGetsItsIdBack) {
  RegionTracker tracker;  // memory_frames 2
  std::vector<Region> r = RegionsOf({{50, 50, 20}});
  tracker.Update(r);
  for (int gap : {1, 2}) {
    for (int f = 0; f < gap; ++f) {
      std::vector<Region> none;
      tracker.Update(none);
    }
    r = RegionsOf({{52, 51, 20}});
    tracker.Update(r);
    EXPECT_EQ(r[0].id, 1) << "gap " << gap;
  }
  for (int f = 0; f < 3; ++f) {
    std::vector<Region> none;
    tracker.Update(none);
  }
  r = RegionsOf({{52, 51, 20}});
  tracker.Update(r);
  EXPECT_EQ(r[0].id, 2);  // ids are never reused
}

// Hysteresis: a small region appears only at the appearance area; once
// tracked it stays while it keeps keep_ratio (0.5) of it.
TEST(RegionTrackerTest, SmallRegionsNeedToGrowToAppear) {
  RegionTracker tracker;
  const double appear = 1500.0;  // px²; a disk of radius 20 has about 1257
  std::vector<Region> r = RegionsOf({{50, 50, 20}, {150, 150, 30}});
  std::vector<bool> keep = tracker.Reportable(r, appear);
  EXPECT_EQ(keep, (std::vector<bool>{false, true}));
  r = RegionsOf({{50, 50, 25}});  // about 1963 px²: appears
  EXPECT_EQ(tracker.Reportable(r, appear), std::vector<bool>{true});
  tracker.Update(r);
  r = RegionsOf({{52, 50, 16}});  // about 800 px² >= 750: stays
  EXPECT_EQ(tracker.Reportable(r, appear), std::vector<bool>{true});
  r = RegionsOf({{52, 50, 14}});  // about 615 px² < 750: goes
  EXPECT_EQ(tracker.Reportable(r, appear), std::vector<bool>{false});
  r = RegionsOf({{150, 50, 18}});  // elsewhere, small: not tracked, does not appear
  EXPECT_EQ(tracker.Reportable(r, appear), std::vector<bool>{false});
}

TEST(RegionTrackerTest, StateIsChecked) {
  RegionTracker tracker;
  std::vector<Region> r = RegionsOf({{50, 50, 20}});
  tracker.Update(r);
  EXPECT_TRUE(RegionTracker::Check(tracker.state()).ok());
  RegionTrackerState bad = tracker.state();
  bad.next_id = 1;
  EXPECT_THAT(std::string(RegionTracker::Check(bad).message()), ::testing::HasSubstr("next_id"));
  bad = tracker.state();
  bad.tracks[0].contour.clear();
  EXPECT_THAT(std::string(RegionTracker::Check(bad).message()), ::testing::HasSubstr("no outline"));
  // A restored state continues where it was.
  RegionTracker restored({}, tracker.state());
  r = RegionsOf({{53, 50, 20}});
  restored.Update(r);
  EXPECT_EQ(r[0].id, 1);
  EXPECT_FALSE((RegionTrackerOptions{.min_overlap = 0.0}).Validate().ok());
}

}  // namespace
}  // namespace logstar
