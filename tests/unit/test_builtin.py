"""Shipped files are found through the package, from any working directory."""

import os
import subprocess
import sys

import pytest

from sweet_megatron.builtin import resolve_builtin, shipped_names
from sweet_megatron.env.colbench_backend.tasks import load_tasks


def test_shipped_colbench_sample_loads_from_any_directory(tmp_path):
    assert {"builtin:base-small", "builtin:colbench/backend_test_0-199.jsonl",
            "builtin:colbench/frontend_test_0-49.jsonl"} <= set(shipped_names())
    code = ("from sweet_megatron.env.colbench_backend.tasks import load_tasks;"
            "print(len(load_tasks('builtin:colbench/backend_test_0-199.jsonl')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ}, check=True)
    assert out.stdout.strip() == "200"
    assert len(resolve_builtin("builtin:colbench/frontend_test_0-49.jsonl").read_text().splitlines()) == 50


def test_unknown_builtin_names_what_ships():
    with pytest.raises(FileNotFoundError, match="builtin:colbench/backend_test_0-199.jsonl"):
        load_tasks("builtin:colbench/nope.jsonl")
    assert str(resolve_builtin("relative/path.jsonl")) == "relative/path.jsonl"


def test_nothing_reads_beside_the_repository():
    """A user's clone has nothing beside it: no code, test, example or CI step names the sibling
    shared/ directory of the developers' machines."""
    from pathlib import Path

    repo = Path(__file__).parents[2]
    needle = "../" + "shared"
    hits = [f"{p.relative_to(repo)}:{n}" for top in ("sweet_megatron", "tests", "examples", "kernels", "slurm", ".ci")
            for p in (repo / top).rglob("*") if p.is_file() and p.suffix in {".py", ".sh", ".yaml", ".md", ""}
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if needle in line]
    assert not hits, hits
