# Sourced by the job scripts in slurm/: where the repository is, the environment megatron expects on
# H100 nodes, an optional container (pyxis), and a record of what the job ran on.
# Every setting is a default: export the variable before sbatch to change it.

# The job script sets REPO first (sbatch runs a copy of it from its spool directory: the repository
# is where the job was submitted, SLURM_SUBMIT_DIR).
[ -n "${VENV:-}" ] && . "${VENV}/bin/activate"

# megatron-core: one CUDA connection keeps the order of tensor-parallel communication and compute
# kernels (required with sequence parallelism and comm overlap).
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export TORCH_NCCL_AVOID_RECORD_STREAMS=${TORCH_NCCL_AVOID_RECORD_STREAMS:-1}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export NCCL_IB_TIMEOUT=${NCCL_IB_TIMEOUT:-22}
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# CONTAINER_IMAGE (e.g. nvcr.io#nvidia/pytorch:25.01-py3, which ships Transformer Engine and Apex):
# srun starts each task inside it through pyxis, with the repository mounted at the same path.
SRUN_CONTAINER=()
if [ -n "${CONTAINER_IMAGE:-}" ]; then
  SRUN_CONTAINER=(--container-image="${CONTAINER_IMAGE}" --container-workdir="${REPO}"
                  --container-mounts="${REPO}:${REPO}${CONTAINER_MOUNTS:+,${CONTAINER_MOUNTS}}")
fi

log_job() {  # what the job ran on: allocation, commit, GPUs, library versions, relevant environment
  echo "$1: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_NNODES:-1} node(s): ${SLURM_JOB_NODELIST:-$(hostname)}"
  echo "git: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
  else
    echo "nvidia-smi: not found (no GPU driver on this node)"
  fi
  python - <<'PY'
import importlib
for name in ("torch", "megatron.core", "transformer_engine", "vllm", "hydra"):
    try:
        mod = importlib.import_module(name)
        print(f"{name}: {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # report, do not fail: CPU smoke runs lack TE and vLLM
        print(f"{name}: not importable ({type(exc).__name__})")
PY
  env | grep -E '^(SLURM_JOB_ID|SLURM_NNODES|SLURM_CPUS_PER_TASK|CUDA_VISIBLE|CUDA_DEVICE_MAX|NCCL_|TORCH_NCCL|MASTER_)' | sort || true
}
