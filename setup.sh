#!/usr/bin/env bash
# Everything a fresh machine needs for the default run and the tests, in one command:
#   bash setup.sh            # then: . .venv/bin/activate
# 1. a virtual environment in .venv with torch (TORCH_SPEC, default torch==2.13.0: a CPU build on
#    these machines; on a GPU cluster use NVIDIA's PyTorch container instead) and the project with
#    its test extras;
# 2. the system packages of .ci/apt-packages.txt (bubblewrap, the answer sandbox; a one-node Slurm
#    for tests/slurm): installed with apt-get when run as root, otherwise listed with the command to
#    run, and what is disabled without them;
# 3. a check that the sandbox really works here (bubblewrap running a process in new namespaces).
# It ends with one line per thing it could not do; the exit status is 0 when the default run can
# go (the venv is complete), whatever optional part is missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
problems=()

say() { printf 'setup: %s\n' "$*"; }

# --- system packages ---------------------------------------------------------------------------
mapfile -t pkgs < <(grep -v '^\s*#' .ci/apt-packages.txt | sed '/^\s*$/d')
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
      missing=()
    else
      problems+=("apt-get could not install ${missing[*]}")
    fi
  else
    problems+=("not root (or no apt-get): install ${missing[*]} yourself, e.g. sudo apt-get install -y ${missing[*]}")
  fi
fi
for p in "${missing[@]}"; do
  case "$p" in
    bubblewrap) problems+=("without bubblewrap the evaluator refuses to run answer code: ColBench backend scoring (task=colbench_backend) cannot run") ;;
    slurm*|munge) problems+=("without $p the Slurm tests (tests/slurm) skip") ;;
    chromium) problems+=("without chromium ColBench frontend pages cannot be rendered (their tests skip)") ;;
  esac
done

# --- Python environment ------------------------------------------------------------------------
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || { say "FAILED: $PYTHON -m venv .venv"; exit 1; }
# shellcheck disable=SC1091
. .venv/bin/activate
say "installing $TORCH_SPEC and the project (pip install -e '.[test,frontend]')"
pip install -q "$TORCH_SPEC" || { say "FAILED: pip install $TORCH_SPEC"; exit 1; }
pip install -q -e '.[test,frontend]' || { say "FAILED: pip install -e '.[test,frontend]'"; exit 1; }
python -W ignore -c "import torch, megatron.core, sweet_megatron" || { say "FAILED: the venv does not import torch, megatron.core and sweet_megatron"; exit 1; }

# --- the frontend pages' stylesheet, fetched once here (never at render time) ----------------------
if ! command -v npm >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null 2>&1 || true
fi
if ! command -v npm >/dev/null; then
  problems+=("without npm the Tailwind stylesheet of frontend pages cannot be fetched (their tests skip): install Node.js with npm")
else
  python -W ignore -m sweet_megatron.env.colbench_frontend fetch-tailwind >/dev/null \
    || problems+=("could not fetch the Tailwind 2.2.19 stylesheet (python -m sweet_megatron.env.colbench_frontend fetch-tailwind)")
fi

# --- the sandbox, tried for real ---------------------------------------------------------------
if command -v bwrap >/dev/null; then
  if ! bwrap --unshare-all --die-with-parent --ro-bind / / --proc /proc --dev /dev true 2>/tmp/sweet-bwrap-check.$$; then
    problems+=("bubblewrap is installed but cannot create namespaces here ($(head -c 200 /tmp/sweet-bwrap-check.$$)); as a non-root user enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run in a container that allows them")
  fi
  rm -f /tmp/sweet-bwrap-check.$$
fi

say "done: . .venv/bin/activate, then sweet-train stage=all run_dir=runs/demo (or python -m pytest -q tests)"
if [ "${#problems[@]}" -gt 0 ]; then
  say "could not do ${#problems[@]} thing(s):"
  for p in "${problems[@]}"; do say "  - $p"; done
fi
exit 0
