# Sourced by the bench scripts that run a study: `cpu_space BUILD_DIR OUT_DIR
# NAME` writes OUT_DIR/NAME.toml, a small study on the command backend
# (BUILD_DIR/bin/fake_trainer, no LibTorch: seconds) whose database and
# trial folders go under OUT_DIR/results, and prints its path. The CPU mode
# (CPU=1) of those scripts runs it instead of their GPU space.
cpu_space() {
  local build out name space
  build=$(cd "$1" && pwd)
  out=$(cd "$2" && pwd)
  name=$3
  space="$out/$name.toml"
  cat >"$space" <<TOML
# CPU mode of a bench script: fake_trainer's step lines, 4 candidates.
[study]
name = "$name"
db = "$out/results/$name.db"
objective = "tps"

[hardware]
device_type = "cpu"
devices = 1
memory_gib = 16

[backend]
kind = "command"
argv = ["$build/bin/fake_trainer", "--config", "{config_file}"]
env = { PARTUNE_FAKE_MEMORY_GIB = "16" }

[trial]
steps = 4
warmup_steps = 1
timeout_s = 60
hang_timeout_s = 20

[base.model]
name = "qwen3"
flavor = "debugmodel_moe"

[space]
"training.local_batch_size" = [1, 2]
"activation_checkpoint.mode" = ["none", "full"]
TOML
  echo "$space"
}
