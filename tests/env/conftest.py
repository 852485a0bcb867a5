"""Shared fixtures of the env tests. The hostile-answer corpus is data: never import or collect it."""

import pytest

from sweet_megatron.builtin import resolve_builtin

collect_ignore_glob = ["hostile/*"]

BACKEND_RECORDS = "builtin:colbench/backend_test_0-199.jsonl"


@pytest.fixture(scope="session")
def real_tasks():
    """The 200 real ColBench backend records shipped with the package (always present)."""
    from sweet_megatron.env.colbench_backend.tasks import load_tasks

    return load_tasks(resolve_builtin(BACKEND_RECORDS))
