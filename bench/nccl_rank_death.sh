#!/usr/bin/env bash
# On a 2-GPU node: starts two trainer ranks over NCCL (debugmodel_moe, EP 2),
# SIGKILLs rank 1 mid-run and reports how long rank 0 takes to exit, and how.
# CPU mode (CPU=1, seconds; CI runs it): the same over Gloo on the CPU with
# tiny_moe, rank 1 killed once rank 0 has printed a step (not after 40 s).
set -u
build=${1:-build-gpu}
out=${2:-bench-out}
mkdir -p "$out"
port=$((20000 + RANDOM % 20000))
flavor=debugmodel_moe seq=512 log_freq=50
if [ -n "${CPU:-}" ]; then
  flavor=tiny_moe seq=32 log_freq=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PARTUNE_DEVICE_TYPE=cpu
fi
args=(--model.name qwen3 --model.flavor "$flavor" --training.dataset synthetic --training.local_batch_size 4
      --training.seq_len "$seq" --training.steps 100000 --metrics.log_freq "$log_freq"
      --parallelism.expert_parallel_degree 2 --comm.train_timeout_seconds 15)
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$build/bin/trainer" "${args[@]}" >"$out/rank$r.log" 2>&1 &
  pids[$r]=$!
done
if [ -n "${CPU:-}" ]; then
  for _ in $(seq 600); do
    grep -q 'step: ' "$out/rank0.log" 2>/dev/null && break
    sleep 0.1
  done
else
  sleep 40
fi
kill -9 "${pids[1]}"
t0=$(date +%s.%N)
timeout 120 tail --pid="${pids[0]}" -f /dev/null
wait "${pids[0]}"
rc=$?
t1=$(date +%s.%N)
echo "rank 0 exit code $rc, $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s after rank 1 was killed"
tail -3 "$out/rank0.log"
