#!/usr/bin/env bash
# On a 2-GPU node: starts two trainer ranks over NCCL (debugmodel_moe, EP 2),
# SIGKILLs rank 1 mid-run and reports how long rank 0 takes to exit, and how.
#   bench/nccl_rank_death.sh BUILD_DIR OUT_DIR
set -u
build=${1:-build-gpu}
out=${2:-bench-out}
mkdir -p "$out"
port=$((20000 + RANDOM % 20000))
args=(--model.name qwen3 --model.flavor debugmodel_moe --training.dataset synthetic --training.local_batch_size 4
      --training.seq_len 512 --training.steps 100000 --metrics.log_freq 50 --parallelism.expert_parallel_degree 2
      --comm.train_timeout_seconds 15)
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$build/bin/trainer" "${args[@]}" >"$out/rank$r.log" 2>&1 &
  pids[$r]=$!
done
sleep 40
kill -9 "${pids[1]}"
t0=$(date +%s.%N)
timeout 120 tail --pid="${pids[0]}" -f /dev/null
wait "${pids[0]}"
rc=$?
t1=$(date +%s.%N)
echo "rank 0 exit code $rc, $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s after rank 1 was killed"
tail -3 "$out/rank0.log"
