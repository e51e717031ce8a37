// Queries (list, best, show, export, report, why) never write: a file that
// is not a partune database is refused (exit 2) and left as it was (before,
// an empty file or an SQLite file of no tables became a 45 KB partune
// database), and a real one keeps its bytes and gets no -wal or -shm file.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

// Every query command, on `db`.
std::vector<std::vector<std::string>> queries(const std::string& db) {
  return {{"list", "--db", db},         {"best", "--db", db},
          {"show", "--db", db, "0123"}, {"export", "--db", db, "--best"},
          {"report", "--db", db},       {"why", "--db", db, "0123"}};
}

// The names in `dir`, sorted.
std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

void expect_refused_and_untouched(const TempDir& dir, const std::string& db, const std::string& reason) {
  const std::string before = read_file(db);
  const auto names = names_in(dir.path());
  for (const auto& args : queries(db)) {
    Result r = tune(args, dir.path());
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.describe();
    EXPECT_NE(r.err.find(db + ": " + reason), std::string::npos) << args[0] << ": " << r.err;
    EXPECT_EQ(read_file(db), before) << args[0] << " changed the file";
    EXPECT_EQ(names_in(dir.path()), names) << args[0] << " left a file beside it";
  }
}

TEST(ReadOnlyQueries, AnEmptyFileIsRefusedAndLeftEmpty) {
  TempDir dir;
  const std::string db = dir.file("z.db");
  write_file(db, "");
  expect_refused_and_untouched(dir, db, "an empty file, not a results database");
  EXPECT_EQ(fs::file_size(db), 0u);
}

TEST(ReadOnlyQueries, AnSqliteFileWithNoTablesIsRefusedAndLeftAsItWas) {
  TempDir dir;
  const std::string db = dir.file("other.db");
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE t(x); DROP TABLE t;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  ASSERT_GT(fs::file_size(db), 0u);
  expect_refused_and_untouched(dir, db, "an SQLite database, but not a partune results database (it has no tables)");
}

TEST(ReadOnlyQueries, AFileOfAnotherKindIsRefused) {
  TempDir dir;
  const std::string db = dir.file("notes.db");
  write_file(db, "just some text, long enough to look like something\n");
  expect_refused_and_untouched(dir, db, "not an SQLite database");
}

TEST(ReadOnlyQueries, AResultsDatabaseKeepsItsBytesAndGetsNoFileBesideIt) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.local_batch_size\" = [1]\n";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"run", "--space", s.space}, dir.path()).exit_code, 0);
  const std::string before = read_file(s.db);
  const auto names = names_in(dir.path());
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list", "--db", s.db}, {"best", "--db", s.db}, {"export", "--db", s.db, "--best"}}) {
    Result r = tune(args, dir.path());
    EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.describe();
    EXPECT_EQ(read_file(s.db), before) << args[0] << " changed the database";
    EXPECT_EQ(names_in(dir.path()), names) << args[0] << " left a file beside it";
  }
}

}  // namespace
}  // namespace partune::cli_testing
