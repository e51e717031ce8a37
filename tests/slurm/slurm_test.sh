#!/usr/bin/env bash
# The Slurm launcher against a real Slurm (issue 13): munged, slurmctld and
# slurmd from Debian, started here with every path under a temp folder and
# stopped on exit. Needs root and the packages (scripts/bootstrap installs
# them); a missing one fails the test, never skips it.
#
#   slurm_test.sh TUNE TRAINER FAKE_TRAINER
#
# One node with 8 fake GPUs (GRES on character devices):
#   1. an embedded-trainer CPU study, 2-rank trials as srun steps;
#   2. a command-backend study with parallel_trials = 3: 3 steps at once in
#      squeue, every candidate finished exactly once;
#   3. kill -9 of tune mid-study: no step left (squeue), the resumed study
#      finishes; trials whose step fails (srun exits non-zero) fail with
#      srun's reason and the study goes on;
#   7. rendezvous ports: 8 trials started at once, each holding its
#      MASTER_PORT as a rendezvous does, 20 times over: no two ever share one.
# Two "nodes" (two slurmd with -N on this host, 4 fake GPUs each):
#   4. a 2-node torchtitan trial: one torchrun per node through tune's
#      slurm-task helper, distinct SLURM_NODEID and --node_rank, the
#      rendezvous on the first node;
#   5. an embedded-trainer trial of nodes = 2, one rank on each node;
#   6. a node dying mid-study: its trial fails with srun's reason and the
#      node named, its slot is left out while the node stays down (the
#      progress line says so), the study goes on; resumed, the study requeues
#      the trial that failed with the node and finishes it;
#   8. the first node dying in a study with [confirm]: the production check
#      runs on the other slot's node, and its measurement is stored.
set -uo pipefail
TUNE=$(realpath "$1")
TRAINER=$(realpath "$2")
FAKE_TRAINER=$(realpath "$3")
export FAKE_TRAINER
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/cluster.sh"
cluster_need || exit 1

