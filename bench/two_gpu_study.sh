#!/usr/bin/env bash
# Runs a 2-GPU study with the embedded trainer end to end on a GPU node, then
# lists, ranks and exports it. Run from the repo root after building tune and
# trainer against pip torch's LibTorch (README "Building for GPUs").
#   bench/two_gpu_study.sh BUILD_DIR OUT_DIR [SPACE] [TIME_BUDGET_S]
# CPU mode (CPU=1, seconds; CI runs it): without SPACE, a 4-candidate study
# on fake_trainer written to OUT_DIR (bench/lib/cpu_space.sh).
set -uo pipefail
build=${1:-build-gpu}
out=${2:-bench-out}
mkdir -p "$out"
results=results
if [ -n "${CPU:-}" ] && [ -z "${3:-}" ]; then
  . "$(dirname "$0")/lib/cpu_space.sh"
  space=$(cpu_space "$build" "$out" two_gpu_study)
  results=$out/results
else
  space=${3:-search_spaces/qwen3_30b_a3b_2gpu_layouts.toml}
fi
budget=${4:-1800}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
fi
"$build/bin/tune" --space "$space" --plain --time-budget "$budget" 2>&1 | tee "$out/study.log"
"$build/bin/tune" list --space "$space" | tee "$out/list.txt"
"$build/bin/tune" best --space "$space" --all | tee "$out/best.txt"
"$build/bin/tune" list --space "$space" --format json >"$out/list.json"
"$build/bin/tune" export --best --space "$space" -o "$out/best.toml"
# The last lines of every trial's output (failures say why there).
for d in "$results"/*/trial-*; do
  echo "== $d"
  grep -vE '^step:|^\[rank[0-9]+\]:step:' "$d/output.log" | tail -6
  grep -E 'step: ' "$d/output.log" | tail -2
done >"$out/trials_tail.txt" 2>&1
