#include "common/job_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tests/support/input_error.h"

using namespace partune;

using partune::testing::error_of;

TEST(JobConfig, DefaultsAreTorchtitans) {
  JobConfig c;
  EXPECT_EQ(c.get_int("training.local_batch_size"), 8);
  EXPECT_EQ(c.get_int("training.seq_len"), 2048);
  EXPECT_EQ(c.get_int("parallelism.data_parallel_shard_degree"), -1);
  EXPECT_EQ(c.get_string("activation_checkpoint.mode"), "selective");
  EXPECT_EQ(c.get_string("activation_checkpoint.selective_ac_option"), "2");
  EXPECT_EQ(c.get_int("metrics.log_freq"), 10);
  EXPECT_FALSE(c.get("debug.seed"));
}

TEST(JobConfig, TomlParsesTypesAndNestedSections) {
  auto c = JobConfig::from_toml_string(R"(
[model]
name = "qwen3"
flavor = "30B-A3B"
[training]
local_batch_size = 4
max_norm = 1
[training.dataloader]
num_workers = 2
[compile]
enable = true
components = ["model"]
)",
                                       "x.toml");
  EXPECT_EQ(c.get_string("model.flavor"), "30B-A3B");
  EXPECT_EQ(c.get_int("training.local_batch_size"), 4);
  EXPECT_DOUBLE_EQ(c.get_float("training.max_norm"), 1.0);
  EXPECT_TRUE(std::holds_alternative<double>(*c.get("training.max_norm")));  // int coerced to float
  EXPECT_EQ(c.get_int("training.dataloader.num_workers"), 2);
  EXPECT_TRUE(c.get_bool("compile.enable"));
  EXPECT_EQ(c.get_list("compile.components"), StringList{"model"});
}

TEST(JobConfig, ErrorsNameFileLineAndKey) {
  auto msg = error_of([] { JobConfig::from_toml_string("[training]\nlocal_batch_sise = 4\n", "cfg.toml"); });
  EXPECT_NE(msg.find("cfg.toml:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("training.local_batch_sise"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'training.local_batch_size'"), std::string::npos) << msg;

  msg = error_of([] { JobConfig::from_toml_string("[training]\nseq_len = \"long\"\n", "cfg.toml"); });
  EXPECT_NE(msg.find("cfg.toml:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;

  msg = error_of([] { JobConfig::from_toml_string("[activation_checkpoint]\nmode = \"some\"\n", "a.toml"); });
  EXPECT_NE(msg.find("is not one of"), std::string::npos) << msg;

  msg = error_of([] { JobConfig::from_toml_string("[training\n", "bad.toml"); });
  EXPECT_NE(msg.find("bad.toml:1:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("TOML syntax error"), std::string::npos) << msg;

  msg = error_of([] { JobConfig::from_toml_file("/nonexistent/x.toml"); });
  EXPECT_NE(msg.find("/nonexistent/x.toml: cannot read"), std::string::npos) << msg;
}

TEST(JobConfig, CliOverridesAndFlags) {
  JobConfig c = JobConfig::from_toml_string("[training]\nsteps = 5\n[compile]\nenable = true\n", "x.toml");
  c.apply_cli({"--training.steps", "20", "--training.seq_len=4096", "--compile.no-enable", "--debug.deterministic",
               "--compile.components", "model,loss", "--optimizer.lr", "3e-4"});
  EXPECT_EQ(c.get_int("training.steps"), 20);
  EXPECT_EQ(c.get_int("training.seq_len"), 4096);
  EXPECT_FALSE(c.get_bool("compile.enable"));
  EXPECT_TRUE(c.get_bool("debug.deterministic"));
  EXPECT_EQ(c.get_list("compile.components"), (StringList{"model", "loss"}));
  EXPECT_DOUBLE_EQ(c.get_float("optimizer.lr"), 3e-4);

  EXPECT_NE(error_of([&] { c.apply_cli({"--training.steps"}); }).find("missing value"), std::string::npos);
  EXPECT_NE(error_of([&] { c.apply_cli({"--training.steps", "x"}); }).find("cannot read"), std::string::npos);
  EXPECT_NE(error_of([&] { c.apply_cli({"training.steps"}); }).find("expected --section.key"), std::string::npos);
  EXPECT_NE(error_of([&] { c.apply_cli({"--nope.key", "1"}); }).find("not a torchtitan"), std::string::npos);
}

TEST(JobConfig, TomlRoundTrip) {
  JobConfig c;
  c.set("model.name", std::string("qwen3"));
  c.set("optimizer.lr", 0.1);
  c.set("training.max_norm", int64_t{1});
  c.set("training.dataset_path", std::string("a \"quoted\" \\ path"));
  c.set("compile.components", StringList{"model", "loss"});
  c.set("compile.enable", true);
  c.set("training.dataloader.num_workers", int64_t{3});
  c.set("quantize.linear.float8.recipe_name", std::string("rowwise"));
  auto text = c.to_toml();
  EXPECT_NE(text.find("lr = 0.1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("max_norm = 1.0\n"), std::string::npos) << text;
  auto back = JobConfig::from_toml_string(text, "roundtrip");
  EXPECT_EQ(back, c) << text;
}

TEST(JobConfig, JsonConversionFollowsSchema) {
  auto v = value_from_json("training.max_norm", nlohmann::json(2), "db");
  EXPECT_TRUE(std::holds_alternative<double>(v));
  EXPECT_NE(error_of([] { value_from_json("training.steps", nlohmann::json("x"), "db"); }).find("db: key"),
            std::string::npos);
  EXPECT_EQ(value_to_json(Value{StringList{"a"}}).dump(), "[\"a\"]");
}

TEST(JobConfig, CliFormOfConfig) {
  JobConfig c;
  c.set("compile.enable", false);
  c.set("training.seq_len", int64_t{4096});
  auto cli = c.to_cli();
  EXPECT_EQ(cli, (std::vector<std::string>{"--compile.no-enable", "--training.seq_len", "4096"}));
  JobConfig back;
  back.apply_cli(cli);
  EXPECT_EQ(back, c);
}
