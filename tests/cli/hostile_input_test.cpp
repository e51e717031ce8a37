// Hostile input at load time (backend strings, huge axes), the files tune
// writes (symlinks, the study lock, races on a fresh database, a read-only
// results folder, control bytes on the terminal) and the exit code of a
// study whose every trial failed. Real tune processes, real SQLite.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

#include "cli_testing.h"
#include "common/job_config.h"

namespace partune::cli_testing {
namespace {

using Clock = std::chrono::steady_clock;

// A space whose [backend] section is `backend` (the rest as write_space's).
std::string space_with_backend(const TempDir& dir, const std::string& backend) {
  const std::string path = dir.file("raw.toml");
  write_file(path, "[study]\nname = \"raw\"\ndb = \"" + dir.file("raw.db") +
                       "\"\n\n[hardware]\ndevice_type = \"cpu\"\ndevices = 1\n\n[backend]\n" + backend +
                       "\n[base.model]\nname = \"qwen3\"\nflavor = \"debugmodel_moe\"\n\n"
                       "[space]\n\"training.local_batch_size\" = [1]\n");
  return path;
}

struct BadBackend {
  const char* name;
  const char* backend;
  const char* key;
  const char* reason;
};
void PrintTo(const BadBackend& c, std::ostream* os) { *os << c.name; }

class MalformedBackendStrings : public ::testing::TestWithParam<BadBackend> {};

TEST_P(MalformedBackendStrings, ExitTwoAtLoadNamingLineAndKey) {
  const BadBackend& c = GetParam();
  TempDir dir;
  const std::string space = space_with_backend(dir, c.backend);
  for (const char* cmd : {"plan", "run"}) {
    Result r = tune({cmd, "--space", space}, dir.path());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find(space + ":"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(std::string("key '") + c.key + "'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir.file("raw.db")));
}

INSTANTIATE_TEST_SUITE_P(
    Cli, MalformedBackendStrings,
    ::testing::Values(
        BadBackend{"EmptyEnvKey", "kind = \"command\"\nargv = [\"/bin/true\"]\nenv = { \"\" = \"x\" }\n",
                   "backend.env.", "needs a name"},
        BadBackend{"EnvKeyWithEquals", "kind = \"command\"\nargv = [\"/bin/true\"]\nenv = { \"A=B\" = \"x\" }\n",
                   "backend.env.A=B", "cannot contain '='"},
        BadBackend{"NulInEnvValue", "kind = \"command\"\nargv = [\"/bin/true\"]\nenv = { A = \"x\\u0000y\" }\n",
                   "backend.env.A", "NUL byte"},
        BadBackend{"NulInArgv", "kind = \"command\"\nargv = [\"/bin/true\", \"a\\u0000b\"]\n", "backend.argv",
                   "NUL byte"},
        BadBackend{"EmptyArgv0", "kind = \"command\"\nargv = [\"\", \"{config_file}\"]\n", "backend.argv",
                   "argv[0] is empty"},
        BadBackend{"NulInTrainerPath", "kind = \"embedded\"\ntrainer = \"/bin/tr\\u0000ainer\"\n", "backend.trainer",
                   "NUL byte"},
        BadBackend{"NulInWorkdir", "kind = \"command\"\nargv = [\"/bin/true\"]\nworkdir = \"/tmp\\u0000x\"\n",
                   "backend.workdir", "NUL byte"},
        BadBackend{"PlaceholderWhereNoneIsFilledIn",
                   "kind = \"command\"\nargv = [\"/bin/true\"]\nworkdir = \"{log_dir}/run\"\n", "backend.workdir",
                   "placeholders are filled in argv, torchrun_args and env values only"},
        BadBackend{"UnknownPlaceholderInEnv",
                   "kind = \"command\"\nargv = [\"/bin/true\"]\nenv = { A = \"{checkpoint_dir}\" }\n", "backend.env.A",
                   "unknown placeholder {checkpoint_dir}"}),
    [](const auto& info) { return std::string(info.param.name); });

// An axis of a million values: refused with a clear cap, at once (the
// duplicate check was quadratic: hours).
TEST(HugeAxis, MillionValuesRefusedWithACapQuickly) {
  TempDir dir;
  SpaceOptions o;
  std::string values;
  for (int i = 1; i <= 1'000'000; ++i) values += (i > 1 ? ", " : "") + std::to_string(i);
  o.axes = "\"training.seq_len\" = [" + values + "]\n";
  Study s = write_space(dir, o);
  const auto t0 = Clock::now();
  Result r = tune({"plan", "--space", s.space}, dir.path(), 60);
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("key 'space.training.seq_len': 1000000 values; an axis holds at most 10000"), std::string::npos)
      << r.err;
  EXPECT_LT(took, 30);
}

// The largest axis allowed, with a duplicate at its end: found (O(n log n)).
TEST(HugeAxis, DuplicateAtTheEndOfAMaximalAxisIsFound) {
  TempDir dir;
  SpaceOptions o;
  std::string values;
  for (int i = 1; i < 10'000; ++i) values += std::to_string(i) + ", ";
  o.axes = "\"training.seq_len\" = [" + values + "17]\n";
  Study s = write_space(dir, o);
  Result r = tune({"plan", "--space", s.space}, dir.path(), 60);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("duplicate value 17"), std::string::npos) << r.err;
}

// A million points from short axes: refused before the plan enumerates
// (and allocates) anything; it took a minute and 4.5 GB before.
TEST(HugeAxis, MillionPointSpaceRefusedBeforePlanning) {
  TempDir dir;
  SpaceOptions o;
  std::string lbs, seq, lr;
  for (int i = 1; i <= 100; ++i) {
    lbs += (i > 1 ? ", " : "") + std::to_string(i);
    seq += (i > 1 ? ", " : "") + std::to_string(64 * i);
    lr += (i > 1 ? ", " : "") + std::to_string(i) + "e-5";
  }
  o.axes = "\"training.local_batch_size\" = [" + lbs + "]\n\"training.seq_len\" = [" + seq + "]\n\"optimizer.lr\" = [" +
           lr + "]\n";
  Study s = write_space(dir, o);
  const auto t0 = Clock::now();
  Result r = tune({"plan", "--space", s.space}, dir.path(), 60);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("more than 100000 points"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10);
}

// Two tunes on one study through two paths to the same database: the second
// is refused (exit 3) instead of running and killing the first's trial.
TEST(StudyLock, KeyedOnTheRealPathOfTheDatabase) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--step-ms", "400"};
  o.axes = "\"training.local_batch_size\" = [1, 2, 3]\n";
  Study s = write_space(dir, o);
  Process first({"run", "--space", s.space, "--plain"}, dir.path());
  ASSERT_TRUE(first.wait_for_output([](const std::string& out) { return out.find("step 1") != std::string::npos; }, 20))
      << "first tune never started a trial";
  // A second name for the database file (a directory link would reach the
  // same lock file by accident).
  const std::string via = dir.file("link.db");
  fs::create_symlink(s.db, via);
  std::string text = read_file(s.space);
  text.replace(text.find(s.db), s.db.size(), via);
  const std::string second_space = dir.file("second.toml");
  write_file(second_space, text);
  Result second = tune({"run", "--space", second_space}, dir.path());
  EXPECT_EQ(second.exit_code, 3) << second.describe();
  EXPECT_NE(second.err.find("is being run by another tune"), std::string::npos) << second.err;
  Result r = first.finish(60);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto rows = query(s.db, "SELECT count(*) FROM trials WHERE status = 'done'");
  EXPECT_EQ(rows.at(0).at(0), "3") << "the first tune's trials must all finish";
}

// Symlinks planted where tune writes: the lock file, a trial's config and
// its output log, the trial folder. Nothing is written through them; a
// trial whose files are planted is refused with the reason and the study
// goes on (before, the whole study stopped and left the trial "running").
class PlantedSymlinks : public ::testing::Test {
 protected:
  void SetUp() override {
    SpaceOptions o;
    o.axes = "\"training.local_batch_size\" = [1, 2]\n";
    study_ = write_space(dir_, o);
    victim_ = dir_.file("victim.txt");
    write_file(victim_, "precious\n");
    auto plan = json_of(tune({"plan", "--space", study_.space, "--format", "json"}, dir_.path()));
    id_ = plan["candidates"][0]["id"].get<std::string>();
    other_ = plan["candidates"][1]["id"].get<std::string>();
  }
  void expect_victim_untouched() { EXPECT_EQ(read_file(victim_), "precious\n"); }
  void expect_refused_and_the_study_goes_on(const Result& r) {
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    auto trials = trials_by_id(json_of(tune({"list", "--db", study_.db, "--format", "json"}, dir_.path())));
    ASSERT_EQ(trials.size(), 2u);
    EXPECT_EQ(trials[id_]["status"], "failed") << trials[id_].dump();
    EXPECT_NE(trials[id_].value("reason", "").find("symbolic link"), std::string::npos) << trials[id_].dump();
    EXPECT_EQ(trials[other_]["status"], "done") << trials[other_].dump();
    EXPECT_EQ(query(study_.db, "SELECT count(*) FROM trials WHERE status = 'running'")[0][0], "0");
  }

  TempDir dir_;
  Study study_;
  std::string victim_, id_, other_;
};

TEST_F(PlantedSymlinks, LockFile) {
  // The lock sits beside the database, which must exist for its real path.
  ASSERT_EQ(tune({"run", "--space", study_.space}, dir_.path()).exit_code, 0);
  const std::string lock = study_.db + "." + study_.name + ".lock";
  fs::remove(lock);
  fs::create_symlink(victim_, lock);
  Result r = tune({"run", "--space", study_.space}, dir_.path());
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("symbolic link"), std::string::npos) << r.err;
  expect_victim_untouched();
}

TEST_F(PlantedSymlinks, TrialConfig) {
  fs::create_directories(study_.trial_dir(id_));
  fs::create_symlink(victim_, study_.trial_dir(id_) / "config.toml");
  expect_refused_and_the_study_goes_on(tune({"run", "--space", study_.space}, dir_.path()));
  expect_victim_untouched();
}

TEST_F(PlantedSymlinks, TrialLog) {
  fs::create_directories(study_.trial_dir(id_));
  fs::create_symlink(victim_, study_.trial_dir(id_) / "output.log");
  expect_refused_and_the_study_goes_on(tune({"run", "--space", study_.space}, dir_.path()));
  expect_victim_untouched();
}

TEST_F(PlantedSymlinks, TrialFolder) {
  fs::create_directories(study_.results);
  fs::create_directory_symlink(dir_.path(), study_.trial_dir(id_));
  expect_refused_and_the_study_goes_on(tune({"run", "--space", study_.space}, dir_.path()));
  EXPECT_FALSE(fs::exists(dir_.file("config.toml")));
}

// Many tunes started at once on a database that does not exist yet: each
// runs the study or is told another tune has it (3); none blames the input.
TEST(FreshDatabase, RacingTunesExitZeroOrThreeNeverTwo) {
  // Before the fix, about one round in four had a tune fail with exit 2
  // ("PRAGMA journal_mode = WAL: database is locked").
  for (int round = 0; round < 10; ++round) {
    TempDir dir;
    SpaceOptions o;
    o.axes = "\"training.local_batch_size\" = [1]\n";
    Study s = write_space(dir, o);
    std::string text = read_file(s.space);
    text.replace(text.find(s.db), s.db.size(), dir.file("fresh/study.db"));  // its folder is created too
    write_file(s.space, text);
    std::vector<std::unique_ptr<Process>> racers;
    for (int i = 0; i < 16; ++i)
      racers.push_back(std::make_unique<Process>(std::vector<std::string>{"run", "--space", s.space}, dir.path()));
    int ran = 0;
    for (auto& p : racers) {
      Result r = p->finish(60);
      EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << "round " << round << ": " << r.describe();
      ran += r.exit_code == 0;
    }
    EXPECT_GE(ran, 1);
  }
}

// `tune <args>` run as an unprivileged user when the test runs as root (root
// ignores file modes, so a read-only folder would not be read-only to it):
// setpriv drops to nobody, then runs tune (argv only).
Result tune_unprivileged(const std::vector<std::string>& args, const fs::path& cwd) {
  if (geteuid() != 0) return tune(args, cwd.string());
  Spawn spawn;
  spawn.wrapper = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  return run_program(spawn, args, cwd.string());
}

// The unprivileged user must reach the test folder: its parents (the temp
// folder, not ours to change) must be searchable by others already.
bool reachable_by_others(const fs::path& dir) {
  fs::permissions(dir, fs::perms::others_exec, fs::perm_options::add);
  for (fs::path p = dir.parent_path(); p != p.root_path(); p = p.parent_path())
    if ((fs::status(p).permissions() & fs::perms::others_exec) == fs::perms::none) return false;
  return true;
}

TEST(ReadOnlyResults, QueriesWorkAndDoNotBlameTheFile) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"run", "--space", s.space}, dir.path()).exit_code, 0);
  ASSERT_TRUE(reachable_by_others(dir.path())) << "the temp folder's parents must be searchable by others";
  fs::permissions(s.db, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                  fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  const Result list = tune_unprivileged({"list", "--db", s.db}, dir.path());
  const Result best = tune_unprivileged({"best", "--db", s.db, "--format", "json"}, dir.path());
  const Result exported = tune_unprivileged({"export", "--db", s.db, "--best"}, dir.path());
  fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::add);
  EXPECT_EQ(list.exit_code, 0) << list.describe();
  EXPECT_EQ(count_lines_with(list.out, " done "), 2u) << list.out;
  EXPECT_EQ(best.exit_code, 0) << best.describe();
  EXPECT_EQ(exported.exit_code, 0) << exported.describe();
  EXPECT_NE(exported.out.find("[parallelism]"), std::string::npos) << exported.out;
}

