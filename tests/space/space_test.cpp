// The search-space file: every key read, every default, every bad input
// rejected with file, line, column and key.
#include "tuner/space/space.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "tuner/launch/placeholders.h"
#include "tuner/space/duration.h"

namespace partune {
namespace {

namespace fs = std::filesystem;

// Returns the InputError message, or "" when nothing was thrown.
std::string load_error(const std::string& text, const std::string& path = "s.toml") {
  try {
    load_space_from_string(text, path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("partune_space_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    fs::path p = path / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
};

TEST(Space, MinimalFileTakesEveryDefault) {
  Space s = load_space_from_string("[study]\nname = \"demo\"\n", "m.toml");
  EXPECT_EQ(s.path, "m.toml");
  EXPECT_EQ(s.study.name, "demo");
  EXPECT_EQ(s.study.db_path, "results/demo.db");
  EXPECT_EQ(s.study.objective, "mfu");
  EXPECT_EQ(s.hardware.device_type, "cuda");
  EXPECT_EQ(s.hardware.devices, 8);
  EXPECT_EQ(s.hardware.nodes, 1);
  EXPECT_FALSE(s.hardware.memory_gib);
  EXPECT_FALSE(s.hardware.peak_tflops);
  EXPECT_EQ(s.backend.kind, "embedded");
  EXPECT_TRUE(s.backend.argv.empty());
  EXPECT_EQ(s.backend.torchrun, "torchrun");
  EXPECT_EQ(s.backend.module, "torchtitan.train");
  EXPECT_EQ(s.trial.steps, 20);
  EXPECT_EQ(s.trial.warmup_steps, 3);
  EXPECT_DOUBLE_EQ(s.trial.timeout_s, 1800);
  EXPECT_DOUBLE_EQ(s.trial.hang_timeout_s, 600);
  EXPECT_EQ(s.trial.repeats, 1);
  EXPECT_DOUBLE_EQ(s.prune.memory_headroom, 0.90);
  EXPECT_TRUE(s.prune.alloc_retries_over_limit);
  EXPECT_TRUE(s.base.values().empty());
  EXPECT_TRUE(s.axes.empty());
  EXPECT_EQ(s.search.strategy, "guided");
  EXPECT_FALSE(s.search.max_trials);
  EXPECT_EQ(s.search.seed, 0u);
  EXPECT_FALSE(s.search.time_budget_s);
  EXPECT_EQ(s.search.confirm_top_k, 3);
}

TEST(Space, EveryKeyIsRead) {
  Space s = load_space_from_string(R"(
[study]
name = "full"
db = "elsewhere/full.db"
objective = "tflops"
[hardware]
device_type = "cpu"
devices = 4
nodes = 2
memory_gib = 80
peak_tflops = 989.5
[launcher]
kind = "slurm"
[backend]
kind = "command"
argv = ["prog", "--config", "{config_file}", "--n={devices}", "{log_dir}/{trial_id}.txt"]
env = { OMP_NUM_THREADS = "1", TRIAL = "{trial_id}" }
workdir = "/tmp"
[trial]
steps = 10
warmup_steps = 9
timeout_s = 60.5
hang_timeout_s = 30
repeats = 2
[prune]
memory_headroom = 1
alloc_retries_over_limit = false
[search]
strategy = "random"
max_trials = 7
seed = 42
time_budget = "1h30m"
confirm_top_k = 5
)",
                                   "f.toml");
  EXPECT_EQ(s.study.db_path, "elsewhere/full.db");
  EXPECT_EQ(s.study.objective, "tflops");
  EXPECT_EQ(s.hardware.device_type, "cpu");
  EXPECT_EQ(s.hardware.devices, 4);
  EXPECT_EQ(s.hardware.nodes, 2);
  EXPECT_EQ(s.hardware.world_size(), 8);
  EXPECT_DOUBLE_EQ(*s.hardware.memory_gib, 80.0);
  EXPECT_DOUBLE_EQ(*s.hardware.peak_tflops, 989.5);
  EXPECT_EQ(s.backend.kind, "command");
  EXPECT_EQ(s.backend.argv, (std::vector<std::string>{"prog", "--config", "{config_file}", "--n={devices}",
                                                      "{log_dir}/{trial_id}.txt"}));
  EXPECT_EQ(s.backend.env.at("OMP_NUM_THREADS"), "1");
  EXPECT_EQ(s.backend.env.at("TRIAL"), "{trial_id}");
  EXPECT_EQ(s.backend.workdir, "/tmp");
  EXPECT_EQ(s.trial.steps, 10);
  EXPECT_EQ(s.trial.warmup_steps, 9);
  EXPECT_DOUBLE_EQ(s.trial.timeout_s, 60.5);
  EXPECT_DOUBLE_EQ(s.trial.hang_timeout_s, 30);
  EXPECT_EQ(s.trial.repeats, 2);
  EXPECT_DOUBLE_EQ(s.prune.memory_headroom, 1.0);
  EXPECT_FALSE(s.prune.alloc_retries_over_limit);
  EXPECT_EQ(s.search.strategy, "random");
  EXPECT_EQ(*s.search.max_trials, 7);
  EXPECT_EQ(s.search.seed, 42u);
  EXPECT_DOUBLE_EQ(*s.search.time_budget_s, 5400);
  EXPECT_EQ(s.search.confirm_top_k, 5);
}

TEST(Space, TimeBudgetInSecondsOrAsADuration) {
  auto budget = [](const std::string& v) {
    return load_space_from_string("[study]\nname = \"x\"\n[search]\ntime_budget = " + v + "\n", "b.toml")
        .search.time_budget_s;
  };
  EXPECT_DOUBLE_EQ(*budget("3600"), 3600);
  EXPECT_DOUBLE_EQ(*budget("90.5"), 90.5);
  EXPECT_DOUBLE_EQ(*budget("\"8h\""), 8 * 3600);
  EXPECT_DOUBLE_EQ(*budget("\"90m\""), 90 * 60);
}

TEST(Duration, Forms) {
  EXPECT_DOUBLE_EQ(*parse_duration("8h"), 28800);
  EXPECT_DOUBLE_EQ(*parse_duration("90m"), 5400);
  EXPECT_DOUBLE_EQ(*parse_duration("45s"), 45);
  EXPECT_DOUBLE_EQ(*parse_duration("1h30m"), 5400);
  EXPECT_DOUBLE_EQ(*parse_duration("1h30m15s"), 5415);
  EXPECT_DOUBLE_EQ(*parse_duration("1.5h"), 5400);
  EXPECT_DOUBLE_EQ(*parse_duration("3600"), 3600);
  EXPECT_DOUBLE_EQ(*parse_duration("0"), 0);
  for (const char* bad : {"", "soon", "-5", "8d", "30m1h", "1h1h", "1h30", "h", "8 h", "inf", "1e400"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(Space, ConfirmIsABackendPlusTopK) {
  Space s = load_space_from_string(R"([study]
name = "x"
[confirm]
kind = "torchtitan"
torchrun = "/opt/venv/bin/torchrun"
workdir = "/opt/torchtitan"
env = { NCCL_DEBUG = "WARN" }
top_k = 2
)",
                                   "c.toml");
  ASSERT_TRUE(s.confirm);
  EXPECT_EQ(s.confirm->backend.kind, "torchtitan");
  EXPECT_EQ(s.confirm->backend.torchrun, "/opt/venv/bin/torchrun");
  EXPECT_EQ(s.confirm->backend.workdir, "/opt/torchtitan");
  EXPECT_EQ(s.confirm->backend.env.at("NCCL_DEBUG"), "WARN");
  EXPECT_EQ(s.confirm->top_k, 2);
  EXPECT_EQ(s.backend.kind, "embedded");  // the study's own backend is untouched
  EXPECT_FALSE(load_space_from_string("[study]\nname = \"x\"\n", "n.toml").confirm);
  EXPECT_EQ(
      load_space_from_string("[study]\nname = \"x\"\n[confirm]\nkind = \"torchtitan\"\n", "d.toml").confirm->top_k, 3);
}

TEST(Space, TorchtitanAndEmbeddedBackendKeys) {
  Space t = load_space_from_string(R"(
[study]
name = "t"
[backend]
kind = "torchtitan"
torchrun = "/opt/venv/bin/torchrun"
torchrun_args = ["--rdzv-backend=c10d", "--log-dir={log_dir}"]
module = "torchtitan.train"
)",
                                   "t.toml");
  EXPECT_EQ(t.backend.torchrun, "/opt/venv/bin/torchrun");
  EXPECT_EQ(t.backend.torchrun_args, (std::vector<std::string>{"--rdzv-backend=c10d", "--log-dir={log_dir}"}));
  Space e = load_space_from_string("[study]\nname = \"e\"\n[backend]\ntrainer = \"/opt/bin/trainer\"\n", "e.toml");
  EXPECT_EQ(e.backend.kind, "embedded");
  EXPECT_EQ(e.backend.trainer, "/opt/bin/trainer");
  EXPECT_FALSE(e.backend.emulate);
  Space emu = load_space_from_string("[study]\nname = \"e\"\n[backend]\nemulate = true\n", "e.toml");
  EXPECT_TRUE(emu.backend.emulate);
  // Only the embedded trainer emulates a rank; a production check never does.
  EXPECT_THROW(load_space_from_string("[study]\nname = \"t\"\n[backend]\nkind = \"command\"\nargv = [\"x\"]\n"
                                      "emulate = true\n",
                                      "t.toml"),
               InputError);
  EXPECT_THROW(
      load_space_from_string("[study]\nname = \"c\"\n[confirm]\nkind = \"embedded\"\nemulate = true\n", "c.toml"),
      InputError);
  // One local device stands in for the world: not a Slurm step.
  EXPECT_NE(load_error("[study]\nname = \"s\"\n[backend]\nemulate = true\n[launcher]\nkind = \"slurm\"\n")
                .find("backend.emulate"),
            std::string::npos);
}

TEST(Space, AxesKeepFileOrderAndSchemaTypes) {
  Space s = load_space_from_string(R"(
[study]
name = "axes"
[space]
"training.seq_len" = [4096, 8192]
"parallelism.tensor_parallel_degree" = [1, 2]
"activation_checkpoint.mode" = ["full", "selective"]
"optimizer.lr" = [1, 0.5]
"compile.components" = [["model"], ["model", "loss"]]
)",
                                   "a.toml");
  ASSERT_EQ(s.axes.size(), 5u);
  EXPECT_EQ(s.axes[0].key, "training.seq_len");  // not alphabetical: file order
  EXPECT_EQ(s.axes[1].key, "parallelism.tensor_parallel_degree");
  EXPECT_EQ(s.axes[2].key, "activation_checkpoint.mode");
  EXPECT_EQ(s.axes[3].key, "optimizer.lr");
  EXPECT_EQ(s.axes[4].key, "compile.components");
  EXPECT_EQ(s.axes[0].values, (std::vector<Value>{int64_t{4096}, int64_t{8192}}));
  EXPECT_EQ(s.axes[2].values, (std::vector<Value>{std::string("full"), std::string("selective")}));
  EXPECT_EQ(s.axes[3].values, (std::vector<Value>{1.0, 0.5}));  // int given for a float key
  EXPECT_EQ(s.axes[4].values, (std::vector<Value>{StringList{"model"}, StringList{"model", "loss"}}));
}

TEST(Space, AxesMayBeWrittenAsSubtables) {
  Space s = load_space_from_string(R"(
[study]
name = "sub"
[space.training]
local_batch_size = [2, 4]
[space.parallelism]
expert_parallel_degree = [1, 8]
)",
                                   "sub.toml");
  ASSERT_EQ(s.axes.size(), 2u);
  EXPECT_EQ(s.axes[0].key, "training.local_batch_size");
  EXPECT_EQ(s.axes[1].key, "parallelism.expert_parallel_degree");
}

TEST(Space, BaseConfigFileIsRelativeToTheSpaceAndInlineSectionsWin) {
  TempDir dir;
  dir.write("configs/base.toml", R"(
[model]
name = "qwen3"
flavor = "30B-A3B"
[training]
seq_len = 4096
local_batch_size = 4
)");
  std::string path = dir.write("spaces/s.toml", R"(
[study]
name = "b"
[base]
config_file = "../configs/base.toml"
[base.training]
seq_len = 8192
[base.optimizer]
lr = 1
)");
  Space s = load_space(path);
  EXPECT_EQ(s.path, path);
  EXPECT_EQ(s.base.get_string("model.flavor"), "30B-A3B");
  EXPECT_EQ(s.base.get_int("training.local_batch_size"), 4);
  EXPECT_EQ(s.base.get_int("training.seq_len"), 8192);  // inline over file
  EXPECT_DOUBLE_EQ(s.base.get_float("optimizer.lr"), 1.0);
  EXPECT_TRUE(std::holds_alternative<double>(*s.base.get("optimizer.lr")));
}

TEST(Space, BaseConfigFileErrorsNameThatFile) {
  TempDir dir;
  std::string base = dir.write("base.toml", "[training]\nseq_len = \"long\"\n");
  std::string path = dir.write("s.toml", "[study]\nname = \"b\"\n[base]\nconfig_file = \"base.toml\"\n");
  try {
    load_space(path);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(base + ":2:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("training.seq_len"), std::string::npos) << e.what();
  }
}

TEST(Space, MissingFileIsAnInputError) { EXPECT_THROW(load_space("/nonexistent/space.toml"), InputError); }

TEST(Space, PlaceholdersAreTheSixTheCommandBackendFills) {
  EXPECT_EQ(backend_placeholders(),
            (std::vector<std::string>{"config_file", "devices", "nodes", "trial_id", "log_dir", "device_type"}));
  // The loader accepts every one the backend fills in (it used to refuse {nodes} and {device_type}).
  const Space s = load_space_from_string(
      "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\nargv = [\"run\", \"{nodes}\", \"{device_type}\"]\n",
      "p.toml");
  EXPECT_EQ(s.backend.argv, (std::vector<std::string>{"run", "{nodes}", "{device_type}"}));
}

// One row per bad input: the exact message (file:line:col: key 'k': reason).
struct BadInput {
  const char* name;
  const char* text;
  const char* message;
};

const BadInput kBadInputs[] = {
    {"unknown_section", "[study]\nname = \"x\"\n[studdy]\nname = \"y\"\n",
     "bad.toml:3:2: key 'studdy': unknown section (known: study, trial, hardware, backend, prune, base, space, "
     "search, confirm, launcher)"},
    {"unknown_key", "[study]\nname = \"x\"\nnmae = \"y\"\n",
     "bad.toml:3:1: key 'study.nmae': unknown key (known: name, db, objective)"},
    {"wrong_type", "[study]\nname = \"x\"\n[hardware]\ndevices = \"8\"\n",
     "bad.toml:4:11: key 'hardware.devices': expected an integer, got a string"},
    {"empty_axis", "[study]\nname = \"x\"\n[space]\n\"training.seq_len\" = []\n",
     "bad.toml:4:22: key 'space.training.seq_len': empty axis: give at least one value"},
    {"axis_not_job_key", "[study]\nname = \"x\"\n[space]\n\"training.seqlen\" = [1]\n",
     "bad.toml:4:21: key 'space.training.seqlen': not a job-config key (see docs/search-space.md)"},
    {"missing_study_name", "[study]\nobjective = \"mfu\"\n", "bad.toml:1:1: key 'study.name': required key missing"},
    {"missing_study_section", "[hardware]\ndevices = 1\n", "bad.toml:1:1: key 'study.name': required key missing"},
    {"bad_objective", "[study]\nname = \"x\"\nobjective = \"speed\"\n",
     "bad.toml:3:13: key 'study.objective': \"speed\" is not one of mfu, tps, tflops"},
    {"bad_placeholder", "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\nargv = [\"run\", \"{config}\"]\n",
     "bad.toml:5:8: key 'backend.argv': unknown placeholder {config} (known: {config_file}, {devices}, "
     "{nodes}, {trial_id}, {log_dir}, {device_type})"},
    {"toml_syntax_error", "[study]\nname = \"x\n",
     "bad.toml:2:10: TOML syntax error: Error while parsing string: unescaped control characters other than TAB "
     "(U+0009) are "
     "explicitly prohibited"},
};

class BadSpace : public testing::TestWithParam<BadInput> {};

TEST_P(BadSpace, MessageNamesFileLineAndKey) { EXPECT_EQ(load_error(GetParam().text, "bad.toml"), GetParam().message); }

INSTANTIATE_TEST_SUITE_P(Pinned, BadSpace, testing::ValuesIn(kBadInputs),
                         [](const auto& info) { return std::string(info.param.name); });

// More bad inputs: the position and key are pinned, the wording is not.
struct BadInputWhere {
  const char* name;
  const char* text;
  const char* where;  // "line:col"
  const char* key;
};

const BadInputWhere kMoreBadInputs[] = {
    {"study_name_with_slash", "[study]\nname = \"a/b\"\n", "2:8", "study.name"},
    {"empty_db", "[study]\nname = \"x\"\ndb = \"\"\n", "3:6", "study.db"},
    {"devices_zero", "[study]\nname = \"x\"\n[hardware]\ndevices = 0\n", "4:11", "hardware.devices"},
    {"nodes_negative", "[study]\nname = \"x\"\n[hardware]\nnodes = -1\n", "4:9", "hardware.nodes"},
    {"bad_device_type", "[study]\nname = \"x\"\n[hardware]\ndevice_type = \"tpu\"\n", "4:15", "hardware.device_type"},
    {"memory_not_positive", "[study]\nname = \"x\"\n[hardware]\nmemory_gib = 0\n", "4:14", "hardware.memory_gib"},
    {"peak_wrong_type", "[study]\nname = \"x\"\n[hardware]\npeak_tflops = \"989\"\n", "4:15", "hardware.peak_tflops"},
    {"unknown_hardware_key", "[study]\nname = \"x\"\n[hardware]\ngpus = 8\n", "4:1", "hardware.gpus"},
    {"bad_backend_kind", "[study]\nname = \"x\"\n[backend]\nkind = \"slurm\"\n", "4:8", "backend.kind"},
    {"command_without_argv", "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\n", "3:1", "backend.argv"},
    {"argv_for_embedded", "[study]\nname = \"x\"\n[backend]\nargv = [\"x\"]\n", "4:1", "backend.argv"},
    {"torchrun_for_command", "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\nargv = [\"x\"]\ntorchrun = \"t\"\n",
     "6:1", "backend.torchrun"},
    {"trainer_for_torchtitan", "[study]\nname = \"x\"\n[backend]\nkind = \"torchtitan\"\ntrainer = \"t\"\n", "5:1",
     "backend.trainer"},
    {"empty_argv", "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\nargv = []\n", "5:8", "backend.argv"},
    {"argv_not_strings", "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\nargv = [\"x\", 1]\n", "5:14",
     "backend.argv"},
    {"unclosed_placeholder", "[study]\nname = \"x\"\n[backend]\nkind = \"command\"\nargv = [\"x\", \"{devices\"]\n",
     "5:8", "backend.argv"},
    {"bad_env_placeholder", "[study]\nname = \"x\"\n[backend]\nenv = { A = \"{rank}\" }\n", "4:13", "backend.env.A"},
    {"env_not_string", "[study]\nname = \"x\"\n[backend]\nenv = { A = 1 }\n", "4:13", "backend.env.A"},
    {"bad_torchrun_arg_placeholder",
     "[study]\nname = \"x\"\n[backend]\nkind = \"torchtitan\"\ntorchrun_args = [\"{nproc}\"]\n", "5:17",
     "backend.torchrun_args"},
    {"steps_zero", "[study]\nname = \"x\"\n[trial]\nsteps = 0\n", "4:9", "trial.steps"},
    {"warmup_not_below_steps", "[study]\nname = \"x\"\n[trial]\nsteps = 5\nwarmup_steps = 5\n", "5:16",
     "trial.warmup_steps"},
    {"default_warmup_not_below_steps", "[study]\nname = \"x\"\n[trial]\nsteps = 3\n", "4:9", "trial.warmup_steps"},
    {"timeout_negative", "[study]\nname = \"x\"\n[trial]\ntimeout_s = -5\n", "4:13", "trial.timeout_s"},
    {"repeats_zero", "[study]\nname = \"x\"\n[trial]\nrepeats = 0\n", "4:11", "trial.repeats"},
    {"headroom_above_one", "[study]\nname = \"x\"\n[prune]\nmemory_headroom = 1.5\n", "4:19", "prune.memory_headroom"},
    {"headroom_zero", "[study]\nname = \"x\"\n[prune]\nmemory_headroom = 0.0\n", "4:19", "prune.memory_headroom"},
    {"alloc_retries_not_bool", "[study]\nname = \"x\"\n[prune]\nalloc_retries_over_limit = \"yes\"\n", "4:28",
     "prune.alloc_retries_over_limit"},
    {"bad_strategy", "[study]\nname = \"x\"\n[search]\nstrategy = \"bayes\"\n", "4:12", "search.strategy"},
    {"max_trials_zero", "[study]\nname = \"x\"\n[search]\nmax_trials = 0\n", "4:14", "search.max_trials"},
    {"seed_negative", "[study]\nname = \"x\"\n[search]\nseed = -1\n", "4:8", "search.seed"},
    {"budget_not_a_duration", "[study]\nname = \"x\"\n[search]\ntime_budget = \"soon\"\n", "4:15",
     "search.time_budget"},
    {"confirm_top_k_zero", "[study]\nname = \"x\"\n[confirm]\nkind = \"torchtitan\"\ntop_k = 0\n", "5:9",
     "confirm.top_k"},
    {"confirm_command_without_argv", "[study]\nname = \"x\"\n[confirm]\nkind = \"command\"\n", "3:1", "confirm.argv"},
    {"confirm_key_of_another_kind",
     "[study]\nname = \"x\"\n[confirm]\nkind = \"command\"\nargv = [\"p\"]\ntorchrun = \"t\"\n", "6:1",
     "confirm.torchrun"},
    {"backend_has_no_top_k", "[study]\nname = \"x\"\n[backend]\ntop_k = 2\n", "4:1", "backend.top_k"},
    {"budget_zero", "[study]\nname = \"x\"\n[search]\ntime_budget = 0\n", "4:15", "search.time_budget"},
    {"section_not_table", "study = 3\n", "1:9", "study"},
    {"axis_not_array", "[study]\nname = \"x\"\n[space]\n\"training.seq_len\" = 4096\n", "4:22",
     "space.training.seq_len"},
    {"axis_wrong_value_type", "[study]\nname = \"x\"\n[space]\n\"training.seq_len\" = [4096, \"8192\"]\n", "4:29",
     "training.seq_len"},
    {"axis_bad_choice", "[study]\nname = \"x\"\n[space]\n\"activation_checkpoint.mode\" = [\"sometimes\"]\n", "4:33",
     "activation_checkpoint.mode"},
    {"axis_duplicate_value", "[study]\nname = \"x\"\n[space]\n\"training.seq_len\" = [64, 64]\n", "4:27",
     "space.training.seq_len"},
    {"axis_given_twice", "[study]\nname = \"x\"\n[space]\n\"training.seq_len\" = [64]\ntraining.seq_len = [128]\n",
     "5:20", "space.training.seq_len"},
    {"axis_date_value", "[study]\nname = \"x\"\n[space]\n\"training.seq_len\" = [2024-01-01]\n", "4:23",
     "space.training.seq_len"},
    {"base_unknown_key", "[study]\nname = \"x\"\n[base.training]\nseqlen = 4096\n", "4:10", "training.seqlen"},
    {"base_wrong_type", "[study]\nname = \"x\"\n[base.training]\nseq_len = 1.5\n", "4:11", "training.seq_len"},
    {"base_bare_key", "[study]\nname = \"x\"\n[base]\nseq_len = 4096\n", "4:1", "base.seq_len"},
    {"base_missing_config_file", "[study]\nname = \"x\"\n[base]\nconfig_file = \"nope.toml\"\n", "4:15",
     "base.config_file"},
};

class BadSpaceWhere : public testing::TestWithParam<BadInputWhere> {};

TEST_P(BadSpaceWhere, MessageNamesFileLineAndKey) {
  const std::string msg = load_error(GetParam().text, "bad.toml");
  ASSERT_FALSE(msg.empty()) << "accepted";
  EXPECT_EQ(msg.rfind(std::string("bad.toml:") + GetParam().where + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find(std::string("key '") + GetParam().key + "'"), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Positions, BadSpaceWhere, testing::ValuesIn(kMoreBadInputs),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Space, ShippedSpacesLoad) {
  const fs::path root = PARTUNE_SOURCE_DIR;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(root / "search_spaces")) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    Space s = load_space(entry.path().string());
    EXPECT_EQ(s.study.name, entry.path().stem().string());
    EXPECT_FALSE(s.axes.empty());
    ++n;
  }
  EXPECT_GE(n, 4);
}

TEST(Space, ShippedCommandSpaceRunsTheFixture) {
  Space s = load_space(std::string(PARTUNE_SOURCE_DIR) + "/search_spaces/cpu_smoke_command.toml");
  EXPECT_EQ(s.backend.kind, "command");
  EXPECT_EQ(s.backend.argv, (std::vector<std::string>{"./build/bin/fake_trainer", "--config", "{config_file}"}));
  EXPECT_EQ(s.hardware.device_type, "cpu");
}

TEST(Space, ExampleBaseConfigsParse) {
  const fs::path root = PARTUNE_SOURCE_DIR;
  for (const auto& entry : fs::directory_iterator(root / "examples")) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    JobConfig c = JobConfig::from_toml_file(entry.path().string());
    EXPECT_EQ(JobConfig::from_toml_string(c.to_toml(), "round-trip"), c);
  }
}

}  // namespace
}  // namespace partune

namespace partune {
namespace {

// An axis on a key the embedded trainer ignores would run identical trials
// under different ids; other backends may use the key.
TEST(Space, AxisWithNoEffectInTheEmbeddedTrainerIsRefused) {
  // The trainer reads no data through workers; torchtitan does.
  const std::string axis = "[space]\n\"training.dataloader.num_workers\" = [0, 4]\n";
  EXPECT_NE(
      load_error("[study]\nname = \"a\"\n[backend]\nkind = \"embedded\"\n" + axis)
          .find("s.toml:6:37: key 'space.training.dataloader.num_workers': has no effect in the embedded trainer"),
      std::string::npos)
      << load_error("[study]\nname = \"a\"\n[backend]\nkind = \"embedded\"\n" + axis);
  EXPECT_EQ(load_error("[study]\nname = \"a\"\n[backend]\nkind = \"torchtitan\"\n" + axis), "");
}

// No backend can run two different jobs from two job descriptions.
TEST(Space, AxisThatCannotChangeAStepIsRefusedOnEveryBackend) {
  for (const char* kind : {"embedded", "torchtitan"}) {
    const std::string text = std::string("[study]\nname = \"a\"\n[backend]\nkind = \"") + kind +
                             "\"\n[space]\n\"job.description\" = [\"a\", \"b\"]\n";
    EXPECT_NE(load_error(text).find("key 'space.job.description': names or places a run's outputs"), std::string::npos)
        << kind;
  }
}

// [base] values from a config_file are range-checked too, named at their line there.
TEST(Space, BaseConfigFileValuesAreRangeCheckedAtTheirLine) {
  TempDir dir;
  const std::string job = dir.write("prod.toml", "[training]\nseq_len = 4096\nsteps = -5\n");
  const std::string space = dir.write("s.toml", "[study]\nname = \"a\"\n[base]\nconfig_file = \"prod.toml\"\n");
  try {
    load_space(space);
    ADD_FAILURE() << "accepted steps = -5";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(job + ":3:9: key 'training.steps': must be in [1,"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace partune
