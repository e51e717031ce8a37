#!/usr/bin/env bash
# The default strategy (guided) against grid on the same space: runs the
# study twice (copies of SPACE that differ only in [study] name and [search]
# strategy), then prints wall time, trials launched and the best found for
# each as a markdown table (also in OUT/summary.md). Run from the repo root
# after building tune (and trainer, for the embedded backend).
#   bench/guided_vs_grid.sh BUILD_DIR OUT_DIR [SPACE] [TIME_BUDGET]
# CPU mode (CPU=1, seconds; CI runs it): without SPACE, a 4-candidate study
# on fake_trainer written to OUT_DIR (bench/lib/cpu_space.sh).
set -euo pipefail
build=${1:-build-gpu}
out=${2:-bench-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -n "${CPU:-}" ] && [ -z "${3:-}" ]; then
  . "$(dirname "$0")/lib/cpu_space.sh"
  space=$(cpu_space "$build" "$out" gvg)
else
  space=${3:-search_spaces/qwen3_30b_a3b_8xh200.toml}
fi
budget=${4:-}
tune="$build/bin/tune"
# Copies sit next to SPACE: its [base] config_file is relative to its folder.
copies=()
trap 'rm -f "${copies[@]}"' EXIT
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
fi
echo "| strategy | wall time (s) | trials launched | best id | best objective | best config |" >"$out/summary.md"
echo "|---|---|---|---|---|---|" >>"$out/summary.md"
for strategy in guided grid; do
  copy="$(dirname "$space")/.gvg-$strategy-$$.toml"
  copies+=("$copy")
  python3 - "$space" "$copy" "$strategy" <<'PY'
import re, sys
src, dst, strategy = sys.argv[1:4]
lines = open(src).read().splitlines()
out, section, seen_search = [], None, False
for line in lines:
    m = re.match(r'\s*\[([^\]]+)\]\s*(#.*)?$', line)
    if m:
        section = m.group(1).strip()
        seen_search = seen_search or section == "search"
    if section == "study" and re.match(r'\s*name\s*=', line):
        line = re.sub(r'=\s*"([^"]*)"', lambda n: '= "%s_%s"' % (n.group(1), strategy), line, count=1)
    if section == "search" and re.match(r'\s*strategy\s*=', line):
        continue
    out.append(line)
    if m and section == "search":
        out.append('strategy = "%s"' % strategy)
if not seen_search:
    out += ["", "[search]", 'strategy = "%s"' % strategy]
open(dst, "w").write("\n".join(out) + "\n")
PY
  args=(--space "$copy" --plain)
  [ -n "$budget" ] && args+=(--time-budget "$budget")
  start=$(date +%s.%N)
  "$tune" "${args[@]}" 2>&1 | tee "$out/$strategy.log"
  end=$(date +%s.%N)
  "$tune" best --space "$copy" --format json --top 1 >"$out/$strategy-best.json" || echo "[]" >"$out/$strategy-best.json"
  "$tune" list --space "$copy" --format json >"$out/$strategy-list.json"
  objective=$(python3 -c 'import re,sys;m=re.search(r"^\s*objective\s*=\s*\"(\w+)\"",open(sys.argv[1]).read(),re.M);print(m.group(1) if m else "mfu")' "$space")
  python3 - "$strategy" "$start" "$end" "$out" "$objective" <<'PY' >>"$out/summary.md"
import json, re, sys
strategy, start, end, out, objective = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
log = open(f"{out}/{strategy}.log").read()
ran = re.findall(r"ran (\d+) trials", log)
best = json.load(open(f"{out}/{strategy}-best.json"))
if best:
    b = best[0]
    value = "%s %.2f" % (objective, b["metrics"][objective])
    config = " ".join("%s=%s" % (k.split(".")[-1], v) for k, v in sorted(b["config"].items()))
    bid = b["id"]
else:
    value = config = bid = "-"
print("| %s | %.1f | %s | %s | %s | %s |" % (strategy, end - start, ran[-1] if ran else "?", bid, value, config))
PY
done
cat "$out/summary.md"
