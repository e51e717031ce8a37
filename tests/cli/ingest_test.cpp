// `tune ingest`: a torchtitan run done by hand, with a custom model flavor,
// becomes a finished trial (noted) that ranks and exports with the rest;
// ingesting it again changes nothing.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cli_testing.h"
#include "common/job_config.h"

namespace partune::cli_testing {
namespace {

const char* kHandRunConfig = R"([model]
name = "qwen3"
flavor = "30B-A3B-my-variant"

[training]
local_batch_size = 4
seq_len = 12288
steps = 20

[parallelism]
expert_parallel_degree = 8
)";

TEST(Ingest, AHandRunWithAnUnknownFlavorRanksAndReingestingIsANoOp) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"--space", s.space}, dir.path()).exit_code, 0);
  const std::string config = dir.file("hand_run.toml");
  write_file(config, kHandRunConfig);
  const std::string log = kFixtures + "/logs/torchtitan_v022_colored.log";
  const std::vector<std::string> args = {"ingest", "--db",           s.db, "--study", s.name, "--config",
                                         config,   "--warmup-steps", "2",  log};

  Result first = tune(args, dir.path());
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  EXPECT_NE(first.out.find("unknown flavor '30B-A3B-my-variant': noted"), std::string::npos) << first.out;

  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 5u);
  nlohmann::json ingested;
  for (const auto& t : list)
    if (t["source"] == "ingest") ingested = t;
  ASSERT_TRUE(ingested.is_object()) << list.dump();
  EXPECT_EQ(ingested["status"], "done");
  EXPECT_TRUE(ingested["failure"].is_null());
  EXPECT_EQ(ingested["config"]["parallelism.expert_parallel_degree"], 8);
  EXPECT_EQ(ingested["config"]["training.seq_len"], 12288);
  // Steps 10 and 20 are counted (warmup 2): medians of two.
  EXPECT_NEAR(ingested["metrics"]["mfu"].get<double>(), (29.90 + 30.15) / 2, 1e-9);
  EXPECT_NEAR(ingested["metrics"]["memory_gib"].get<double>(), 116.10, 1e-9);
  EXPECT_EQ(ingested["metrics"]["counted_steps"], 2);
  const std::string id = ingested["id"];

  Result shown = tune({"show", "--db", s.db, id}, dir.path());
  EXPECT_NE(shown.out.find("not in partune's flavor table"), std::string::npos) << shown.out;
  auto steps_before = query(s.db, "SELECT COUNT(*) FROM steps WHERE trial = '" + id + "'");
  EXPECT_EQ(steps_before, (std::vector<std::vector<std::string>>{{"3"}}));

  Result again = tune(args, dir.path());
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_NE(again.out.find("already ingested as trial " + id), std::string::npos) << again.out;
  EXPECT_EQ(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())), list);
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM steps WHERE trial = '" + id + "'"), steps_before);

  // ~30% MFU beats every fake trial: it ranks first and exports as the best.
  auto best = json_of(tune({"best", "--db", s.db, "--top", "0", "--format", "json"}, dir.path()));
  ASSERT_EQ(best.size(), 5u);
  EXPECT_EQ(best[0]["id"], id);
  Result exported = tune({"export", "--db", s.db, "--best"}, dir.path());
  ASSERT_EQ(exported.exit_code, 0) << exported.describe();
  EXPECT_EQ(JobConfig::from_toml_string(exported.out, "export"), JobConfig::from_toml_file(config)) << exported.out;
}

// Warm start: a hand run of a config the space plans, ingested with --space,
// takes that candidate's id, so the study counts it as measured and does not
// run it again; a second run of the same config is kept as an event.
TEST(Ingest, AHandRunOfAPlannedConfigWarmStartsTheStudy) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  Study s = write_space(dir, o);
  auto planned = json_of(tune({"plan", "--space", s.space, "--format", "json"}, dir.path()));
  std::string wanted;
  for (const auto& c : planned["candidates"])
    if (c["config"]["training.local_batch_size"] == 2 && c["config"]["activation_checkpoint.mode"] == "full")
      wanted = c["id"];
  ASSERT_FALSE(wanted.empty()) << planned.dump();

  // What a user runs by hand: the same job, with keys of its own (steps, dump folder)
  // and the implicit values left implicit (dp_shard -1, no global batch size).
  const std::string config = dir.file("hand.toml");
  write_file(config, R"([job]
dump_folder = "/tmp/hand-run"
[model]
name = "qwen3"
flavor = "debugmodel_moe"
[training]
local_batch_size = 2
steps = 20
[activation_checkpoint]
mode = "full"
)");
  const std::string log = kFixtures + "/logs/torchtitan_v022_colored.log";
  Result in = tune({"ingest", "--space", s.space, "--config", config, "--warmup-steps", "2", log}, dir.path());
  ASSERT_EQ(in.exit_code, 0) << in.describe();
  EXPECT_NE(in.out.find("trial " + wanted + " done (a planned candidate of the study: warm start)"), std::string::npos)
      << in.out;

  Result run = tune({"--space", s.space, "--plain"}, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  EXPECT_NE(run.out.find("4 candidates, 1 already finished, 3 to run"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("] " + wanted + " "), std::string::npos) << "the warm-started candidate ran again\n"
                                                                  << run.out;
  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 4u);  // no extra trial: the hand run is the candidate's result
  for (const auto& t : list) {
    if (t["id"] == wanted) {
      EXPECT_EQ(t["source"], "ingest");
    }
  }

  // The same config from another log: not a new trial, not a lost run.
  const std::string log2 = dir.file("again.log");
  write_file(log2, read_file(log));
  Result again = tune({"ingest", "--space", s.space, "--config", config, "--warmup-steps", "2", log2}, dir.path());
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_NE(again.out.find("already has a result"), std::string::npos) << again.out;
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM events WHERE kind = 'ingest_repeat' AND trial = '" + wanted + "'"),
            (std::vector<std::vector<std::string>>{{"1"}}));
}

