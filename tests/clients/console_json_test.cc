// The console's per-update payload (clients/cli/console_json.h) read back
// by independent readers: nlohmann's JSON parser and OpenCV's PNG decoder
// (libpng), against the values put into the proto.
#include "clients/cli/console_json.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"

namespace logstar::cli {
namespace {

using nlohmann::json;

json Parse(const v1::FrameResult& r) {
  std::string text;
  AppendConsoleResultJson(r, &text);
  return json::parse(text);  // throws on invalid JSON
}

void SetParameters(v1::LogParameters* p, double min_sigma, double threshold) {
  p->set_min_sigma(min_sigma);
  p->set_max_sigma(min_sigma * 2);
  p->set_num_sigma(7);
  p->set_threshold(threshold);
  p->set_overlap(0.5);
}

v1::FrameResult Example() {
  v1::FrameResult r;
  r.set_sequence(12345678901ULL);
  r.set_width(512);
  r.set_height(256);
  v1::Atom* a = r.add_atoms();
  a->set_x(10.123456);
  a->set_y(200.0);
  a->set_sigma(1.5);
  a->set_response(0.7f);
  a->set_fit_status("ok");  // not drawn: left out
  a = r.add_atoms();
  a->set_x(-0.004);  // rounds to 0
  a->set_y(3.999);
  a->set_sigma(2.0 / 3.0);
  a->set_amorphous(true);
  a->set_sublattice(2);
  v1::AmorphousRegion* g = r.add_amorphous_regions();
  g->set_area_px2(123.25);
  for (const float v : {1.0f, 2.5f, 3.14159f}) g->add_contour_x(v);
  for (const float v : {4.0f, 5.0f, 6.0f}) g->add_contour_y(v);
  for (int i = 0; i < 7; ++i) {
    v1::RegionOfInterest* roi = r.add_regions_of_interest();
    roi->mutable_box()->set_col0(i);
    roi->mutable_box()->set_row0(2 * i);
    roi->mutable_box()->set_cols(30);
    roi->mutable_box()->set_rows(40);
    roi->set_detail("not drawn");
  }
  v1::PhysicsPrior* prior = r.mutable_prior_used()->mutable_prior();
  prior->set_pixel_size_angstrom(0.2);
  prior->add_sublattices()->set_name("Sr");
  prior->add_sublattices()->set_name("Ti \"B\"\\\n");  // not a valid name: escaping still holds
  v1::WindowResult* w = r.add_windows();
  w->set_index(0);
  w->mutable_tile()->set_cols(128);
  w->mutable_core()->set_col0(8);
  w->mutable_core()->set_row0(9);
  w->mutable_core()->set_cols(112);
  w->mutable_core()->set_rows(110);
  w->set_cache_state(v1::CACHE_STATE_RETUNED);
  w->set_objectives(v1::OBJECTIVE_PAIR_LATTICE);
  w->set_chosen(1);
  w->set_num_atoms(42);
  SetParameters(w->mutable_parameters(), 1.1, 0.1 + 0.2);  // 0.30000000000000004
  w->mutable_rewards()->set_qc(0.25);
  w->mutable_rewards()->set_er(std::numeric_limits<double>::quiet_NaN());
  for (int i = 0; i < 3; ++i) {
    v1::FrontPoint* p = w->add_front();
    SetParameters(p->mutable_parameters(), 1.0 + i, 1.0 / (3 + i));
    p->set_qc(0.1 * i);
    p->set_er(1e-17 * i);
    p->set_misses(0.01 * i);
    p->set_spurious(std::numeric_limits<double>::infinity());
  }
  v1::WindowResult* tile_only = r.add_windows();
  tile_only->set_index(1);
  tile_only->mutable_tile()->set_col0(128);
  tile_only->mutable_tile()->set_cols(128);
  tile_only->mutable_tile()->set_rows(128);
  r.mutable_rewards()->set_qc(0.125);
  r.mutable_rewards()->set_er(0.5);
  r.mutable_latency()->set_total_ms(17.75);
  r.mutable_latency()->set_log_ms(3);  // not drawn
  v1::SessionCounters* c = r.mutable_counters();
  c->set_frames_received(11);
  c->set_frames_analysed(10);
  c->set_frames_dropped(1);
  c->set_frames_failed(2);
  c->set_cache_hits(3);
  c->set_cache_misses(4);
  c->set_cache_retunes(5);
  c->set_amorphous_hits(6);
  c->set_amorphous_misses(7);
  c->set_amorphous_retunes(8);
  return r;
}

TEST(ConsoleJson, FrameAndAtoms) {
  const json j = Parse(Example());
  EXPECT_EQ(j["sequence"].get<uint64_t>(), 12345678901ULL);
  EXPECT_EQ(j["width"], 512);
  EXPECT_EQ(j["height"], 256);
  ASSERT_EQ(j["atoms"].size(), 2u);
  const json& a0 = j["atoms"][0];
  EXPECT_DOUBLE_EQ(a0["x"].get<double>(), 10.12);  // to 0.01 px
  EXPECT_DOUBLE_EQ(a0["y"].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(a0["sigma"].get<double>(), 1.5);
  // Only what the page draws: defaults and fit fields are left out.
  EXPECT_EQ(a0.size(), 3u) << a0.dump();
  const json& a1 = j["atoms"][1];
  EXPECT_DOUBLE_EQ(a1["x"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(a1["y"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(a1["sigma"].get<double>(), 0.67);
  EXPECT_EQ(a1["amorphous"], true);
  EXPECT_EQ(a1["sublattice"], 2);
}

TEST(ConsoleJson, PositionsAreShortFixedPoint) {
  std::string text;
  AppendConsoleResultJson(Example(), &text);
  // Trailing zeros dropped: 200 and 1.5 rather than 200.00 and 1.50.
  EXPECT_TRUE(absl::StrContains(text, R"({"x":10.12,"y":200,"sigma":1.5})")) << text;
  EXPECT_TRUE(absl::StrContains(text, R"("contour_x":[1,2.5,3.14])")) << text;
}

TEST(ConsoleJson, RegionsAndPrior) {
  const json j = Parse(Example());
  ASSERT_EQ(j["amorphous_regions"].size(), 1u);
  const json& g = j["amorphous_regions"][0];
  EXPECT_DOUBLE_EQ(g["area_px2"].get<double>(), 123.25);
  EXPECT_EQ(g["contour_x"], json::parse("[1, 2.5, 3.14]"));
  EXPECT_EQ(g["contour_y"], json::parse("[4, 5, 6]"));
  // The first five ranked regions, the page's.
  ASSERT_EQ(j["regions_of_interest"].size(), 5u);
  EXPECT_EQ(j["regions_of_interest"][4]["box"],
            json::parse(R"({"col0": 4, "row0": 8, "cols": 30, "rows": 40})"));
  const json& prior = j["prior_used"]["prior"];
  EXPECT_DOUBLE_EQ(prior["pixel_size_angstrom"].get<double>(), 0.2);
  ASSERT_EQ(prior["sublattices"].size(), 2u);
  EXPECT_EQ(prior["sublattices"][0]["name"], "Sr");
  EXPECT_EQ(prior["sublattices"][1]["name"], "Ti \"B\"\\\n");
  EXPECT_EQ(j["prior_used"]["pixel_units"], false);
}

TEST(ConsoleJson, WindowsAndFronts) {
  const json j = Parse(Example());
  ASSERT_EQ(j["windows"].size(), 2u);
  const json& w = j["windows"][0];
  EXPECT_EQ(w["index"], 0);
  EXPECT_EQ(w["core"], json::parse(R"({"col0": 8, "row0": 9, "cols": 112, "rows": 110})"));
  EXPECT_EQ(w["cache_state"], "CACHE_STATE_RETUNED");
  EXPECT_EQ(w["objectives"], "OBJECTIVE_PAIR_LATTICE");
  EXPECT_EQ(w["chosen"], 1);
  EXPECT_EQ(w["num_atoms"], 42);
  // Parameters exactly (the page matches a pick's threshold with ===).
  EXPECT_EQ(w["parameters"]["threshold"].get<double>(), 0.1 + 0.2);
  EXPECT_EQ(w["parameters"]["min_sigma"].get<double>(), 1.1);
  EXPECT_EQ(w["parameters"]["max_sigma"].get<double>(), 2.2);
  EXPECT_EQ(w["parameters"]["num_sigma"], 7);
  EXPECT_EQ(w["parameters"]["overlap"].get<double>(), 0.5);
  EXPECT_EQ(w["rewards"]["qc"].get<double>(), 0.25);
  EXPECT_TRUE(w["rewards"]["er"].is_null()) << "NaN is not JSON";
  ASSERT_EQ(w["front"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const json& p = w["front"][i];
    EXPECT_EQ(p["parameters"]["threshold"].get<double>(), 1.0 / (3 + i));
    EXPECT_EQ(p["parameters"]["min_sigma"].get<double>(), 1.0 + i);
    EXPECT_EQ(p["qc"].get<double>(), 0.1 * i);
    EXPECT_EQ(p["er"].get<double>(), 1e-17 * i);
    EXPECT_EQ(p["misses"].get<double>(), 0.01 * i);
    EXPECT_TRUE(p["spurious"].is_null());
  }
  // A window without a core is drawn by its tile.
  EXPECT_EQ(j["windows"][1]["core"],
            json::parse(R"({"col0": 128, "row0": 0, "cols": 128, "rows": 128})"));
  EXPECT_EQ(j["windows"][1]["cache_state"], "CACHE_STATE_UNSPECIFIED");
  EXPECT_EQ(j["windows"][1]["front"], json::array());
}

TEST(ConsoleJson, RewardsLatencyCounters) {
  const json j = Parse(Example());
  EXPECT_EQ(j["rewards"], json::parse(R"({"qc": 0.125, "er": 0.5})"));
  EXPECT_EQ(j["latency"], json::parse(R"({"total_ms": 17.75})"));
  EXPECT_EQ(j["counters"], json::parse(R"({"frames_received": 11, "frames_analysed": 10,
      "frames_dropped": 1, "frames_failed": 2, "cache_hits": 3, "cache_misses": 4,
      "cache_retunes": 5, "amorphous_hits": 6, "amorphous_misses": 7, "amorphous_retunes": 8})"));
}

TEST(ConsoleJson, EmptyResultIsValid) {
  const json j = Parse(v1::FrameResult());
  EXPECT_EQ(j["atoms"], json::array());
  EXPECT_EQ(j["windows"], json::array());
  EXPECT_EQ(j["counters"]["frames_analysed"], 0);
}

v1::FramePreview Preview(int width, int height) {
  v1::FramePreview p;
  p.set_scale(0.5);
  v1::PixelData* px = p.mutable_pixels();
  px->set_width(width);
  px->set_height(height);
  std::string data(static_cast<size_t>(width) * height, '\0');
  cv::Mat noise(height, width, CV_8U, data.data());
  cv::randu(noise, 0, 256);
  px->set_data(data);
  return p;
}

cv::Mat Decode(const std::string& png) {
  return cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_UNCHANGED);
}

TEST(ConsolePreviewPng, DecodesToThePixels) {
  // 300 × 700: more than one stored deflate block (65535 bytes), rows not
  // aligned to a block.
  for (const auto& [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {17, 3}, {300, 700}}) {
    const v1::FramePreview p = Preview(w, h);
    const cv::Mat decoded = Decode(ConsolePreviewPng(p));
    ASSERT_FALSE(decoded.empty()) << w << "x" << h;
    ASSERT_EQ(decoded.type(), CV_8UC1);
    ASSERT_EQ(decoded.cols, w);
    ASSERT_EQ(decoded.rows, h);
    const cv::Mat expected(h, w, CV_8U, const_cast<char*>(p.pixels().data().data()));
    EXPECT_EQ(cv::countNonZero(decoded != expected), 0) << w << "x" << h;
  }
}

TEST(ConsolePreviewPng, NothingWithoutMatchingPixels) {
  EXPECT_EQ(ConsolePreviewPng(v1::FramePreview()), "");
  v1::FramePreview p = Preview(4, 4);
  p.mutable_pixels()->set_height(5);
  EXPECT_EQ(ConsolePreviewPng(p), "");
}

TEST(ConsoleEvent, IsOneServerSentEventOfJson) {
  v1::WatchResponse w;
  *w.mutable_result() = Example();
  *w.mutable_preview() = Preview(16, 8);
  w.set_skipped(99);  // the page's own count is given at the end
  const std::string event = ConsoleEventBody(w) + ConsoleEventEnd(3);
  const std::string prefix = "event: result\ndata: ";
  ASSERT_TRUE(absl::StartsWith(event, prefix)) << event.substr(0, 40);
  ASSERT_TRUE(absl::EndsWith(event, "\n\n"));
  const std::string data = event.substr(prefix.size(), event.size() - prefix.size() - 2);
  EXPECT_EQ(data.find('\n'), std::string::npos) << "one data line";
  const json j = json::parse(data);
  EXPECT_EQ(j["skipped"], 3);
  EXPECT_EQ(j["preview_scale"].get<double>(), 0.5);
  EXPECT_EQ(j["result"]["sequence"].get<uint64_t>(), 12345678901ULL);
  std::string png;
  ASSERT_TRUE(absl::Base64Unescape(j["png"].get<std::string>(), &png));
  const cv::Mat decoded = Decode(png);
  ASSERT_EQ(decoded.cols, 16);
  ASSERT_EQ(decoded.rows, 8);
  const cv::Mat expected(8, 16, CV_8U, const_cast<char*>(w.preview().pixels().data().data()));
  EXPECT_EQ(cv::countNonZero(decoded != expected), 0);
}

}  // namespace
}  // namespace logstar::cli