TEST(ReadOnlyResults, UnreadableDatabaseSaysTheFolderIsReadOnly) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.local_batch_size\" = [1]\n";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"run", "--space", s.space}, dir.path()).exit_code, 0);
  ASSERT_TRUE(reachable_by_others(dir.path())) << "the temp folder's parents must be searchable by others";
  fs::permissions(s.db, fs::perms::owner_write | fs::perms::owner_read);  // only its owner reads it
  fs::permissions(dir.path(),
                  fs::perms::owner_read | fs::perms::owner_exec | fs::perms::others_read | fs::perms::others_exec);
  const Result list = tune_unprivileged({"list", "--db", s.db}, dir.path());
  fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::add);
  if (geteuid() != 0) GTEST_SKIP() << "the file is this user's own: readable";
  EXPECT_EQ(list.exit_code, 2) << list.describe();
  EXPECT_NE(list.err.find("opened read-only"), std::string::npos) << list.err;
}

// Values printed on the terminal never carry raw control bytes.
TEST(TerminalOutput, ControlBytesInValuesAreEscaped) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.dataset\" = [\"red \\u001b[31m\", \"title \\u001b]0;pwned\\u0007\", \"c1 \\u009b2J\"]\n";
  Study s = write_space(dir, o);
  for (const std::vector<std::string>& args : {std::vector<std::string>{"plan", "--space", s.space},
                                               {"run", "--space", s.space, "--plain"},
                                               {"list", "--db", s.db},
                                               {"best", "--db", s.db}}) {
    Result r = tune(args, dir.path());
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    for (const std::string* text : {&r.out, &r.err}) {
      EXPECT_EQ(text->find('\x1b'), std::string::npos) << args[0] << ": raw ESC in\n" << *text;
      EXPECT_EQ(text->find('\x07'), std::string::npos) << args[0] << ": raw BEL in\n" << *text;
      EXPECT_EQ(text->find("\xc2\x9b"), std::string::npos) << args[0] << ": raw CSI in\n" << *text;
    }
    if (args[0] != "run") {
      EXPECT_NE(r.out.find("red \\x1b[31m"), std::string::npos) << r.out;
    }
  }
}

