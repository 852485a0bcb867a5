"""The reward the episode loop gets: the reference page as the answer scores 1, a changed page
less, no page 0; the registered environment plays an episode in the shared loop."""

import pytest

from sweet_megatron.env.colbench_frontend.environment import (
    ANSWER_MARK,
    SYSTEM_PROMPT,
    FrontendEvaluator,
    FrontendRewarder,
)


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


def test_the_registered_environment_plays_an_episode_in_the_shared_loop(pool, frontend_tasks):
    """Its protocol opens the dialogue, its person answers, its evaluator scores the final page."""
    from sweet_megatron.data.chat import Message, action_ids
    from sweet_megatron.env import registry
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.episode import run_episodes

    env = registry.get("colbench_frontend")
    task, tok = frontend_tasks[0], ByteTokenizer()
    texts = ["What colours should the parts have?", f"{ANSWER_MARK}\n{task.ground_truth}"]

    class TwoTurns:
        tokenizer = tok

        def act(self, prompts_ids, dialogues):
            out = []
            for d in dialogues:
                text = texts[sum(m.role == "assistant" for m in d)]
                ids = action_ids(tok, text)
                out.append((ids, [0.0] * len(ids), text))
            return out

    episode, = run_episodes(TwoTurns(), [task], env.rule_simulator(), evaluator=FrontendEvaluator(pool=pool),
                            max_turns=3, protocol=env.protocol)
    messages = episode.messages()
    assert messages[0] == Message("system", SYSTEM_PROMPT.format(problem_description=task.problem_description))
    assert [m.role for m in messages[1:]] == ["assistant", "user", "assistant"]
    assert messages[2].content and messages[2].content != "I don't know; I have not decided that."
    assert episode.answer == task.ground_truth.strip()
    assert episode.reward == pytest.approx(1.0) and episode.success
