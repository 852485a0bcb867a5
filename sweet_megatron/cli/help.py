"""`sweet-train --help`: generated from the schema (field docstrings) and the yaml tree (groups,
options, defaults), so it cannot drift from what the trainer reads."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from functools import cache

from sweet_megatron.config import CONF_DIR, STAGES, RunConfig, _nested_schema, compose_config

STAGE_HELP = {
    "all": "the main job: sft, eval before, then sweet.iterations x (collect, critic, actor, eval), report",
    "sft": "warm start on scripted demonstrations (token NLL on the agent's actions)",
    "collect": "episodes of the current actor on training tasks, with the evaluator's rewards",
    "critic": "collect, then the asymmetric critic (Bradley-Terry on same-task trajectory pairs)",
    "actor": "collect, critic, then per-turn DPO on critic-ranked candidate actions, and eval",
    "eval": "greedy episodes on held-out tasks: success rate before (after sft), and the report",
    "baselines": "rejection fine-tuning and multi-turn DPO from the same warm start, for comparison",
    "pretrain": "a base model for the synthetic family from scratch (for train.init_from), on its own",
}
# The keys a user changes most, in the order shown.
COMMON_KEYS = ("stage", "run_dir", "seed", "train.init_from", "train.steps", "task.num_train", "sweet.iterations",
               "sweet.episodes_per_iter", "rollout.temperature", "parallel.tensor_parallel")


@cache
def field_docs(schema: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (the string literal after its annotation)."""
    docs: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


# Keys whose schema field has no docstring (TaskConfig's are another part's to write).
FALLBACK_DOCS = {"task.num_train": "Training tasks (task.num_eval more are held out for eval)."}


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = re.search(r"(?<!e\.g)(?<!i\.e)\. ", text)
    return text if cut is None else text[: cut.start() + 1]


def key_doc(dotted: str) -> str:
    """The first sentence of the docstring of a key like 'train.steps' ('' when it has none)."""
    schema, *parents = RunConfig, *dotted.split(".")[:-1]
    for part in parents:
        schema = _nested_schema(schema, part)
    doc = field_docs(schema).get(dotted.rsplit(".", 1)[-1]) or FALLBACK_DOCS.get(dotted, "")
    return _first_sentence(doc)


def groups() -> list[tuple[str, list[str], str]]:
    """(group, its options, one line) for each config group of conf/."""
    out = []
    for path in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")):
        schema = _nested_schema(RunConfig, path.name)
        line = _first_sentence(inspect.getdoc(schema) or "") if schema else ""
        out.append((path.name, sorted(f.stem for f in path.glob("*.yaml")), line))
    return out


def help_page() -> str:
    from omegaconf import OmegaConf

    cfg = compose_config([])
    defaults = {g: o for d in OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").defaults)
                if isinstance(d, dict) for g, o in d.items()}
    lines = ["usage: sweet-train [--help] [--cfg job|all] [--debug] [key=value | group=option ...]", "",
             "Train a multi-turn agent with SWEET-RL (megatron-core). Without arguments: stage=all on the",
             "embedded default (small Llama, synthetic ColBench-style tasks, rule simulator, CPU).", "",
             "stages (stage=NAME):"]
    width = max(len(s) for s in STAGES)
    lines += [f"  {s:<{width}}  {STAGE_HELP[s]}" for s in STAGES]
    lines += ["", "config groups (group=option; default in brackets):"]
    for name, options, line in groups():
        shown = ", ".join(f"[{o}]" if o == defaults.get(name) else o for o in options)
        lines += [f"  {name:<9} {line}", f"  {'':<9}   {shown}"]
    lines += ["", "keys most often changed (key=value; default after =):"]
    width = max(len(k) for k in COMMON_KEYS) + 12
    for key in COMMON_KEYS:
        value = OmegaConf.select(cfg, key)
        shown = f"{key}={'null' if value is None else value}"
        lines += textwrap.wrap(key_doc(key), 110, initial_indent=f"  {shown:<{width}}  ",
                               subsequent_indent=" " * (width + 4)) or [f"  {shown}"]
    lines += ["", "Every key is typed by sweet_megatron/config.py; an unknown key is an error (also with +key).",
              "flags:",
              "  --cfg job   print the resolved config (with the overrides given) and stop; --cfg all adds hydra's",
              "  --debug     show the traceback of an error (also HYDRA_FULL_ERROR=1)",
              "  -h, --help  this page",
              "examples:",
              "  sweet-train run_dir=runs/demo                 the main job",
              "  sweet-train stage=sft train.steps=100 model=tiny",
              "  torchrun --nproc-per-node 4 -m sweet_megatron.cli.train parallel=tp2pp2 stage=sft"]
    return "\n".join(lines)
