#!/usr/bin/env bash
# Issue 10: the compiled memory mode (compile.enable) against the eager one
# on one GPU, for the configs measured against torchtitan v0.2.2 (eager and
# compiled): 30B-A3B-L4, synthetic data, 20 steps each.
#   bench/fidelity.sh BUILD_DIR OUT_DIR
# Runs, each with --compile.enable and --compile.no-enable:
#   seq 4096 lbs 4 selective "2" | seq 8192 lbs 2 AC none | seq 8192 lbs 4 selective "2"
# then seq 16384 lbs 4 selective "2" with compile only (the long-sequence check: under 90% memory).
# Prints one table: MFU as the mean of steps 6..STEPS, memory as the peak
# over those steps (the step line's reserved GiB and %). Full logs in OUT_DIR.
# Environment (for a CPU smoke run): FLAVOR (30B-A3B-L4), STEPS (20),
# DEVICE (cuda), EXTRA (more trainer arguments), MODES ("compile eager"), CONFIGS ("seq lbs ac;..." where ac is none or a selective
# option), LONG ("seq lbs ac", empty to skip).
# CPU mode (CPU=1, seconds; CI runs it): tiny_moe, 7 steps, CONFIGS
# "32 2 2;32 2 none", no LONG, on the CPU, unless set.
set -uo pipefail
build=${1:?build dir}
out=${2:?out dir}
if [ -n "${CPU:-}" ]; then
  FLAVOR=${FLAVOR:-tiny_moe} STEPS=${STEPS:-7} DEVICE=${DEVICE:-cpu} CONFIGS=${CONFIGS:-32 2 2;32 2 none} LONG=${LONG-}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
mkdir -p "$out"
trainer=$build/bin/trainer
flavor=${FLAVOR:-30B-A3B-L4}
steps=${STEPS:-20}
device=${DEVICE:-cuda}
IFS=';' read -ra configs <<<"${CONFIGS:-4096 4 2;8192 2 none;8192 4 2}"
long=${LONG-16384 4 2}
# The trainer needs a job config file; every key that matters is on the command line.
base="$out/base.toml"
printf '[job]\ndescription = "bench/fidelity.sh"\n' >"$base"
common=(--job.config_file "$base" --model.name qwen3 --model.flavor "$flavor" --training.dataset synthetic --debug.seed 0
        --training.steps "$steps" --metrics.log_freq 1 --optimizer.lr 3e-4 --lr_scheduler.warmup_steps 2
        --device "$device")
# EXTRA: more trainer arguments for every run (e.g. "--loss-chunk-tokens 7066").
read -ra extra <<<"${EXTRA:-}"
common+=("${extra[@]}")

ac_args() {  # "none" or a selective_ac_option
  if [ "$1" = none ]; then echo --activation_checkpoint.mode none
  else echo --activation_checkpoint.mode selective --activation_checkpoint.selective_ac_option "$1"; fi
}

# One run -> "rc mfu memory_gib memory_pct" (mean mfu / peak memory over steps 6..N).
run() {  # seq lbs ac mode(compile|eager)
  local seq=$1 lbs=$2 ac=$3 mode=$4
  local flag=--compile.no-enable
  [ "$mode" = compile ] && flag=--compile.enable
  local log="$out/${flavor}_seq${seq}_lbs${lbs}_ac${ac}_${mode}.log"
  # shellcheck disable=SC2046
  "$trainer" "${common[@]}" --training.seq_len "$seq" --training.local_batch_size "$lbs" $(ac_args "$ac") \
    "$flag" --job.dump_folder "$out/dump" >"$log" 2>&1
  local rc=$?
  # step lines: "step: N  loss: ...  memory: X GiB(P%)  tps: T  tflops: F  mfu: M%"
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E 'step: ' | awk -v rc="$rc" '
    { for (i = 1; i <= NF; i++) { if ($i == "step:") s = $(i+1); if ($i == "mfu:") m = $(i+1);
        if ($i == "memory:") { g = $(i+1); p = g } }  # "69.43GiB(87.7%)"
      gsub(/%/, "", m); gsub(/GiB.*/, "", g); gsub(/.*\(/, "", p); gsub(/%\).*/, "", p)
      if (s + 0 > 5) { n++; sm += m; if (g + 0 > gm) { gm = g + 0; pm = p + 0 } } }
    END { if (n) printf "%s %.2f %.2f %.1f\n", rc, sm / n, gm, pm; else printf "%s - - -\n", rc }'
}

rows=()
for cfg in "${configs[@]}"; do
  set -- $cfg
  for mode in ${MODES:-compile eager}; do rows+=("$1 $2 $3 $mode $(run "$1" "$2" "$3" "$mode")"); done
done
if [ -n "$long" ]; then
  set -- $long
  rows+=("$1 $2 $3 compile $(run "$1" "$2" "$3" compile)")
fi

echo "== $flavor, $steps steps, $device: MFU mean of steps 6-$steps, memory peak (reserved) over them"
printf '%-6s %-4s %-5s %-8s %-3s %8s %12s %7s\n' seq lbs ac mode rc "mfu %" "memory GiB" "mem %"
for r in "${rows[@]}"; do
  set -- $r
  printf '%-6s %-4s %-5s %-8s %-3s %8s %12s %7s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8"
done
