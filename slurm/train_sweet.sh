#!/usr/bin/env bash
# SWEET-RL on a Slurm cluster: one srun task per node, each launching torchrun over its GPUs.
#   sbatch slurm/train_sweet.sh model=llama3_8b parallel=h100_8b stage=all run_dir=/scratch/runs/sweet8b
#   CONTAINER_IMAGE=nvcr.io#nvidia/pytorch:25.01-py3 sbatch slurm/train_sweet.sh ...   # through pyxis
# On this repository's one-node CPU cluster (slurm/local_cluster.sh; tests/slurm):
#   GPUS_PER_NODE=2 sbatch --nodes=1 --gpus-per-node=0 --cpus-per-task=2 slurm/train_sweet.sh parallel=tp2 stage=sft ...
#
# Preemption and time limits: Slurm sends USR1 to this script 300 s before the limit (--signal), and
# SIGTERM when it preempts or cancels the job. Either way the script creates $SWEET_STOP_FILE; every
# rank sees it after its current optimizer step, all stop at the same step, a checkpoint is written,
# and the script requeues the job (--requeue), which resumes from that checkpoint. SWEET_REQUEUE=0
# turns the requeue off. Defaults are overridable from the environment (GPUS_PER_NODE, VENV,
# MASTER_PORT, CONTAINER_IMAGE, CONTAINER_MOUNTS, the NCCL_* of slurm/common.sh).
#SBATCH --job-name=sweet-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --exclusive
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -uo pipefail
REPO=${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
. "$REPO/slurm/common.sh"

# Traps first: with a time limit under the warning time Slurm sends the warning at once.
# The stop file lives on the storage the job was submitted from (seen by every node).
export SWEET_STOP_FILE=${SWEET_STOP_FILE:-${REPO}/.sweet-stop-${SLURM_JOB_ID:-local}}
rm -f "$SWEET_STOP_FILE"
stop_requested=0
request_stop() {
  stop_requested=1
  echo "sweet-train: $1 received: every rank stops after its current step and writes a checkpoint"
  touch "$SWEET_STOP_FILE"
}
trap 'request_stop USR1' USR1
trap 'request_stop TERM' TERM

GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
MASTER_PORT=${MASTER_PORT:-29500}
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
NNODES=${SLURM_NNODES:-1}
echo "sweet-train: job ${SLURM_JOB_ID:-?} on ${NNODES} node(s) x ${GPUS_PER_NODE}, master ${MASTER_ADDR}:${MASTER_PORT}"
log_job sweet-train


srun --kill-on-bad-exit=1 "${SRUN_CONTAINER[@]}" torchrun \
  --nnodes "${NNODES}" --nproc-per-node "${GPUS_PER_NODE}" \
  --rdzv-backend c10d --rdzv-endpoint "${MASTER_ADDR}:${MASTER_PORT}" --rdzv-id "${SLURM_JOB_ID:-local}" \
  -m sweet_megatron.cli.train "$@" &
srun_pid=$!
while :; do  # a trapped signal interrupts `wait`: keep waiting until srun itself has ended
  wait "$srun_pid"
  rc=$?
  if [ "$rc" -gt 128 ] && kill -0 "$srun_pid" 2>/dev/null; then continue; fi
  break
done
rm -f "$SWEET_STOP_FILE"

if [ "$stop_requested" = 1 ] && [ "${SWEET_REQUEUE:-1}" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  echo "sweet-train: stopped on request (rc $rc): requeueing job ${SLURM_JOB_ID} to resume from its checkpoint"
  scontrol requeue "${SLURM_JOB_ID}"
  exit 0
fi
exit "$rc"
