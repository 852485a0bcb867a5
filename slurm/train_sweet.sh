#!/usr/bin/env bash
# SWEET-RL on a Slurm cluster: one srun task per node, each launching torchrun over its GPUs.
#   sbatch slurm/train_sweet.sh model=llama3_8b parallel=h100_8b stage=all run_dir=/scratch/runs/sweet8b
# On this repository's one-node CPU cluster (slurm/local_cluster.sh; tests/slurm):
#   GPUS_PER_NODE=2 sbatch --nodes=1 --gpus-per-node=0 slurm/train_sweet.sh parallel=tp2 stage=sft ...
# Defaults are overridable from the environment (NODES, GPUS_PER_NODE, VENV, MASTER_PORT).
#SBATCH --job-name=sweet-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
MASTER_PORT=${MASTER_PORT:-29500}
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
NNODES=${SLURM_NNODES:-1}
# sbatch runs a copy of this script from its spool directory: the repository is where it was submitted.
REPO=${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
[ -n "${VENV:-}" ] && . "${VENV}/bin/activate"

echo "sweet-train: job ${SLURM_JOB_ID:-?} on ${NNODES} node(s) x ${GPUS_PER_NODE}, master ${MASTER_ADDR}:${MASTER_PORT}"
echo "git: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
python - <<'PY'
import importlib
for name in ("torch", "megatron.core", "transformer_engine", "vllm", "hydra"):
    try:
        mod = importlib.import_module(name)
        print(f"{name}: {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # report, do not fail: CPU smoke runs lack TE and vLLM
        print(f"{name}: not importable ({type(exc).__name__})")
PY
env | grep -E '^(SLURM_JOB|CUDA_VISIBLE|NCCL_|MASTER_)' | sort || true

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
srun --kill-on-bad-exit=1 torchrun \
  --nnodes "${NNODES}" --nproc-per-node "${GPUS_PER_NODE}" \
  --rdzv-backend c10d --rdzv-endpoint "${MASTER_ADDR}:${MASTER_PORT}" --rdzv-id "${SLURM_JOB_ID:-local}" \
  -m sweet_megatron.cli.train "$@"
