// Processes opening one database that does not exist yet, all at the same
// moment (released together from a pipe): each gets a working store. Before
// the WAL switch was retried, some failed with "PRAGMA journal_mode = WAL:
// database is locked" as bad input (tune exit 2).
#include <gtest/gtest.h>

#include <cstdio>

#include "common/error.h"
#include "tests/store/test_support.h"
#include "tuner/store/store.h"

namespace partune {
namespace {

// Child exit codes.
constexpr int kOpened = 0, kInputError = 2, kOtherError = 3, kNoStart = 4;

TEST(FreshDatabaseRace, SimultaneousOpensAllSucceed) {
  for (int round = 0; round < 20; ++round) {
    testing::TempDir dir;
    const std::string db = dir.file("fresh/study.db");
    int gate[2];
    ASSERT_EQ(pipe(gate), 0);
    std::vector<pid_t> children;
    for (int i = 0; i < 8; ++i) {
      const pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        close(gate[1]);
        char c;
        if (read(gate[0], &c, 1) != 0) _exit(kNoStart);  // released when the parent closes it
        try {
          Store s = Store::open(db, Store::Mode::Create);
          s.ensure_study(StudyRow{"race", "space.toml", "", "mfu", "", nlohmann::json::object(), HealthRule{}});
          _exit(kOpened);
        } catch (const InputError& e) {
          std::fprintf(stderr, "child: %s\n", e.what());
          _exit(kInputError);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "child: %s\n", e.what());
          _exit(kOtherError);
        }
      }
      children.push_back(pid);
    }
    close(gate[0]);
    close(gate[1]);  // go
    for (pid_t pid : children) {
      int status = 0;
      waitpid(pid, &status, 0);
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), kOpened) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace partune
