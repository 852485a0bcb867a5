#!/usr/bin/env bash
# Trainer throughput on one node: `sweet-bench train` under torchrun over the node's GPUs, JSON out.
#   sbatch slurm/bench.sh --model llama3_8b --parallel h100_8b --json bench-8b.json
#   BENCH=reshard sbatch slurm/bench.sh --model llama3_8b     # another sweet-bench subcommand
#SBATCH --job-name=sweet-bench
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --exclusive
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
REPO=${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
. "$REPO/slurm/common.sh"
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
BENCH=${BENCH:-train}
log_job sweet-bench
srun "${SRUN_CONTAINER[@]}" torchrun --standalone --nproc-per-node "${GPUS_PER_NODE}" \
  -m sweet_megatron.bench.cli "$BENCH" "$@"
