#!/usr/bin/env bash
# A stand-in for torchrun in the Slurm tests: prints the argv it got and the
# node it runs on, then runs fake_trainer (FAKE_TRAINER) with the job config.
set -euo pipefail
echo "torchrun args: $*"
echo "torchrun on node SLURM_NODEID=$SLURM_NODEID"
config=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--job.config_file" ]; then config=$2; fi
  shift
done
exec "$FAKE_TRAINER" --job.config_file "$config" --step-ms 100
