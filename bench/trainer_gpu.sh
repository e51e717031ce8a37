#!/usr/bin/env bash
# GPU benchmark of the embedded trainer (run on a GPU node from the repo root,
# after configuring with the LibTorch inside pip torch; see README).
#   bench/trainer_gpu.sh BUILD_DIR OUT_DIR
# 1. bf16 GPU vs fp32 CPU reference: first losses of the same reduced-depth
#    30B-A3B config (same init, same synthetic data).
# 2. single-GPU throughput of the reduced-depth 30B-A3B geometry.
# Prints a table; full logs under OUT_DIR.
# CPU mode (CPU=1, seconds; CI runs it): tiny_moe-L2 at seq 64 on the CPU on
# both sides of 1 and in 2 (CONFIGS "tiny_moe-L2 2 64 selective").
set -uo pipefail
build=${1:-build-gpu}
out=${2:-bench-out}
mkdir -p "$out"
trainer=$build/bin/trainer
device=cuda cmp_flavor=30B-A3B-L2 cmp_seq=1024 steps=12
if [ -n "${CPU:-}" ]; then
  device=cpu cmp_flavor=tiny_moe-L2 cmp_seq=64 steps=4 CONFIGS=${CONFIGS:-tiny_moe-L2 2 64 selective}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} CPU_THREADS=${CPU_THREADS:-1}
fi
common=(--model.name qwen3 --training.dataset synthetic --debug.seed 0 --metrics.log_freq 1
        --optimizer.lr 3e-4 --lr_scheduler.warmup_steps 2)

# 1. agreement: 3 steps, lbs 1, seq 1024, 30B-A3B-L2
cmp=(--model.flavor "$cmp_flavor" --training.local_batch_size 1 --training.seq_len "$cmp_seq" --training.steps 3
     --activation_checkpoint.mode none)
"$trainer" "${common[@]}" "${cmp[@]}" --device "$device" >"$out/agree_gpu.log" 2>&1
[ -n "${SKIP_CPU:-}" ] || OMP_NUM_THREADS=${CPU_THREADS:-16} "$trainer" "${common[@]}" "${cmp[@]}" --device cpu >"$out/agree_cpu.log" 2>&1
echo "== loss, $cmp_flavor, lbs 1, seq $cmp_seq: $device (GPU: bf16, fast paths) vs CPU fp32 (reference paths)"
paste <(grep -o 'step: *[0-9]*  loss: *[0-9.]*' "$out/agree_gpu.log") \
      <(grep -o 'loss: *[0-9.]*' "$out/agree_cpu.log")

# 2. throughput
# CONFIGS: "flavor lbs seq_len ac" entries separated by ';'
IFS=';' read -ra cfgs <<<"${CONFIGS:-30B-A3B-L4 2 4096 selective;30B-A3B-L4 1 4096 none;30B-A3B-L2 4 4096 selective}"
for cfg in "${cfgs[@]}"; do
  set -- $cfg
  log="$out/bench_${1}_lbs$2_seq$3_$4.log"
  "$trainer" "${common[@]}" --model.flavor "$1" --training.local_batch_size "$2" --training.seq_len "$3" \
    --activation_checkpoint.mode "$4" --training.steps "$steps" --device "$device" >"$log" 2>&1
  echo "== $1 lbs $2 seq $3 AC $4 (rc $?)"
  grep -E 'step: ' "$log" | tail -3
  grep -E 'error|Error' "$log" | head -3 || true  # no error line is no failure
done
