#!/usr/bin/env bash
# The seed's seven hand-tuned runs (Qwen3-30B-A3B, 48 layers, one node of 8
# GPUs) as rank R of 8, emulated on one GPU (trainer --emulate-world 8): the
# rank's collectives move no data but have the real shapes, so its memory is
# the real rank's. Prints one table: the rank's peak memory, the seed's
# measurement (torchtitan v0.2.2, compiled, expandable segments) and the
# emulated step's MFU (compute only: no communication).
#   bench/emulated_rank.sh BUILD_DIR OUT_DIR
# Environment: FLAVOR (30B-A3B), STEPS (6), RANK (0), DEVICE (cuda), RUN_TIMEOUT (seconds per run, 600),
# RUNS ("1 2 3 4 5 6 7"), EXTRA (more trainer arguments), LBS_SCALE (1: a
# CPU smoke run divides lbs and seq by it). Memory is the peak over steps
# 2..STEPS. The allocator runs with expandable segments, as torchtitan's
# run_train.sh (and tune's trials) do.
# CPU mode (CI): CPU=1, the same as FLAVOR=debugmodel_moe-L2 DEVICE=cpu STEPS=2
# SEQ_SCALE=64 LBS_SCALE=2 RUNS="7 1".
set -uo pipefail
build=${1:?build dir}
out=${2:?out dir}
mkdir -p "$out"
trainer=$build/bin/trainer
if [ "${CPU:-0}" = 1 ]; then
  : "${FLAVOR:=debugmodel_moe-L2}" "${DEVICE:=cpu}" "${STEPS:=2}" "${SEQ_SCALE:=64}" "${LBS_SCALE:=2}" "${RUNS:=7 1}"
fi
flavor=${FLAVOR:-30B-A3B}
steps=${STEPS:-6}
rank=${RANK:-0}
device=${DEVICE:-cuda}
seq_scale=${SEQ_SCALE:-1}
lbs_scale=${LBS_SCALE:-1}
read -ra runs <<<"${RUNS:-1 2 3 4 5 6 7}"
read -ra extra <<<"${EXTRA:-}"
export PYTORCH_ALLOC_CONF=${PYTORCH_ALLOC_CONF:-expandable_segments:True}

# run: tp ep etp lbs seq ac compile seed_gib
spec() {
  case $1 in
    1) echo "4 2 4 2 4096 full eager 63.4" ;;
    2) echo "4 2 4 12 8192 op compile 116.8" ;;
    3) echo "4 2 4 16 8192 op compile 135.0" ;;
    4) echo "1 8 1 8 8192 op compile 134.4" ;;
    5) echo "1 8 1 6 8192 op compile 115.4" ;;
    6) echo "1 4 1 6 8192 op compile 116.5" ;;
    7) echo "1 4 1 4 12288 op compile 116.0" ;;
  esac
}

base="$out/base.toml"
printf '[job]\ndescription = "bench/emulated_rank.sh"\n' >"$base"
printf '%-4s %-30s %10s %8s %10s %8s %s\n' run config "mem_GiB" "mem_%" "seed_GiB" "mfu_%" rc
for n in "${runs[@]}"; do
  read -r tp ep etp lbs seq ac mode seed <<<"$(spec "$n")"
  lbs=$(( (lbs + lbs_scale - 1) / lbs_scale ))
  seq=$(( seq / seq_scale ))
  acargs=(--activation_checkpoint.mode "$ac")
  [ "$ac" = op ] && acargs=(--activation_checkpoint.mode selective --activation_checkpoint.selective_ac_option op)
  flag=--compile.no-enable
  [ "$mode" = compile ] && flag=--compile.enable
  log="$out/run${n}.log"
  PARTUNE_METRICS_DIR="$out/metrics_run$n" timeout "${RUN_TIMEOUT:-600}" "$trainer" --job.config_file "$base" --model.name qwen3 --model.flavor "$flavor" --training.dataset synthetic \
    --debug.seed 0 --training.steps "$steps" --metrics.log_freq 1 --lr_scheduler.warmup_steps 1 --device "$device" \
    --training.mixed_precision_param bfloat16 --parallelism.data_parallel_shard_degree -1 \
    --parallelism.tensor_parallel_degree "$tp" --parallelism.expert_parallel_degree "$ep" \
    --parallelism.expert_tensor_parallel_degree "$etp" --training.local_batch_size "$lbs" --training.seq_len "$seq" \
    "${acargs[@]}" "$flag" --emulate-world 8 --emulate-rank "$rank" "${extra[@]}" >"$log" 2>&1
  rc=$?
  row=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^step: ' | awk '
    { for (i = 1; i <= NF; i++) { if ($i == "step:") s = $(i+1); if ($i == "mfu:") m = $(i+1); if ($i == "memory:") g = $(i+1) }
      p = g; gsub(/%/, "", m); gsub(/GiB.*/, "", g); gsub(/.*\(/, "", p); gsub(/%\).*/, "", p)
      if (s + 0 > 1) { n++; sm += m; if (g + 0 > gm) { gm = g + 0; pm = p + 0 } } }
    END { if (n) printf "%.2f %.1f %.2f", gm, pm, sm / n; else printf "- - -" }')
  read -r gib pct mfu <<<"$row"
  printf '%-4s %-30s %10s %8s %10s %8s %s\n' "$n" "tp$tp ep$ep etp$etp lbs$lbs s$seq $ac $mode" "$gib" "$pct" "$seed" \
    "$mfu" "$rc"
  grep -q ' emulated: ' "$log" || [ "$rc" != 0 ] || echo "  run $n: the step lines are not marked emulated" >&2
done
