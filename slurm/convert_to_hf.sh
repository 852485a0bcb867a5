#!/usr/bin/env bash
# A trained checkpoint to a Hugging Face directory, on one node (CPU work; no GPU needed):
#   sbatch slurm/convert_to_hf.sh /scratch/runs/sweet8b/actor_model /scratch/hf/sweet8b-actor [--dtype bfloat16]
# The other direction, a Hugging Face Llama to a checkpoint for train.init_from:
#   DIRECTION=hf-to-mcore sbatch slurm/convert_to_hf.sh /scratch/hf/Llama-3.1-8B-Instruct /scratch/ckpt/llama8b
#SBATCH --job-name=sweet-convert
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --mem=0
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
REPO=${REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
. "$REPO/slurm/common.sh"
if [ "$#" -lt 2 ]; then
  echo "usage: sbatch slurm/convert_to_hf.sh SOURCE OUT [sweet-convert options]" >&2
  exit 2
fi
src=$1 out=$2
shift 2
DIRECTION=${DIRECTION:-mcore-to-hf}
log_job sweet-convert
case "$DIRECTION" in
  mcore-to-hf) srun "${SRUN_CONTAINER[@]}" sweet-convert mcore-to-hf --ckpt "$src" --out "$out" "$@" ;;
  hf-to-mcore) srun "${SRUN_CONTAINER[@]}" sweet-convert hf-to-mcore --hf-dir "$src" --out "$out" "$@" ;;
  *) echo "DIRECTION=$DIRECTION: use mcore-to-hf or hf-to-mcore" >&2; exit 2 ;;
esac
