#!/usr/bin/env bash
# Every bench script in its CPU mode (CPU=1: a tiny flavor, a few steps, or
# fake_trainer for the study scripts), each in a folder of its own: it must
# exit 0 and print its table. A script in bench/ that this list does not
# know fails too, so a new one comes with its CPU check, and one that no
# longer runs (a flag the trainer dropped, a renamed binary) fails CI
# instead of rotting until someone needs its numbers.
#   bench_scripts_cpu.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
build=$(cd "${2:?build dir}" && pwd)
work=$(mktemp -d /tmp/partune-bench-cpu.XXXXXX)
trap 'rm -rf "$work"' EXIT

# script -> what its table must show (an extended regex, one line of it).
declare -A table=(
  [emulated_rank.sh]='^7 +tp1 ep4 etp1 lbs2 s192 op compile +[0-9.]+ +[0-9.]+ +116\.0 +[0-9.]+ +0$'
  [fidelity.sh]='^32 +2 +none +eager +0 +[0-9.]+ '
  [guided_vs_grid.sh]='^\| grid \| [0-9.]+ \| 4 \| [0-9a-f]+ \| tps [0-9.]+ \|'
  [memory_check.sh]='^config +status +measured +uncalibrated'
  [nccl_rank_death.sh]='^rank 0 exit code [0-9]+, [0-9.]+ s after rank 1 was killed'
  [reference_config.sh]='^mean over [0-9]+ steps: tps [0-9]+ +mfu '
  [startup.sh]='^fit: startup_s = '
  [trainer_gpu.sh]='^step: +3 +loss: +[0-9.]+.*loss: +[0-9.]+'
  [two_gpu_study.sh]='^best so far:'
)
# Arguments after BUILD_DIR OUT_DIR.
declare -A extra=([reference_config.sh]=cpu)

failures=0
for path in "$src"/bench/*.sh; do
  name=$(basename "$path")
  if [ -z "${table[$name]:-}" ]; then
    echo "FAIL: bench/$name has no CPU check in $(basename "$0")" >&2
    failures=$((failures + 1))
    continue
  fi
  out="$work/${name%.sh}"
  mkdir -p "$out"
  start=$SECONDS
  # From a folder of its own: scripts that write results/ write them there.
  # shellcheck disable=SC2086
  (cd "$out" && CPU=1 timeout 300 bash "$path" "$build" "$out/out" ${extra[$name]:-} >"$out/stdout.txt" 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FAIL: bench/$name exited $rc in its CPU mode:" >&2
    tail -20 "$out/stdout.txt" >&2
    failures=$((failures + 1))
  elif ! grep -qE "${table[$name]}" "$out/stdout.txt"; then
    echo "FAIL: bench/$name printed no table line matching /${table[$name]}/:" >&2
    tail -20 "$out/stdout.txt" >&2
    failures=$((failures + 1))
  else
    echo "ok: bench/$name ($((SECONDS - start)) s)"
  fi
done
[ "$failures" -eq 0 ] || { echo "$failures bench script(s) failed" >&2; exit 1; }
echo "every bench script ran in its CPU mode"
