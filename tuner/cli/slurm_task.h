// `tune slurm-task -- PROGRAM ARGS...`: what each node's task of a Slurm step
// runs when the command needs per-node values in its argv (torchrun's
// --node_rank). It puts the node's SLURM_NODEID in for every "{node_rank}"
// and execs PROGRAM (looked up on PATH): no shell. Not for users; the Slurm
// launcher builds these argvs (docs/cluster.md).
#pragma once

namespace partune {

// `args`: what follows "slurm-task" on the command line. Returns only on
// error (exit code 2 for a bad call, 127 when the program cannot be run).
int slurm_task_main(int argc, char** args);

}  // namespace partune
