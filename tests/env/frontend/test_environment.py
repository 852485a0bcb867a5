"""The reward the episode loop gets: the reference page as the answer scores 1, a changed page
less, no page 0."""

import pytest

from sweet_megatron.env.colbench_frontend.environment import ANSWER_MARK, SYSTEM_PROMPT, FrontendRewarder


def test_rewards_follow_the_page(pool, frontend_tasks):
    task = frontend_tasks[0]
    rewarder = FrontendRewarder(pool)
    changed = task.ground_truth.replace("bg-green-500", "bg-red-700")
    scores = rewarder.score([task, task, task, task],
                            [f"Here it is:\n{task.ground_truth}", f"```html\n{changed}\n```", "no page at all", None])
    assert scores[0] == pytest.approx(1.0)
    assert 0.0 < scores[1] < 0.99
    assert scores[2] == 0.0 and scores[3] == 0.0
    assert "{problem_description}" in SYSTEM_PROMPT and ANSWER_MARK in SYSTEM_PROMPT
