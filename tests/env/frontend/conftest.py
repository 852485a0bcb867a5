"""Fixtures of the frontend tests: the 50 shipped real records and one browser pool per session.

Rendering needs Debian's `chromium`, Playwright for Python and the Tailwind stylesheet fetched at
install time (`python -m sweet_megatron.env.colbench_frontend fetch-tailwind`); without them the
rendering tests skip with that reason (CI installs all three)."""

import pytest

from sweet_megatron.env.colbench_frontend.records import load_frontend_tasks

FRONTEND_RECORDS = "builtin:colbench/frontend_test_0-49.jsonl"


@pytest.fixture(scope="session")
def frontend_tasks():
    return load_frontend_tasks(FRONTEND_RECORDS)


def _pool_or_skip(**kw):
    from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderConfig, RenderUnavailable
    from sweet_megatron.env.colbench_frontend.tailwind import TailwindMissing

    try:
        return BrowserPool(RenderConfig(**kw))
    except (RenderUnavailable, TailwindMissing) as e:
        pytest.skip(f"rendering unavailable: {e}")


@pytest.fixture(scope="session")
def pool():
    p = _pool_or_skip(num_browsers=2)
    yield p
    p.close()


@pytest.fixture(scope="session")
def reference_renders(pool, frontend_tasks):
    """The 50 real reference pages rendered once for the whole session."""
    return pool.render([t.ground_truth for t in frontend_tasks])