// tune show and tune export print every value escaped too: C1 controls
// (U+009B, the one-byte CSI; U+0085, next line) as ESC, BEL and DEL are; in
// TOML and JSON as their \u escapes (the same value read back), on the
// command line as a $'...' word.
TEST(TerminalOutput, ShowAndExportEscapeC1ControlsAsTheyDoEscBelAndDel) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.dataset\" = [\"x \\u001b[31m \\u0007 \\u007f \\u009b2J \\u0085 y\"]\n";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"run", "--space", s.space, "--plain"}, dir.path()).exit_code, 0);
  const auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 1u);
  const std::string id = list[0]["id"];
  for (const std::vector<std::string>& args : {std::vector<std::string>{"show", "--db", s.db, id},
                                               {"show", "--db", s.db, id, "--format", "json"},
                                               {"export", "--db", s.db, "--trial", id},
                                               {"export", "--db", s.db, "--trial", id, "--format", "cli"},
                                               {"export", "--db", s.db, "--trial", id, "--format", "json"}}) {
    Result r = tune(args, dir.path());
    const std::string what = args[0] + (args.size() > 5 ? " " + args.back() : "");
    EXPECT_EQ(r.exit_code, 0) << what << ": " << r.describe();
    for (const std::string* text : {&r.out, &r.err}) {
      EXPECT_EQ(text->find('\x1b'), std::string::npos) << what << ": raw ESC in\n" << *text;
      EXPECT_EQ(text->find('\x07'), std::string::npos) << what << ": raw BEL in\n" << *text;
      EXPECT_EQ(text->find('\x7f'), std::string::npos) << what << ": raw DEL in\n" << *text;
      EXPECT_EQ(text->find("\xc2\x9b"), std::string::npos) << what << ": raw U+009B in\n" << *text;
      EXPECT_EQ(text->find("\xc2\x85"), std::string::npos) << what << ": raw U+0085 in\n" << *text;
    }
    EXPECT_NE(r.out.find("x "), std::string::npos) << what << ": the value is shown\n" << r.out;
  }
  // What export writes still reads back as the same value.
  const std::string toml = tune({"export", "--db", s.db, "--trial", id}, dir.path()).out;
  EXPECT_EQ(JobConfig::from_toml_string(toml, "export").get_string("training.dataset"),
            "x \x1b[31m \x07 \x7f \xc2\x9b"
            "2J \xc2\x85 y");
  const auto json = json_of(tune({"export", "--db", s.db, "--trial", id, "--format", "json"}, dir.path()));
  EXPECT_EQ(json["job_config"]["training.dataset"],
            "x \x1b[31m \x07 \x7f \xc2\x9b"
            "2J \xc2\x85 y");
}

// Every launched trial failed: the run says so and exits 4, not 0.
TEST(ExitCodes, StudyWhoseEveryTrialFailedExitsFour) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--crash-after", "1"};
  Study s = write_space(dir, o);
  Result r = tune({"run", "--space", s.space}, dir.path());
  EXPECT_EQ(r.exit_code, 4) << r.describe();
  EXPECT_NE(r.err.find("every trial failed"), std::string::npos) << r.err;
  // One trial that finishes is a result: exit 0.
  SpaceOptions ok;
  ok.name = "fine";
  Study f = write_space(dir, ok);
  EXPECT_EQ(tune({"run", "--space", f.space}, dir.path()).exit_code, 0);
}

}  // namespace
}  // namespace partune::cli_testing
