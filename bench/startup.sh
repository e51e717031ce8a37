#!/usr/bin/env bash
# Issue 11: the trainer's start-up on one device. For each flavor, a 2-step
# run (lbs 1, seq 4096, full AC, synthetic data); from the init record of its
# metrics file: startup_s (process start -> first step) and host_peak_rss_gib
# (VmHWM by then); plus the run's wall time. Fits startup_s = a + b * layers
# over the flavors and projects the full-depth start-up.
#   bench/startup.sh BUILD_DIR OUT_DIR
# Environment (defaults for one GPU):
#   FLAVORS     "30B-A3B-L2 30B-A3B-L8 30B-A3B-L16" (names ending in -L<layers>)
#   DEVICE      cuda
#   SEQ         4096
#   FULL_LAYERS 48     depth to project to
#   RANKS       8      ranks sharing the full model in the projection's second column
# A run whose step fails (30B-A3B-L16 holds ~10.6 B parameters: their fp32
# weights, AdamW moments and gradients exceed one H200) still counts: the
# init record is written before step 1.
# CPU mode (CPU=1, seconds; CI runs it): FLAVORS "tiny_moe-L1 tiny_moe-L2",
# DEVICE cpu, SEQ 32 unless set.
set -uo pipefail
build=${1:?build dir}
out=${2:?out dir}
if [ -n "${CPU:-}" ]; then
  FLAVORS=${FLAVORS:-tiny_moe-L1 tiny_moe-L2} DEVICE=${DEVICE:-cpu} SEQ=${SEQ:-32}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
read -ra flavors <<<"${FLAVORS:-30B-A3B-L2 30B-A3B-L8 30B-A3B-L16}"
device=${DEVICE:-cuda}
seq=${SEQ:-4096}
full=${FULL_LAYERS:-48}
ranks=${RANKS:-8}
mkdir -p "$out"

# JSON number of `key` in the init record of a metrics file (one object a line).
init_field() { grep '"type":"init"' "$1" | head -1 | grep -o "\"$2\":[-0-9.eE+]*" | cut -d: -f2; }

rows=()
printf '%-16s %7s %3s %9s %10s %14s\n' flavor layers rc wall_s startup_s host_rss_gib
for f in "${flavors[@]}"; do
  layers=${f##*-L}
  dir="$out/$f"
  rm -rf "$dir"
  mkdir -p "$dir"
  t0=$(date +%s.%N)
  PARTUNE_METRICS_DIR="$dir/metrics" "$build/bin/trainer" --model.name qwen3 --model.flavor "$f" \
    --training.dataset synthetic --training.local_batch_size 1 --training.seq_len "$seq" --training.steps 2 \
    --activation_checkpoint.mode full --metrics.log_freq 1 --device "$device" --job.dump_folder "$dir" \
    >"$dir/trainer.log" 2>&1
  rc=$?
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  m="$dir/metrics/metrics-rank0.jsonl"
  s=$(init_field "$m" startup_s 2>/dev/null)
  r=$(init_field "$m" host_peak_rss_gib 2>/dev/null)
  printf '%-16s %7s %3s %9.2f %10.2f %14.2f\n' "$f" "$layers" "$rc" "$wall" "${s:-nan}" "${r:-nan}"
  [ "$rc" -ne 0 ] && grep -E 'error|Error|OutOfMemory' "$dir/trainer.log" | head -2 | sed 's/^/    /'
  [ -n "$s" ] && rows+=("$layers $s")
done

# Least-squares line through (layers, startup_s).
printf '%s\n' "${rows[@]}" | awk -v full="$full" -v ranks="$ranks" '
  { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
  END {
    if (n < 2 || n * sxx == sx * sx) { print "fit: need two depths with a start-up"; exit }
    b = (n * sxy - sx * sy) / (n * sxx - sx * sx); a = (sy - b * sx) / n
    printf "fit: startup_s = %.2f + %.3f * layers\n", a, b
    printf "projected %d-layer start-up: %.1f s with the whole model on one rank; %.1f s per rank with %d ranks each drawing 1/%d (communicator set-up not included)\n", full, a + b * full, a + b * full / ranks, ranks, ranks
  }'
