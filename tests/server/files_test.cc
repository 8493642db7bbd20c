// server/files.h, and the state directory as SessionManager reads it:
// nothing in it can block start-up (a FIFO named like a state file), a file
// it cannot use is set aside once with the reason, and a session's file is
// the one named after it, so a deleted session stays deleted.
#include "server/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/session.h"

namespace logstar::server {
namespace {

using ::testing::HasSubstr;

std::string TestDir(const std::string& name) {
  const std::string dir =
      ::testing::TempDir() + "/files_test_" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `f` on another thread; when it has not returned after 5 s, opens the
// FIFO at `fifo` for writing (which releases an open() waiting for a
// writer) and reports the block as a failure instead of hanging the test.
template <typename F>
auto WithoutBlocking(const std::string& fifo, F f) -> decltype(f()) {
  auto result = std::async(std::launch::async, f);
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "blocked on the FIFO " << fifo;
    // A writer that comes and goes wakes the open; closing it before
    // waiting gives a read the end of file.
    const int w = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) close(w);
    return result.get();
  }
  return result.get();
}

v1::SessionState State(const std::string& id) {
  v1::SessionState s;
  s.set_version(1);
  s.set_session_id(id);
  v1::PhysicsPrior* p = s.mutable_settings()->mutable_prior();
  p->set_pixel_size_angstrom(0.125);
  p->set_column_density_per_nm2(13.4);
  p->set_nearest_neighbor_angstrom(2.55);
  return s;
}

void WriteState(const std::string& path, const v1::SessionState& state) {
  std::ofstream(path, std::ios::binary) << state.SerializeAsString();
}

TEST(ReadRegularFileTest, ReadsFilesAndRefusesEverythingElse) {
  const std::string dir = TestDir("read");
  std::ofstream(dir + "/f") << "hello";
  absl::StatusOr<std::string> ok = ReadRegularFile(dir + "/f", 100);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "hello");
  EXPECT_EQ(ReadRegularFile(dir + "/f", 4).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadRegularFile(dir + "/none", 100).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ReadRegularFile(dir, 100).status().message(), HasSubstr("directory"));
  std::filesystem::create_symlink(dir + "/f", dir + "/link");
  EXPECT_THAT(ReadRegularFile(dir + "/link", 100).status().message(), HasSubstr("symbolic link"));
  ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0600), 0);
  const absl::Status fifo =
      WithoutBlocking(dir + "/fifo", [&] { return ReadRegularFile(dir + "/fifo", 100).status(); });
  EXPECT_EQ(fifo.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(fifo.message(), HasSubstr("is a FIFO, not a regular file"));
}

TEST(WriteFileAtomicallyTest, NeverWritesThroughWhatIsAtTheTemporaryName) {
  const std::string dir = TestDir("write");
  std::ofstream(dir + "/target") << "precious";
  std::filesystem::create_symlink(dir + "/target", dir + "/out.tmp");
  ASSERT_TRUE(WriteFileAtomically(dir + "/out", "new").ok());
  EXPECT_EQ(Slurp(dir + "/out"), "new");
  EXPECT_EQ(Slurp(dir + "/target"), "precious");
  // A FIFO at the temporary name with no reader: no wait, replaced.
  ASSERT_EQ(mkfifo((dir + "/out.tmp").c_str(), 0600), 0);
  const absl::Status s =
      WithoutBlocking(dir + "/out.tmp", [&] { return WriteFileAtomically(dir + "/out", "newer"); });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(Slurp(dir + "/out"), "newer");
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.tmp"));
}

TEST(StateDirectoryTest, AFifoNamedLikeAStateFileDoesNotBlockStartUp) {
  const std::string dir = TestDir("fifo");
  WriteState(dir + "/good.session.pb", State("good"));
  ASSERT_EQ(mkfifo((dir + "/stuck.session.pb").c_str(), 0600), 0);
  SessionManager manager({.idle_timeout_s = 600, .state_dir = dir});
  const absl::Status s =
      WithoutBlocking(dir + "/stuck.session.pb", [&] { return manager.LoadState(); });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(manager.Find("good").ok());
  EXPECT_EQ(manager.size(), 1);
  EXPECT_TRUE(std::filesystem::exists(dir + "/stuck.session.pb.rejected"));
  EXPECT_THAT(Slurp(dir + "/stuck.session.pb.rejected.why"), HasSubstr("FIFO"));
}

TEST(StateDirectoryTest, FilesThatCannotBeUsedAreSetAsideOnceWithTheReason) {
  const std::string dir = TestDir("aside");
  std::ofstream(dir + "/garbage.session.pb") << "\xff\xff\xff not a message";
  v1::SessionState future = State("future");
  future.set_version(99);
  WriteState(dir + "/future.session.pb", future);
  WriteState(dir + "/kept.session.pb", State("kept"));
  {
    SessionManager manager({.idle_timeout_s = 600, .state_dir = dir});
    ASSERT_TRUE(manager.LoadState().ok());
    EXPECT_EQ(manager.size(), 1);
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/garbage.session.pb"));
  EXPECT_THAT(Slurp(dir + "/garbage.session.pb.rejected.why"), HasSubstr("unreadable"));
  EXPECT_THAT(Slurp(dir + "/future.session.pb.rejected.why"), HasSubstr("state version 99"));
  // The next start finds only the good file: nothing is reported again.
  SessionManager again({.idle_timeout_s = 600, .state_dir = dir});
  ASSERT_TRUE(again.LoadState().ok());
  EXPECT_EQ(again.size(), 1);
  EXPECT_TRUE(again.Find("kept").ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/garbage.session.pb.rejected"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/garbage.session.pb.rejected.rejected"));
}

TEST(StateDirectoryTest, ADeletedSessionWhoseFileHadAnotherNameStaysDeleted) {
  const std::string dir = TestDir("renamed");
  WriteState(dir + "/copy-of-a.session.pb", State("a"));
  {
    SessionManager manager({.idle_timeout_s = 600, .state_dir = dir});
    ASSERT_TRUE(manager.LoadState().ok());
    // Either the file is not taken for session "a", or deleting "a" deletes it.
    if (manager.Find("a").ok()) {
      ASSERT_TRUE(manager.Remove("a").ok());
    }
  }
  SessionManager again({.idle_timeout_s = 600, .state_dir = dir});
  ASSERT_TRUE(again.LoadState().ok());
  EXPECT_FALSE(again.Find("a").ok());
  EXPECT_THAT(Slurp(dir + "/copy-of-a.session.pb.rejected.why"),
              HasSubstr("holds session a, so it must be named a.session.pb"));
}

}  // namespace
}  // namespace logstar::server
