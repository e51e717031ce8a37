#!/usr/bin/env bash
# The memory model's GPU check: runs the study of SPACE (default: 30B-A3B-L6
# on one GPU, lbs x seq_len x AC, 18 candidates) with tune, then prints
# memory_check's table (measured peaks against predictions, uncalibrated and
# calibrated on the first 3 measured trials). Builds nothing; run from the
# repo root after building tune, trainer and memory_check.
#   bench/memory_check.sh BUILD_DIR OUT_DIR [SPACE]
# TIME_BUDGET (seconds, default 540): tune starts no trial after it; run the
# script again to resume the study where it stopped (same results/ folder),
# and the table covers every trial measured so far.
# CPU mode (CPU=1, seconds; CI runs it): without SPACE, a 4-candidate study
# on fake_trainer written to OUT_DIR (bench/lib/cpu_space.sh).
set -uo pipefail
build=${1:-build-gpu}
out=${2:-bench-out}
mkdir -p "$out"
if [ -n "${CPU:-}" ] && [ -z "${3:-}" ]; then
  . "$(dirname "$0")/lib/cpu_space.sh"
  space=$(cpu_space "$build" "$out" memory_check)
else
  space=${3:-search_spaces/qwen3_30b_a3b_l6_memory.toml}
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
fi
"$build/bin/tune" --space "$space" --plain --time-budget "${TIME_BUDGET:-540}" >"$out/study.log" 2>&1
echo "tune exit $? (log: $out/study.log)"
"$build/bin/tune" list --space "$space" >"$out/list.txt" 2>&1
"$build/bin/memory_check" --space "$space" | tee "$out/memory_check.txt"
