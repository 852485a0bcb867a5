"""`python -m sweet_megatron.env.colbench_frontend`: the frontend environment's commands.

    python -m sweet_megatron.env.colbench_frontend fetch-tailwind          # install time, once
    python -m sweet_megatron.env.colbench_frontend generate --n 200 --seed 0 --out pages.jsonl
    python -m sweet_megatron.env.colbench_frontend score --self            # acceptance: 50 real pages
    python -m sweet_megatron.env.colbench_frontend score --tasks T.jsonl --answers A.jsonl \\
        [--baseline B.jsonl] [--out results.jsonl]

`score --self` renders every reference page of the task file (default: the 50 shipped real ones)
offline and scores each against all references: it prints the render time, the CPU cores busy
while it ran, and how many references matched themselves best. `score --answers` renders the
agent's pages (JSONL {"index": i, "answer": <agent text>}; the page is cut out with extract_html)
and scores each against its task's reference; with `--baseline` (same format) it adds the win
rate. The summary is a JSON object on the last line. `sweet-colbench score` runs the same scoring
for frontend task files (`--kind frontend`, or detected from the first record). `generate` writes
synthetic pages (synthetic.py) as JSONL in the released schema.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FRONTEND_RECORDS = "builtin:colbench/frontend_test_0-49.jsonl"


def _answers(path: Path, num_tasks: int) -> dict[int, str | None]:
    from sweet_megatron.env.colbench_frontend.records import FrontendFormatError
    from sweet_megatron.env.jsonl import iter_jsonl

    out: dict[int, str | None] = {}
    for where, _, rec in iter_jsonl(path, FrontendFormatError):
        if not isinstance(rec, dict) or type(rec.get("index")) is not int or not 0 <= rec["index"] < num_tasks:
            raise FrontendFormatError(f'{where}: expected {{"index": <int in [0, {num_tasks})>, "answer": <string or null>}}')
        if rec.get("answer") is not None and not isinstance(rec["answer"], str):
            raise FrontendFormatError(f"{where}: field 'answer' must be a string or null")
        out[rec["index"]] = rec.get("answer")
    return out


def _busy_cores(before, after) -> float:
    """CPU cores busy (all processes) between two psutil.cpu_times() samples."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return os.cpu_count() * (1 - idle / total) if total > 0 else 0.0


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np
    import psutil

    from sweet_megatron.env.colbench_frontend.records import extract_html, load_frontend_tasks
    from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderConfig
    from sweet_megatron.env.colbench_frontend.similarity import page_similarity, similarity_matrix, win_rate

    tasks = load_frontend_tasks(args.tasks)
    config = RenderConfig(num_browsers=args.browsers, timeout_s=args.timeout)
    cpu0, t0 = psutil.cpu_times(), time.perf_counter()
    with BrowserPool(config) as pool:
        references = pool.render([t.ground_truth for t in tasks])
        render_s = time.perf_counter() - t0
        cores = _busy_cores(cpu0, psutil.cpu_times())
        summary: dict = {"n": len(tasks), "render_seconds": round(render_s, 1), "browsers": args.browsers,
                         "cpu_cores": os.cpu_count(), "cores_busy_while_rendering": round(cores, 2),
                         "render_errors": [t.task_id for t, r in zip(tasks, references) if r.error]}
        if args.self_check:
            t1 = time.perf_counter()
            scores = similarity_matrix(references, references)
            best = [int(scores[i].argmax()) for i in range(len(tasks))]
            summary.update({
                "matched_self_best": sum(b == i for i, b in enumerate(best)),
                "not_self_best": [tasks[i].task_id for i, b in enumerate(best) if b != i],
                "mean_self_score": round(float(scores.diagonal().mean()), 4),
                "mean_other_score": round(float(scores[~np.eye(len(tasks), dtype=bool)].mean()), 4),
                "score_seconds": round(time.perf_counter() - t1, 1),
            })
        else:
            if args.answers is None:
                raise SystemExit("score: pass --answers A.jsonl or --self")
            answers = _answers(args.answers, len(tasks))
            indices = sorted(answers)
            pages = pool.render([extract_html(answers[i]) for i in indices])
            scores = [page_similarity(p, references[i]) for p, i in zip(pages, indices)]
            summary["mean_similarity"] = round(sum(s.score for s in scores) / max(len(scores), 1), 4)
            if args.baseline is not None:
                base = _answers(args.baseline, len(tasks))
                missing = [i for i in indices if i not in base]
                if missing:
                    raise SystemExit(f"score: --baseline {args.baseline} has no answer for task indices {missing[:10]}")
                base_pages = pool.render([extract_html(base[i]) for i in indices])
                base_scores = [page_similarity(p, references[i]).score for p, i in zip(base_pages, indices)]
                summary["baseline_mean_similarity"] = round(sum(base_scores) / len(base_scores), 4)
                summary["win_rate"] = round(win_rate([s.score for s in scores], base_scores), 4)
            if args.out is not None:
                with Path(args.out).open("w", encoding="utf-8") as f:
                    for i, p, s in zip(indices, pages, scores):
                        f.write(json.dumps({"index": i, "task_id": tasks[i].task_id, **s.as_dict(),
                                            "render_error": p.error}) + "\n")
    print(json.dumps(summary))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from sweet_megatron.env.colbench_frontend.records import save_frontend_tasks
    from sweet_megatron.env.colbench_frontend.synthetic import generate_frontend_tasks

    tasks = generate_frontend_tasks(args.n, seed=args.seed, split=args.split, difficulty=tuple(args.difficulty),
                                    family=args.family)
    save_frontend_tasks(tasks, args.out)
    print(json.dumps({"written": len(tasks), "out": str(args.out), "split": args.split, "seed": args.seed,
                      "family": args.family}))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from sweet_megatron.env.colbench_frontend.tailwind import fetch_tailwind

    print(json.dumps({"tailwind_css": str(fetch_tailwind(args.dest))}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweet_megatron.env.colbench_frontend",
                                     description="ColBench frontend design: render and score pages offline")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch-tailwind", help="install-time: fetch tailwindcss@2.2.19's tailwind.min.css")
    f.add_argument("--dest", type=Path, help="directory (default: the cache directory the renderer reads)")
    f.set_defaults(func=cmd_fetch)
    g = sub.add_parser("generate", help="write synthetic frontend pages (synthetic.py) as JSONL")
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--split", choices=("train", "heldout"), default="train")
    g.add_argument("--difficulty", type=int, nargs=2, default=(1, 7), metavar=("MIN", "MAX"))
    g.add_argument("--family", choices=("page-v1", "page-mini-v1"), default="page-v1",
                   help="page-v1 (about 5400 characters) or the compact page-mini-v1 that task=frontend_synthetic trains on")
    g.add_argument("--out", type=Path, required=True)
    g.set_defaults(func=cmd_generate)
    s = sub.add_parser("score", help="render and score pages")
    s.add_argument("--tasks", default=FRONTEND_RECORDS, help="frontend task JSONL (default: the 50 shipped)")
    s.add_argument("--self", dest="self_check", action="store_true",
                   help="score every reference against every reference (acceptance check)")
    s.add_argument("--answers", type=Path, help='JSONL of {"index": i, "answer": "<agent text>"}')
    s.add_argument("--baseline", type=Path, help="a baseline agent's answers, same format: adds win_rate")
    s.add_argument("--out", type=Path, help="per-answer scores as JSONL")
    s.add_argument("--browsers", type=int, default=2, help="browsers rendering in parallel")
    s.add_argument("--timeout", type=float, default=15.0, help="seconds per page")
    s.set_defaults(func=cmd_score)
    args = parser.parse_args(argv)
    from sweet_megatron.env.colbench_frontend.records import FrontendFormatError
    from sweet_megatron.env.colbench_frontend.render import RenderUnavailable

    try:
        return args.func(args)
    except (FrontendFormatError, FileNotFoundError, RenderUnavailable, ValueError, RuntimeError) as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