// Only a regular file of bounded size is a log: a FIFO without a writer
// blocked tune forever, /dev/zero grew it without end, a folder was taken
// for an empty log (a failed trial). Each is refused (exit 2) before the
// database is touched.
TEST(Ingest, ALogMustBeARegularFileOfBoundedSize) {
  TempDir dir;
  const std::string config = dir.file("hand_run.toml");
  write_file(config, kHandRunConfig);
  const std::string fifo = dir.file("fifo.log");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string folder = dir.file("a-folder");
  fs::create_directories(folder);
  const std::string huge = dir.file("huge.log");
  write_file(huge, "");
  fs::resize_file(huge, (uintmax_t{1} << 30) + 1);  // sparse: no disk used
  const std::string db = dir.file("ingest.db");
  for (const auto& [log, reason] :
       std::vector<std::pair<std::string, std::string>>{{fifo, "not a regular file (a FIFO)"},
                                                        {"/dev/zero", "not a regular file (a character device)"},
                                                        {folder, "not a regular file (a folder)"},
                                                        {huge, "larger than the 1024 MiB a log may be"}}) {
    Result r = tune({"ingest", "--db", db, "--study", "hand", "--config", config, log}, dir.path(), 10);
    EXPECT_EQ(r.exit_code, 2) << log << ": " << r.describe();
    EXPECT_NE(r.err.find(log + ": " + reason), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(db)) << log;
  }
}

// An empty log (a failed run) then a good log of the same config: the trial
// ends done, the failure kept as an event (it stayed failed, the good run
// only an event).
TEST(Ingest, AGoodLogAfterAFailedOneOfTheSameConfigLeavesTheTrialDone) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  o.axes = "\"training.local_batch_size\" = [2]\n";
  Study s = write_space(dir, o);
  const std::string id =
      json_of(tune({"plan", "--space", s.space, "--format", "json"}, dir.path()))["candidates"][0]["id"];
  const std::string config = dir.file("hand.toml");
  write_file(config, "[model]\nname = \"qwen3\"\nflavor = \"debugmodel_moe\"\n[training]\nlocal_batch_size = 2\n");
  const std::string empty = dir.file("empty.log");
  write_file(empty, "");
  Result first = tune({"ingest", "--space", s.space, "--config", config, empty}, dir.path());
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  EXPECT_NE(first.out.find("trial " + id + " failed"), std::string::npos) << first.out;

  const std::string good = kFixtures + "/logs/torchtitan_v022_colored.log";
  Result second = tune({"ingest", "--space", s.space, "--config", config, "--warmup-steps", "2", good}, dir.path());
  ASSERT_EQ(second.exit_code, 0) << second.describe();
  const auto trials = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials.at(id)["status"], "done") << trials.at(id).dump();
  EXPECT_EQ(trials.at(id)["attempt"], 2) << trials.at(id).dump();
  EXPECT_EQ(query(s.db, "SELECT count(*) FROM events WHERE kind = 'ingest_replaced' AND trial = '" + id + "'")[0][0],
            "1");
}

// Without --space, a run of a config the study plans gets the planner's id
// from the space the study recorded: `tune export --trial ID` ingested from
// two logs is two runs of ID (it was two new ids, neither ID).
TEST(Ingest, AnExportedTrialIngestedWithoutTheSpaceGetsThePlannersId) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"--space", s.space}, dir.path()).exit_code, 0);
  const auto before = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  ASSERT_EQ(before.size(), 2u);
  const std::string id = before.begin()->first;
  const std::string config = dir.file("exported.toml");
  Result exported = tune({"export", "--db", s.db, "--trial", id, "-o", config}, dir.path());
  ASSERT_EQ(exported.exit_code, 0) << exported.describe();
  const std::string log1 = dir.file("one.log"), log2 = dir.file("two.log");
  write_file(log1, read_file(kFixtures + "/logs/torchtitan_v022_colored.log"));
  write_file(log2, read_file(log1));
  Result in = tune({"ingest", "--db", s.db, "--study", s.name, "--config", config, "--warmup-steps", "2", log1, log2},
                   dir.path());
  ASSERT_EQ(in.exit_code, 0) << in.describe();
  EXPECT_NE(in.out.find(log1 + ": trial " + id + " already has a result"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find(log2 + ": trial " + id + " already has a result"), std::string::npos) << in.out;
  EXPECT_EQ(trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()))).size(), 2u);
  EXPECT_EQ(query(s.db, "SELECT count(*) FROM events WHERE kind = 'ingest_repeat' AND trial = '" + id + "'")[0][0],
            "2");
}

}  // namespace
}  // namespace partune::cli_testing
