// One tuner a study: the lock refuses a second tuner with a clear message and
// is released by the kernel when the holder dies, even by SIGKILL.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "common/error.h"
#include "tests/store/test_support.h"
#include "tuner/store/store.h"

namespace partune {
namespace {

using testing::TempDir;

// Message of the InputError that acquire throws, or "" if it succeeds.
std::string refusal(const std::string& db, const std::string& study) {
  try {
    StudyLock::acquire(db, study);
    return "";
  } catch (const InputError& e) {
    return e.what();
  }
}

// Forks a child that takes the lock and waits to be killed.
pid_t holder(const std::string& db, const std::string& study) {
  testing::Pipe pipe;
  const pid_t child = fork();
  if (child == 0) {
    pipe.close_read();
    try {
      StudyLock lock = StudyLock::acquire(db, study);
      pipe.send(1);
      for (;;) pause();
    } catch (...) {
      pipe.send(0);
      _exit(3);
    }
  }
  pipe.close_write();
  int64_t ok = 0;
  if (!pipe.receive(ok) || ok != 1) {
    testing::kill9(child);
    return -1;
  }
  return child;
}

TEST(StudyLock, SecondTunerIsRefusedUntilTheHolderIsKilled) {
  TempDir dir;
  const std::string db = dir.file("study.db");
  const pid_t child = holder(db, "moe");
  ASSERT_GT(child, 0);

  const std::string message = refusal(db, "moe");
  EXPECT_NE(
      message.find("study 'moe' in " + db + " is being run by another tune (pid " + std::to_string(child) + " since "),
      std::string::npos)
      << message;

  ASSERT_TRUE(testing::kill9(child));
  EXPECT_EQ(refusal(db, "moe"), "");
}

// A tune killed with -9 may have just forked a child that still holds the
// lock's file for a moment: the next tune waits for it (the holder named in
// the file is dead), it does not report a tune that no longer exists.
TEST(StudyLock, ADeadHoldersLastChildDelaysButDoesNotRefuse) {
  TempDir dir;
  const std::string db = dir.file("study.db");
  testing::Pipe pipe;
  const pid_t tune = fork();
  if (tune == 0) {
    pipe.close_read();
    StudyLock lock = StudyLock::acquire(db, "moe");
    if (fork() == 0) {  // the child: holds the descriptor for 300 ms
      ::usleep(300000);
      _exit(0);
    }
    pipe.send(1);
    _exit(0);  // the "tune" dies with its lock still held by the child
  }
  pipe.close_write();
  int64_t ok = 0;
  ASSERT_TRUE(pipe.receive(ok) && ok == 1);
  int status = 0;
  ASSERT_EQ(::waitpid(tune, &status, 0), tune);  // reaped: its pid is free
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(refusal(db, "moe"), "");
  EXPECT_GT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100)) << "the child held it a while";
}

TEST(StudyLock, HeldWithinOneProcessToo) {
  TempDir dir;
  const std::string db = dir.file("study.db");
  StudyLock lock = StudyLock::acquire(db, "moe");
  EXPECT_NE(refusal(db, "moe").find("being run by another tune (pid " + std::to_string(getpid())), std::string::npos);
}

TEST(StudyLock, OtherStudiesOfTheSameDbAreFree) {
  TempDir dir;
  const std::string db = dir.file("study.db");
  StudyLock lock = StudyLock::acquire(db, "moe");
  EXPECT_EQ(refusal(db, "dense"), "");
  EXPECT_EQ(refusal(db, "moe/other"), "");  // odd characters make their own file
  EXPECT_NE(StudyLock::lock_path_for(db, "a/b"), StudyLock::lock_path_for(db, "a_b"));
}

TEST(StudyLock, ReleasedWhenDestroyedAndMovable) {
  TempDir dir;
  const std::string db = dir.file("study.db");
  {
    StudyLock first = StudyLock::acquire(db, "moe");
    StudyLock moved = std::move(first);
    EXPECT_NE(refusal(db, "moe"), "");
  }
  EXPECT_EQ(refusal(db, "moe"), "");
}

// Trial processes the tuner starts must not inherit the lock: if they did, a
// surviving child would block every later tune.
TEST(StudyLock, NotInheritedByLaunchedPrograms) {
  TempDir dir;
  const std::string db = dir.file("study.db");
  pid_t child = -1;
  {
    StudyLock lock = StudyLock::acquire(db, "moe");
    child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  // The fork may still be between fork() and exec(), holding a copy of the
  // descriptor; give exec a moment.
  std::string message;
  for (int i = 0; i < 100 && !(message = refusal(db, "moe")).empty(); ++i) usleep(20000);
  EXPECT_EQ(message, "");
  testing::kill9(child);
}

TEST(StudyLock, UnwritableLockFolderIsAnInputError) {
  EXPECT_THROW(StudyLock::acquire("/proc/no/such/folder/study.db", "moe"), InputError);
}

}  // namespace
}  // namespace partune
