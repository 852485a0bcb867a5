#!/usr/bin/env bash
# Rebuild the embedded default's base model, sweet_megatron/assets/base-small, from scratch.
#
#   bash examples/make_base_model.sh            # ~30 minutes on 2 CPU cores (3000 steps)
#   bash examples/make_base_model.sh pretrain.steps=500 model=tiny   # any sweet-train override
#
# It is what a pretrained Llama is for real tasks: `sweet-train stage=pretrain` trains model=small
# on specifications of the synthetic family with every detail stated, followed by their code (no
# dialogue, no question), and records its greedy code-writing accuracy on held-out specifications
# in sweet_meta.json. The SFT warm start of `sweet-train stage=all` then starts from it
# (train.init_from=builtin:base-small) and uses its tokenizer. The old copy is replaced only once
# the new one is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="runs/base-$(date +%Y%m%d-%H%M%S)"
sweet-train stage=pretrain run_dir="$run_dir" train.progress=false "$@"
dest=sweet_megatron/assets/base-small
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new" && cp -r "$run_dir/base_model" "$dest.new"
rm -rf "$dest.old" && { [ -d "$dest" ] && mv "$dest" "$dest.old" || true; }
mv "$dest.new" "$dest" && rm -rf "$dest.old"
python - "$dest" <<'PY'
import json, sys
meta = json.load(open(f"{sys.argv[1]}/sweet_meta.json"))
print(f"{sys.argv[1]}: held-out greedy code accuracy {meta['pretrain']['code_accuracy']:.3f} "
      f"after {meta['pretrain']['step']} steps")
PY