WORK=$(mktemp -d /tmp/partune-slurm.XXXXXX)
CLUSTER=""
cleanup() {
  [ -n "$CLUSTER" ] && cluster_stop "$CLUSTER"
  cluster_munge_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
check() {  # check "what" command...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else fail "$what"; fi
}
sql() { sqlite3 "$1" "$2"; }
partune_steps() { squeue --steps --noheader --format='%i %j' | grep -c ' partune\.' ; }

start_cluster() {  # start_cluster NAME NODES GPUS
  [ -n "$CLUSTER" ] && cluster_stop "$CLUSTER"
  CLUSTER=$WORK/$1
  cluster_start "$CLUSTER" "$2" "$3" || { echo "FAIL: cannot start Slurm" >&2; exit 1; }
}

# --- one node, 8 fake GPUs -----------------------------------------------
start_cluster one 1 8
SECONDS=0

# 1. The embedded trainer on CPU, 2 ranks per trial, as srun steps.
mkdir -p "$WORK/emb" && cd "$WORK/emb"
cat >emb.toml <<TOML
[study]
name = "emb"
objective = "tps"
[hardware]
device_type = "cpu"
devices = 2
[backend]
kind = "embedded"
trainer = "$TRAINER"
env = { OMP_NUM_THREADS = "1" }
[launcher]
kind = "slurm"
time_limit = "5m"
[trial]
steps = 3
warmup_steps = 1
timeout_s = 240
[base.model]
name = "qwen3"
flavor = "debugmodel_moe-L2"
[base.training]
dataset = "c4_test"
local_batch_size = 1
[space]
"training.seq_len" = [32]
[search]
strategy = "grid"
TOML
timeout 400 salloc --exclusive -N1 "$TUNE" --space emb.toml >out.txt 2>&1
check "embedded study exits 0" grep -q "1 done, 0 failed" out.txt || cat out.txt
for id in $(sql results/emb.db "select id from trials"); do
  log=results/emb/trial-$id/output.log
  check "embedded $id: rank 0's steps, labelled by srun" grep -q "^0: step:  3" "$log"
  check "embedded $id: a world of 2 from Slurm's variables" grep -q "global batch size 2," "$log"
  check "embedded $id: rank 0 and rank 1 each wrote their metrics" \
    test -s results/emb/trial-$id/metrics-rank0.jsonl -a -s results/emb/trial-$id/metrics-rank1.jsonl
  check "embedded $id: 3 steps stored" test "$(sql results/emb.db "select count(*) from steps where trial = '$id'")" -eq 3
done
echo "embedded study: ${SECONDS}s"

# 2. parallel_trials = 3 on the command backend: 3 steps at once.
SECONDS=0
mkdir -p "$WORK/par" && cd "$WORK/par"
cat >par.toml <<TOML
[study]
name = "par"
objective = "tps"
[hardware]
device_type = "cuda"
devices = 2
memory_gib = 80
[backend]
kind = "command"
argv = ["$FAKE_TRAINER", "--job.config_file", "{config_file}", "--step-ms", "400", "--print-env", "CUDA_VISIBLE_DEVICES"]
[launcher]
kind = "slurm"
parallel_trials = 3
[trial]
steps = 5
warmup_steps = 1
timeout_s = 60
[space]
"training.local_batch_size" = [1, 2, 4]
"activation_checkpoint.mode" = ["none", "full"]
[search]
strategy = "grid"
TOML
timeout 300 salloc --exclusive -N1 --gres=gpu:8 "$TUNE" --space par.toml >out.txt 2>&1 &
tune_pid=$!
max=0
while kill -0 $tune_pid 2>/dev/null; do
  n=$(partune_steps)
  [ "$n" -gt "$max" ] && max=$n
  sleep 0.2
done
wait $tune_pid
check "parallel study exits 0" grep -q "6 done, 0 failed" out.txt || cat out.txt
check "3 steps ran at once (squeue saw $max)" test "$max" -eq 3
check "every candidate ran exactly once" test "$(sql results/par.db "select count(*) from trials where status = 'done' and attempt = 1")" -eq 6
devs=$(cat results/par/trial-*/output.log | sed -n 's/^0: env CUDA_VISIBLE_DEVICES=//p' | sort -u | tr '\n' ' ')
check "each step has 2 of the 8 GPUs, three sets in use ($devs)" test "$(echo "$devs" | wc -w)" -ge 3
echo "parallel study: ${SECONDS}s"

# 3. kill -9 of tune mid-study, in an allocation that outlives it.
SECONDS=0
mkdir -p "$WORK/kill" && cd "$WORK/kill"
sed -e 's/name = "par"/name = "kill"/' -e 's/"--step-ms", "400"/"--step-ms", "1500"/' \
  -e 's/parallel_trials = 3/parallel_trials = 2/' ../par/par.toml >kill.toml
job=$(salloc --no-shell --exclusive -N1 --gres=gpu:8 2>&1 | sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
check "an allocation for the kill test" test -n "$job"
nodes=$(squeue --noheader --jobs="$job" --format=%N)
SLURM_JOB_ID=$job SLURM_JOB_NODELIST=$nodes "$TUNE" --space kill.toml >out1.txt 2>&1 &
tune_pid=$!
for _ in $(seq 100); do
  [ "$(partune_steps)" -ge 2 ] && break
  sleep 0.1
done
sleep 1
check "2 steps running before the kill" test "$(partune_steps)" -eq 2
# The steps' names: partune.<study token>.<trial id>.
prefix=$(squeue --steps --noheader --format=%j | grep -m1 '^partune\.' | cut -d. -f1-2).
kill -9 $tune_pid
wait $tune_pid 2>/dev/null
left=99
for _ in $(seq 100); do
  left=$(partune_steps)
  [ "$left" -eq 0 ] && break
  sleep 0.1
done
check "no step left after kill -9 of tune (squeue: $left)" test "$left" -eq 0
check "trials left running in the database" test "$(sql results/kill.db "select count(*) from trials where status = 'running'")" -eq 2
# A step of the study that outlived its tune (its srun alive elsewhere): the
# next tune cancels it before starting anything.
SLURM_JOB_ID=$job timeout 120 srun --job-name="${prefix}leftover" sleep 100 >/dev/null 2>&1 &
leftover=$!
for _ in $(seq 50); do
  [ "$(partune_steps)" -ge 1 ] && break
  sleep 0.1
done
check "a leftover step of the study is running" test "$(partune_steps)" -eq 1
SLURM_JOB_ID=$job SLURM_JOB_NODELIST=$nodes timeout 300 "$TUNE" --space kill.toml >out2.txt 2>&1
check "the resumed study finishes" grep -q "6 done, 0 failed" out2.txt || cat out2.txt
check "tune cancelled the leftover step (scancel)" grep -q "cancelled 1 leftover Slurm step" out2.txt
wait $leftover 2>/dev/null
check "the leftover step's srun ended with it" test $? -ne 0
check "the killed trials ran again" test "$(sql results/kill.db "select count(*) from trials where attempt = 2")" -eq 2

# A step srun cannot create (more memory than the node has) fails its trial
# with srun's reason; the study goes on to the end.
sed -e 's/name = "kill"/name = "nomem"/' -e 's/^parallel_trials = 2/parallel_trials = 2\nextra_args = ["--mem=99999999"]/' \
  kill.toml >nomem.toml
SLURM_JOB_ID=$job SLURM_JOB_NODELIST=$nodes timeout 120 "$TUNE" --space nomem.toml >out3.txt 2>&1
# Every trial ran and failed: the study ran to its end and says so with exit 4.
check "failed steps do not stop the study (exit 4: every trial failed)" test $? -eq 4
check "the study ran to its end" grep -q "0 done, 6 failed" out3.txt
check "every trial failed with srun's reason" test \
  "$(sql results/nomem.db "select count(*) from trials where status = 'failed' and reason like 'srun: error:%'")" -eq 6
scancel "$job"
echo "kill and failure tests: ${SECONDS}s"

# 7. Rendezvous ports: 8 trials at once in one allocation, each holding its
# MASTER_PORT while it runs (fake_trainer --hold-master-port fails when the
# port is taken), 20 studies in a row.
SECONDS=0
mkdir -p "$WORK/ports" && cd "$WORK/ports"
job=$(salloc --no-shell --exclusive -N1 2>&1 | sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
check "an allocation for the port test" test -n "$job"
nodes=$(squeue --noheader --jobs="$job" --format=%N)
collisions=0 unfinished=0 distinct_short=0
for round in $(seq 1 20); do
  cat >ports$round.toml <<TOML
[study]
name = "ports$round"
db = "results/ports.db"
objective = "tps"
[hardware]
device_type = "cpu"
devices = 1
[backend]
kind = "command"
argv = ["$FAKE_TRAINER", "--job.config_file", "{config_file}", "--hold-master-port", "--step-ms", "300"]
[launcher]
kind = "slurm"
parallel_trials = 8
[trial]
steps = 3
warmup_steps = 1
timeout_s = 60
[space]
"training.local_batch_size" = [1, 2, 3, 4, 5, 6, 7, 8]
[search]
strategy = "grid"
TOML
  SLURM_JOB_ID=$job SLURM_JOB_NODELIST=$nodes timeout 120 "$TUNE" --space ports$round.toml >out$round.txt 2>&1
  grep -q "8 done, 0 failed" out$round.txt || { unfinished=$((unfinished + 1)); tail -5 out$round.txt; }
  grep -h "cannot hold MASTER_PORT" results/ports$round/trial-*/output.log && collisions=$((collisions + 1))
  ports=$(sed -n 's/^0: fake_trainer: holding MASTER_PORT //p' results/ports$round/trial-*/output.log | sort -u | wc -l)
  [ "$ports" -eq 8 ] || distinct_short=$((distinct_short + 1))
done
check "20 rounds of 8 trials at once: no port held twice ($collisions round(s) with a collision)" test "$collisions" -eq 0
check "every round finished its 8 trials ($unfinished did not)" test "$unfinished" -eq 0
check "every round's 8 trials held 8 different ports ($distinct_short did not)" test "$distinct_short" -eq 0
scancel "$job"
echo "port test: ${SECONDS}s"

# --- two "nodes" on this host -------------------------------------------
SECONDS=0
start_cluster two 2 4
mkdir -p "$WORK/two" && cd "$WORK/two"
cat >two.toml <<TOML
[study]
name = "two"
objective = "tps"
[hardware]
device_type = "cuda"
devices = 4
nodes = 2
memory_gib = 80
[backend]
kind = "torchtitan"
torchrun = "$HERE/fake_torchrun.sh"
[launcher]
kind = "slurm"
[trial]
steps = 4
warmup_steps = 1
timeout_s = 60
[space]
"training.local_batch_size" = [1]
[search]
strategy = "grid"
TOML
timeout 120 salloc -N2 --exclusive --gres=gpu:4 "$TUNE" --space two.toml >out.txt 2>&1
check "2-node study exits 0" grep -q "1 done, 0 failed" out.txt || cat out.txt
log=$(ls results/two/trial-*/output.log)
check "node 0 task: SLURM_NODEID=0" grep -q "^0: torchrun on node SLURM_NODEID=0" "$log"
check "node 1 task: SLURM_NODEID=1" grep -q "^1: torchrun on node SLURM_NODEID=1" "$log"
check "node 0: --nnodes=2 --node_rank=0 --rdzv_endpoint on the first node" \
  grep -qE "^0: torchrun args: --nproc_per_node=4 --nnodes=2 --node_rank=0 --rdzv_endpoint=127.0.0.1:[0-9]+ " "$log"
check "node 1: --node_rank=1, the same endpoint" \
  grep -qE "^1: torchrun args: --nproc_per_node=4 --nnodes=2 --node_rank=1 --rdzv_endpoint=127.0.0.1:[0-9]+ " "$log"
check "steps counted once (node 0's)" test "$(sql results/two.db "select count(*) from steps")" -eq 4

# 5. The embedded trainer across the two nodes: one rank on each, Gloo
# through MASTER_ADDR (the first node's NodeAddr).
mkdir -p "$WORK/emb2" && cd "$WORK/emb2"
sed -e 's/name = "emb"/name = "emb2"/' -e 's/^devices = 2/devices = 1\nnodes = 2/' "$WORK/emb/emb.toml" >emb2.toml
timeout 400 salloc --exclusive -N2 "$TUNE" --space emb2.toml >out.txt 2>&1
check "2-node embedded study exits 0" grep -q "1 done, 0 failed" out.txt || cat out.txt
check "2-node embedded: a world of 2, one rank a node" grep -q "^0: .*global batch size 2," results/emb2/trial-*/output.log
check "2-node embedded: rank 1 (on n2) wrote its metrics" test -s "$(ls results/emb2/trial-*/metrics-rank1.jsonl)"

# study_losing_a_node SPACE NODE TIMEOUT: tune on SPACE (out.txt) in a new
# 2-node allocation made with --no-kill (its id in $job, so that it survives
# a node's death), NODE's slurmd killed once 2 steps run; returns tune's exit
# status.
study_losing_a_node() {
  job=$(salloc --no-shell --no-kill --exclusive -N2 --gres=gpu:4 2>&1 | sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
  SLURM_JOB_ID=$job SLURM_JOB_NODELIST=n[1-2] timeout "$3" "$TUNE" --space "$1" >out.txt 2>&1 &
  local tune_pid=$!
  for _ in $(seq 100); do
    [ "$(partune_steps)" -ge 2 ] && break
    sleep 0.1
  done
  kill -9 "$(cat "$CLUSTER/slurmd-$2.pid")"
  wait $tune_pid
}

# 6. A node dies mid-study (its slurmd killed; the allocation survives with
# --no-kill, which takes the node out of it): the trial that meets the dead
# node fails with srun's reason and the node named, its slot is left out
# while the node stays down, the other slot's trials finish, the study ends
# normally. Resumed in what is left of the allocation, the study requeues
# the trial that failed with the node and finishes it.
mkdir -p "$WORK/down" && cd "$WORK/down"
sed -e 's/name = "par"/name = "down"/' -e 's/devices = 2/devices = 1/' -e 's/parallel_trials = 3/parallel_trials = 2/' \
  -e 's/"--step-ms", "400"/"--step-ms", "700"/' "$WORK/par/par.toml" >down.toml
study_losing_a_node down.toml n2 120
check "the study ends normally after a node died (exit $?)" grep -q "search finished" out.txt || cat out.txt
check "a trial on the dead node failed with srun's reason and the node named" \
  test "$(sql results/down.db "select count(*) from trials where status = 'failed' and reason like 'node down: n2 %srun: error:%'")" -ge 1
check "the progress line says the dead node's slot is left out" \
  grep -q "slot 1 (n2): node n2 .* is down: the slot is left out while it stays down" out.txt
check "the other node's trials finished" \
  test "$(sql results/down.db "select count(*) from trials where status = 'done'")" -ge 2
check "nothing left running" test "$(sql results/down.db "select count(*) from trials where status = 'running'")" -eq 0
check "no trial failed but with the dead node" \
  test "$(sql results/down.db "select count(*) from trials where status = 'failed' and reason not like 'node down: %'")" -eq 0
# (check counts a failure and returns 0: the reasons are printed here when one is not the dead node's)
[ "$(sql results/down.db "select count(*) from trials where status = 'failed' and reason not like 'node down: %'")" -eq 0 ] ||
  sql results/down.db "select id, reason from trials where status = 'failed'"
failed_with_node=$(sql results/down.db "select count(*) from trials where status = 'failed'")
# Resumed in the allocation as Slurm has it now (n2 taken out of it).
nodes=$(squeue --noheader --jobs="$job" --format=%N)
SLURM_JOB_ID=$job SLURM_JOB_NODELIST=$nodes timeout 120 "$TUNE" --space down.toml >out2.txt 2>&1
check "the resumed study requeues the trials of the dead node ($failed_with_node)" \
  grep -q "requeued $failed_with_node trial(s) that failed because their node died" out2.txt
check "the resumed study finishes every trial" grep -q "6 done, 0 failed" out2.txt
grep -q "6 done, 0 failed" out2.txt || cat out2.txt
scancel "$job"

# 8. The first node dies mid-study, in a study with [confirm]: the production
# check runs on the slot whose node is up (slot 1, n2), not on slot 0, and
# its measurement is stored. A fresh cluster: n2's slurmd died in 6.
start_cluster two-b 2 4
mkdir -p "$WORK/confirm" && cd "$WORK/confirm"
sed -e 's/name = "down"/name = "confirm"/' "$WORK/down/down.toml" >confirm.toml
printf '[confirm]\nkind = "command"\nargv = ["%s", "--job.config_file", "{config_file}", "--step-ms", "100"]\ntop_k = 1\n' \
  "$FAKE_TRAINER" >>confirm.toml
study_losing_a_node confirm.toml n1 150
check "the study with [confirm] ends normally after its first node died" grep -q "search finished" out.txt || cat out.txt
check "the production check leaves out slot 0 (n1 down)" grep -q "production check: slot 0 left out (node n1 " out.txt
check "the production check ran on n2 and its measurement is stored" \
  test "$(sql results/confirm.db "select count(*) from trials where json_extract(facts_json, '$.production.status') = 'done'")" -eq 1
grep -q "production check: slot 0 left out" out.txt || cat out.txt
scancel "$job"
echo "two-node tests: ${SECONDS}s"

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all Slurm checks passed"
