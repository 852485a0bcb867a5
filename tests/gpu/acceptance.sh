#!/usr/bin/env bash
# GPU acceptance run (issue 18): bash tests/gpu/acceptance.sh OUT_DIR
#
# Every step runs in its own process under a hard timeout (tests/gpu/steps.py); its JSON record is
# written even when a later step fails or hangs, and OUT_DIR/report.json collects them all. Steps
# that need what the machine lacks (CUDA, Transformer Engine, vLLM, a second GPU) are skipped with
# the reason, so the script also runs on CPU. Budget: about 8 minutes on one H100/H200
# (SWEET_ACC_BUDGET_S, default 480); a step that would start with less than its timeout left is
# skipped as "no time left" instead of being killed half way.
set -u
OUT=${1:?usage: bash tests/gpu/acceptance.sh OUT_DIR}
mkdir -p "$OUT/steps"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH="$ROOT:$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
export VLLM_ENABLE_V1_MULTIPROCESSING=0
BUDGET=${SWEET_ACC_BUDGET_S:-480}
START=$(date +%s)
# step:timeout (seconds), cheapest and most decisive first
STEPS="versions:60 plan:90 kernel:90 init_step:90 te_vs_local:90 thd:60 fp8_gap:60 dp2_tp2:120 vllm_cycle:240"
for item in $STEPS; do
  name=${item%%:*}; limit=${item##*:}
  left=$(( BUDGET - ($(date +%s) - START) ))
  if (( left < limit / 2 )); then
    printf '{"step": "%s", "status": "skipped", "reason": "no time left (%ss of the %ss budget)"}\n' \
      "$name" "$left" "$BUDGET" > "$OUT/steps/$name.json"
    echo "== $name: skipped, ${left}s left"; continue
  fi
  (( limit > left )) && limit=$left
  echo "== $name (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" python "$ROOT/tests/gpu/steps.py" "$name" "$OUT/steps/$name.json" \
    > "$OUT/steps/$name.log" 2>&1
  rc=$?
  if [[ ! -s "$OUT/steps/$name.json" ]]; then  # killed or crashed before writing its record
    printf '{"step": "%s", "status": "failed", "reason": "exit %s (timeout is 124/137); see %s.log"}\n' \
      "$name" "$rc" "$name" > "$OUT/steps/$name.json"
  fi
  tail -c 1500 "$OUT/steps/$name.json"; echo
done
python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
steps = [json.loads(p.read_text()) for p in sorted((out / "steps").glob("*.json"))]
(out / "report.json").write_text(json.dumps({"steps": steps}, indent=2, default=str))
for s in steps:
    print(f"{s['step']:<12} {s['status']:<8} {s.get('reason') or ''}")
failed = [s["step"] for s in steps if s["status"] == "failed"]
print("report:", out / "report.json", "| failed:", failed or "none")
sys.exit(1 if failed else 0)
PY
