#!/usr/bin/env bash
# Issue 4's reference config on 2 GPUs, straight through the trainer (two
# ranks, torchrun-style environment): Qwen3-30B-A3B geometry at 6 layers,
# lbs 2, seq_len 4096, dp_shard 2, EP 2, ETP 1, selective AC (every 2nd
# layer), synthetic data. Extra trainer arguments go after OUT_DIR and
# override (e.g. --optimizer.implementation for-loop, --profiling.*).
#   bench/reference_config.sh BUILD_DIR OUT_DIR NAME [--section.key value ...]
# Prints the last step lines of rank 0 and the mean mfu / tps / memory of
# steps 6..N (the first five are warm-up: allocator growth, NCCL set-up).
# CPU mode (CPU=1, seconds; CI runs it): tiny_moe, seq 64, 7 steps, over Gloo
# on the CPU (FLAVOR, SEQ, STEPS override either mode).
set -uo pipefail
build=${1:?build dir}
out=${2:?out dir}
name=${3:?run name}
shift 3
mkdir -p "$out"
if [ -n "${CPU:-}" ]; then
  FLAVOR=${FLAVOR:-tiny_moe} SEQ=${SEQ:-64} STEPS=${STEPS:-7}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PARTUNE_DEVICE_TYPE=cpu
fi
args=(--model.name qwen3 --model.flavor "${FLAVOR:-30B-A3B-L6}" --training.dataset synthetic --debug.seed 0
      --training.local_batch_size 2 --training.seq_len "${SEQ:-4096}" --training.steps "${STEPS:-20}"
      --metrics.log_freq 1 --optimizer.lr 3e-4 --lr_scheduler.warmup_steps 2
      --activation_checkpoint.mode selective --activation_checkpoint.selective_ac_option 2
      --parallelism.data_parallel_shard_degree 2 --parallelism.expert_parallel_degree 2
      --parallelism.expert_tensor_parallel_degree 1 --job.dump_folder "$out/$name" "$@")
port=$((29500 + RANDOM % 1000))
pids=()
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$build/bin/trainer" "${args[@]}" >"$out/$name.rank$r.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
echo "== $name (rc $rc): $*"
grep -E 'step: ' "$out/$name.rank0.log" | tail -2
grep -iE 'error|exception' "$out/$name.rank0.log" "$out/$name.rank1.log" | head -5
# step lines: "step: N  loss: ...  memory: X GiB(P%)  tps: T  tflops: F  mfu: M%"
grep -E 'step: ' "$out/$name.rank0.log" | sed 's/\x1b\[[0-9;]*m//g' | awk '
  { for (i = 1; i <= NF; i++) { if ($i == "step:") s = $(i+1); if ($i == "tps:") t = $(i+1); if ($i == "mfu:") m = $(i+1);
      if ($i == "memory:") g = $(i+1) } gsub(/[^0-9.]/, "", t); gsub(/%/, "", m); gsub(/GiB.*/, "", g)
    if (s + 0 > 5) { n++; st += t; sm += m; if (g + 0 > gm) gm = g + 0 } }
  END { if (n) printf "mean over %d steps: tps %.0f  mfu %.2f%%  max memory %.2f GiB\n", n, st / n, sm / n, gm }'
